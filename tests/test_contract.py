"""The detector contract, checked for every registered detector (as scikit-learn's check_estimator does).

Each registry row is built by name and must: survive ``clone`` with its name and parameters, refuse a
misspelt parameter in one line, be unfitted when built and refuse to score before ``fit`` (asking
loads nothing), train on a tiny generated set, leave itself unchanged when scoring, give identical
scores after a save/load round trip, and score an unreadable file as NaN with ``on_error="nan"``.
Training settings are shrunk here (one epoch, small inputs) so that the whole registry trains in about
a minute; the contract does not depend on them. The rows that run published third-party weights get a
stand-in file in the published format, declared with its own sha256 (:mod:`tests.published_weights`).
"""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from sklearn.base import clone

from dflab.detectors import available, create, load_detector
from dflab.detectors.base import NotFittedError
from dflab.detectors.registry import UnknownParameterError
from dflab.runtime import weights

from .published_weights import install_stand_in

# The package's own detectors (tests elsewhere may register throw-away ones in the same process).
NAMES = sorted(name for name, entry in available().items() if entry.cls.__module__.startswith("dflab."))


def _runs_a_network(name: str) -> bool:
    """Whether a registry row trains or runs a neural network (itself, its shipped model, a member or
    its face embedding): those rows take up to minutes and are left out of the fast test loop."""
    from dflab.detectors.deep.torch_detector import TorchDetector
    from dflab.detectors.ready import ReadyDetector

    entry = available()[name]
    members = entry.defaults.get("members") or ()
    return (issubclass(entry.cls, (TorchDetector, ReadyDetector)) or entry.defaults.get("similarity") == "embedding"
            or any(_runs_a_network(member["detector"]) for member in members))


#: Every row, those with a network marked slow (``make test`` runs them all).
ROWS = [pytest.param(name, marks=pytest.mark.slow) if _runs_a_network(name) else name for name in NAMES]

#: Per detector class: parameters that make training take seconds (never used outside this test).
FAST = {
    "CNNDetector": dict(epochs=1, input_size=64, batch_size=8, pretrained=False, triplet_epochs=1, warmup_epochs=0),
    "MesoNetDetector": dict(epochs=1, batch_size=8, warmup_epochs=0),
    "SiameseDetector": dict(epochs=1, contrastive_epochs=1, input_size=64, batch_size=8, pairs_per_epoch=16,
                            pretrained=False, warmup_epochs=0),
    "BlockDCTDetector": dict(max_train_blocks=2000),
    "ELACNNDetector": dict(epochs=1, input_size=64, batch_size=8, pretrained=False, warmup_epochs=0),
    "PretrainedCNNDetector": dict(input_size=64, batch_size=8),
    "PublishedMesoNet": dict(batch_size=8),
}
#: Runtime settings: how to run here, not what is computed.
RUNTIME = {"workers": 1}


def _fast(name: str) -> dict:
    entry = available()[name]
    params = dict(FAST.get(entry.cls.__name__, {}))
    if entry.cls.__name__ == "EnsembleDetector":
        members = entry.defaults.get("members") or ({"detector": "ela-logreg"}, {"detector": "spectrum-logreg"})
        params["members"] = [
            {"detector": m["detector"],
             "params": {**m.get("params", {}), **FAST.get(available()[m["detector"]].cls.__name__, {})}}
            for m in members]
    known = set(entry.cls._get_param_names())
    return {k: v for k, v in {**params, **RUNTIME}.items() if k in known}


def _face(rng: np.random.Generator, fake: bool, size: int = 64) -> np.ndarray:
    """Smooth noise; 'fakes' carry a resampled, re-compressed patch (what every family can learn)."""
    base = rng.normal(128, 10, (size, size, 3)).clip(0, 255).astype(np.uint8)
    image = Image.fromarray(base)
    if fake:
        patch = image.crop((16, 16, 48, 48)).resize((10, 10)).resize((32, 32), Image.NEAREST)
        image.paste(patch, (16, 16))
    return np.asarray(image)


def _state(detector) -> dict:
    """What scoring must leave as it was: the parameters and every attribute (by identity; a fitted
    array changed in place counts too), of the detector and of a model it holds."""
    state = {"params": repr(detector.get_params(deep=False))}
    for key, value in vars(detector).items():
        state[key] = (id(value), value.tobytes() if isinstance(value, np.ndarray) else None)
    inner = vars(detector).get("inner_")
    if inner is not None:
        state["inner_"] = (id(inner), _state(inner))
    return state


@pytest.fixture(scope="module")
def tiny_set(tmp_path_factory):
    folder = tmp_path_factory.mktemp("contract")
    rng = np.random.default_rng(0)
    rows = []
    for i in range(24):
        fake = i % 2 == 1
        path = folder / f"{i:02d}.jpg"
        Image.fromarray(_face(rng, fake)).save(path, quality=int(rng.integers(75, 95)))
        rows.append({"path": str(path), "label": int(fake), "video": f"v{i // 2}", "pair": f"p{i // 4}"})
    table = pd.DataFrame(rows)
    broken = folder / "broken.jpg"
    broken.write_text("not an image")
    return table.iloc[:16], table.iloc[16:], table, broken


