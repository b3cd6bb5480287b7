"""The ``dflab`` command: wires the stages together (data -> detectors -> scores -> metrics -> report).

User mistakes and bad input exit with status 2 and one line on stderr, never a traceback.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
import time
from pathlib import Path
from typing import List, Optional

from enum import Enum

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from dflab import __version__
from dflab.memory import keep_freed_memory
from dflab.progress import is_quiet, printable, set_quiet

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="deepfake-lab: is this face image or video a deepfake? And the detection lab that measures it.")
data_app = typer.Typer(no_args_is_help=True, help="Datasets and manifests.")
app.add_typer(data_app, name="data")
faces_app = typer.Typer(no_args_is_help=True, help="Face extraction from videos and full frames.")
app.add_typer(faces_app, name="faces")
weights_app = typer.Typer(no_args_is_help=True, help="Published third-party weights (list, fetch with sha256 check).")
app.add_typer(weights_app, name="weights")

out_console = Console()
err_console = Console(stderr=True)

QuietOption = typer.Option(False, "--quiet", "-q", help="No progress bars or informational messages.")
class FaceDetectorName(str, Enum):
    mtcnn = "mtcnn"
    blazeface = "blazeface"


class FacePolicy(str, Enum):
    largest = "largest"
    all = "all"


FaceDetectorOption = typer.Option(
    FaceDetectorName.mtcnn, "--face-detector",
    help="mtcnn (weights in facenet-pytorch) or blazeface (about 4x faster on CPU; `dflab weights fetch blazeface`).")
WorkersOption = typer.Option(None, "--workers", "-j", min=0, max=256, help="Worker processes for feature extraction (default: all cores).")
ParamOption = typer.Option(
    [], "--param", "-p", metavar="[DETECTOR.]KEY=VALUE",
    help="Detector parameter (repeatable), e.g. epochs=5 or efficientnet-lite0.epochs=5; VALUE is JSON or text.")


class FacesMode(str, Enum):
    auto = "auto"
    detect = "detect"
    whole = "whole"


class Aggregation(str, Enum):
    mean_prob = "mean_prob"
    mean_logit = "mean_logit"
    confident = "confident"


class UserError(Exception):
    """A mistake in how dflab was called; printed as one line, exit status 2."""


def _user_errors() -> tuple[type[BaseException], ...]:
    from dflab.data import DataError
    from dflab.detectors.base import ModelFileError, NotFittedError, TrainingDataError
    from dflab.detectors.registry import UnknownDetectorError
    from dflab.images import ImageError
    from dflab.lab import LabBusyError
    from dflab.metrics import MetricsError
    from dflab.video import VideoError
    from dflab.weights import WeightsError

    return (UserError, DataError, ImageError, LabBusyError, MetricsError, ModelFileError, NotFittedError, TrainingDataError,
            UnknownDetectorError,
            WeightsError, VideoError, FileNotFoundError, NotADirectoryError, PermissionError)


def _click_exceptions() -> tuple[type, type, type]:
    """(ClickException, UsageError, NoArgsIsHelpError) of the click that typer runs on: typer >= 0.29
    vendors its own copy (``typer._click``), whose classes are not click's."""
    try:
        from typer._click import exceptions
    except ImportError:  # typer before 0.29 runs on click itself
        from click import exceptions
    return exceptions.ClickException, exceptions.UsageError, getattr(exceptions, "NoArgsIsHelpError", ())


def _text_columns_hold_any_file_name() -> None:
    """pandas 3 stores text in Arrow strings, which must be valid UTF-8; a file name that is not
    (held by Python as surrogate escapes) would crash the first table that lists it. The command keeps
    pandas' object strings, which hold any name, and writes them back as the bytes they were."""
    import pandas as pd

    try:
        pd.set_option("future.infer_string", False)
    except (KeyError, ValueError, pd.errors.OptionError):  # a pandas without the option stores objects anyway
        pass


def _usage_error_line(err) -> str:
    """One line for a usage mistake: what was wrong and where the help is."""
    ctx = getattr(err, "ctx", None)
    command = ctx.command_path if ctx is not None else "dflab"
    return f"{err.format_message()} (see `{command} --help`)"


