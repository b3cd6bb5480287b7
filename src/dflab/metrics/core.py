"""Detection metrics: ROC, AUC, EER, error rates at a threshold, video-level aggregation, bootstrap CIs.

Conventions used throughout:

* labels: 0 = real (bona fide), 1 = fake (attack).
* scores: P(fake) (or any score where higher means "more fake").
* decision rule: a sample is classified **fake if score >= threshold**, real otherwise.
  This matches scikit-learn's ``roc_curve``, whose operating point at threshold ``t`` counts
  ``score >= t`` as positive, so a threshold read off the ROC reproduces that ROC point.
* APCER = fraction of fakes (attacks) classified real; BPCER = fraction of reals (bona fide)
  classified fake (ISO/IEC 30107-3 terminology).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy.special import expit
from sklearn import metrics as skm

from dflab.runtime.choices import Aggregation
from dflab.runtime.numeric import clipped_logit


AGGREGATION_METHODS = (Aggregation.mean_prob.value, Aggregation.mean_logit.value)


LEVELS = ("frame", "video_mean_prob", "video_mean_logit")


# Probabilities are clipped before logit so that a frame scored exactly 0 or 1 does not
# produce an infinite logit that would dominate (or NaN) the video mean.


class MetricsError(ValueError):
    """Invalid input to a metric (one class only, empty, NaN scores, length mismatch, ...)."""


def check_aggregation(method: str) -> str:
    """``method`` if it names an :class:`~dflab.runtime.choices.Aggregation`, else a :class:`MetricsError`
    listing them."""
    if method not in Aggregation.names():
        raise MetricsError(f"unknown aggregation {method!r}; use one of {', '.join(Aggregation.names())}")
    return method


def as_1d(values: Any, name: str) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != 1:
        raise MetricsError(f"{name} must be one-dimensional; got shape {array.shape}")
    return array


def check_labels_scores(labels: Any, scores: Any) -> tuple[np.ndarray, np.ndarray]:
    """Return (labels as int 0/1, scores as float), raising MetricsError on bad input."""
    label_array = as_1d(labels, "labels")
    score_array = as_1d(scores, "scores")
    if label_array.shape[0] != score_array.shape[0]:
        raise MetricsError(
            f"labels and scores differ in length: {label_array.shape[0]} labels, "
            f"{score_array.shape[0]} scores"
        )
    if label_array.shape[0] == 0:
        raise MetricsError("empty input: no labels/scores given")
    try:
        score_array = score_array.astype(float)
    except (TypeError, ValueError) as exc:
        raise MetricsError(f"scores must be numeric: {exc}") from None
    n_nan = int(np.isnan(score_array).sum())
    if n_nan:
        raise MetricsError(
            f"scores contain {n_nan} NaN value(s); drop failed samples before computing metrics"
        )
    if not np.isfinite(score_array).all():
        raise MetricsError("scores contain infinite value(s); scores must be finite")
    try:
        label_float = label_array.astype(float)
    except (TypeError, ValueError):
        raise MetricsError(
            f"labels must be 0 (real) or 1 (fake); got values {np.unique(label_array)[:5].tolist()}"
        ) from None
    bad = ~np.isin(label_float, (0.0, 1.0))
    if bad.any():
        raise MetricsError(
            "labels must be 0 (real) or 1 (fake); got values "
            f"{np.unique(label_array[bad])[:5].tolist()}"
        )
    label_int = label_float.astype(np.int64)
    n_fake = int(label_int.sum())
    n_real = int(label_int.shape[0] - n_fake)
    if n_fake == 0 or n_real == 0:
        present, count = ("real", n_real) if n_fake == 0 else ("fake", n_fake)
        raise MetricsError(f"need both real and fake samples; got only {present} (n={count})")
    return label_int, score_array


def _check_threshold(threshold: Any) -> float:
    try:
        value = float(threshold)
    except (TypeError, ValueError):
        raise MetricsError(f"threshold must be a number; got {threshold!r}") from None
    if not np.isfinite(value):
        raise MetricsError(f"threshold must be finite; got {value}")
    return value


def check_columns(frame: pd.DataFrame, required: tuple[str, ...]) -> None:
    if not isinstance(frame, pd.DataFrame):
        raise MetricsError(f"expected a pandas DataFrame; got {type(frame).__name__}")
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise MetricsError(
            f"frame lacks column(s) {missing}; has {list(frame.columns)}"
        )


def roc_curve(labels: Any, scores: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ROC curve (fpr, tpr, thresholds) with every distinct score kept as an operating point.

    Positive class = fake (1). Point k is "fake if score >= thresholds[k]"; thresholds[0] is
    scikit-learn's sentinel above every score (inf in recent versions) giving the (0, 0) point.
    """
    label_int, score_array = check_labels_scores(labels, scores)
    fpr, tpr, thresholds = skm.roc_curve(label_int, score_array, drop_intermediate=False)
    return fpr, tpr, thresholds


