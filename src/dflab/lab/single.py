"""One detector on one dataset, outside the protocol: ``dflab train`` (train, choose the thresholds on
the validation part, save) and ``dflab evaluate`` (score, metrics with CIs, report; on several datasets,
a cross-database matrix)."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from dflab import __version__, data, metrics
from dflab.detectors import Detector
from dflab.lab.config import LabConfig
from dflab.lab.protocol import build_detector, level_thresholds
from dflab.lab.scoring import FRAMES_PER_VIDEO, read_scores, score_manifest, skipped_files


def train_model(manifest: pd.DataFrame, detector: str, out: Path, *, trained_on: str, split: str,
                valid_fraction: float = 0.2, seed: int = 0, workers: int | None = None,
                params: dict | None = None) -> tuple[Detector, dict[str, float]]:
    """Train ``detector`` on ``manifest`` less a validation part held out by video, choose each level's
    EER threshold on that part, save the model to ``out``; returns the model and its thresholds."""
    train, valid = data.split_by_group(manifest, valid_fraction=valid_fraction, seed=seed)
    model = build_detector(detector, LabConfig(task1=Path(trained_on), task23=None, detectors=[detector], out=out,
                                               seed=seed, workers=workers, detector_params={detector: params or {}}))
    model.fit(train, valid=valid)
    valid_scores = pd.DataFrame({"video": valid["video"], "label": valid["label"],
                                 "score": model.predict_proba(valid, on_error="nan")})
    thresholds = level_thresholds(valid_scores)
    model.save(out, info={"trained_on": trained_on, "split": split, "n_train": len(train),
                          "n_valid": len(valid), "seed": seed, "thresholds": thresholds})
    return model, thresholds


@dataclass
class EvaluationSet:
    """One dataset of an evaluation: ``name`` keys its rows in ``scores.csv`` and ``metrics.json``."""

    name: str
    label: str
    manifest: pd.DataFrame
    split: str


def evaluate_datasets(scorer: Detector, sets: list[EvaluationSet], out: Path, *, model_label: str, command: str,
                      n_boot: int = 1000, seed: int = 0, perturb: bool = False, cluster=None,
                      frames_per_video: int = FRAMES_PER_VIDEO) -> dict:
    """Score each set's manifest (resuming ``out/scores.csv``; on ``cluster``, a
    :class:`~dflab.runtime.cluster.OnCluster`, when given), measure every level at the model's own
    thresholds (chosen on its validation data when it was trained), optionally under perturbations,
    and write into one ``out``: one ``scores.csv`` (task = the set's name), a task per dataset in
    ``metrics.json`` and the report, and with two or more sets
    the cross-database matrix (:func:`matrix_row`, one row per dataset) in ``metrics.json``,
    ``matrix.csv`` and at the top of the report. Returns the metrics."""
    from dflab.report import write_report

    name = scorer.name
    thresholds = (scorer.model_info_ or {}).get("thresholds")
    tasks, all_scores, matrix = {}, [], []
    for evaluation_set in sets:
        scores = score_manifest(scorer, evaluation_set.manifest, scores_file=out / "scores.csv",
                                task=evaluation_set.name, detector_name=name, split=evaluation_set.split,
                                cluster=cluster, frames_per_video=frames_per_video)
        if not scores["score"].notna().any():
            reasons = scores.loc[scores["error"].astype(str) != "", "error"].astype(str)
            raise data.DataError(f"{evaluation_set.label}: nothing could be scored ({len(evaluation_set.manifest)} "
                                 "files" + (f"; first reason: {reasons.iloc[0]}" if len(reasons) else "") + ")")
        result = metrics.evaluate_levels(scores[["video", "label", "score"]], thresholds=thresholds, n_boot=n_boot,
                                         seed=seed)
        title = f"{name} on {evaluation_set.label} ({evaluation_set.split})"
        tasks[evaluation_set.name] = {"title": title, "train": model_label,
                                      "eval": f"{evaluation_set.label} ({evaluation_set.split})",
                                      "detectors": {name: result}}
        matrix.append(matrix_row(evaluation_set, result))
        all_scores.append(scores)
    several = len(sets) > 1
    report_metrics = {
        "meta": {"title": f"dflab evaluate: {name} on " + (f"{len(sets)} datasets" if several else sets[0].label),
                 "created": dt.datetime.now().isoformat(timespec="seconds"), "dflab_version": __version__,
                 "synthetic": False, "command": command, "seed": seed, "n_boot": n_boot, "model": model_label},
        **({"matrix": matrix} if several else {}),
        "tasks": tasks,
        "skipped": skipped_files(read_scores(out / "scores.csv")),
    }
    if perturb:
        from dflab.lab.robustness import evaluate_robustness

        evaluation_set, scores = sets[0], all_scores[0]
        scored = evaluation_set.manifest.merge(scores[["path", "score"]], on="path", how="left")
        report_metrics["robustness"] = {name: evaluate_robustness(
            scorer, evaluation_set.manifest, out, seed=seed, n_boot=min(n_boot, 200),
            baseline_scores=scored["score"].to_numpy())}
    (out / "metrics.json").write_text(json.dumps(report_metrics, indent=2, allow_nan=False))
    if several:
        pd.DataFrame(matrix).drop(columns=["frame_auc_ci", "video_auc_ci"]).assign(
            frame_auc_lo=[r["frame_auc_ci"][0] if r["frame_auc_ci"] else None for r in matrix],
            frame_auc_hi=[r["frame_auc_ci"][1] if r["frame_auc_ci"] else None for r in matrix],
            video_auc_lo=[r["video_auc_ci"][0] if r["video_auc_ci"] else None for r in matrix],
            video_auc_hi=[r["video_auc_ci"][1] if r["video_auc_ci"] else None for r in matrix],
        ).to_csv(out / "matrix.csv", index=False)
    write_report(out, pd.concat(all_scores, ignore_index=True), report_metrics)
    return report_metrics


def matrix_row(evaluation_set: EvaluationSet, levels: dict) -> dict:
    """One dataset's row of the cross-database matrix: frame and video (mean P(fake) of a video's
    frames, as ``dflab predict``) AUC with CIs and EER, and at the model's own video threshold the
    share of real videos called fake and of fake videos caught (None without a threshold)."""
    frame, video = levels["frame"], levels["video_mean_prob"]
    threshold = video.get("threshold")
    return {"dataset": evaluation_set.name, "data": evaluation_set.label, "split": evaluation_set.split,
            "real_videos": video["n_real"], "fake_videos": video["n_fake"], "frames": frame["n"],
            "frame_auc": frame["auc"], "frame_auc_ci": frame["auc_ci"], "frame_eer": frame["eer"],
            "video_auc": video["auc"], "video_auc_ci": video["auc_ci"], "video_eer": video["eer"],
            "threshold": threshold,
            "real_called_fake": video.get("bpcer") if threshold is not None else None,
            "fakes_caught": 1.0 - video["apcer"] if threshold is not None else None}
