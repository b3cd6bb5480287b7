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
from scipy.special import expit, logit
from sklearn import metrics as skm

__all__ = [
    "MetricsError",
    "roc_curve",
    "roc_auc",
    "eer",
    "error_rates_at",
    "aggregate_by_video",
    "bootstrap_ci",
    "evaluate",
    "evaluate_levels",
    "choose_threshold",
]

AGGREGATION_METHODS = ("mean_prob", "mean_logit")
LEVELS = ("frame", "video_mean_prob", "video_mean_logit")
# Probabilities are clipped before logit so that a frame scored exactly 0 or 1 does not
# produce an infinite logit that would dominate (or NaN) the video mean.
_LOGIT_CLIP = 1e-6
# Upper bound on the number of floats per bootstrap chunk (rows x samples), to bound memory.
_BOOT_CHUNK_ELEMENTS = 2_000_000


class MetricsError(ValueError):
    """Invalid input to a metric (one class only, empty, NaN scores, length mismatch, ...)."""


# --------------------------------------------------------------------------- validation


def _as_1d(values: Any, name: str) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != 1:
        raise MetricsError(f"{name} must be one-dimensional; got shape {array.shape}")
    return array


def _check_labels_scores(labels: Any, scores: Any) -> tuple[np.ndarray, np.ndarray]:
    """Return (labels as int 0/1, scores as float), raising MetricsError on bad input."""
    label_array = _as_1d(labels, "labels")
    score_array = _as_1d(scores, "scores")
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


def _check_columns(frame: pd.DataFrame, required: tuple[str, ...]) -> None:
    if not isinstance(frame, pd.DataFrame):
        raise MetricsError(f"expected a pandas DataFrame; got {type(frame).__name__}")
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise MetricsError(
            f"frame lacks column(s) {missing}; has {list(frame.columns)}"
        )


# --------------------------------------------------------------------------- ROC / AUC / EER


