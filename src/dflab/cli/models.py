"""``dflab train`` and ``dflab evaluate``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer
from rich.markup import escape

from dflab import __version__
from dflab.cli.common import (ParamOption, QuietOption, UserError, WorkersOption, _command_line, _output_dir,
                              _output_file, app, out_console)
from dflab.cli.data import _read_dataset
from dflab.cli.lab import _print_summary, parse_detector_params
from dflab.inference.models import load_scorer
from dflab.runtime.progress import set_quiet
from dflab.cli.cluster import ClusterOption, cluster_for
from dflab.cli.export import Backend, BackendOption



@app.command("train")
def train_command(
    data_path: Path = typer.Argument(..., metavar="DATA", help="Dataset folder or manifest."),
    detector: str = typer.Option(..., "--detector", "-d", help="Detector name (see `dflab detectors`)."),
    out: Path = typer.Option(..., "--out", "-o", help="Model folder (or .zip) to write."),
    split: str = typer.Option("development", help="Split to train on; 'all' uses every row."),
    valid_fraction: float = typer.Option(0.2, min=0.01, max=0.99, help="Part of the training split held out by video for validation."),
    seed: int = typer.Option(0),
    layout: Optional[str] = typer.Option(None, help="Override the detected dataset layout."),
    param: List[str] = ParamOption,
    workers: Optional[int] = WorkersOption,
    quiet: bool = QuietOption,
) -> None:
    """Train a detector on a dataset's development split (validation held out by video)."""
    import pandas as pd

    from dflab import data
    from dflab.lab.config import LabConfig
    from dflab.lab.protocol import build_detector, level_thresholds

    set_quiet(quiet)
    if out.suffix.lower() == ".zip":
        _output_file(out, "--out")
    else:
        _output_dir(out, "--out")
    manifest = _select_split(_read_dataset(data_path, layout), split, data_path)
    train, valid = data.split_by_group(manifest, valid_fraction=valid_fraction, seed=seed)
    model = build_detector(detector, LabConfig(task1=data_path, task23=None, detectors=[detector], out=out,
                                               seed=seed, workers=workers,
                                               detector_params=parse_detector_params(param, [detector])))
    model.fit(train, valid=valid)
    valid_scores = pd.DataFrame({"video": valid["video"], "label": valid["label"],
                                 "score": model.predict_proba(valid, on_error="nan")})
    thresholds = level_thresholds(valid_scores)
    model.save(out, info={"trained_on": str(data_path), "split": split, "n_train": len(train),
                          "n_valid": len(valid), "seed": seed, "thresholds": thresholds})
    out_console.print(escape(f"model: {out}  (EER threshold on validation data: {thresholds['frame']:.3f})"))


def _select_split(manifest, split: str, source: Path):
    if split == "all":
        return manifest.reset_index(drop=True)
    part = manifest[manifest["split"] == split]
    if part.empty:
        splits = ", ".join(sorted(manifest["split"].unique()))
        raise UserError(f"{source}: no '{split}' split (has: {splits}); use --split")
    return part.reset_index(drop=True)


@app.command("evaluate")
def evaluate_command(
    data_path: Path = typer.Argument(..., metavar="DATA", help="Dataset folder or manifest."),
    model: Optional[Path] = typer.Option(None, "--model", "-m", help="Trained model folder or .zip."),
    detector: Optional[str] = typer.Option(None, "--detector", "-d", help="A ready-to-use (pretrained) detector."),
    out: Path = typer.Option(Path("eval-out"), "--out", "-o", help="Output folder."),
    split: str = typer.Option("evaluation", help="Split to evaluate; 'all' uses every row."),
    n_boot: int = typer.Option(1000, min=1, max=100_000, help="Bootstrap resamples for the 95% confidence intervals."),
    seed: int = typer.Option(0),
    layout: Optional[str] = typer.Option(None),
    perturb: bool = typer.Option(False, "--perturb", help="Also re-score under JPEG 90/70/50, downscale x0.5, blur and noise."),
    workers: Optional[int] = WorkersOption,
    backend: Backend = BackendOption,
    cluster: Optional[str] = ClusterOption,
    quiet: bool = QuietOption,
) -> None:
    """Score a dataset with a model and write scores, metrics, plots and a report."""
    import datetime as dt

    from dflab import metrics as metrics_module
    from dflab.inference.distributed import scorer_loader
    from dflab.lab.scoring import read_scores, score_manifest, skipped_files
    from dflab.report.document import write_report

    set_quiet(quiet)
    manifest = _select_split(_read_dataset(data_path, layout), split, data_path)
    _output_dir(out, "--out")
    scorer = load_scorer(model, detector, workers, Backend(backend).value)
    name = scorer.name
    with cluster_for(cluster, scorer_loader(model, detector, Backend(backend).value)) as on_cluster:
        scores = score_manifest(scorer, manifest, scores_file=out / "scores.csv", task="evaluate",
                                detector_name=name, split=split, cluster=on_cluster)
    threshold = (getattr(scorer, "model_info_", {}) or {}).get("thresholds")
    result = metrics_module.evaluate_levels(scores[["video", "label", "score"]], thresholds=threshold,
                                            n_boot=n_boot, seed=seed)
    report_metrics = {
        "meta": {"title": f"dflab evaluate: {name} on {data_path}", "created": dt.datetime.now().isoformat(timespec="seconds"),
                 "dflab_version": __version__, "synthetic": False, "command": _command_line(), "seed": seed,
                 "n_boot": n_boot, "model": str(model) if model else name},
        "tasks": {"evaluate": {"title": f"{name} on {data_path} ({split})", "train": str(model or name),
                               "eval": f"{data_path} ({split})", "detectors": {name: result}}},
        "skipped": skipped_files(read_scores(out / "scores.csv")),
    }
    if perturb:
        from dflab.metrics.robustness import evaluate_robustness

        scored = manifest.merge(scores[["path", "score"]], on="path", how="left")
        report_metrics["robustness"] = {name: evaluate_robustness(
            scorer, manifest, out, seed=seed, n_boot=min(n_boot, 200), baseline_scores=scored["score"].to_numpy())}
    (out / "metrics.json").write_text(json.dumps(report_metrics, indent=2, allow_nan=False))
    write_report(out, scores, report_metrics)
    _print_summary(report_metrics)
    out_console.print(escape(f"report: {(out / 'report.html').resolve()}"))
