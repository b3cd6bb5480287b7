"""The report's figures: ROC curves, score histograms and robustness curves (matplotlib, written as PNG and SVG)."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from sklearn.metrics import auc as area_under_curve
from sklearn.metrics import roc_curve

from dflab.report.tables import finite_number, mathtext_safe, format_metric

REQUIRED_SCORE_COLUMNS = ("task", "detector", "label", "score")


PNG_DPI = 120


def _safe_filename(name: str) -> str:
    """A file-name-safe form of a detector or task name (no path separators or markup)."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", str(name)).strip("._")
    return cleaned or "unnamed"


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
            label=f"{mathtext_safe(name)} (AUC {format_metric(auc_value)})",
        )
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.set_aspect("equal")
    ax.set_xlabel("False positive rate (reals called fake)")
    ax.set_ylabel("True positive rate (fakes detected)")
    ax.set_title(mathtext_safe(title))
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
    number = finite_number(threshold)
    if number is not None:
        ax.axvline(number, color="black", linestyle="--", linewidth=1.2, label=f"{threshold_label} = {number:.3f}")
    ax.set_xlim(0, 1)
    ax.set_xlabel("Score = P(fake)")
    ax.set_ylabel("Density")
    n_missing = int((~finite).sum())
    left_out = f"\n({n_missing} sample{'' if n_missing == 1 else 's'} without a score left out)" if n_missing else ""
    ax.set_title(mathtext_safe(title) + left_out)
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
            if finite_number(threshold) is None:
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
        auc = np.array([finite_number((robustness[detector].get(p) or {}).get("auc")) or np.nan
                        for p in perturbations])
        ci = [(robustness[detector].get(p) or {}).get("auc_ci") or [np.nan, np.nan] for p in perturbations]
        low = np.array([a - (c[0] if c[0] is not None else np.nan) for a, c in zip(auc, ci)])
        high = np.array([(c[1] if c[1] is not None else np.nan) - a for a, c in zip(auc, ci)])
        ax.bar(x, auc, width, label=mathtext_safe(detector), color=colours[detector],
               yerr=np.nan_to_num(np.vstack([low, high])), capsize=2)
    ax.axhline(0.5, color="grey", linestyle="--", linewidth=1)
    ax.set_xticks(np.arange(len(perturbations)), [mathtext_safe(p) for p in perturbations])
    ax.set_ylim(0, 1)
    ax.set_ylabel("frame-level AUC")
    ax.set_title(mathtext_safe(title))
    ax.legend(loc="lower right", fontsize=8)
    fig.subplots_adjust(bottom=0.15)
    return fig
