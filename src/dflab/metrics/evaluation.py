"""All the numbers of one evaluation: AUC and EER with bootstrap intervals, error rates at a threshold
fixed beforehand, at frame level and after aggregating each video's frames."""

from __future__ import annotations

from typing import Any

import pandas as pd

from dflab.metrics.bootstrap import bootstrap_ci
from dflab.metrics.core import (AGGREGATION_METHODS, LEVELS, MetricsError, check_columns, check_labels_scores,
                                aggregate_by_video, eer, error_rates_at, roc_auc)


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
    label_int, score_array = check_labels_scores(labels, scores)
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
    check_columns(frame, ("video", "label", "score"))
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