def main() -> None:
    """Console entry point: user mistakes and bad input print one line and exit 2, never a traceback."""
    keep_freed_memory()
    _text_columns_hold_any_file_name()
    click_exception, usage_error, no_args_is_help = _click_exceptions()
    try:
        app(standalone_mode=False)
    except typer.Exit as exit_:
        sys.exit(exit_.exit_code)
    except typer.Abort:
        err_console.print("aborted")
        sys.exit(130)
    except KeyboardInterrupt:
        err_console.print("interrupted: finished results are kept; run the same command again to resume")
        sys.exit(130)
    except Exception as err:  # noqa: BLE001 - classified below; unknown errors keep their traceback
        if no_args_is_help and isinstance(err, no_args_is_help):
            err.show()  # the help text itself
            sys.exit(0)
        if isinstance(err, usage_error):
            _print_error(_usage_error_line(err))
            sys.exit(2)
        if isinstance(err, click_exception):
            _print_error(err.format_message())
            sys.exit(2)
        if isinstance(err, _user_errors()):
            _print_error(str(err) or type(err).__name__)
            sys.exit(2)
        raise


def _print_error(message: str) -> None:
    line = message.strip().splitlines()[0] if message.strip() else "error"
    err_console.print(f"[red]error:[/red] {escape(printable(line))}", highlight=False, soft_wrap=True)


def _version_callback(value: bool) -> None:
    if value:
        out_console.print(f"dflab {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_version_callback, is_eager=True,
                                       help="Print the version and exit.")) -> None:
    pass


def _command_line() -> str:
    return "dflab " + " ".join(shlex.quote(a) for a in sys.argv[1:])


def _output_dir(path: Path, option: str) -> Path:
    """An output folder, created with its parents; one-line errors when that cannot be."""
    if path.exists() and not path.is_dir():
        raise UserError(f"{path}: {option} must be a folder, but a file of that name exists")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(f"{path}: cannot create the {option} folder ({err.strerror or err})") from None
    if not os.access(path, os.W_OK):
        raise UserError(f"{path}: the {option} folder is not writable")
    return path


def _output_file(path: Path | None, option: str) -> Path | None:
    """An output file's path, its parent folders created; refused when it is a folder."""
    if path is None:
        return None
    if path.is_dir():
        raise UserError(f"{path}: {option} must be a file, but it is a folder")
    _output_dir(path.parent, f"{option} parent")
    if path.exists() and not os.access(path, os.W_OK):
        raise UserError(f"{path}: {option} is not writable")
    return path


def _existing(path: Path, what: str) -> Path:
    if not path.exists():
        raise UserError(f"{path}: {what} not found")
    return path


# -- detectors ----------------------------------------------------------------------------------

@app.command("detectors")
def detectors_command() -> None:
    """List the available detectors, one line each, and which are ready to use without training."""
    from dflab.detectors import available, create

    table = Table(show_header=True, header_style="bold", box=None)
    table.add_column("name")
    table.add_column("family")
    table.add_column("status")
    table.add_column("description")
    for name, entry in available().items():
        if entry.cls.trainable:
            status = "train first"
        else:
            status = "ready" if create(name).is_fitted() else "needs weights"
        table.add_row(name, entry.family, status, entry.description)
    out_console.print(table)
    out_console.print("dflab predict FILE uses dflab-face when no --model or --detector is given.")


# -- faces --------------------------------------------------------------------------------------

