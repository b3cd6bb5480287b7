from __future__ import annotations

import numpy as np
import pytest
from scipy.special import expit, logit
from sklearn.calibration import calibration_curve
from sklearn.isotonic import IsotonicRegression
from sklearn.metrics import brier_score_loss

from dflab.detectors.fusion.calibration import CalibrationError, Calibrator, fit_calibrator
from dflab.lab.protocol import calibration_summary
from dflab.metrics.calibration import brier_score, expected_calibration_error, reliability_curve


def test_brier_hand_computed_and_matches_sklearn():
    labels = np.array([0, 1, 1, 0])
    p = np.array([0.1, 0.8, 0.6, 0.3])
    # (0.01 + 0.04 + 0.16 + 0.09) / 4
    assert brier_score(labels, p) == pytest.approx(0.075)
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 500)
    p = rng.random(500)
    assert brier_score(labels, p) == pytest.approx(brier_score_loss(labels, p))


def test_ece_hand_computed():
    labels = np.array([0, 1, 1, 1])
    p = np.array([0.2, 0.4, 0.6, 0.9])
    # bin [0, .5): mean P .3, 1 of 2 fake -> |.5 - .3| * 2/4 = .1 ; bin [.5, 1]: mean .75, all fake -> .25 * 2/4
    assert expected_calibration_error(labels, p, n_bins=2) == pytest.approx(0.225)
    # One bin: |fraction fake - mean P| overall.
    assert expected_calibration_error(labels, p, n_bins=1) == pytest.approx(abs(0.75 - 0.525))
    # Perfectly calibrated by construction: P equal to the observed rate in each bin.
    labels = np.array([0, 0, 0, 1, 1, 1, 1, 0])
    p = np.array([0.25, 0.25, 0.25, 0.25, 0.75, 0.75, 0.75, 0.75])
    assert expected_calibration_error(labels, p, n_bins=10) == pytest.approx(0.0)


def test_reliability_curve_matches_sklearn_calibration_curve():
    rng = np.random.default_rng(1)
    p = rng.random(400) ** 2
    labels = (rng.random(400) < p).astype(int)
    p[0], p[1] = 0.0, 1.0  # the ends fall into the first and the last bin
    curve = reliability_curve(labels, p, n_bins=10)
    prob_true, prob_pred = calibration_curve(labels, p, n_bins=10, strategy="uniform")
    used = curve["count"] > 0
    np.testing.assert_allclose(curve["fraction_fake"][used], prob_true)
    np.testing.assert_allclose(curve["mean_prob"][used], prob_pred)
    assert curve["count"].sum() == 400
    assert np.isnan(curve["mean_prob"][~used]).all()
    assert len(curve["edges"]) == 11


def test_isotonic_hand_computed_and_matches_sklearn():
    calibrator = fit_calibrator([0.1, 0.2, 0.3, 0.4], [0, 1, 0, 1], method="isotonic")
    # PAV pools the violating pair (0.2 -> 1, 0.3 -> 0) into 0.5.
    np.testing.assert_allclose(calibrator.transform([0.1, 0.2, 0.3, 0.4]), [0.0, 0.5, 0.5, 1.0])
    np.testing.assert_allclose(calibrator.transform([0.05, 0.35, 0.9]), [0.0, 0.75, 1.0])
    rng = np.random.default_rng(2)
    scores = rng.random(300)
    labels = (rng.random(300) < scores ** 3).astype(int)
    calibrator = fit_calibrator(scores, labels, method="isotonic")
    reference = IsotonicRegression(y_min=0, y_max=1, out_of_bounds="clip").fit(scores, labels)
    grid = np.linspace(0, 1, 101)
    np.testing.assert_allclose(calibrator.transform(grid), reference.predict(grid), atol=1e-12)


def test_platt_matches_sklearn_sigmoid_calibration():
    sigmoid_calibration = pytest.importorskip("sklearn.calibration")._sigmoid_calibration
    rng = np.random.default_rng(3)
    scores = rng.random(400)
    labels = (rng.random(400) < expit(2.0 * logit(scores) - 0.5)).astype(int)
    calibrator = fit_calibrator(scores, labels, method="platt")
    a, b = sigmoid_calibration(logit(scores), labels)  # P = 1 / (1 + exp(a * f + b))
    assert float(calibrator.params["slope"][0]) == pytest.approx(-a, rel=1e-3, abs=1e-3)
    assert float(calibrator.params["intercept"][0]) == pytest.approx(-b, rel=1e-3, abs=1e-3)


