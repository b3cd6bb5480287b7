"""The package's stages import only downward (import-linter's layers contract in pyproject.toml)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")

pytestmark = pytest.mark.skipif(not LINT_IMPORTS.exists(), reason="import-linter is not installed (pip install -e .[test])")


def _lint(src: Path, config: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(src)}
    return subprocess.run([str(LINT_IMPORTS), "--config", str(config), "--no-cache"], capture_output=True, text=True,
                          env=env, cwd=src.parent, timeout=300)


def test_every_stage_imports_only_the_stages_below_it():
    result = _lint(ROOT / "src", ROOT / "pyproject.toml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Stages import only downward KEPT" in result.stdout


def test_an_upward_import_breaks_the_contract(tmp_path):
    """The check is not vacuous: the runtime layer importing the CLI is reported."""
    src = tmp_path / "src"
    shutil.copytree(ROOT / "src" / "dflab", src / "dflab", ignore=shutil.ignore_patterns("__pycache__", "ready", "static"))
    progress = src / "dflab" / "runtime" / "progress.py"
    progress.write_text(progress.read_text() + "\nfrom dflab.cli import app  # noqa: E402\n")
    result = _lint(src, ROOT / "pyproject.toml")
    assert result.returncode != 0
    assert "BROKEN" in result.stdout and "dflab.runtime.progress -> dflab.cli" in result.stdout