@faces_app.command("extract")
def faces_extract(
    sources: List[Path] = typer.Argument(..., help="Videos, images or folders of them."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder: crops/, faces.csv, sources.csv."),
    frames: int = typer.Option(32, "--frames", "-n", min=1, max=10_000, help="Frames sampled evenly over each video."),
    face_detector: FaceDetectorName = FaceDetectorOption,
    scale: float = typer.Option(1.3, min=0.1, max=10.0, help="Crop size relative to the detected box (margin)."),
    size: int = typer.Option(256, min=16, max=4096, help="Output crop size in pixels."),
    square: bool = typer.Option(True, "--square/--no-square", help="Square crops."),
    policy: FacePolicy = typer.Option(FacePolicy.largest, help="largest: one face per frame; all: every face, with a track id."),
    quiet: bool = QuietOption,
) -> None:
    """Detect and crop faces; write a manifest row per crop and a status per source."""
    from dflab.faces import extract_faces, read_sources

    set_quiet(quiet)
    for source in sources:
        _existing(source, "input")
    out = _output_dir(out, "--out")
    crops = extract_faces([str(s) for s in sources], out, n_frames=frames, detector=FaceDetectorName(face_detector).value,
                          scale=scale, size=size, square=square, policy=FacePolicy(policy).value)
    status = read_sources(out)
    table = Table(show_header=True, header_style="bold", box=None)
    for column in ("source", "status", "frames", "with face", "faces", "reason"):
        table.add_column(column)
    for row in status.itertuples():
        table.add_row(*(escape(str(value)) for value in (row.source, row.status, row.frames, row.frames_with_face,
                                                          row.faces, row.reason)))
    if not is_quiet():
        out_console.print(table)
    out_console.print(escape(f"{len(crops)} face crops -> {out / 'faces.csv'}; status per source -> {out / 'sources.csv'}"))


# -- weights ------------------------------------------------------------------------------------

@weights_app.command("list")
def weights_list() -> None:
    """The weight files dflab knows: shipped with the package (ready to use) or fetched, with their sha256."""
    from dflab import weights
    from dflab.detectors.ready import ready_model_dir, ready_models

    table = Table(show_header=True, header_style="bold", box=None)
    for column in ("name", "present", "sha256", "description", "licence"):
        table.add_column(column, overflow="fold")
    for name in ready_models():
        arrays = ready_model_dir(name) / "arrays.safetensors"
        table.add_row(name, "shipped", weights.sha256_file(arrays), f"ready detector (model card: {arrays.parent / 'MODEL_CARD.md'})",
                      "research use (DFDC and UADFV terms)")
    for name, entry in weights.WEIGHTS.items():
        present = "yes" if weights.local_path(name).exists() else "no"
        table.add_row(name, present, entry.sha256 or "", entry.description, entry.licence)
    out_console.print(table)
    out_console.print(f"fetched weights folder: {weights.weights_dir()} (set $DFLAB_WEIGHTS to change it)")


@weights_app.command("fetch")
def weights_fetch(name: str = typer.Argument(..., help="Name from `dflab weights list`."),
                  url: Optional[str] = typer.Option(None, help="Fetch from this URL instead (a mirror, file://...)."),
                  dest: Optional[Path] = typer.Option(None, help="Folder or file to write (default: the weights folder).")
                  ) -> None:
    """Download a weight file and check its sha256."""
    from dflab import weights

    path = weights.fetch(name, dest=dest, url_override=url)
    out_console.print(escape(f"{name}: {path} (sha256 verified)"))


# -- data ---------------------------------------------------------------------------------------

@data_app.command("summary")
def data_summary(path: Path = typer.Argument(..., help="Dataset folder, or a manifest/CSV file."),
                 layout: Optional[str] = typer.Option(None, help="Override the detected layout."),
                 ) -> None:
    """Counts per split x label, videos and pairs."""
    from dflab import data

    manifest = _read_dataset(path, layout)
    found = layout or (data.detect_layout(path) if path.is_dir() else "manifest")
    out_console.print(f"[bold]{escape(str(path))}[/bold] ({escape(str(manifest['dataset'].iloc[0]))}, layout {found})")
    out_console.print(data.summary_text(manifest), highlight=False)


@data_app.command("manifest")
def data_manifest(path: Path = typer.Argument(..., help="Dataset folder."),
                  out: Path = typer.Option(..., "--out", "-o", help="Output .csv or .parquet."),
                  layout: Optional[str] = typer.Option(None, help="Override the detected layout.")) -> None:
    """Scan a dataset folder and save its manifest."""
    from dflab import data

    manifest = _read_dataset(path, layout)
    data.save_manifest(manifest, _output_file(out, "--out"))
    out_console.print(escape(f"{len(manifest)} rows -> {out}"))


def _read_dataset(path: Path, layout: Optional[str]):
    from dflab import data

    _existing(path, "dataset")
    if path.is_file() and path.suffix.lower() == ".parquet":
        return data.load_manifest(path)
    if path.is_file() and path.suffix.lower() == ".csv" and layout in (None, "csv"):
        return data.scan(path, layout="csv")
    return data.scan(path, layout=layout)


# -- lab ----------------------------------------------------------------------------------------

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
    quiet: bool = QuietOption,
) -> None:
    """Run Task 1 (intra-database), Task 2 (inter-database) and Task 3, and write the report.

    Video datasets (FaceForensics++, DFDC, real/fake folders of videos) are turned into face crops first."""
    from dflab.lab import LabConfig, run_lab

    set_quiet(quiet)
    chosen_tasks = _parse_tasks(tasks)
    # Without --task23 the default runs Task 1 alone; naming Task 2 or 3 (or their data) asks for it.
    if task23 is None and (task3_data or (tasks != "1,2,3" and set(chosen_tasks) & {2, 3})):
        raise UserError("Tasks 2 and 3 need --task23 (their evaluation data)")
    if task3_data and (not task3 or 3 not in chosen_tasks):
        raise UserError("--task3-data is training data for Task 3: drop --no-task3 / include 3 in --tasks")
    _existing(task1, "Task 1 database")
    if task23 is not None:
        _existing(task23, "Task 2/3 database")
    for extra in task3_data:
        _existing(extra, "--task3-data database")
    _check_detectors(detector)
    detector_params = parse_detector_params(param, detector)
    _output_dir(out, "--out")
    config = LabConfig(task1=task1, task23=task23, detectors=detector, out=out, seed=seed, n_boot=n_boot,
                       task3=task3, task3_data=list(task3_data), tasks=chosen_tasks, per_video=per_video, max_videos=max_videos, layout=layout, workers=workers,
                       frames_per_video=frames_per_video, face_detector=FaceDetectorName(face_detector).value,
                       command=_command_line(),
                       detector_params=detector_params)
    started = time.time()
    result = run_lab(config)
    _print_summary(result)
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


