"""What the lab report says: the blocks of :mod:`dflab.report.blocks` built once from metrics.json and the
plots, then rendered by :mod:`dflab.report.html` and :mod:`dflab.report.markdown`, so the two files can
never say different things.

Inputs are the ``metrics`` dict that is also saved as ``metrics.json`` and the plots
:mod:`dflab.report.writer` drew from the lab's per-sample scores.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from dflab.report.blocks import (Block, Bullets, Definitions, Document, Figures, Header, Heading, Notice, Paragraph,
                                 Table)
from dflab.report.tables import (CALIBRATION_NOTE, MATRIX_NOTE, MISSING, calibration_table, frame_table,
                                 matrix_table, meta_items, robustness_table, threshold_table, video_table)

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

SCORES_NOTE = ("Scores are P(fake). ROC/AUC/EER use the evaluation data only; accuracy, APCER and BPCER "
               "(when shown) use a threshold fixed beforehand on the development data.")
ROBUSTNESS_NOTE = ("Frame-level AUC of the same scores after JPEG re-compression, downscaling, blur and noise "
                   "of the evaluation images.")
#: Skipped-file tables longer than this are folded (HTML) so that they do not bury the results.
FOLD_ROWS = 20


def _png_of(paths: Sequence[Path]) -> Path | None:
    return next((Path(p) for p in paths if Path(p).suffix == ".png"), None)


def _task_figures(task: str, record: Mapping[str, Any]) -> list[tuple[Path, str]]:
    figures = []
    for key, caption in (("roc", "ROC, frame level"), ("roc_video", "ROC, video level (mean probability)")):
        png = _png_of(record.get(key) or [])
        if png is not None:
            figures.append((png, f"{task} {caption}"))
    for detector, paths in (record.get("hist") or {}).items():
        png = _png_of(paths)
        if png is not None:
            figures.append((png, f"{task} score histogram — {detector}"))
    return figures


def build_document(metrics: Mapping[str, Any], plots: Mapping[str, Any],
                   plots_extra: Mapping[str, Any] | None = None) -> Document:
    """Everything the report says, in order, with no formatting decided yet."""
    plots_extra = plots_extra or {}
    meta = metrics.get("meta") or {}
    title = str(meta.get("title") or "Deepfake detection lab report")
    blocks: list[Block] = [Header(title, str(meta.get("created", MISSING)), str(meta.get("dflab_version", MISSING)),
                                  str(meta.get("command", MISSING)))]
    if meta.get("synthetic"):
        blocks.append(Notice(SYNTHETIC_NOTICE))
    extra_meta = meta_items(meta)
    if extra_meta:
        blocks.append(Table(["Setting", "Value"], [[k, v] for k, v in extra_meta], settings=True))
    if metrics.get("matrix"):
        blocks += [Heading("Across datasets"), Paragraph([MATRIX_NOTE]), Table(*matrix_table(metrics["matrix"]))]
    blocks += [Heading("Protocol"), Bullets([(name, text) for name, text in PROTOCOL]), Paragraph([SCORES_NOTE])]

    tasks_meta = metrics.get("tasks") or {}
    for task in list(tasks_meta) + [t for t in plots if t not in tasks_meta]:
        task_metrics = tasks_meta.get(task) or {}
        record = plots.get(task) or {}
        blocks.append(Heading(str(task_metrics.get("title") or record.get("title") or task)))
        if task_metrics.get("train") or task_metrics.get("eval"):
            blocks.append(Paragraph([f"Trained on: {task_metrics.get('train', MISSING)}",
                                     f"Evaluated on: {task_metrics.get('eval', MISSING)}"]))
        if task_metrics.get("detectors"):
            blocks += [Heading("Frame level", 3), Table(*frame_table(task_metrics)),
                       Heading("Video level", 3), Table(*video_table(task_metrics))]
            header, rows = threshold_table(task_metrics)
            if rows:
                blocks += [Heading("At the threshold chosen on development data", 3), Table(header, rows)]
            header, rows = calibration_table(task_metrics)
            if rows:
                blocks += [Heading("Calibration", 3), Paragraph([CALIBRATION_NOTE]), Table(header, rows)]
        else:
            blocks.append(Paragraph(["No metrics for this task."]))
        figures = _task_figures(task, record)
        if figures:
            blocks.append(Figures(figures))
        if record.get("notes"):
            blocks.append(Bullets([(None, str(note)) for note in record["notes"]], notes=True))

    if plots_extra.get("detector_figures"):
        blocks += [Heading("Training examples"), Figures(list(plots_extra["detector_figures"]))]

    robustness = metrics.get("robustness")
    if robustness:
        blocks += [Heading("Robustness"), Paragraph([ROBUSTNESS_NOTE]), Table(*robustness_table(robustness))]
        png = _png_of(plots_extra.get("robustness", []))
        if png is not None:
            blocks.append(Figures([(png, "AUC under perturbations")]))

    blocks += [Heading("Glossary"), Definitions(GLOSSARY)]
    skipped = metrics.get("skipped") or []
    blocks.append(Heading(f"Skipped files ({len(skipped)})"))
    if skipped:
        blocks.append(Table(["File", "Stage", "Reason"],
                            [[str(s.get("path", MISSING)), str(s.get("stage", MISSING)), str(s.get("reason", MISSING))]
                             for s in skipped], fold=len(skipped) > FOLD_ROWS))
    else:
        blocks.append(Paragraph(["none"]))
    return Document(title, blocks)
