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
])
def test_usage_errors_exit_2_with_one_line(args, needle):
    result = run(*args)
    assert result.returncode == 2, (result.returncode, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert needle in lines[0] and lines[0].startswith("error:")
    assert "Traceback" not in result.stderr + result.stdout


def test_help_and_version_exit_0():
    for args in ([], ["--help"], ["predict", "--help"], ["data"]):
        result = run(*args)
        assert result.returncode == 0 and "Usage" in result.stdout and "Traceback" not in result.stderr
    assert run("--version").stdout.startswith("dflab ")


def test_file_names_are_not_markup(tmp_path):
    """A path that looks like rich markup is printed as it is, not parsed."""
    weird = tmp_path / "[/bold]face[red].png"
    result = run("predict", str(weird), "--detector", "ela-logreg")
    assert result.returncode == 2 and "[/bold]face[red].png" in result.stderr
    assert "Traceback" not in result.stderr
