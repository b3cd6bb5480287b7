"""``dflab train`` and ``dflab evaluate`` (the work is :mod:`dflab.lab.single`'s)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import List, Optional

import typer
from rich.markup import escape

from dflab.cli.cluster import ClusterOption, cluster_for
from dflab.cli.common import (ParamOption, QuietOption, WorkersOption, command_line, output_dir, output_file, app,
                              out_console)
from dflab.cli.data import read_dataset
from dflab.cli.export import BackendOption
from dflab.cli.lab import print_summary
from dflab.runtime.choices import Backend
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
        output_file(out, "--out")
    else:
        output_dir(out, "--out")
    manifest = select_split(read_dataset(data_path, layout), split, data_path)
    _, thresholds = train_model(manifest, detector, out, trained_on=str(data_path), split=split,
                                valid_fraction=valid_fraction, seed=seed, workers=workers,
                                params=parse_params(param, [detector]).get(detector, {}))
    out_console.print(escape(f"model: {out}  (EER threshold on validation data: {thresholds['frame']:.3f})"))


@app.command("evaluate")
def evaluate_command(
    data_paths: List[Path] = typer.Argument(..., metavar="DATA",
                                            help="Dataset folders or manifests (several: one matrix across them)."),
    model: Optional[Path] = typer.Option(None, "--model", "-m", help="Trained model folder or .zip."),
    detector: Optional[str] = typer.Option(None, "--detector", "-d", help="A ready-to-use (pretrained) detector."),
    out: Path = typer.Option(Path("eval-out"), "--out", "-o", help="Output folder."),
    split: str = typer.Option("evaluation", help="Split to evaluate; 'all' uses every row. A dataset with no "
                                                 "splits (one folder of real and fake) is evaluated whole."),
    frames: int = typer.Option(32, "--frames", "-n", min=1, max=10_000,
                               help="Videos: frames sampled evenly over each video, as `dflab predict`."),
    n_boot: int = typer.Option(1000, min=1, max=100_000, help="Bootstrap resamples for the 95% confidence intervals."),
    seed: int = typer.Option(0),
    layout: Optional[str] = typer.Option(None),
    perturb: bool = typer.Option(False, "--perturb", help="Also re-score under JPEG 90/70/50, downscale x0.5, blur and noise."),
    workers: Optional[int] = WorkersOption,
    backend: Backend = BackendOption,
    cluster: Optional[str] = ClusterOption,
    quiet: bool = QuietOption,
) -> None:
    """Score datasets with a model and write scores, metrics, plots and a report.

    Videos are scored as `dflab predict` scores them (sampled frames, faces followed as persons, the
    most-fake person's mean P(fake)), with frame- and video-level metrics. With several datasets the
    report opens with one row per dataset: AUC with CIs, EER, and at the model's own threshold the
    share of real videos called fake and of fakes caught (also in matrix.csv).
    """
    from dflab.data import DataError
    from dflab.data.files import is_video_file
    from dflab.inference.distributed import scorer_loader
    from dflab.lab.single import EvaluationSet, evaluate_datasets

    set_quiet(quiet)
    sets = [EvaluationSet(name, str(path), *_evaluation_split(read_dataset(path, layout), split, path))
            for name, path in zip(_dataset_names(data_paths), data_paths)]
    if perturb and (len(sets) > 1 or sets[0].manifest["path"].map(is_video_file).any()):
        raise DataError("--perturb re-scores the images of one image dataset: give one DATA without videos")
    output_dir(out, "--out")
    scorer = load_scorer(model, detector, workers, Backend(backend).value)
    with cluster_for(cluster, scorer_loader(model, detector, Backend(backend).value)) as on_cluster:
        report_metrics = evaluate_datasets(scorer, sets if len(sets) > 1 else [replace(sets[0], name="evaluate")],
                                           out, model_label=str(model) if model else scorer.name,
                                           command=command_line(), n_boot=n_boot, seed=seed, perturb=perturb,
                                           cluster=on_cluster, frames_per_video=frames)
    if report_metrics.get("matrix"):
        _print_matrix(report_metrics["matrix"])
        out_console.print(escape(f"matrix: {(out / 'matrix.csv').resolve()}"))
    else:
        print_summary(report_metrics)
    out_console.print(escape(f"report: {(out / 'report.html').resolve()}"))


def _print_matrix(rows: list[dict]) -> None:
    from rich.table import Table

    from dflab.report.tables import matrix_table
    from dflab.runtime.progress import is_quiet

    if is_quiet():
        return
    header, body = matrix_table(rows)
    table = Table(show_header=True, header_style="bold")
    for column in header[:1] + header[2:]:
        table.add_column(column)
    for row in body:
        table.add_row(*(escape(cell) for cell in [Path(row[0]).name] + row[2:]))
    out_console.print(table)


def _evaluation_split(manifest, split: str, path: Path):
    """``(rows, split used)``: the rows of ``split``, or every row of a dataset that has no splits."""
    from dflab.data import select_split

    if split != "all" and set(manifest["split"]) == {"all"}:
        return manifest.reset_index(drop=True), "all"
    return select_split(manifest, split, path), split


def _dataset_names(paths: List[Path]) -> list[str]:
    """A short name per dataset (its folder or file name), made unique with a number where two clash."""
    names: list[str] = []
    for path in paths:
        base = Path(path).resolve().name or "data"
        name, number = base, 2
        while name in names:
            name, number = f"{base}-{number}", number + 1
        names.append(name)
    return names
