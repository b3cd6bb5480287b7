"""Plots (ROC curves, score histograms) and the self-contained lab report (HTML + Markdown).

Inputs are the lab's per-sample ``scores`` table (one row per sample x detector x task) and the
``metrics`` dict that is also saved as ``metrics.json``. Figures are built with the object API
(:class:`matplotlib.figure.Figure`), so nothing here touches pyplot's global state or needs a display.
"""

from __future__ import annotations

import base64
import html
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from sklearn.metrics import auc as area_under_curve
from sklearn.metrics import roc_curve

__all__ = [
    "format_metric",
    "plot_roc",
    "plot_score_histograms",
    "save_figure",
    "write_plots",
    "write_report",
]

REQUIRED_SCORE_COLUMNS = ("task", "detector", "label", "score")
PNG_DPI = 120
MISSING = "—"

# Metric levels as stored in metrics.json, with the names shown in the report.
LEVELS = (
    ("frame", "frame"),
    ("video_mean_prob", "video (mean prob)"),
    ("video_mean_logit", "video (mean logit)"),
)

SYNTHETIC_NOTICE = "Synthetic data — numbers say nothing about real deepfakes."

PROTOCOL = (
    (
        "Task 1 — intra-database",
        "Each detector is trained (or calibrated) on the development set of database 1 and "
        "evaluated on the evaluation set of the same database.",
    ),
    (
        "Task 2 — cross-database",
        "The detector trained in Task 1 is used untouched on the evaluation set of database 2; "
        "the drop from Task 1 shows how well it generalises to unseen manipulations and capture conditions.",
    ),
    (
        "Task 3 — improved generalisation",
        "A detector built to generalise better (e.g. other features, augmentation or training data) "
        "is evaluated on the evaluation set of database 2, the same data as Task 2, so the two are comparable.",
    ),
)

GLOSSARY = (
    (
        "AUC",
        "Area under the ROC curve: the probability that a randomly chosen fake gets a higher score than a "
        "randomly chosen real sample. 1.0 is perfect, 0.5 is chance.",
    ),
    (
        "EER",
        "Equal error rate: the error rate at the threshold where the false-positive rate (reals called fake) "
        "equals the false-negative rate (fakes called real). Lower is better; 0.5 is chance.",
    ),
    (
        "EER threshold",
        "The score threshold at which the EER is reached on the evaluation data itself. It is a description "
        "of the scores, not a threshold one could have chosen in advance.",
    ),
    (
        "APCER",
        "Attack presentation classification error rate: the share of fakes accepted as real at the "
        "threshold fixed on the development data.",
    ),
    (
        "BPCER",
        "Bona fide presentation classification error rate: the share of real samples rejected as fake at "
        "the threshold fixed on the development data.",
    ),
    (
        "Frame vs video level",
        "Frame level scores every image on its own. Video level first averages the scores of all frames of "
        "a video, either as probabilities (mean prob) or as logits (mean logit), and scores the video once.",
    ),
    (
        "Bootstrap CI over videos",
        "The 95% confidence intervals come from resampling whole videos with replacement (frames of one "
        "video are not independent) and recomputing the metric; the interval spans the 2.5th to 97.5th "
        "percentile of the resampled values.",
    ),
)


# ----------------------------------------------------------------------------------------------
# Formatting
# ----------------------------------------------------------------------------------------------


def _finite_number(value: Any) -> float | None:
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
    number = _finite_number(value)
    if number is None:
        return MISSING
    text = f"{number:.{digits}f}"
    if ci is not None and len(ci) == 2:
        low, high = _finite_number(ci[0]), _finite_number(ci[1])
        if low is not None and high is not None:
            text += f" [{low:.{digits}f}, {high:.{digits}f}]"
    return text


def _format_count(value: Any) -> str:
    number = _finite_number(value)
    return MISSING if number is None else str(int(number))


def _format_samples(level_metrics: Mapping[str, Any]) -> str:
    """``"120 (60 real / 60 fake), 3 missing"`` from the n fields of one metrics level."""
    text = f"{_format_count(level_metrics.get('n'))} ({_format_count(level_metrics.get('n_real'))} real / " \
           f"{_format_count(level_metrics.get('n_fake'))} fake)"
    missing = _finite_number(level_metrics.get("n_missing"))
    if missing:
        text += f", {int(missing)} missing"
    return text


def _plain(text: Any) -> str:
    """Text for a matplotlib label: a '$' would otherwise start mathtext (and can fail to parse)."""
    return str(text).replace("$", r"\$")


