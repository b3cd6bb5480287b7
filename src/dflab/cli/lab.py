"""``dflab lab`` and ``dflab demo``."""

from __future__ import annotations

import time
from pathlib import Path
from typing import List, Optional

import typer
from rich.markup import escape
from rich.table import Table

from dflab.cli.common import (FaceDetectorName, FaceDetectorOption, ParamOption, QuietOption, UserError, WorkersOption,
                              command_line, existing_path, output_dir, app, out_console)
from dflab.cli.export import BackendOption
from dflab.runtime.choices import Backend
from dflab.runtime.progress import is_quiet, set_quiet


@app.command("lab")
def lab_command(
    task1: Path = typer.Option(..., help="Database for Task 1 (development + evaluation), e.g. ../shared/datasets/Task_1."),
    task23: Optional[Path] = typer.Option(None, help="Database for Tasks 2 and 3, e.g. ../shared/datasets/Task_2_3."),
    detector: List[str] = typer.Option(..., "--detector", "-d", help="Detector name (repeat for several)."),
    out: Path = typer.Option(Path("out"), "--out", "-o", help="Output folder (an existing one is resumed)."),
    seed: int = typer.Option(0, help="Seed for splits, training and bootstrap."),
    n_boot: int = typer.Option(1000, min=1, max=100_000, help="Bootstrap resamples for the 95% confidence intervals."),
    task3: bool = typer.Option(True, "--task3/--no-task3", help="Run Task 3 (train also on the Task 2/3 development set)."),
    task3_data: List[Path] = typer.Option(
        [], "--task3-data", help="More public data whose development rows join Task 3's training part (repeatable)."),
    tasks: str = typer.Option("1,2,3", "--tasks", help="Tasks to run, e.g. 3: the others' results in --out are kept."),
    per_video: Optional[int] = typer.Option(None, min=1, help="Quick run: at most this many frames per video."),
    max_videos: Optional[int] = typer.Option(None, min=1, help="Quick run: at most this many videos per split and label."),
    layout: Optional[str] = typer.Option(None, help="Override the detected dataset layout."),
    frames_per_video: int = typer.Option(16, min=1, max=10_000, help="Video datasets: frames sampled per video for face crops."),
    face_detector: FaceDetectorName = FaceDetectorOption,
    param: List[str] = ParamOption,
    workers: Optional[int] = WorkersOption,
    backend: Backend = BackendOption,
    quiet: bool = QuietOption,
) -> None:
    """Run Task 1 (intra-database), Task 2 (inter-database) and Task 3, and write the report.

    Video datasets (FaceForensics++, DFDC, real/fake folders of videos) are turned into face crops first."""
    from dflab.lab.config import LabConfig
    from dflab.lab.protocol import run_lab

    set_quiet(quiet)
    chosen_tasks = _parse_tasks(tasks)
    # Without --task23 the default runs Task 1 alone; naming Task 2 or 3 (or their data) asks for it.
    if task23 is None and (task3_data or (tasks != "1,2,3" and set(chosen_tasks) & {2, 3})):
        raise UserError("Tasks 2 and 3 need --task23 (their evaluation data)")
    if task3_data and (not task3 or 3 not in chosen_tasks):
        raise UserError("--task3-data is training data for Task 3: drop --no-task3 / include 3 in --tasks")
    existing_path(task1, "Task 1 database")
    if task23 is not None:
        existing_path(task23, "Task 2/3 database")
    for extra in task3_data:
        existing_path(extra, "--task3-data database")
    _check_detectors(detector)
    from dflab.detectors.registry import parse_params

    detector_params = parse_params(param, detector)
    output_dir(out, "--out")
    config = LabConfig(task1=task1, task23=task23, detectors=detector, out=out, seed=seed, n_boot=n_boot,
                       task3=task3, task3_data=list(task3_data), tasks=chosen_tasks, per_video=per_video, max_videos=max_videos, layout=layout, workers=workers,
                       frames_per_video=frames_per_video, face_detector=FaceDetectorName(face_detector).value,
                       command=command_line(), backend=Backend(backend).value,
                       detector_params=detector_params)
    started = time.time()
    result = run_lab(config)
    print_summary(result)
    out_console.print(escape(f"report: {(out / 'report.html').resolve()}  ({time.time() - started:.0f} s)"))


def _parse_tasks(text: str) -> tuple[int, ...]:
    try:
        chosen = sorted({int(part) for part in text.replace(" ", "").split(",") if part})
    except ValueError:
        chosen = []
    if not chosen or not set(chosen) <= {1, 2, 3}:
        raise UserError(f"--tasks {text!r}: expected task numbers from 1, 2, 3 separated by commas, e.g. 3 or 1,2")
    return tuple(chosen)


def _check_detectors(names: List[str]) -> None:
    from dflab.detectors import get

    for name in names:
        get(name)


def print_summary(result: dict) -> None:
    if is_quiet():
        return
    from dflab.report.tables import format_metric

    table = Table(show_header=True, header_style="bold")
    for column in ("task", "detector", "frame AUC", "frame EER", "video AUC", "video EER"):
        table.add_column(column)
    for task, record in result["tasks"].items():
        for name, entry in record["detectors"].items():
            if "error" in entry:
                table.add_row(task, name, entry["error"], "", "", "")
                continue
            frame, video = entry["frame"], entry["video_mean_prob"]
            table.add_row(task, name, format_metric(frame["auc"], frame.get("auc_ci")),
                          format_metric(frame["eer"], frame.get("eer_ci")),
                          format_metric(video["auc"], video.get("auc_ci")),
                          format_metric(video["eer"], video.get("eer_ci")))
    out_console.print(table)
    if result.get("skipped"):
        out_console.print(f"[yellow]{len(result['skipped'])} files skipped (listed in the report)[/yellow]")


@app.command("demo")
def demo_command(
    out: Path = typer.Option(Path("demo-out"), "--out", "-o", help="Output folder."),
    detector: List[str] = typer.Option(["ela-logreg", "ela-rf"], "--detector", "-d",
                                       help="Detectors to run (repeat for several)."),
    seed: int = typer.Option(0, help="Seed of the generated data and of the lab."),
    workers: Optional[int] = WorkersOption,
    quiet: bool = QuietOption,
) -> None:
    """Generate a small synthetic lab (no data needed), run the lab on it and write the report."""
    from dflab.lab.demo import run_demo

    set_quiet(quiet)
    _check_detectors(detector)
    output_dir(out, "--out")
    started = time.time()
    result = run_demo(out, detectors=detector, seed=seed, workers=workers, command=command_line())
    print_summary(result)
    out_console.print("The demo data is synthetic: its numbers say nothing about real deepfakes.")
    out_console.print(escape(f"report: {(out / 'report.html').resolve()}  ({time.time() - started:.0f} s)"))