def parse_detector_params(items: List[str], detectors: List[str]) -> dict[str, dict]:
    """``[DETECTOR.]KEY=VALUE`` items -> {detector: {key: value}}; without a detector prefix the
    parameter goes to every detector that accepts it. Unknown keys are a user error."""
    from dflab.detectors import create

    accepted = {name: create(name).get_params(deep=False) for name in detectors}
    params: dict[str, dict] = {}
    for item in items:
        target, equals, raw = item.partition("=")
        if not equals or not target:
            raise UserError(f"--param {item!r}: expected [DETECTOR.]KEY=VALUE, e.g. epochs=5")
        name, dot, key = target.rpartition(".")
        if dot and name not in accepted:
            raise UserError(f"--param {item!r}: {name!r} is not one of the chosen detectors ({', '.join(detectors)})")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        targets = [name] if dot else [n for n in detectors if key in accepted[n]]
        if not targets or any(key not in accepted[n] for n in targets):
            where = name if dot else "any chosen detector"
            raise UserError(f"--param {item!r}: {where} has no parameter {key!r}")
        for target_name in targets:
            params.setdefault(target_name, {})[key] = value
    return params


def _print_summary(result: dict) -> None:
    if is_quiet():
        return
    from dflab.report import format_metric

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


# -- demo ---------------------------------------------------------------------------------------

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
    from dflab.demo import run_demo

    set_quiet(quiet)
    _check_detectors(detector)
    _output_dir(out, "--out")
    started = time.time()
    result = run_demo(out, detectors=detector, seed=seed, workers=workers, command=_command_line())
    _print_summary(result)
    out_console.print("The demo data is synthetic: its numbers say nothing about real deepfakes.")
    out_console.print(escape(f"report: {(out / 'report.html').resolve()}  ({time.time() - started:.0f} s)"))


# -- train / evaluate / predict -----------------------------------------------------------------

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
    from dflab.lab import LabConfig, build_detector, level_thresholds

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


def _load_model(model: Optional[Path], detector: Optional[str], workers: Optional[int]):
    """The model of ``--model``, else the detector of ``--detector``, else the shipped ready detector."""
    from dflab.detectors import create, load_detector
    from dflab.detectors.ready import DEFAULT_READY, ready_models

    if model is not None:
        return load_detector(_existing(model, "model"), workers=workers) if workers else load_detector(model)
    if detector is None:
        if DEFAULT_READY not in ready_models():
            raise UserError("give --model PATH (a trained model) or --detector NAME: the ready detector "
                            f"{DEFAULT_READY} is not installed with this package")
        return create(DEFAULT_READY).fit()
    built = create(detector)
    if not built.is_fitted():
        raise UserError(f"detector {detector} needs training first: `dflab train DATA --detector {detector} --out MODEL`")
    return built


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
    quiet: bool = QuietOption,
) -> None:
    """Score a dataset with a model and write scores, metrics, plots and a report."""
    import datetime as dt

    from dflab import metrics as metrics_module
    from dflab.lab import read_scores, score_manifest, skipped_files
    from dflab.report import write_report

    set_quiet(quiet)
    manifest = _select_split(_read_dataset(data_path, layout), split, data_path)
    _output_dir(out, "--out")
    scorer = _load_model(model, detector, workers)
    name = scorer.name
    scores = score_manifest(scorer, manifest, scores_file=out / "scores.csv", task="evaluate", detector_name=name,
                            split=split)
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
        from dflab.robustness import evaluate_robustness

        scored = manifest.merge(scores[["path", "score"]], on="path", how="left")
        report_metrics["robustness"] = {name: evaluate_robustness(
            scorer, manifest, out, seed=seed, n_boot=min(n_boot, 200), baseline_scores=scored["score"].to_numpy())}
    (out / "metrics.json").write_text(json.dumps(report_metrics, indent=2, allow_nan=False))
    write_report(out, scores, report_metrics)
    _print_summary(report_metrics)
    out_console.print(escape(f"report: {(out / 'report.html').resolve()}"))