def test_platt_recovers_the_true_map_and_lowers_ece():
    rng = np.random.default_rng(4)
    true_p = rng.random(20000)
    labels = (rng.random(20000) < true_p).astype(int)
    overconfident = expit(3.0 * logit(true_p) + 1.0)  # what a miscalibrated detector would output
    calibrator = fit_calibrator(overconfident, labels, method="platt")
    assert float(calibrator.params["slope"][0]) == pytest.approx(1 / 3, abs=0.03)
    assert float(calibrator.params["intercept"][0]) == pytest.approx(-1 / 3, abs=0.05)
    before = expected_calibration_error(labels, overconfident)
    after = expected_calibration_error(labels, calibrator.transform(overconfident))
    assert before > 0.1 and after < 0.02
    assert brier_score(labels, calibrator.transform(overconfident)) < brier_score(labels, overconfident)


def test_platt_separable_data_stays_finite_and_monotone():
    calibrator = fit_calibrator([0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1], method="platt")
    out = calibrator.transform([0.0, 0.1, 0.5, 0.9, 1.0])
    assert np.isfinite(out).all() and np.all(np.diff(out) > 0)
    assert 0 < out[0] < 0.5 < out[-1] < 1


@pytest.mark.parametrize("method", ["platt", "isotonic"])
def test_state_round_trip_through_safetensors(method):
    from safetensors.numpy import load, save

    rng = np.random.default_rng(5)
    scores = rng.random(200)
    labels = (rng.random(200) < scores).astype(int)
    calibrator = fit_calibrator(scores, labels, method=method)
    state = calibrator.to_state()
    arrays = load(save({k: v for k, v in state.items() if isinstance(v, np.ndarray)}))
    restored = Calibrator.from_state({**arrays, "calibrator_method": state["calibrator_method"]})
    grid = np.linspace(0, 1, 57)
    np.testing.assert_array_equal(restored.transform(grid), calibrator.transform(grid))


def test_nan_scores_stay_nan_and_bad_input_is_refused():
    calibrator = fit_calibrator([0.1, np.nan, 0.9, 0.2, 0.7], [0, 1, 1, 0, 1], method="isotonic")
    out = calibrator.transform([0.5, np.nan])
    assert np.isfinite(out[0]) and np.isnan(out[1])
    with pytest.raises(CalibrationError, match="both real and fake"):
        fit_calibrator([0.1, 0.2], [0, 0])
    with pytest.raises(CalibrationError, match="unknown calibration method"):
        fit_calibrator([0.1, 0.9], [0, 1], method="beta")
    with pytest.raises(CalibrationError, match="NaN"):
        brier_score([0, 1], [0.1, np.nan])
    with pytest.raises(CalibrationError, match=r"\[0, 1\]"):
        expected_calibration_error([0, 1], [0.1, 1.5])
    with pytest.raises(CalibrationError, match="differ in length"):
        brier_score([0, 1, 1], [0.1, 0.2])


def test_calibration_summary_fits_on_development_and_measures_on_evaluation():
    # Development scores are systematically too low: the true P(fake) is expit(2 * logit(score) + 1).
    rng = np.random.default_rng(3)
    def draw(n):
        scores = rng.uniform(0.02, 0.98, n)
        return rng.random(n) < expit(2 * logit(scores) + 1), scores
    valid_labels, valid_scores = draw(4000)
    labels, scores = draw(4000)
    scores[:5] = np.nan  # unusable images are left out
    summary = calibration_summary(valid_labels, valid_scores, labels, scores)
    assert set(summary) == {"raw", "platt", "isotonic"}
    ok = ~np.isnan(scores)
    assert summary["raw"]["brier"] == pytest.approx(brier_score(labels[ok], scores[ok]))
    platt = fit_calibrator(valid_scores, valid_labels, "platt").transform(scores[ok])
    assert summary["platt"]["ece"] == pytest.approx(expected_calibration_error(labels[ok], platt))
    assert summary["platt"]["ece"] < 0.03 < summary["raw"]["ece"]
    assert summary["platt"]["brier"] < summary["raw"]["brier"]
    # One development class: calibrators cannot be fitted, the raw measurement remains.
    assert set(calibration_summary(np.zeros(10), rng.random(10), labels, scores)) == {"raw"}
