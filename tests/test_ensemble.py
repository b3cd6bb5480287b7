from __future__ import annotations

import numpy as np
import pytest
from scipy.special import expit, logit
from sklearn.linear_model import LogisticRegression

from dflab.detectors import create, load_detector
from dflab.detectors.base import Detector, as_sources, as_training_set
from dflab.detectors.fusion.ensemble import EnsembleDetector
from dflab.detectors.registry import register


@register("test-fixed-prob", description="test stub: a fixed P(fake) per image index", family="test")
class FixedProbDetector(Detector):
    """Scores image ``i`` (the sources are integer indices) with ``probs[i]``; NaN stays NaN.
    ``heat`` (when not None) is its explanation: a constant map of that value."""

    def __init__(self, probs=(), heat: float | None = None):
        self.probs = probs
        self.heat = heat

    def fit(self, train, *, valid=None):
        _, labels, _ = as_training_set(train)
        self.table_ = np.asarray(self.probs, dtype=float)
        self.n_train_ = len(labels)
        return self

    def predict_proba(self, images, *, on_error="raise"):
        self._check_fitted()
        return self.table_[[int(i) for i in as_sources(images)]]

    def explain(self, image):
        if self.heat is None:
            raise NotImplementedError("no map")
        return np.full(np.asarray(image).shape[:2], self.heat, dtype=np.float32)

    def _get_state(self):
        return {"table": self.table_, "n_train": self.n_train_}

    def _set_state(self, state):
        self.table_, self.n_train_ = state["table"], state["n_train"]


def _member(probs, heat=None) -> FixedProbDetector:
    detector = create("test-fixed-prob", probs=list(probs), heat=heat)
    return detector.fit((list(range(2)), [0, 1]))


def test_mean_prob_and_mean_logit_hand_computed():
    a, b = _member([0.9, 0.2, 0.6]), _member([0.5, 0.2, 0.1])
    mean_prob = create("ensemble", members=[a, b], method="mean_prob").fit()
    np.testing.assert_allclose(mean_prob.predict_proba([0, 1, 2]), [0.7, 0.2, 0.35])
    mean_logit = create("ensemble", members=[a, b], method="mean_logit").fit()
    # logit(0.9) = ln 9, logit(0.5) = 0: odds sqrt(9) = 3 -> 0.75; logit(.6)+logit(.1) = ln(1.5/9): odds sqrt(1/6).
    np.testing.assert_allclose(mean_logit.predict_proba([0, 1, 2]),
                               [0.75, 0.2, np.sqrt(1 / 6) / (1 + np.sqrt(1 / 6))], rtol=1e-9)


def test_a_member_that_cannot_score_an_image_is_left_out():
    a, b = _member([0.9, np.nan, np.nan]), _member([0.5, 0.3, np.nan])
    for method in ("mean_prob", "mean_logit"):
        fused = create("ensemble", members=[a, b], method=method).fit().predict_proba([0, 1, 2])
        assert fused[1] == pytest.approx(0.3) and np.isnan(fused[2])