def roc_auc(labels: Any, scores: Any) -> float:
    """Area under the ROC curve; tied real/fake scores count one half."""
    label_int, score_array = check_labels_scores(labels, scores)
    return float(skm.roc_auc_score(label_int, score_array))


def _finite_thresholds(thresholds: np.ndarray) -> np.ndarray:
    """Replace scikit-learn's leading sentinel threshold (inf) by a finite value just above the max.

    Any threshold above the maximum score yields the (0, 0) ROC point, so a value a hair above
    the maximum is equivalent and keeps interpolated thresholds finite and close to the data.
    """
    finite = thresholds.astype(float).copy()
    if not np.isfinite(finite[0]):
        top = finite[1]
        finite[0] = top + max(1e-6, 1e-6 * abs(top))
    return finite


def eer(labels: Any, scores: Any) -> tuple[float, float]:
    """Equal error rate and the threshold where it is reached.

    The ROC is treated as a polyline; on the first segment where FNR - FPR (FNR = 1 - TPR)
    changes sign, the crossing is linearly interpolated, and the threshold is interpolated on the
    same segment between the two points' thresholds. When a ROC point has FNR == FPR exactly
    (e.g. perfect separation, EER 0), that point is the EER and the threshold is placed midway
    between its threshold and the next lower score, i.e. in the middle of the score gap that
    produces that operating point (for perfect separation: midway between the highest real score
    and the lowest fake score). Decision rule: fake if score >= threshold.
    """
    fpr, tpr, thresholds = roc_curve(labels, scores)
    thresholds = _finite_thresholds(thresholds)
    diff = (1.0 - tpr) - fpr  # strictly decreasing from 1 (point 0) to -1 (last point)
    j = int(np.argmax(diff <= 0.0))  # first point at or past the crossing (j >= 1)
    if diff[j] == 0.0:
        # Exact crossing at a ROC point: every threshold in (thresholds[j+1], thresholds[j]]
        # gives this point; the last point always has diff == -1, so j + 1 exists.
        return float(fpr[j]), float(0.5 * (thresholds[j] + thresholds[j + 1]))
    i = j - 1
    fraction = diff[i] / (diff[i] - diff[j])
    rate = fpr[i] + fraction * (fpr[j] - fpr[i])
    threshold = thresholds[i] + fraction * (thresholds[j] - thresholds[i])
    return float(rate), float(threshold)


def choose_threshold(labels: Any, scores: Any) -> float:
    """EER threshold on development scores, to be applied unchanged to evaluation scores."""
    return eer(labels, scores)[1]


def error_rates_at(labels: Any, scores: Any, threshold: float) -> dict[str, float]:
    """Accuracy, APCER and BPCER when classifying **fake if score >= threshold**.

    apcer: fraction of fakes (label 1) classified real (score < threshold).
    bpcer: fraction of reals (label 0) classified fake (score >= threshold).
    """
    label_int, score_array = check_labels_scores(labels, scores)
    threshold = _check_threshold(threshold)
    predicted_fake = score_array >= threshold
    is_fake = label_int == 1
    return {
        "accuracy": float(np.mean(predicted_fake == is_fake)),
        "apcer": float(np.mean(~predicted_fake[is_fake])),
        "bpcer": float(np.mean(predicted_fake[~is_fake])),
        "threshold": threshold,
    }


