"""``dflab train`` and ``dflab evaluate`` (the work is :mod:`dflab.lab.single`'s)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
from rich.markup import escape

from dflab.cli.cluster import ClusterOption, cluster_for
from dflab.cli.common import (ParamOption, QuietOption, WorkersOption, _command_line, _output_dir, _output_file, app,
                              out_console)
from dflab.cli.data import _read_dataset
from dflab.cli.export import Backend, BackendOption
from dflab.cli.lab import _print_summary
from dflab.inference.models import load_scorer
from dflab.runtime.progress import set_quiet


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
    from dflab.data import select_split
    from dflab.detectors.registry import parse_params
    from dflab.lab.single import train_model

    set_quiet(quiet)
    if out.suffix.lower() == ".zip":
        _output_file(out, "--out")
    else:
        _output_dir(out, "--out")
    manifest = select_split(_read_dataset(data_path, layout), split, data_path)
    _, thresholds = train_model(manifest, detector, out, trained_on=str(data_path), split=split,
                                valid_fraction=valid_fraction, seed=seed, workers=workers,
                                params=parse_params(param, [detector]).get(detector, {}))
    out_console.print(escape(f"model: {out}  (EER threshold on validation data: {thresholds['frame']:.3f})"))


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
    from dflab.data import select_split
    from dflab.inference.distributed import scorer_loader
    from dflab.lab.single import evaluate_model

    set_quiet(quiet)
    manifest = select_split(_read_dataset(data_path, layout), split, data_path)
    _output_dir(out, "--out")
    scorer = load_scorer(model, detector, workers, Backend(backend).value)
    with cluster_for(cluster, scorer_loader(model, detector, Backend(backend).value)) as on_cluster:
        report_metrics = evaluate_model(scorer, manifest, out, data_label=str(data_path), split=split,
                                        model_label=str(model) if model else scorer.name, command=_command_line(),
                                        n_boot=n_boot, seed=seed, perturb=perturb, cluster=on_cluster)
    _print_summary(report_metrics)
    out_console.print(escape(f"report: {(out / 'report.html').resolve()}"))
