"""Test-wide settings: a private feature cache, quiet output, and the location of ../shared."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
DATASETS = SHARED / "datasets"


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("DFLAB_CACHE", str(tmp_path_factory.mktemp("dflab-cache")))
    mp.setenv("DFLAB_QUIET", "1")
    yield
    mp.undo()


def require_shared(*parts: str) -> Path:
    """The path under ../shared, or skip the test with the reason."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"../shared not present ({path} missing): real-data test skipped")
    return path
