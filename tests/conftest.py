"""Test-wide settings: a private feature cache and weights folder, quiet output, the location of ../shared, and a tiny
trained model for the commands' tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from dflab.runtime.memory import keep_freed_memory

# The dflab command runs with it (and the test suite runs faster with it).
keep_freed_memory()

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    cache = tmp_path_factory.mktemp("dflab-cache")
    # The ready detector's ONNX graph, exported once for every worker of the run (and the commands
    # the tests start) instead of once per cache; tests of the export itself use caches of their own.
    graphs = tmp_path_factory.getbasetemp().parent / "dflab-graphs"
    graphs.mkdir(exist_ok=True)
    (cache / "graphs").symlink_to(graphs)
    mp.setenv("DFLAB_CACHE", str(cache))
    mp.setenv("DFLAB_QUIET", "1")
    # Published weights are found in $DFLAB_WEIGHTS only: an empty folder unless a test points it
    # at ../shared/weights or at files it made (the user's ~/.cache/dflab/weights stays out of it).
    mp.setenv("DFLAB_WEIGHTS", str(tmp_path_factory.mktemp("dflab-weights")))
    yield
    mp.undo()


@pytest.fixture(scope="session")
def tiny_ela_model(tmp_path_factory) -> Path:
    """An ``ela-logreg`` model folder trained on 16 generated 40 px images (smooth against noisy)."""
    import numpy as np

    from dflab.detectors import create

    rng = np.random.default_rng(0)
    images = [rng.normal(128, 10 + 25 * (i % 2), (40, 40, 3)).clip(0, 255).astype(np.uint8) for i in range(16)]
    folder = tmp_path_factory.mktemp("tiny-ela") / "ela"
    detector = create("ela-logreg", workers=1, cache_dir=str(folder.parent / "cache"))
    detector.fit((images, np.arange(16) % 2)).save(folder)
    return folder


def require_shared(*parts: str) -> Path:
    """The path under ../shared, or skip the test with the reason."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"../shared not present ({path} missing): real-data test skipped")
    return path


def shared_task1_subsample(train_frames: int = 3, test_frames: int = 2):
    """(train, test): the first frames of every video of ../shared Task_1 development / evaluation
    (skips without ../shared)."""
    from dflab import data

    root = require_shared("datasets", "Task_1")
    development, evaluation = data.scan(root / "development"), data.scan(root / "evaluation")
    return (development.groupby("video").head(train_frames).reset_index(drop=True),
            evaluation.groupby("video").head(test_frames).reset_index(drop=True))
