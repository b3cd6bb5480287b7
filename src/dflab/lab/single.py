"""One detector on one dataset, outside the protocol: ``dflab train`` (train, choose the thresholds on
the validation part, save) and ``dflab evaluate`` (score, metrics with CIs, report)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pandas as pd

from dflab import __version__, data, metrics
from dflab.detectors import Detector
from dflab.lab.config import LabConfig
from dflab.lab.protocol import build_detector, level_thresholds
from dflab.lab.scoring import read_scores, score_manifest, skipped_files


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


def evaluate_model(scorer: Detector, manifest: pd.DataFrame, out: Path, *, data_label: str, split: str,
                   model_label: str, command: str, n_boot: int = 1000, seed: int = 0, perturb: bool = False,
                   cluster=None) -> dict:
    """Score ``manifest`` (resuming ``out/scores.csv``; on ``cluster``, a
    :class:`~dflab.runtime.cluster.OnCluster`, when given), measure every level at the model's own
    thresholds (chosen on its validation data when it was trained), optionally under perturbations,
    and write ``metrics.json`` and the report into ``out``. Returns the metrics."""
    from dflab.report import write_report

    name = scorer.name
    scores = score_manifest(scorer, manifest, scores_file=out / "scores.csv", task="evaluate", detector_name=name,
                            split=split, cluster=cluster)
    thresholds = (scorer.model_info_ or {}).get("thresholds")
    result = metrics.evaluate_levels(scores[["video", "label", "score"]], thresholds=thresholds, n_boot=n_boot,
                                     seed=seed)
    report_metrics = {
        "meta": {"title": f"dflab evaluate: {name} on {data_label}",
                 "created": dt.datetime.now().isoformat(timespec="seconds"), "dflab_version": __version__,
                 "synthetic": False, "command": command, "seed": seed, "n_boot": n_boot, "model": model_label},
        "tasks": {"evaluate": {"title": f"{name} on {data_label} ({split})", "train": model_label,
                               "eval": f"{data_label} ({split})", "detectors": {name: result}}},
        "skipped": skipped_files(read_scores(out / "scores.csv")),
    }
    if perturb:
        from dflab.metrics.robustness import evaluate_robustness

        scored = manifest.merge(scores[["path", "score"]], on="path", how="left")
        report_metrics["robustness"] = {name: evaluate_robustness(
            scorer, manifest, out, seed=seed, n_boot=min(n_boot, 200), baseline_scores=scored["score"].to_numpy())}
    (out / "metrics.json").write_text(json.dumps(report_metrics, indent=2, allow_nan=False))
    write_report(out, scores, report_metrics)
    return report_metrics

