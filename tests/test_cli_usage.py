"""Usage mistakes, run through the installed ``dflab`` entry point: exit 2, one line, no traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

DFLAB = Path(sys.executable).with_name("dflab")


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(DFLAB), *args], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("args,needle", [
    (["--no-such-option"], "No such option: --no-such-option"),
    (["predict", "x.png", "--no-such-option"], "No such option"),
    (["no-such-command"], "No such command 'no-such-command'"),
    (["data", "no-such-command"], "No such command"),
    (["predict"], "Missing argument"),
    (["lab", "--detector", "ela-logreg"], "Missing option '--task1'"),
    (["predict", "x.png", "--frames"], "requires an argument"),
    (["predict", "x.png", "--frames", "many"], "'--frames'"),
    (["lab", "--task1", "t", "--detector", "ela-logreg", "--n-boot", "1.5"], "'--n-boot'"),
    (["faces", "extract", "v.mp4", "--out", "o", "--scale", "big"], "'--scale'"),
    (["lab", "--task1", "t", "--detector", "ela-logreg", "--tasks", "4"], "--tasks"),
    # Out-of-range and unknown values are refused at the edge, before any work.
    (["predict", "x.png", "--frames", "0"], "'--frames'"),
    (["predict", "x.png", "--frames", "-3"], "'--frames'"),
    (["predict", "x.png", "--threshold", "1.5"], "'--threshold'"),
    (["predict", "x.png", "--aggregation", "median"], "'--aggregation'"),
    (["predict", "x.png", "--faces", "some"], "'--faces'"),
    (["predict", "x.png", "--face-detector", "dlib"], "'--face-detector'"),
    (["faces", "extract", "v.mp4", "--out", "o", "--size", "4"], "'--size'"),
    (["faces", "extract", "v.mp4", "--out", "o", "--policy", "biggest"], "'--policy'"),
    (["lab", "--task1", "t", "--detector", "ela-logreg", "--per-video", "0"], "'--per-video'"),
    (["lab", "--task1", "t", "--detector", "ela-logreg", "--max-videos", "0"], "'--max-videos'"),
    (["lab", "--task1", "t", "--detector", "ela-logreg", "--n-boot", "-5"], "'--n-boot'"),
    (["evaluate", "d", "--n-boot", "0"], "'--n-boot'"),
    (["train", "d", "--detector", "ela-logreg", "--out", "m", "--valid-fraction", "1.5"], "'--valid-fraction'"),
    (["lab", "--task1", "t", "--detector", "ela-logreg", "--workers", "-1"], "'--workers'"),
    (["lab", "--task1", "t", "--detector", "ela-logreg", "--tasks", "2"], "need --task23"),
    (["lab", "--task1", "t", "--task23", "u", "--detector", "ela-logreg", "--tasks", "1,2", "--task3-data", "x"],
     "--task3-data"),
])
@pytest.mark.slow
def test_usage_errors_exit_2_with_one_line(args, needle):
    result = run(*args)
    assert result.returncode == 2, (result.returncode, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert needle in lines[0] and lines[0].startswith("error:")
    assert "Traceback" not in result.stderr + result.stdout


def test_the_command_line_starts_without_the_heavy_libraries():
    """``dflab --help``, ``--version`` and usage errors answer in under a second: building the command
    line imports neither PyTorch, scikit-learn, pandas nor timm (each command imports what it uses)."""
    script = ("import sys\nimport dflab.cli\n"
              "print(sorted(m for m in ('torch', 'sklearn', 'pandas', 'timm', 'scipy') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "[]", (result.stdout, result.stderr)


def test_every_user_error_named_for_the_command_line_exists():
    """The table of user errors names classes by module (so that none is imported to be named): each
    one is an exception class of that module."""
    import importlib

    from dflab.cli import USER_ERRORS

    for module, names in USER_ERRORS.items():
        for name in names:
            assert issubclass(getattr(importlib.import_module(module), name), Exception), (module, name)


@pytest.mark.slow
def test_help_and_version_exit_0():
    for args in ([], ["--help"], ["predict", "--help"], ["data"]):
        result = run(*args)
        assert result.returncode == 0 and "Usage" in result.stdout and "Traceback" not in result.stderr
    assert run("--version").stdout.startswith("dflab ")


@pytest.mark.slow
def test_file_names_are_not_markup(tmp_path):
    """A path that looks like rich markup is printed as it is, not parsed."""
    weird = tmp_path / "[/bold]face[red].png"
    result = run("predict", str(weird), "--detector", "ela-logreg")
    assert result.returncode == 2 and "[/bold]face[red].png" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    from dflab.data.synthetic.demo_lab import make_lab

    root = tmp_path_factory.mktemp("usage-lab")
    make_lab(root, n_videos_dev=2, n_videos_eval=2, frames_per_video=1, size=48, n_t23_dev=2, n_t23_eval=2, seed=2)
    return root / "Task_1"


@pytest.mark.slow
def test_output_paths(dataset, tmp_path):
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    a_folder = tmp_path / "a-folder"
    a_folder.mkdir()
    cases = [
        (["data", "manifest", dataset, "--out", a_folder], "must be a file, but it is a folder"),
        (["data", "manifest", dataset, "--out", a_file / "m.csv"], "a file of that name exists"),
        (["lab", "--task1", dataset, "--detector", "ela-logreg", "--out", a_file], "must be a folder"),
        (["evaluate", dataset, "--detector", "ela-logreg", "--out", a_file], "must be a folder"),
        (["predict", dataset, "--detector", "ela-logreg", "--csv", a_folder], "must be a file"),
        (["predict", dataset, "--detector", "ela-logreg", "--heatmap", a_file], "must be a folder"),
        (["faces", "extract", dataset, "--out", a_file], "must be a folder"),
    ]
    for args, needle in cases:
        result = run(*map(str, args))
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert result.returncode == 2 and len(lines) == 1 and needle in lines[0], (args, result.stderr)
        assert "Traceback" not in result.stderr
    assert a_file.read_text() == "x"  # nothing written over it
    # A missing parent folder is what a user means to have: it is created.
    nested = tmp_path / "new" / "deeper" / "manifest.csv"
    result = run("data", "manifest", str(dataset), "--out", str(nested))
    assert result.returncode == 0 and nested.is_file()


def _every_command(command, path=()):
    yield path, command
    for name, sub in sorted(getattr(command, "commands", {}).items()):
        yield from _every_command(sub, (*path, name))


def test_help_reads_as_prose():
    """Every command's help: no ``<bool>``/``<str>`` type labels or ``{ARG}`` braces, and each paragraph of
    its docstring on one line on a wide terminal (not broken where the source line ended)."""
    import re

    import typer
    from typer.testing import CliRunner

    from dflab.cli import app
    from dflab.cli.help import reflowed

    commands = list(_every_command(typer.main.get_command(app)))
    assert len(commands) > 15
    for path, command in commands:
        result = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "2000", "TERMINAL_WIDTH": "2000"})
        assert result.exit_code == 0, (path, result.output)
        assert not re.search(r"<(bool|str)>|\{\w+\}", result.output), (path, result.output)
        lines = [line.strip(" │") for line in result.output.splitlines()]
        for paragraph in reflowed(command.help or "").split("\n\n"):
            assert paragraph.strip() in lines, (path, paragraph)
