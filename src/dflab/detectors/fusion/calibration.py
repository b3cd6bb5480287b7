"""Calibration maps: make a detector's P(fake) mean a probability (Platt scaling or isotonic regression, fitted on validation scores)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.special import expit

from dflab.runtime.numeric import clipped_logit

CALIBRATION_METHODS = ("platt", "isotonic")


# Scores are clipped before the logit so that P = 0 or 1 gives a large finite feature, not inf.


class CalibrationError(ValueError):
    """Invalid input to a calibrator or calibration metric."""


def checked_labels_probabilities(labels: Any, p: Any, *, allow_nan: bool = False) -> tuple[np.ndarray, np.ndarray]:
    labels = np.asarray(labels)
    p = np.asarray(p, dtype=float)
    if labels.ndim != 1 or p.ndim != 1:
        raise CalibrationError(f"labels and scores must be one-dimensional; got {labels.shape} and {p.shape}")
    if labels.shape != p.shape:
        raise CalibrationError(f"labels and scores differ in length: {labels.size} labels, {p.size} scores")
    if labels.size == 0:
        raise CalibrationError("empty input: no labels/scores given")
    if not set(np.unique(labels).tolist()) <= {0, 1}:
        raise CalibrationError("labels must be 0 (real) or 1 (fake)")
    if not allow_nan and np.isnan(p).any():
        raise CalibrationError(f"scores contain {int(np.isnan(p).sum())} NaN value(s); drop failed samples first")
    finite = p[~np.isnan(p)]
    if ((finite < 0) | (finite > 1)).any():
        raise CalibrationError("scores must be probabilities in [0, 1]")
    return labels.astype(np.int64), p


@dataclass
class Calibrator:
    """A fitted monotone map from a detector's P(fake) to a calibrated P(fake).

    ``platt``: ``P = expit(slope * logit(p) + intercept)``.
    ``isotonic``: piecewise-linear through ``(x_thresholds, y_thresholds)``, constant beyond the ends
    (exactly what scikit-learn's ``IsotonicRegression(out_of_bounds="clip").predict`` computes).
    """

    method: str
    params: dict[str, np.ndarray] = field(default_factory=dict)

    def transform(self, scores: Any) -> np.ndarray:
        scores = np.asarray(scores, dtype=float)
        out = np.full(scores.shape, np.nan)
        ok = ~np.isnan(scores)
        x = np.clip(scores[ok], 0.0, 1.0)
        if self.method == "platt":
            slope, intercept = float(self.params["slope"][0]), float(self.params["intercept"][0])
            out[ok] = expit(slope * clipped_logit(x) + intercept)
        elif self.method == "isotonic":
            out[ok] = np.interp(x, self.params["x_thresholds"], self.params["y_thresholds"])
        else:
            raise CalibrationError(f"unknown calibration method {self.method!r}; choose from {CALIBRATION_METHODS}")
        return out

    __call__ = transform

    def to_state(self, prefix: str = "calibrator") -> dict[str, Any]:
        """Flat state for a detector's ``_get_state``: arrays for safetensors, the method as JSON."""
        state: dict[str, Any] = {f"{prefix}_method": self.method}
        for key, value in self.params.items():
            state[f"{prefix}_{key}"] = np.asarray(value, dtype=np.float64)
        return state

    @classmethod
    def from_state(cls, state: dict[str, Any], prefix: str = "calibrator") -> "Calibrator":
        method = state[f"{prefix}_method"]
        keys = {"platt": ("slope", "intercept"), "isotonic": ("x_thresholds", "y_thresholds")}
        if method not in keys:
            raise CalibrationError(f"unknown calibration method {method!r} in saved state")
        return cls(method, {key: np.asarray(state[f"{prefix}_{key}"], dtype=np.float64) for key in keys[method]})


def fit_calibrator(scores: Any, labels: Any, method: str = "platt") -> Calibrator:
    """Fit a calibrator on development scores (P(fake)) and labels; NaN scores are ignored."""
    if method not in CALIBRATION_METHODS:
        raise CalibrationError(f"unknown calibration method {method!r}; choose from {', '.join(CALIBRATION_METHODS)}")
    labels, scores = checked_labels_probabilities(labels, scores, allow_nan=True)
    ok = ~np.isnan(scores)
    labels, scores = labels[ok], scores[ok]
    if len(np.unique(labels)) < 2:
        raise CalibrationError("calibration needs both real and fake samples")
    if method == "platt":
        from sklearn.linear_model import LogisticRegression

        # Platt (1999): targets (N+ + 1)/(N+ + 2) and 1/(N- + 2) instead of 1 and 0, written as
        # each sample counted once as fake and once as real with those weights; unpenalised.
        n_pos, n_neg = int(labels.sum()), int((1 - labels).sum())
        target = np.where(labels == 1, (n_pos + 1.0) / (n_pos + 2.0), 1.0 / (n_neg + 2.0))
        x = clipped_logit(scores)[:, None]
        model = LogisticRegression(C=np.inf, max_iter=1000)
        model.fit(np.vstack([x, x]), np.r_[np.ones(len(x)), np.zeros(len(x))],
                  sample_weight=np.r_[target, 1.0 - target])
        return Calibrator("platt", {"slope": np.array([model.coef_[0, 0]]),
                                    "intercept": np.array([model.intercept_[0]])})
    from sklearn.isotonic import IsotonicRegression

    model = IsotonicRegression(y_min=0.0, y_max=1.0, increasing=True, out_of_bounds="clip").fit(scores, labels)
    return Calibrator("isotonic", {"x_thresholds": np.asarray(model.X_thresholds_, dtype=np.float64),
                                   "y_thresholds": np.asarray(model.y_thresholds_, dtype=np.float64)})
