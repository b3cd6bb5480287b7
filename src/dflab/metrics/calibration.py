"""Calibration quality: how well a detector's P(fake) means a probability. The maps that make it one
(Platt scaling, isotonic regression) are :mod:`dflab.detectors.fusion.calibration`'s.

* :func:`brier_score`, :func:`expected_calibration_error` and :func:`reliability_curve` measure
  calibration of P(fake) (the positive class): equal-width bins over [0, 1], bin ``i`` holding
  ``i/n <= p < (i+1)/n`` and the last bin also ``p == 1`` (scikit-learn's ``calibration_curve``
  convention); ECE = sum over bins of ``count/N * |fraction of fakes - mean P(fake)|``.

The metrics refuse NaN scores (unusable images).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from dflab.detectors.fusion.calibration import CalibrationError, checked_labels_probabilities


def brier_score(labels: Any, p: Any) -> float:
    """Mean squared difference between P(fake) and the label (0 is perfect, 0.25 is a coin)."""
    labels, p = checked_labels_probabilities(labels, p)
    return float(np.mean((p - labels) ** 2))


def _bin_index(p: np.ndarray, n_bins: int) -> np.ndarray:
    if int(n_bins) < 1:
        raise CalibrationError(f"n_bins must be at least 1, got {n_bins}")
    return np.minimum((p * n_bins).astype(np.int64), n_bins - 1)


def reliability_curve(labels: Any, p: Any, n_bins: int = 15) -> dict[str, np.ndarray]:
    """Per equal-width bin: ``edges`` (n_bins + 1), ``count``, ``mean_prob`` (mean P(fake)) and
    ``fraction_fake`` (observed frequency); the last two are NaN for empty bins."""
    labels, p = checked_labels_probabilities(labels, p)
    index = _bin_index(p, int(n_bins))
    count = np.bincount(index, minlength=n_bins).astype(np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_prob = np.bincount(index, weights=p, minlength=n_bins) / count
        fraction_fake = np.bincount(index, weights=labels.astype(float), minlength=n_bins) / count
    return {"edges": np.linspace(0.0, 1.0, int(n_bins) + 1), "count": count, "mean_prob": mean_prob,
            "fraction_fake": fraction_fake}


def expected_calibration_error(labels: Any, p: Any, n_bins: int = 15) -> float:
    """ECE of P(fake): ``sum_b count_b / N * |fraction_fake_b - mean_prob_b|`` over equal-width bins."""
    curve = reliability_curve(labels, p, n_bins)
    used = curve["count"] > 0
    weights = curve["count"][used] / curve["count"].sum()
    return float(np.sum(weights * np.abs(curve["fraction_fake"][used] - curve["mean_prob"][used])))
