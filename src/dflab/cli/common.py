"""What the ``dflab`` commands share: the app and its sub-apps, the consoles, the options several
commands take, and the checks of paths given on the command line (mistakes raise :class:`UserError`)."""

from __future__ import annotations

import os
import shlex
import sys
from enum import Enum
from pathlib import Path

import typer
from rich.console import Console

from dflab import __version__

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


class UserError(Exception):
    """A mistake in how dflab was called; printed as one line, exit status 2."""


def _version_callback(value: bool) -> None:
    if value:
        out_console.print(f"dflab {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_version_callback, is_eager=True,
                                       help="Print the version and exit.")) -> None:
    pass


def command_line() -> str:
    return "dflab " + " ".join(shlex.quote(a) for a in sys.argv[1:])


def output_dir(path: Path, option: str) -> Path:
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


def output_file(path: Path | None, option: str) -> Path | None:
    """An output file's path, its parent folders created; refused when it is a folder."""
    if path is None:
        return None
    if path.is_dir():
        raise UserError(f"{path}: {option} must be a file, but it is a folder")
    output_dir(path.parent, f"{option} parent")
    if path.exists() and not os.access(path, os.W_OK):
        raise UserError(f"{path}: {option} is not writable")
    return path


def existing_path(path: Path, what: str) -> Path:
    if not path.exists():
        raise UserError(f"{path}: {what} not found")
    return path
