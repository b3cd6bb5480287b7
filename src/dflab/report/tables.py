"""The report's tables as plain rows of text: numbers with their confidence intervals, per task, level, threshold, calibration and robustness."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

MISSING = "—"


# Metric levels as stored in metrics.json, with the names shown in the report.
LEVEL_TITLES = (
    ("frame", "frame"),
    ("video_mean_prob", "video (mean prob)"),
    ("video_mean_logit", "video (mean logit)"),
)


def finite_number(value: Any) -> float | None:
    """Return ``value`` as a float when it is a finite number, else None (None, NaN, text, ...)."""
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def format_metric(value: Any, ci: Sequence[Any] | None = None, digits: int = 3) -> str:
    """Format a metric with an optional confidence interval, e.g. ``"0.912 [0.871, 0.948]"``.

    A missing value (None, NaN, inf) becomes ``"—"``. The interval is shown only when both of its
    bounds are finite numbers.
    """
    number = finite_number(value)
    if number is None:
        return MISSING
    text = f"{number:.{digits}f}"
    if ci is not None and len(ci) == 2:
        low, high = finite_number(ci[0]), finite_number(ci[1])
        if low is not None and high is not None:
            text += f" [{low:.{digits}f}, {high:.{digits}f}]"
    return text


def _format_count(value: Any) -> str:
    number = finite_number(value)
    return MISSING if number is None else str(int(number))


def _format_samples(level_metrics: Mapping[str, Any]) -> str:
    """``"120 (60 real / 60 fake), 3 missing"`` from the n fields of one metrics level."""
    text = f"{_format_count(level_metrics.get('n'))} ({_format_count(level_metrics.get('n_real'))} real / " \
           f"{_format_count(level_metrics.get('n_fake'))} fake)"
    missing = finite_number(level_metrics.get("n_missing"))
    if missing:
        text += f", {int(missing)} missing"
    return text


def mathtext_safe(text: Any) -> str:
    """Text for a matplotlib label: a '$' would otherwise start mathtext (and can fail to parse)."""
    return str(text).replace("$", r"\$")


def robustness_table(robustness: Mapping[str, Mapping[str, Any]]) -> tuple[list[str], list[list[str]]]:
    detectors = list(robustness)
    perturbations = list(dict.fromkeys(p for entry in robustness.values() for p in entry))
    header = ["Perturbation"] + [f"{d}: AUC [95% CI]" for d in detectors]
    rows = [[p] + [format_metric((robustness[d].get(p) or {}).get("auc"), (robustness[d].get(p) or {}).get("auc_ci"))
                   for d in detectors] for p in perturbations]
    return header, rows


def _detector_entries(task_metrics: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    detectors = task_metrics.get("detectors") or {}
    return [(str(name), entry if isinstance(entry, Mapping) else {}) for name, entry in detectors.items()]


def _error_of(entry: Mapping[str, Any]) -> str | None:
    error = entry.get("error")
    return None if error is None else str(error)


def frame_table(task_metrics: Mapping[str, Any]) -> tuple[list[str], list[list[str] | tuple[str, str]]]:
    header = ["Detector", "Samples", "AUC [95% CI]", "EER [95% CI]", "EER threshold"]
    # Siamese detectors also report how often they judge a validation pair (same/different) right.
    with_pairs = any("pair_accuracy" in entry for _, entry in _detector_entries(task_metrics))
    if with_pairs:
        header.append("Pair accuracy (validation)")
    rows: list[list[str] | tuple[str, str]] = []
    for name, entry in _detector_entries(task_metrics):
        error = _error_of(entry)
        if error is not None:
            rows.append((name, error))
            continue
        frame = entry.get("frame") or {}
        row = [
            name,
            _format_samples(frame),
            format_metric(frame.get("auc"), frame.get("auc_ci")),
            format_metric(frame.get("eer"), frame.get("eer_ci")),
            format_metric(frame.get("eer_threshold")),
        ]
        if with_pairs:
            row.append(format_metric(entry.get("pair_accuracy")))
        rows.append(row)
    return header, rows


def video_table(task_metrics: Mapping[str, Any]) -> tuple[list[str], list[list[str] | tuple[str, str]]]:
    header = [
        "Detector",
        "Videos",
        "AUC mean prob [95% CI]",
        "EER mean prob [95% CI]",
        "AUC mean logit [95% CI]",
        "EER mean logit [95% CI]",
    ]
    rows: list[list[str] | tuple[str, str]] = []
    for name, entry in _detector_entries(task_metrics):
        error = _error_of(entry)
        if error is not None:
            rows.append((name, error))
            continue
        prob = entry.get("video_mean_prob") or {}
        logit = entry.get("video_mean_logit") or {}
        rows.append([
            name,
            _format_samples(prob or logit),
            format_metric(prob.get("auc"), prob.get("auc_ci")),
            format_metric(prob.get("eer"), prob.get("eer_ci")),
            format_metric(logit.get("auc"), logit.get("auc_ci")),
            format_metric(logit.get("eer"), logit.get("eer_ci")),
        ])
    return header, rows


def threshold_table(task_metrics: Mapping[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Decisions at the development threshold, one row per detector x level that has one."""
    header = ["Detector", "Level", "Dev threshold", "Accuracy", "APCER", "BPCER"]
    rows: list[list[str]] = []
    for name, entry in _detector_entries(task_metrics):
        if _error_of(entry) is not None:
            continue
        for level, level_name in LEVEL_TITLES:
            level_metrics = entry.get(level) or {}
            if not any(key in level_metrics for key in ("threshold", "accuracy", "apcer", "bpcer")):
                continue
            rows.append([
                name,
                level_name,
                format_metric(level_metrics.get("threshold")),
                format_metric(level_metrics.get("accuracy")),
                format_metric(level_metrics.get("apcer")),
                format_metric(level_metrics.get("bpcer")),
            ])
    return header, rows