@app.command("predict")
def predict_command(
    target: Path = typer.Argument(..., help="An image, a video, or a folder of them."),
    model: Optional[Path] = typer.Option(None, "--model", "-m", help="Trained model folder or .zip."),
    detector: Optional[str] = typer.Option(
        None, "--detector", "-d", help="A ready-to-use detector (default: the shipped dflab-face)."),
    csv: Optional[Path] = typer.Option(None, "--csv", help="Also write the scores as CSV."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Also write the scores as JSON."),
    threshold: Optional[float] = typer.Option(
        None, min=0.0, max=1.0,
        help="Decision threshold on P(fake) for the verdict (default: the model's validation EER threshold, else 0.5)."),
    faces: FacesMode = typer.Option(
        FacesMode.auto, "--faces",
        help="Images: detect = find every face and frame it as the model was trained; whole = score the image "
             "as given (a face crop); auto = detect when the model records its face framing (dflab-face does)."),
    frames: int = typer.Option(32, "--frames", "-n", min=1, max=10_000, help="Videos: frames sampled evenly over the video."),
    aggregation: Aggregation = typer.Option(Aggregation.mean_prob,
                                            help="Videos: mean_prob, mean_logit or confident (DFDC winner's rule)."),
    face_detector: FaceDetectorName = FaceDetectorOption,
    heatmap: Optional[Path] = typer.Option(
        None, "--heatmap", help="Write each explanation over the picture (photos) or over each frame's face (videos) here."),
    workers: Optional[int] = WorkersOption,
    quiet: bool = QuietOption,
) -> None:
    """P(fake) for each image or video: printed, and optionally written as CSV/JSON.

    Photos: with the ready detector every face is found, framed as in training and scored (one row per
    face). Videos: frames are sampled evenly, the largest face of each is cropped and scored, and the
    frame scores are aggregated into the video's P(fake)."""
    import pandas as pd

    from dflab.data import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS
    from dflab.predict import PREDICTION_COLUMNS, PredictOptions, predict_files

    set_quiet(quiet)
    _existing(target, "input")
    csv, json_out = _output_file(csv, "--csv"), _output_file(json_out, "--json")
    if heatmap is not None:
        _output_dir(heatmap, "--heatmap")
    media = set(IMAGE_EXTENSIONS) | set(VIDEO_EXTENSIONS)
    if target.is_dir():
        files = sorted(p for p in target.rglob("*") if p.is_file() and p.suffix.lower() in media)
        if not files:
            raise UserError(f"{target}: no image or video files found ({', '.join(sorted(media))})")
    else:
        files = [target]
    scorer = _load_model(model, detector, workers)
    result = predict_files(scorer, files, PredictOptions(
        threshold=threshold, faces=FacesMode(faces).value, frames=frames, aggregation=Aggregation(aggregation).value,
        face_detector=FaceDetectorName(face_detector).value, heatmap_dir=heatmap))
    table = pd.DataFrame(result["rows"], columns=PREDICTION_COLUMNS)
    _write_predictions(table, result, scorer.name, csv, json_out)
    if len(files) == 1 and len(table) == 1 and table["verdict"].iloc[0] == "error":
        raise UserError(f"{files[0]}: {table['error'].iloc[0]}")


def _write_predictions(rows, result: dict, detector_name: str, csv, json_out) -> None:
    import numpy as np

    from dflab.predict import prediction_payload

    if csv:  # file names that are not UTF-8 are written back as the bytes they are
        rows.to_csv(csv, index=False, errors="surrogateescape")
    if json_out:
        json_out.write_text(json.dumps(prediction_payload(result, detector_name), indent=2),
                            errors="surrogateescape")
    for row in rows.itertuples():
        score = "      -" if np.isnan(row.p_fake) else f"{row.p_fake:7.3f}"
        face = f"  face {row.face} [{row.box}]" if row.face != "" else ""
        extra = f"  ({row.error})" if row.error else ""
        out_console.print(escape(printable(f"{score}  {row.verdict:7}  {row.path}{face}{extra}")), highlight=False)
    for detail in result["videos"]:
        if detail["status"] == "ok" and not is_quiet():
            out_console.print(escape(printable(f"         {detail['video']}: {detail['aggregation']} over "
                                               f"{detail['frames_with_face']}/{detail['frames']} frames with a face")),
                              highlight=False)



# `dflab serve` (FastAPI and uvicorn are imported only when it runs).
from dflab.serve.command import serve_command

app.command("serve")(serve_command)


if __name__ == "__main__":  # pragma: no cover
    main()