def _safe_filename(name: str) -> str:
    """A file-name-safe form of a detector or task name (no path separators or markup)."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", str(name)).strip("._")
    return cleaned or "unnamed"


# ----------------------------------------------------------------------------------------------
# Figures
# ----------------------------------------------------------------------------------------------


def _detector_colours(names: Sequence[str]) -> dict[str, Any]:
    """One stable colour per detector so the same detector looks the same in every chart."""
    from matplotlib import colormaps

    palette = colormaps["tab10"].colors
    return {name: palette[i % len(palette)] for i, name in enumerate(sorted(set(names)))}


def plot_roc(
    curves: Mapping[str, tuple[Sequence[float], Sequence[float], float]],
    title: str,
    colours: Mapping[str, Any] | None = None,
) -> Figure:
    """All detectors of one task on one ROC chart.

    ``curves`` maps a detector name to ``(fpr, tpr, auc)``. The legend carries the AUC; the chance
    diagonal and the EER line (fpr = 1 - tpr, where a curve crosses it is its EER) are drawn lightly.
    """
    fig = Figure(figsize=(6.4, 6.0))
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], linestyle="--", color="0.6", linewidth=1, label="chance")
    ax.plot([0, 1], [1, 0], linestyle=":", color="0.75", linewidth=1, label="EER line (FPR = 1 − TPR)")
    colours = dict(colours) if colours else _detector_colours(list(curves))
    for name, (fpr, tpr, auc_value) in curves.items():
        ax.plot(
            np.asarray(fpr, dtype=float),
            np.asarray(tpr, dtype=float),
            linewidth=2,
            color=colours.get(name),
            label=f"{_plain(name)} (AUC {format_metric(auc_value)})",
        )
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.set_aspect("equal")
    ax.set_xlabel("False positive rate (reals called fake)")
    ax.set_ylabel("True positive rate (fakes detected)")
    ax.set_title(_plain(title))
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right", fontsize="small", framealpha=0.9)
    # Laid out once here rather than by a layout engine on every save (PNG and SVG each redo it).
    fig.tight_layout()
    return fig


def plot_score_histograms(
    scores: pd.DataFrame,
    title: str,
    threshold: float | None = None,
    threshold_label: str = "threshold",
    bins: int = 40,
) -> Figure:
    """Histograms of P(fake) for real and fake samples of one task x detector, on [0, 1].

    Rows with a non-finite score are left out (and counted in the subtitle). Densities are plotted so
    that classes of different sizes are comparable. An optional vertical line marks ``threshold``.
    """
    missing_columns = [c for c in ("label", "score") if c not in scores.columns]
    if missing_columns:
        raise ValueError(f"plot_score_histograms: scores table lacks column(s) {missing_columns}")
    values = pd.to_numeric(scores["score"], errors="coerce").to_numpy(dtype=float)
    labels = pd.to_numeric(scores["label"], errors="coerce").to_numpy(dtype=float)
    finite = np.isfinite(values) & np.isfinite(labels)
    edges = np.linspace(0.0, 1.0, bins + 1)

    fig = Figure(figsize=(6.4, 4.0))
    ax = fig.add_subplot()
    for label_value, name, colour in ((0, "real", "tab:blue"), (1, "fake", "tab:red")):
        class_scores = np.clip(values[finite & (labels == label_value)], 0.0, 1.0)
        if class_scores.size:
            # One filled outline per class (not one bar per bin): overlaps stay readable and saving is fast.
            ax.hist(
                class_scores,
                bins=edges,
                density=True,
                histtype="stepfilled",
                alpha=0.5,
                facecolor=colour,
                edgecolor=colour,
                linewidth=1.2,
                label=f"{name} (n={class_scores.size})",
            )
    number = _finite_number(threshold)
    if number is not None:
        ax.axvline(number, color="black", linestyle="--", linewidth=1.2, label=f"{threshold_label} = {number:.3f}")
    ax.set_xlim(0, 1)
    ax.set_xlabel("Score = P(fake)")
    ax.set_ylabel("Density")
    n_missing = int((~finite).sum())
    left_out = f"\n({n_missing} sample{'' if n_missing == 1 else 's'} without a score left out)" if n_missing else ""
    ax.set_title(_plain(title) + left_out)
    ax.grid(True, alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        # Headroom above the tallest bin so the legend (one row) never hides the histograms.
        ax.set_ylim(0, ax.get_ylim()[1] * 1.25)
        ax.legend(loc="upper center", ncols=3, fontsize="small", framealpha=0.9)
    else:
        ax.text(0.5, 0.5, "no finite scores", ha="center", va="center", transform=ax.transAxes)
    fig.tight_layout()
    return fig


def save_figure(fig: Figure, path_without_suffix: str | Path) -> list[Path]:
    """Write ``fig`` as ``<path>.png`` (120 dpi) and ``<path>.svg``; return both paths."""
    base = Path(path_without_suffix)
    base.parent.mkdir(parents=True, exist_ok=True)
    written = []
    for suffix, options in ((".png", {"dpi": PNG_DPI}), (".svg", {})):
        target = base.with_name(base.name + suffix)
        fig.savefig(target, format=suffix[1:], **options)
        written.append(target)
    return written


# ----------------------------------------------------------------------------------------------
# Plots for the whole lab
# ----------------------------------------------------------------------------------------------


def _check_scores(scores: pd.DataFrame) -> None:
    missing = [c for c in REQUIRED_SCORE_COLUMNS if c not in scores.columns]
    if missing:
        raise ValueError(f"scores table lacks column(s) {missing}; it has {list(scores.columns)}")


def _task_order(scores: pd.DataFrame, metrics: Mapping[str, Any]) -> list[str]:
    """Tasks of metrics.json first (in their order), then any others found in the scores table."""
    tasks = list((metrics.get("tasks") or {}).keys())
    for task in scores["task"].dropna().astype(str).unique():
        if task not in tasks:
            tasks.append(task)
    return tasks


def _video_mean_scores(rows: pd.DataFrame) -> pd.DataFrame:
    """Mean P(fake) per video (finite scores only), with the video's label.

    Falls back to ``path`` when there is no ``video`` column (one file = one video). A video whose
    frames carry both labels is bad input and raises.
    """
    key = "video" if "video" in rows.columns else "path"
    if key not in rows.columns:
        raise ValueError("scores table has neither a 'video' nor a 'path' column to group frames into videos")
    finite = rows[np.isfinite(rows["score"].to_numpy(dtype=float))]
    grouped = finite.groupby(key, sort=True).agg(label=("label", "max"), label_min=("label", "min"),
                                                 score=("score", "mean"))
    mixed = grouped.index[grouped["label"] != grouped["label_min"]]
    if len(mixed):
        raise ValueError(f"video {mixed[0]!r} has frames labelled both real and fake")
    return grouped.drop(columns="label_min").reset_index()


def _roc_or_reason(labels: np.ndarray, values: np.ndarray) -> tuple[tuple[np.ndarray, np.ndarray, float] | None, str]:
    """(fpr, tpr, auc) from finite scores, or None and the reason why no ROC can be drawn."""
    finite = np.isfinite(values)
    labels, values = labels[finite], values[finite]
    if values.size == 0:
        return None, "no finite scores"
    classes = np.unique(labels)
    if classes.size < 2:
        only = "real" if classes[0] == 0 else "fake"
        return None, f"only one class ({only}) among finite scores"
    fpr, tpr, _ = roc_curve(labels, values, pos_label=1)
    return (fpr, tpr, float(area_under_curve(fpr, tpr))), ""


def _level_metrics(metrics: Mapping[str, Any], task: str, detector: str, level: str) -> Mapping[str, Any]:
    entry = (((metrics.get("tasks") or {}).get(task) or {}).get("detectors") or {}).get(detector) or {}
    level_entry = entry.get(level) if isinstance(entry, Mapping) else None
    return level_entry if isinstance(level_entry, Mapping) else {}


def write_plots(scores: pd.DataFrame, metrics: Mapping[str, Any], out_dir: str | Path) -> dict[str, Any]:
    """Draw and save every plot of the lab into ``out_dir``.

    Per task: ``roc_<task>`` (frame level) and ``roc_<task>_video`` (mean probability per video), and per
    task x detector ``hist_<task>_<detector>``, each as PNG and SVG. A detector with no finite scores or
    only one class is left out of the ROC charts (and a chart with no curve is not written); the reason
    is recorded in ``notes``.

    Returns ``{task: {"title", "roc": [paths], "roc_video": [paths], "hist": {detector: [paths]},
    "notes": [str]}}``.
    """
    _check_scores(scores)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    data = scores.copy()
    data["task"] = data["task"].astype(str)
    data["detector"] = data["detector"].astype(str)
    data["score"] = pd.to_numeric(data["score"], errors="coerce").astype(float)
    data["label"] = pd.to_numeric(data["label"], errors="coerce")
    bad_labels = data["label"].dropna()
    bad_labels = bad_labels[~bad_labels.isin([0, 1])]
    if data["label"].isna().any() or len(bad_labels):
        raise ValueError("scores table: 'label' must be 0 (real) or 1 (fake) on every row")
    data["label"] = data["label"].astype(int)

    colours = _detector_colours(data["detector"].unique().tolist())
    tasks_meta = metrics.get("tasks") or {}
    written: dict[str, Any] = {}
    used_stems: set[str] = set()

    for task in _task_order(data, metrics):
        task_title = str((tasks_meta.get(task) or {}).get("title") or task)
        task_rows = data[data["task"] == task]
        record: dict[str, Any] = {"title": task_title, "roc": [], "roc_video": [], "hist": {}, "notes": []}
        written[task] = record
        if task_rows.empty:
            record["notes"].append(f"{task}: no scores in the scores table")
            continue

        frame_curves: dict[str, tuple[np.ndarray, np.ndarray, float]] = {}
        video_curves: dict[str, tuple[np.ndarray, np.ndarray, float]] = {}
        for detector in sorted(task_rows["detector"].unique()):
            rows = task_rows[task_rows["detector"] == detector]
            curve, reason = _roc_or_reason(rows["label"].to_numpy(), rows["score"].to_numpy())
            if curve is None:
                record["notes"].append(f"{task} / {detector}: frame-level ROC skipped — {reason}")
            else:
                frame_curves[detector] = curve
            videos = _video_mean_scores(rows)
            curve, reason = _roc_or_reason(videos["label"].to_numpy(), videos["score"].to_numpy())
            if curve is None:
                record["notes"].append(f"{task} / {detector}: video-level ROC skipped — {reason}")
            else:
                video_curves[detector] = curve

            if not np.isfinite(rows["score"].to_numpy()).any():
                record["notes"].append(f"{task} / {detector}: histogram skipped — no finite scores")
                continue
            frame_metrics = _level_metrics(metrics, task, detector, "frame")
            threshold, threshold_label = frame_metrics.get("threshold"), "dev threshold"
            if _finite_number(threshold) is None:
                threshold, threshold_label = frame_metrics.get("eer_threshold"), "EER threshold"
            stem = f"hist_{_safe_filename(task)}_{_safe_filename(detector)}"
            # Two names that sanitise alike (e.g. "a b" and "a_b") must not overwrite each other.
            unique_stem, counter = stem, 2
            while unique_stem in used_stems:
                unique_stem, counter = f"{stem}_{counter}", counter + 1
            used_stems.add(unique_stem)
            fig = plot_score_histograms(
                rows, f"{task_title} — {detector}: scores (frame level)", threshold, threshold_label
            )
            record["hist"][detector] = save_figure(fig, out / unique_stem)

        for curves, key, suffix, level_name in (
            (frame_curves, "roc", "", "frame level"),
            (video_curves, "roc_video", "_video", "video level, mean probability"),
        ):
            if not curves:
                record["notes"].append(f"{task}: no {level_name} ROC chart — no detector has both classes")
                continue
            fig = plot_roc(curves, f"{task_title}\nROC, {level_name}", colours)
            record[key] = save_figure(fig, out / f"roc_{_safe_filename(task)}{suffix}")
    return written


def plot_robustness(robustness: Mapping[str, Mapping[str, Any]], title: str = "AUC under perturbations") -> Figure:
    """Grouped bars: frame-level AUC (95% CI) per perturbation, one colour per detector."""
    detectors = list(robustness)
    perturbations = list(dict.fromkeys(p for entry in robustness.values() for p in entry))
    fig = Figure(figsize=(max(6.0, 1.1 * len(perturbations) + 2), 4.2))
    ax = fig.add_subplot(1, 1, 1)
    width = 0.8 / max(1, len(detectors))
    colours = _detector_colours(detectors)
    for k, detector in enumerate(detectors):
        x = np.arange(len(perturbations)) + (k - (len(detectors) - 1) / 2) * width
        auc = np.array([_finite_number((robustness[detector].get(p) or {}).get("auc")) or np.nan
                        for p in perturbations])
        ci = [(robustness[detector].get(p) or {}).get("auc_ci") or [np.nan, np.nan] for p in perturbations]
        low = np.array([a - (c[0] if c[0] is not None else np.nan) for a, c in zip(auc, ci)])
        high = np.array([(c[1] if c[1] is not None else np.nan) - a for a, c in zip(auc, ci)])
        ax.bar(x, auc, width, label=_plain(detector), color=colours[detector],
               yerr=np.nan_to_num(np.vstack([low, high])), capsize=2)
    ax.axhline(0.5, color="grey", linestyle="--", linewidth=1)
    ax.set_xticks(np.arange(len(perturbations)), [_plain(p) for p in perturbations])
    ax.set_ylim(0, 1)
    ax.set_ylabel("frame-level AUC")
    ax.set_title(_plain(title))
    ax.legend(loc="lower right", fontsize=8)
    fig.subplots_adjust(bottom=0.15)
    return fig


def _robustness_table(robustness: Mapping[str, Mapping[str, Any]]) -> tuple[list[str], list[list[str]]]:
    detectors = list(robustness)
    perturbations = list(dict.fromkeys(p for entry in robustness.values() for p in entry))
    header = ["Perturbation"] + [f"{d}: AUC [95% CI]" for d in detectors]
    rows = [[p] + [format_metric((robustness[d].get(p) or {}).get("auc"), (robustness[d].get(p) or {}).get("auc_ci"))
                   for d in detectors] for p in perturbations]
    return header, rows


# ----------------------------------------------------------------------------------------------
# Report tables (shared by HTML and Markdown)
# ----------------------------------------------------------------------------------------------


def _detector_entries(task_metrics: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    detectors = task_metrics.get("detectors") or {}
    return [(str(name), entry if isinstance(entry, Mapping) else {}) for name, entry in detectors.items()]


def _error_of(entry: Mapping[str, Any]) -> str | None:
    error = entry.get("error")
    return None if error is None else str(error)


def _frame_table(task_metrics: Mapping[str, Any]) -> tuple[list[str], list[list[str] | tuple[str, str]]]:
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


def _video_table(task_metrics: Mapping[str, Any]) -> tuple[list[str], list[list[str] | tuple[str, str]]]:
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


def _threshold_table(task_metrics: Mapping[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Decisions at the development threshold, one row per detector x level that has one."""
    header = ["Detector", "Level", "Dev threshold", "Accuracy", "APCER", "BPCER"]
    rows: list[list[str]] = []
    for name, entry in _detector_entries(task_metrics):
        if _error_of(entry) is not None:
            continue
        for level, level_name in LEVELS:
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