@pytest.mark.parametrize("name", NAMES)
def test_clone_keeps_the_name_and_the_parameters(name):
    detector = create(name, **_fast(name))
    twin = clone(detector)
    assert twin.name == name
    assert twin.get_params(deep=False).keys() == detector.get_params(deep=False).keys()
    for key, value in detector.get_params(deep=False).items():
        assert repr(twin.get_params(deep=False)[key]) == repr(value), key


@pytest.mark.parametrize("name", NAMES)
def test_a_misspelt_parameter_is_one_line(name):
    with pytest.raises(UnknownParameterError) as caught:
        create(name, not_a_parameter_of_any_detector=1)
    message = str(caught.value)
    assert "\n" not in message and name in message and "not_a_parameter_of_any_detector" in message


@pytest.mark.parametrize("name", NAMES)
def test_untrained_detectors_refuse_to_score(name, tiny_set):
    detector = create(name, **_fast(name))
    built = _state(detector)
    # Fitted state comes from fit or load, never from building: not even a shipped model or published
    # weights on this machine make a detector fitted, and asking loads nothing.
    assert not detector.is_fitted() and not clone(detector).is_fitted()
    # Ready to load without data: the shipped model only (the test session's weights folder is empty).
    assert detector.ready_to_load() == detector.shipped
    assert _state(detector) == built
    with pytest.raises(NotFittedError) as caught:
        detector.predict_proba(tiny_set[2].path.tolist()[:2])
    assert name in str(caught.value) and "\n" not in str(caught.value)
    assert _state(detector) == built, "refusing to score changed the detector"


@pytest.mark.parametrize("name", [name for name in NAMES if available()[name].cls.trainable])
def test_a_failed_fit_leaves_the_detector_as_it_was(name, tiny_set):
    """Training data of fakes only is refused by every trainable detector, and the refusal, wherever in
    ``fit`` it comes, leaves the detector unfitted and unchanged (detectors/base.py, all or nothing)."""
    detector = create(name, **_fast(name))
    built = _state(detector)
    only_fakes = tiny_set[0][tiny_set[0].label == 1]
    with pytest.raises((ValueError, TypeError)):
        detector.fit(only_fakes)
    assert not detector.is_fitted() and _state(detector) == built


@pytest.fixture
def stand_in(tmp_path, monkeypatch):
    """Installs a stand-in for a published weight file (:func:`install_stand_in`); removed after the test
    (up to 90 MB: not kept among pytest's last three runs)."""
    folder = tmp_path / "weights"
    yield lambda name: install_stand_in(name, monkeypatch, folder)
    shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.parametrize("name", ROWS)
def test_fit_save_load_scores_identically(name, tiny_set, tmp_path, stand_in):
    train, valid, everything, broken = tiny_set
    published = name in weights.WEIGHTS
    if published:  # published third-party weights: a stand-in file in their format, declared with its hash
        stand_in(name)
    detector = create(name, **_fast(name))
    assert detector.ready_to_load() == (not detector.trainable)
    detector.fit(train, valid=valid)
    assert detector.is_fitted() and not clone(detector).is_fitted()
    if published:  # the declared file, found in $DFLAB_WEIGHTS and checked, is what was loaded
        assert detector.training_ == {"weights": weights.get(name).filename}
    before = _state(detector)
    scores = detector.predict_proba(everything)
    assert scores.shape == (len(everything),) and np.all((scores >= 0) & (scores <= 1))
    assert _state(detector) == before, "predict_proba changed the detector"
    if detector.shipped:  # a ready detector is its package's model folder: load that
        loaded = load_detector(detector.folder, **RUNTIME)
    else:
        detector.save(tmp_path / "model")
        loaded = load_detector(tmp_path / "model", **RUNTIME)
        assert loaded.name == name
    np.testing.assert_array_equal(loaded.predict_proba(everything), scores)
    with_broken = loaded.predict_proba([str(broken), str(tmp_path / "missing.png"), everything.path.iloc[0]],
                                       on_error="nan")
    assert np.isnan(with_broken[:2]).all()
    # A batch of bad files only (a chunk of a batch run can be one) is NaN too, not an error.
    assert np.isnan(loaded.predict_proba([str(broken), str(tmp_path / "missing.png")], on_error="nan")).all()
    # A different batch may change the float32 rounding (BLAS blocking), never the score beyond it.
    assert with_broken[2] == pytest.approx(scores[0], rel=1e-4, abs=1e-6)


def test_an_ensemble_of_untrained_members_saves_a_config_that_loads(tiny_set, tmp_path):
    train, valid, everything, _ = tiny_set
    members = [create("ela-logreg", workers=1), create("spectrum-logreg", workers=1)]
    ensemble = create("ensemble", members=members, method="mean_logit", workers=1).fit(train, valid=valid)
    ensemble.save(tmp_path / "ensemble.zip")
    loaded = load_detector(tmp_path / "ensemble.zip", workers=1)
    assert [m["detector"] for m in loaded.model_params()["members"]] == ["ela-logreg", "spectrum-logreg"]
    np.testing.assert_array_equal(loaded.predict_proba(everything), ensemble.predict_proba(everything))