def roc_curve(labels: Any, scores: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ROC curve (fpr, tpr, thresholds) with every distinct score kept as an operating point.

    Positive class = fake (1). Point k is "fake if score >= thresholds[k]"; thresholds[0] is
    scikit-learn's sentinel above every score (inf in recent versions) giving the (0, 0) point.
    """
    label_int, score_array = _check_labels_scores(labels, scores)
    fpr, tpr, thresholds = skm.roc_curve(label_int, score_array, drop_intermediate=False)
    return fpr, tpr, thresholds


def roc_auc(labels: Any, scores: Any) -> float:
    """Area under the ROC curve; tied real/fake scores count one half."""
    label_int, score_array = _check_labels_scores(labels, scores)
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
    label_int, score_array = _check_labels_scores(labels, scores)
    threshold = _check_threshold(threshold)
    predicted_fake = score_array >= threshold
    is_fake = label_int == 1
    return {
        "accuracy": float(np.mean(predicted_fake == is_fake)),
        "apcer": float(np.mean(~predicted_fake[is_fake])),
        "bpcer": float(np.mean(predicted_fake[~is_fake])),
        "threshold": threshold,
    }


# --------------------------------------------------------------------------- aggregation


def aggregate_by_video(frame: pd.DataFrame, method: str = "mean_prob") -> pd.DataFrame:
    """One row per video (columns video, label, score, n_frames) from per-frame rows.

    method "mean_prob" averages the frame probabilities; "mean_logit" averages
    logit(clip(p, 1e-6, 1 - 1e-6)) and maps the mean back through the sigmoid, so the video
    score is still a probability. Frames with NaN score (failed frames) are dropped first;
    a video left with no valid frame is dropped; n_frames counts the valid frames used.
    Raises MetricsError if the frames of one video disagree on the label.
    """
    _check_columns(frame, ("video", "label", "score"))
    if method not in AGGREGATION_METHODS:
        raise MetricsError(f"unknown aggregation method {method!r}; use one of {AGGREGATION_METHODS}")
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
        data["score"] = logit(np.clip(data["score"].to_numpy(), _LOGIT_CLIP, 1.0 - _LOGIT_CLIP))
    grouped = data.groupby("video", sort=True)
    result = grouped.agg(
        label=("label", "first"), score=("score", "mean"), n_frames=("score", "size")
    ).reset_index()
    if method == "mean_logit":
        result["score"] = expit(result["score"].to_numpy())
    result["n_frames"] = result["n_frames"].astype(np.int64)
    return result[["video", "label", "score", "n_frames"]]


# --------------------------------------------------------------------------- bootstrap


def _weighted_auc_eer(
    weights: np.ndarray, is_fake: np.ndarray, value_starts: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """AUC and interpolated EER for many weightings of the same samples at once.

    weights: (n_rows, n_samples) non-negative sample weights (bootstrap multiplicities), with
    samples sorted by score descending; value_starts: index of the first sample of each
    distinct score value. Returns (auc, eer, valid) per row; valid is False where a row has
    zero total weight on one class (those rows' auc/eer are NaN).
    Same definitions as roc_auc (ties count half) and eer (polyline crossing) on the
    resampled data: duplicated points from zero-weight values do not change the polyline.
    """
    fake_weights = np.add.reduceat(weights * is_fake, value_starts, axis=1)
    real_weights = np.add.reduceat(weights * ~is_fake, value_starts, axis=1)
    true_pos = np.cumsum(fake_weights, axis=1)
    false_pos = np.cumsum(real_weights, axis=1)
    n_fake = true_pos[:, -1]
    n_real = false_pos[:, -1]
    valid = (n_fake > 0) & (n_real > 0)
    n_fake_safe = np.where(valid, n_fake, 1.0)
    n_real_safe = np.where(valid, n_real, 1.0)

    # Each real at value u beats the fakes strictly above it and ties half of those at u.
    fakes_above_or_half = true_pos - 0.5 * fake_weights
    auc = np.sum(real_weights * fakes_above_or_half, axis=1) / (n_fake_safe * n_real_safe)

    rows = weights.shape[0]
    zeros = np.zeros((rows, 1))
    tpr = np.hstack([zeros, true_pos / n_fake_safe[:, None]])
    fpr = np.hstack([zeros, false_pos / n_real_safe[:, None]])
    diff = (1.0 - tpr) - fpr  # non-increasing, from 1 to -1 on valid rows
    j = np.argmax(diff <= 0.0, axis=1)
    i = j - 1
    row_index = np.arange(rows)
    diff_i, diff_j = diff[row_index, i], diff[row_index, j]
    denom = np.where(valid, diff_i - diff_j, 1.0)  # diff_i > 0 >= diff_j on valid rows
    fraction = diff_i / denom
    eer_values = fpr[row_index, i] + fraction * (fpr[row_index, j] - fpr[row_index, i])
    auc = np.where(valid, auc, np.nan)
    eer_values = np.where(valid, eer_values, np.nan)
    return auc, eer_values, valid


def bootstrap_ci(
    labels: Any,
    scores: Any,
    groups: Any = None,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> dict[str, tuple[float, float]]:
    """Percentile bootstrap confidence intervals for AUC and EER, resampling groups.

    Groups (e.g. videos) are drawn with replacement, as many as there are groups, and every
    sample of a drawn group enters the resample (frames of one video are correlated, so
    resampling frames would understate the uncertainty). groups=None: each sample is its own
    group. Resamples that contain only one class are skipped. Deterministic for a given seed:
    groups are coded in sorted order (pandas.factorize(sort=True)) and resample b draws
    ``numpy.random.default_rng(seed).integers(0, n_groups, size=(n_boot, n_groups))[b]``.
    Returns {"auc": (lo, hi), "eer": (lo, hi)} at level 1 - alpha (numpy.percentile, linear).
    """
    label_int, score_array = _check_labels_scores(labels, scores)
    n_boot = int(n_boot)
    if n_boot < 1:
        raise MetricsError(f"n_boot must be at least 1; got {n_boot}")
    if not 0.0 < alpha < 1.0:
        raise MetricsError(f"alpha must be in (0, 1); got {alpha}")
    n_samples = label_int.shape[0]
    if groups is None:
        group_codes = np.arange(n_samples)
        n_groups = n_samples
    else:
        group_array = _as_1d(groups, "groups")
        if group_array.shape[0] != n_samples:
            raise MetricsError(
                f"groups and scores differ in length: {group_array.shape[0]} groups, "
                f"{n_samples} scores"
            )
        group_codes, uniques = pd.factorize(group_array, sort=True)
        if (group_codes < 0).any():
            raise MetricsError(f"groups contain {int((group_codes < 0).sum())} missing value(s)")
        n_groups = len(uniques)

    rng = np.random.default_rng(seed)
    drawn = rng.integers(0, n_groups, size=(n_boot, n_groups))
    # multiplicity[b, g] = how many times group g was drawn in resample b
    offsets = np.arange(n_boot)[:, None] * n_groups
    multiplicity = np.bincount(
        (drawn + offsets).ravel(), minlength=n_boot * n_groups
    ).reshape(n_boot, n_groups)

    order = np.argsort(-score_array, kind="stable")
    sorted_scores = score_array[order]
    sorted_codes = group_codes[order]
    sorted_is_fake = label_int[order] == 1
    value_starts = np.flatnonzero(np.r_[True, sorted_scores[1:] != sorted_scores[:-1]])

    chunk = max(1, _BOOT_CHUNK_ELEMENTS // n_samples)
    auc_parts, eer_parts, valid_parts = [], [], []
    for start in range(0, n_boot, chunk):
        weights = multiplicity[start : start + chunk][:, sorted_codes].astype(float)
        auc_chunk, eer_chunk, valid_chunk = _weighted_auc_eer(weights, sorted_is_fake, value_starts)
        auc_parts.append(auc_chunk)
        eer_parts.append(eer_chunk)
        valid_parts.append(valid_chunk)
    valid = np.concatenate(valid_parts)
    if not valid.any():
        raise MetricsError(
            f"none of the {n_boot} bootstrap resamples contained both classes "
            f"({n_groups} group(s)); cannot compute confidence intervals"
        )
    auc_values = np.concatenate(auc_parts)[valid]
    eer_values = np.concatenate(eer_parts)[valid]
    percentiles = [100.0 * alpha / 2.0, 100.0 * (1.0 - alpha / 2.0)]
    auc_lo, auc_hi = np.percentile(auc_values, percentiles)
    eer_lo, eer_hi = np.percentile(eer_values, percentiles)
    return {"auc": (float(auc_lo), float(auc_hi)), "eer": (float(eer_lo), float(eer_hi))}


# --------------------------------------------------------------------------- reports


def evaluate(
    labels: Any,
    scores: Any,
    *,
    groups: Any = None,
    threshold: float | None = None,
    n_boot: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """All metrics for one set of scores, as plain JSON-serialisable Python values.

    Keys: n, n_real, n_fake, auc, auc_ci [lo, hi], eer, eer_ci [lo, hi], eer_threshold; plus
    threshold, accuracy, apcer, bpcer when a (development-chosen) threshold is given. CIs resample
    `groups` (see bootstrap_ci); n_boot=0 skips the bootstrap and sets auc_ci/eer_ci to None.
    """
    label_int, score_array = _check_labels_scores(labels, scores)
    n_fake = int(label_int.sum())
    eer_value, eer_threshold = eer(label_int, score_array)
    result: dict[str, Any] = {
        "n": int(label_int.shape[0]),
        "n_real": int(label_int.shape[0] - n_fake),
        "n_fake": n_fake,
        "auc": roc_auc(label_int, score_array),
        "auc_ci": None,
        "eer": eer_value,
        "eer_ci": None,
        "eer_threshold": eer_threshold,
    }
    if int(n_boot) > 0:
        intervals = bootstrap_ci(label_int, score_array, groups, n_boot=n_boot, seed=seed)
        result["auc_ci"] = [intervals["auc"][0], intervals["auc"][1]]
        result["eer_ci"] = [intervals["eer"][0], intervals["eer"][1]]
    if threshold is not None:
        result.update(error_rates_at(label_int, score_array, threshold))
    return result


def evaluate_levels(
    frame: pd.DataFrame,
    *,
    thresholds: dict[str, float] | None = None,
    n_boot: int = 1000,
    seed: int = 0,
) -> dict[str, dict[str, Any]]:
    """evaluate() at frame level and at video level (mean_prob and mean_logit aggregation).

    Input columns video, label, score (one row per frame). Returns
    {"frame": ..., "video_mean_prob": ..., "video_mean_logit": ...}. Frame level bootstraps by
    video; video levels treat each video as its own group. `thresholds` maps level names to a
    threshold chosen on development data, applied unchanged here. Each level also reports
    n_missing: frames with NaN score excluded (frame level) or videos excluded because none of
    their frames had a score (video levels).
    """
    _check_columns(frame, ("video", "label", "score"))
    thresholds = dict(thresholds or {})
    unknown = sorted(set(thresholds) - set(LEVELS))
    if unknown:
        raise MetricsError(f"unknown level(s) in thresholds: {unknown}; use {list(LEVELS)}")
    try:
        score_column = frame["score"].astype(float)
    except (TypeError, ValueError) as exc:
        raise MetricsError(f"scores must be numeric: {exc}") from None
    has_score = score_column.notna().to_numpy()
    valid_frames = frame.loc[has_score]
    n_videos = int(frame["video"].nunique())

    results: dict[str, dict[str, Any]] = {}
    frame_metrics = evaluate(
        valid_frames["label"].to_numpy(),
        score_column[has_score].to_numpy(),
        groups=valid_frames["video"].to_numpy(),
        threshold=thresholds.get("frame"),
        n_boot=n_boot,
        seed=seed,
    )
    frame_metrics["n_missing"] = int((~has_score).sum())
    results["frame"] = frame_metrics
    for method in AGGREGATION_METHODS:
        level = f"video_{method}"
        videos = aggregate_by_video(frame, method=method)
        level_metrics = evaluate(
            videos["label"].to_numpy(),
            videos["score"].to_numpy(),
            groups=None,
            threshold=thresholds.get(level),
            n_boot=n_boot,
            seed=seed,
        )
        level_metrics["n_missing"] = n_videos - int(videos.shape[0])
        results[level] = level_metrics
    return results