def _stacking_data(n=300, seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    sign = 2 * labels - 1
    good = expit(1.5 * sign + rng.normal(0, 1, n))
    noise = expit(rng.normal(0, 1, n))
    inverted = expit(-1.0 * sign + rng.normal(0, 1, n))
    return labels, [good, noise, inverted]


def test_stacking_weights_are_sensible_and_fitted_on_valid_only():
    labels, columns = _stacking_data()
    members = [_member(column) for column in columns]
    n = len(labels)
    train = (list(range(n // 2)), labels[: n // 2])
    valid = (list(range(n // 2, n)), labels[n // 2:])
    ensemble = create("ensemble", members=members, method="stacking").fit(train, valid=valid)
    good, noise, inverted = ensemble.stack_weights_
    assert good > 0 and inverted < 0 and abs(noise) < min(abs(good), abs(inverted))
    assert good > abs(inverted)  # the stronger member gets the larger weight
    assert ensemble.fit_info_["fitted_on"] == "valid"
    # Exactly the logistic regression on the validation logits: no training row was used.
    z = logit(np.column_stack([c[n // 2:] for c in columns]))
    reference = LogisticRegression(C=1.0, max_iter=1000, random_state=0).fit(z, labels[n // 2:])
    np.testing.assert_allclose(ensemble.stack_weights_, reference.coef_[0], rtol=1e-6)
    np.testing.assert_allclose(ensemble.predict_proba(list(range(n // 2, n))), reference.predict_proba(z)[:, 1],
                               rtol=1e-6)
    # And it beats every member alone on the data it was fitted on.
    from sklearn.metrics import roc_auc_score
    fused_auc = roc_auc_score(valid[1], ensemble.predict_proba(valid[0]))
    assert fused_auc > max(roc_auc_score(valid[1], c[n // 2:]) for c in columns)


def test_stacking_without_valid_uses_train_and_needs_data():
    labels, columns = _stacking_data(seed=1)
    members = [_member(column) for column in columns]
    ensemble = create("ensemble", members=members, method="stacking").fit((list(range(len(labels))), labels))
    assert ensemble.fit_info_["fitted_on"] == "train" and ensemble.stack_weights_[0] > 0
    with pytest.raises(ValueError, match="development data"):
        create("ensemble", members=members, method="stacking").fit()


def test_save_load_round_trip_identical(tmp_path):
    labels, columns = _stacking_data(seed=2)
    members = [_member(column, heat=h) for column, h in zip(columns, (0.2, None, 0.6))]
    data = (list(range(len(labels))), labels)
    ensemble = create("ensemble", members=members, method="stacking", calibration="platt").fit(data, valid=data)
    expected = ensemble.predict_proba(data[0])
    for target in (tmp_path / "folder", tmp_path / "model.zip"):
        ensemble.save(target)
        loaded = load_detector(target)
        assert isinstance(loaded, EnsembleDetector)
        assert loaded.member_names_ == ["test-fixed-prob", "test-fixed-prob#2", "test-fixed-prob#3"]
        assert all(isinstance(m, FixedProbDetector) for m in loaded.members_)
        np.testing.assert_array_equal(loaded.predict_proba(data[0]), expected)
        np.testing.assert_array_equal(loaded.stack_weights_, ensemble.stack_weights_)
        assert loaded.calibrator_.method == "platt"
    # Only the safe files are written: a config and one safetensors file holding the member zips.
    assert sorted(p.name for p in (tmp_path / "folder").iterdir()) == ["arrays.safetensors", "config.json"]


def test_members_from_saved_paths_and_registry_specs(tmp_path):
    a = _member([0.8, 0.4])
    a.save(tmp_path / "a")
    spec = {"detector": "test-fixed-prob", "params": {"probs": [0.2, 0.6]}}
    ensemble = create("ensemble", members=[str(tmp_path / "a"), spec], method="mean_prob")
    ensemble.fit(([0, 1, 0], [0, 1, 1]))
    np.testing.assert_allclose(ensemble.predict_proba([0, 1]), [0.5, 0.5])
    assert ensemble.members_[1].n_train_ == 3  # the spec member was trained on the training data
    assert ensemble.model_params()["members"] == [str(tmp_path / "a"), spec]
    frame = ensemble.member_probabilities([0, 1])
    assert list(frame.columns) == ["test-fixed-prob", "test-fixed-prob#2"]
    np.testing.assert_allclose(frame.iloc[:, 0], [0.8, 0.4])
    with pytest.raises(ValueError, match="not trained and no training data"):
        create("ensemble", members=[spec]).fit()


def test_isotonic_calibration_of_the_fused_score():
    labels, columns = _stacking_data(seed=3)
    data = (list(range(len(labels))), labels)
    ensemble = create("ensemble", members=[_member(columns[0])], calibration="isotonic").fit(data, valid=data)
    fused = ensemble.predict_proba(data[0])
    # Isotonic on its own fitting data: each pooled block's P equals its fake fraction, so the mean
    # calibrated P equals the fake rate.
    assert fused.mean() == pytest.approx(labels.mean(), abs=1e-9)
    assert np.all(np.diff(fused[np.argsort(columns[0])]) >= -1e-12)  # monotone in the raw score


def test_explain_is_the_mean_of_the_available_maps():
    image = np.zeros((6, 9, 3), np.uint8)
    ensemble = create("ensemble", members=[_member([0.5], 0.2), _member([0.5]), _member([0.5], 0.6)]).fit()
    heatmap = ensemble.explain(image)
    assert heatmap.shape == (6, 9)
    np.testing.assert_allclose(heatmap, 0.4, rtol=1e-6)
    with pytest.raises(NotImplementedError, match="explanation"):
        create("ensemble", members=[_member([0.5])]).fit().explain(image)


def test_bad_configurations_are_refused():
    with pytest.raises(ValueError, match="no members"):
        create("ensemble").fit()
    with pytest.raises(ValueError, match="unknown method"):
        create("ensemble", members=[_member([0.5])], method="median").fit()
    with pytest.raises(ValueError, match="unknown calibration"):
        create("ensemble", members=[_member([0.5])], calibration="beta").fit()
    with pytest.raises(ValueError, match="a member must be"):
        create("ensemble", members=[42]).fit()


@pytest.mark.parametrize("name, members", [
    ("ensemble-lite0-ela-dct", ["efficientnet-lite0", "ela-gb", "block-dct"]),
    ("ensemble-lite2-lite0-ela-dct", ["efficientnet-lite2", "efficientnet-lite0", "ela-gb", "block-dct"])])
def test_the_lab_ensemble_presets_name_real_detectors(name, members):
    from sklearn.base import clone

    from dflab.detectors.registry import get

    preset = create(name)
    assert preset.method == "stacking"
    names = [spec["detector"] for spec in preset.members]
    assert names == members
    for spec in preset.members:  # every member spec builds, with its parameters accepted
        member = create(spec["detector"], **spec.get("params", {}))
        assert isinstance(member, get(spec["detector"]).cls)
    assert clone(preset).members == preset.members


def test_a_fit_that_fails_halfway_leaves_the_ensemble_as_it_was():
    """The members are built before stacking finds it has no data: the failed fit must not leave an
    ensemble that looks fitted, nor change one that was."""
    labels, columns = _stacking_data(seed=1)
    members = [_member(column) for column in columns]
    fresh = create("ensemble", members=members, method="stacking")
    with pytest.raises(ValueError, match="development data"):
        fresh.fit()
    assert not fresh.is_fitted()
    data = (list(range(len(labels))), labels)
    fitted = create("ensemble", members=members, method="stacking").fit(data)
    before, scores = dict(vars(fitted)), fitted.predict_proba(list(range(len(labels))))
    one_class = (list(range(4)), [0] * 4)
    with pytest.raises(ValueError, match="real and fake"):
        fitted.fit(one_class)
    assert {key: id(value) for key, value in vars(fitted).items()} == {key: id(value) for key, value in before.items()}
    np.testing.assert_array_equal(fitted.predict_proba(list(range(len(labels)))), scores)