def meta_items(meta: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Meta fields other than those shown in the header, as (key, text) pairs."""
    shown = {"title", "created", "dflab_version", "command", "synthetic"}
    return [(str(key), str(value)) for key, value in meta.items() if key not in shown]


#: Calibration columns: what was measured, how it is labelled.
CALIBRATION_COLUMNS = (("raw", "as scored"), ("platt", "Platt"), ("isotonic", "isotonic"))


CALIBRATION_NOTE = ("Frame level. Brier score (0 is perfect, 0.25 a coin toss) and expected calibration error "
                    "(15 equal-width bins) of P(fake): as the detector scored it, and after Platt scaling or "
                    "isotonic regression fitted on the development (validation) scores of the model.")


def calibration_table(task_metrics: Mapping[str, Any]) -> tuple[list[str], list[list[str]]]:
    header = ["Detector", "AUC"]
    for _, label in CALIBRATION_COLUMNS:
        header += [f"Brier ({label})", f"ECE ({label})"]
    rows: list[list[str]] = []
    for name, entry in _detector_entries(task_metrics):
        calibration = entry.get("calibration")
        if _error_of(entry) is not None or not calibration:
            continue
        row = [name, format_metric((entry.get("frame") or {}).get("auc"))]
        for key, _ in CALIBRATION_COLUMNS:
            measured = calibration.get(key) or {}
            row += [format_metric(measured.get("brier")), format_metric(measured.get("ece"))]
        rows.append(row)
    return header, rows


MATRIX_NOTE = ("One model on several datasets. Video level: the mean P(fake) of a video's frames (image "
               "datasets with one image per video: the image). Real called fake and fakes caught: at the "
               "model's own video threshold, chosen on its development data before these datasets were "
               "scored.")


def _share(value: Any) -> str:
    number = finite_number(value)
    return MISSING if number is None else f"{100 * number:.1f}%"


def matrix_table(rows: Sequence[Mapping[str, Any]]) -> tuple[list[str], list[list[str]]]:
    header = ["dataset", "split", "videos (real / fake)", "frames", "frame AUC [95% CI]", "frame EER",
              "video AUC [95% CI]", "video EER", "threshold", "real called fake", "fakes caught"]
    table = [[mathtext_safe(row.get("data", row.get("dataset"))), mathtext_safe(row.get("split")),
              f"{_format_count(row.get('real_videos'))} / {_format_count(row.get('fake_videos'))}",
              _format_count(row.get("frames")), format_metric(row.get("frame_auc"), row.get("frame_auc_ci")),
              format_metric(row.get("frame_eer")), format_metric(row.get("video_auc"), row.get("video_auc_ci")),
              format_metric(row.get("video_eer")), format_metric(row.get("threshold")),
              _share(row.get("real_called_fake")), _share(row.get("fakes_caught"))] for row in rows]
    return header, table