def aggregate_frames(frame_scores, method: str = "mean_prob", *, fake_threshold: float = 0.8,
              fake_fraction: float = 1 / 2.5, min_fake_frames: int = 11, real_threshold: float = 0.2,
              real_fraction: float = 0.9) -> float:
    """One P(fake) for a video from its frames' P(fake) (NaN scores are ignored; none left -> NaN).

    - ``mean_prob``: the mean probability.
    - ``mean_logit``: the sigmoid of the mean logit (probabilities clipped to [1e-6, 1 - 1e-6]), so a
      few confident frames weigh more than in the plain mean.
    - ``confident``: the DFDC winner's rule (Seferbekov, ``confident_strategy`` in
      github.com/selimsef/dfdc_deepfake_challenge, ``kernel_utils.py``; 32 frames per video there),
      with ``n`` scored frames: if more than ``floor(n / 2.5)`` frames **and** more than 11 frames
      have p > 0.8, the mean of those frames; else if more than ``0.9 n`` frames have p < 0.2, the
      mean of those; else the mean of all. Note the absolute 11: with fewer than 12 frames the fake
      branch never fires unless ``min_fake_frames`` is lowered.
    """
    scores = np.asarray(frame_scores, dtype=np.float64).ravel()
    scores = scores[~np.isnan(scores)]
    if scores.size == 0:
        return float("nan")
    if method == "mean_prob":
        return float(scores.mean())
    if method == "mean_logit":
        return float(expit(np.mean(clipped_logit(scores))))
    if method == "confident":
        n = scores.size
        fakes = scores > fake_threshold
        if fakes.sum() > np.floor(n * fake_fraction) and fakes.sum() > min_fake_frames:
            return float(scores[fakes].mean())
        reals = scores < real_threshold
        if reals.sum() > real_fraction * n:
            return float(scores[reals].mean())
        return float(scores.mean())
    check_aggregation(method)
    raise AssertionError(f"aggregation {method} has no rule here")


def aggregate_by_video(frame: pd.DataFrame, method: str = "mean_prob") -> pd.DataFrame:
    """One row per video (columns video, label, score, n_frames) from per-frame rows.

    method "mean_prob" averages the frame probabilities; "mean_logit" averages
    logit(clip(p, 1e-6, 1 - 1e-6)) and maps the mean back through the sigmoid, so the video
    score is still a probability; "confident" is :func:`aggregate_frames`' rule, as ``dflab predict``
    applies it. Frames with NaN score (failed frames) are dropped first;
    a video left with no valid frame is dropped; n_frames counts the valid frames used.
    Raises MetricsError if the frames of one video disagree on the label.
    """
    check_columns(frame, ("video", "label", "score"))
    check_aggregation(method)
    data = frame[["video", "label", "score"]].copy()
    if data["video"].isna().any():
        raise MetricsError(f"{int(data['video'].isna().sum())} row(s) have no video id")
    # Label consistency is a property of the data, so check it on all rows, failed frames included.
    labels_per_video = data.groupby("video", sort=True)["label"].nunique(dropna=False)
    conflicting = labels_per_video.index[labels_per_video > 1].tolist()
    if conflicting:
        shown = ", ".join(repr(v) for v in conflicting[:5])
        more = f" (and {len(conflicting) - 5} more)" if len(conflicting) > 5 else ""
        raise MetricsError(f"frames of video {shown}{more} disagree on the label")
    try:
        data["score"] = data["score"].astype(float)
    except (TypeError, ValueError) as exc:
        raise MetricsError(f"scores must be numeric: {exc}") from None
    data = data[data["score"].notna()]
    if method == "mean_logit":
        data["score"] = clipped_logit(data["score"].to_numpy())
    grouped = data.groupby("video", sort=True)
    result = grouped.agg(
        label=("label", "first"), score=("score", "mean"), n_frames=("score", "size")
    ).reset_index()
    if method == "mean_logit":
        result["score"] = expit(result["score"].to_numpy())
    if method == "confident":
        result["score"] = grouped["score"].agg(lambda scores: aggregate_frames(scores.to_numpy(), method)).to_numpy()
    result["n_frames"] = result["n_frames"].astype(np.int64)
    return result[["video", "label", "score", "n_frames"]]