def _meta_items(meta: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Meta fields other than those shown in the header, as (key, text) pairs."""
    shown = {"title", "created", "dflab_version", "command", "synthetic"}
    return [(str(key), str(value)) for key, value in meta.items() if key not in shown]


# ----------------------------------------------------------------------------------------------
# HTML
# ----------------------------------------------------------------------------------------------

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif;
       max-width: 1100px; margin: 2em auto; padding: 0 1em; color: #222; line-height: 1.45; }
h1 { margin-bottom: 0.2em; }
.meta { color: #555; font-size: 0.92em; }
.meta code { background: #f3f3f3; padding: 0 0.3em; word-break: break-all; }
.synthetic-warning { border: 3px solid #c62828; background: #ffebee; color: #8e0000; padding: 0.8em 1em;
                     font-size: 1.25em; font-weight: bold; margin: 1em 0; }
table { border-collapse: collapse; margin: 0.6em 0 1.2em; font-size: 0.92em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: left; vertical-align: top; }
th { background: #f0f0f0; }
td.error { color: #b71c1c; }
.figures { display: flex; flex-wrap: wrap; gap: 1em; }
.figures figure { margin: 0; }
.figures img { max-width: 520px; width: 100%; border: 1px solid #ddd; }
figcaption { font-size: 0.85em; color: #555; }
.notes { color: #6d4c41; font-size: 0.9em; }
dt { font-weight: bold; margin-top: 0.5em; }
"""


def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _html_table(header: Sequence[str], rows: Sequence[Sequence[str] | tuple[str, str]]) -> str:
    """An HTML table; a row given as (name, error) spans all columns with the error message."""
    parts = ["<table>", "<tr>" + "".join(f"<th>{_esc(h)}</th>" for h in header) + "</tr>"]
    for row in rows:
        if isinstance(row, tuple):
            name, error = row
            parts.append(
                f"<tr><td>{_esc(name)}</td><td class=\"error\" colspan=\"{len(header) - 1}\">"
                f"failed: {_esc(error)}</td></tr>"
            )
        else:
            parts.append("<tr>" + "".join(f"<td>{_esc(cell)}</td>" for cell in row) + "</tr>")
    parts.append("</table>")
    return "\n".join(parts)


def _embedded_png(path: Path, caption: str) -> str:
    """An <img> with the PNG inlined as base64, so the page needs no other file."""
    encoded = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return (
        f"<figure><img alt=\"{_esc(caption)}\" src=\"data:image/png;base64,{encoded}\">"
        f"<figcaption>{_esc(caption)}</figcaption></figure>"
    )


def _png_of(paths: Sequence[Path]) -> Path | None:
    return next((Path(p) for p in paths if Path(p).suffix == ".png"), None)


def _task_figures_html(record: Mapping[str, Any]) -> str:
    figures = []
    for key, caption in (("roc", "ROC, frame level"), ("roc_video", "ROC, video level (mean probability)")):
        png = _png_of(record.get(key) or [])
        if png is not None:
            figures.append(_embedded_png(png, caption))
    for detector, paths in (record.get("hist") or {}).items():
        png = _png_of(paths)
        if png is not None:
            figures.append(_embedded_png(png, f"Score histogram — {detector}"))
    return "<div class=\"figures\">\n" + "\n".join(figures) + "\n</div>" if figures else ""


#: Calibration columns: what was measured, how it is labelled.
CALIBRATION_COLUMNS = (("raw", "as scored"), ("platt", "Platt"), ("isotonic", "isotonic"))
CALIBRATION_NOTE = ("Frame level. Brier score (0 is perfect, 0.25 a coin toss) and expected calibration error "
                    "(15 equal-width bins) of P(fake): as the detector scored it, and after Platt scaling or "
                    "isotonic regression fitted on the development (validation) scores of the model.")


def _calibration_table(task_metrics: Mapping[str, Any]) -> tuple[list[str], list[list[str]]]:
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


def _render_html(metrics: Mapping[str, Any], plots: Mapping[str, Any],
                 plots_extra: Mapping[str, Any] | None = None) -> str:
    plots_extra = plots_extra or {}
    meta = metrics.get("meta") or {}
    title = str(meta.get("title") or "Deepfake detection lab report")
    parts = [
        "<!DOCTYPE html>",
        "<html lang=\"en\">",
        "<head>",
        "<meta charset=\"utf-8\">",
        f"<title>{_esc(title)}</title>",
        f"<style>{_CSS}</style>",
        "</head>",
        "<body>",
        f"<h1>{_esc(title)}</h1>",
        "<p class=\"meta\">"
        f"Created: {_esc(meta.get('created', MISSING))} · dflab version: {_esc(meta.get('dflab_version', MISSING))}"
        f"<br>Command: <code>{_esc(meta.get('command', MISSING))}</code></p>",
    ]
    if meta.get("synthetic"):
        parts.append(f"<div class=\"synthetic-warning\">{_esc(SYNTHETIC_NOTICE)}</div>")
    extra_meta = _meta_items(meta)
    if extra_meta:
        parts.append("<details><summary>Run settings</summary><table>")
        parts.extend(f"<tr><th>{_esc(k)}</th><td><code>{_esc(v)}</code></td></tr>" for k, v in extra_meta)
        parts.append("</table></details>")

    parts.append("<h2>Protocol</h2><ul>")
    parts.extend(f"<li><b>{_esc(name)}:</b> {_esc(text)}</li>" for name, text in PROTOCOL)
    parts.append(
        "</ul><p>Scores are P(fake). ROC/AUC/EER use the evaluation data only; accuracy, APCER and BPCER "
        "(when shown) use a threshold fixed beforehand on the development data.</p>"
    )

    tasks_meta = metrics.get("tasks") or {}
    task_names = list(tasks_meta) + [t for t in plots if t not in tasks_meta]
    for task in task_names:
        task_metrics = tasks_meta.get(task) or {}
        record = plots.get(task) or {}
        parts.append(f"<h2>{_esc(task_metrics.get('title') or record.get('title') or task)}</h2>")
        if task_metrics.get("train") or task_metrics.get("eval"):
            parts.append(
                f"<p>Trained on: {_esc(task_metrics.get('train', MISSING))}<br>"
                f"Evaluated on: {_esc(task_metrics.get('eval', MISSING))}</p>"
            )
        if task_metrics.get("detectors"):
            parts.append("<h3>Frame level</h3>")
            parts.append(_html_table(*_frame_table(task_metrics)))
            parts.append("<h3>Video level</h3>")
            parts.append(_html_table(*_video_table(task_metrics)))
            header, rows = _threshold_table(task_metrics)
            if rows:
                parts.append("<h3>At the threshold chosen on development data</h3>")
                parts.append(_html_table(header, rows))
            header, rows = _calibration_table(task_metrics)
            if rows:
                parts.append(f"<h3>Calibration</h3><p>{_esc(CALIBRATION_NOTE)}</p>")
                parts.append(_html_table(header, rows))
        else:
            parts.append("<p>No metrics for this task.</p>")
        parts.append(_task_figures_html(record))
        if record.get("notes"):
            parts.append("<ul class=\"notes\">" + "".join(f"<li>{_esc(n)}</li>" for n in record["notes"]) + "</ul>")

    if plots_extra.get("detector_figures"):
        parts.append("<h2>Training examples</h2><div class=\"figures\">")
        parts.extend(_embedded_png(path, caption) for path, caption in plots_extra["detector_figures"])
        parts.append("</div>")

    robustness = metrics.get("robustness")
    if robustness:
        parts.append("<h2>Robustness</h2><p>Frame-level AUC of the same scores after JPEG re-compression, "
                     "downscaling, blur and noise of the evaluation images.</p>")
        parts.append(_html_table(*_robustness_table(robustness)))
        png = _png_of(plots_extra.get("robustness", []))
        if png is not None:
            parts.append(f"<div class=\"figures\">{_embedded_png(png, 'AUC under perturbations')}</div>")

    parts.append("<h2>Glossary</h2><dl>")
    parts.extend(f"<dt>{_esc(term)}</dt><dd>{_esc(text)}</dd>" for term, text in GLOSSARY)
    parts.append("</dl>")

    skipped = metrics.get("skipped") or []
    parts.append(f"<h2>Skipped files ({len(skipped)})</h2>")
    if skipped:
        table = _html_table(
            ["File", "Stage", "Reason"],
            [[str(s.get("path", MISSING)), str(s.get("stage", MISSING)), str(s.get("reason", MISSING))]
             for s in skipped],
        )
        # Long lists are folded so that they do not bury the results.
        parts.append(table if len(skipped) <= 20 else f"<details><summary>show all</summary>{table}</details>")
    else:
        parts.append("<p>none</p>")
    parts.append("</body>\n</html>\n")
    return "\n".join(parts)


# ----------------------------------------------------------------------------------------------
# Markdown
# ----------------------------------------------------------------------------------------------


def _md_cell(value: Any) -> str:
    # Escape markup so names like "<b>x</b>" show literally; pipes and newlines would break the table.
    return html.escape(str(value), quote=False).replace("|", "\\|").replace("\n", " ")


def _md_table(header: Sequence[str], rows: Sequence[Sequence[str] | tuple[str, str]]) -> str:
    lines = ["| " + " | ".join(_md_cell(h) for h in header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        if isinstance(row, tuple):
            name, error = row
            cells = [name, f"failed: {error}"] + [""] * (len(header) - 2)
        else:
            cells = list(row)
        lines.append("| " + " | ".join(_md_cell(c) for c in cells) + " |")
    return "\n".join(lines)


def _md_image(path: Path, out_dir: Path, caption: str) -> str:
    try:
        relative = Path(path).resolve().relative_to(out_dir.resolve()).as_posix()
    except ValueError:
        relative = Path(path).as_posix()
    # Angle brackets let the link hold any file name; the alt text must not contain brackets.
    alt = re.sub(r"[\[\]]", "", caption)
    return f"![{alt}](<{relative}>)"


def _render_markdown(metrics: Mapping[str, Any], plots: Mapping[str, Any], out_dir: Path,
                     plots_extra: Mapping[str, Any] | None = None) -> str:
    plots_extra = plots_extra or {}
    meta = metrics.get("meta") or {}
    title = str(meta.get("title") or "Deepfake detection lab report")
    command = str(meta.get("command", MISSING)).replace("`", "'")  # a backtick would end the code span
    lines = [
        f"# {_md_cell(title)}",
        "",
        f"Created: {_md_cell(meta.get('created', MISSING))} · dflab version: "
        f"{_md_cell(meta.get('dflab_version', MISSING))}  ",
        f"Command: `{command}`",
        "",
    ]
    if meta.get("synthetic"):
        lines += [f"> **⚠ {SYNTHETIC_NOTICE}**", ""]
    extra_meta = _meta_items(meta)
    if extra_meta:
        lines += [_md_table(["Setting", "Value"], [[k, v] for k, v in extra_meta]), ""]
    lines += ["## Protocol", ""]
    lines += [f"- **{name}:** {text}" for name, text in PROTOCOL]
    lines.append("")

    tasks_meta = metrics.get("tasks") or {}
    task_names = list(tasks_meta) + [t for t in plots if t not in tasks_meta]
    for task in task_names:
        task_metrics = tasks_meta.get(task) or {}
        record = plots.get(task) or {}
        lines += [f"## {_md_cell(task_metrics.get('title') or record.get('title') or task)}", ""]
        if task_metrics.get("train") or task_metrics.get("eval"):
            lines += [
                f"Trained on: {_md_cell(task_metrics.get('train', MISSING))}  ",
                f"Evaluated on: {_md_cell(task_metrics.get('eval', MISSING))}",
                "",
            ]
        if task_metrics.get("detectors"):
            lines += ["### Frame level", "", _md_table(*_frame_table(task_metrics)), ""]
            lines += ["### Video level", "", _md_table(*_video_table(task_metrics)), ""]
            header, rows = _threshold_table(task_metrics)
            if rows:
                lines += ["### At the threshold chosen on development data", "", _md_table(header, rows), ""]
            header, rows = _calibration_table(task_metrics)
            if rows:
                lines += ["### Calibration", "", CALIBRATION_NOTE, "", _md_table(header, rows), ""]
        else:
            lines += ["No metrics for this task.", ""]
        for key, caption in (("roc", "ROC, frame level"), ("roc_video", "ROC, video level (mean probability)")):
            png = _png_of(record.get(key) or [])
            if png is not None:
                lines += [_md_image(png, out_dir, f"{task} {caption}"), ""]
        for detector, paths in (record.get("hist") or {}).items():
            png = _png_of(paths)
            if png is not None:
                lines += [_md_image(png, out_dir, f"{task} score histogram {_md_cell(detector)}"), ""]
        if record.get("notes"):
            lines += [f"- _{_md_cell(n)}_" for n in record["notes"]] + [""]

    if plots_extra.get("detector_figures"):
        lines += ["## Training examples", ""]
        for path, caption in plots_extra["detector_figures"]:
            lines += [_md_image(path, out_dir, caption), ""]

    robustness = metrics.get("robustness")
    if robustness:
        lines += ["## Robustness", "", _md_table(*_robustness_table(robustness)), ""]
        png = _png_of(plots_extra.get("robustness", []))
        if png is not None:
            lines += [_md_image(png, out_dir, "AUC under perturbations"), ""]

    lines += ["## Glossary", ""]
    lines += [f"- **{term}:** {text}" for term, text in GLOSSARY]
    skipped = metrics.get("skipped") or []
    lines += ["", f"## Skipped files ({len(skipped)})", ""]
    if skipped:
        lines.append(_md_table(
            ["File", "Stage", "Reason"],
            [[str(s.get("path", MISSING)), str(s.get("stage", MISSING)), str(s.get("reason", MISSING))]
             for s in skipped],
        ))
    else:
        lines.append("none")
    lines.append("")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------
# Entry point
# ----------------------------------------------------------------------------------------------


def write_report(out_dir: str | Path, scores: pd.DataFrame, metrics: Mapping[str, Any]) -> dict[str, Path]:
    """Write plots into ``out_dir/plots/``, then ``out_dir/report.html`` (one self-contained page with
    the plots embedded) and ``out_dir/report.md`` (same tables, plots linked as ``plots/*.png``).

    Returns ``{"html": ..., "markdown": ..., "plots_dir": ...}``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    plots_dir = out / "plots"
    plots = write_plots(scores, metrics, plots_dir)
    plots_extra = {}
    figures = [(out / figure["path"], figure.get("caption", ""))
               for task in (metrics.get("tasks") or {}).values()
               for entry in (task.get("detectors") or {}).values() if isinstance(entry, Mapping)
               for figure in entry.get("figures") or [] if (out / figure["path"]).exists()]
    if figures:
        plots_extra["detector_figures"] = figures
    if metrics.get("robustness"):
        plots_extra["robustness"] = save_figure(plot_robustness(metrics["robustness"]), plots_dir / "robustness")
    html_path = out / "report.html"
    html_path.write_text(_render_html(metrics, plots, plots_extra), encoding="utf-8")
    markdown_path = out / "report.md"
    markdown_path.write_text(_render_markdown(metrics, plots, out, plots_extra), encoding="utf-8")
    return {"html": html_path, "markdown": markdown_path, "plots_dir": plots_dir}
