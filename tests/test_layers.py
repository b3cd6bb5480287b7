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


CONTRACTS_INSIDE_STAGES = (
    "Detectors: the contract and the model format below the detectors",
    "Deep detectors: networks above the torch contract, tensors at the bottom",
    "Report: written from renderings of one document of blocks",
    "No import circle among the modules of any package",
    "Metrics read labels and scores, never images or detectors",
)


def test_the_modules_inside_a_stage_import_only_downward():
    result = _lint(ROOT / "src", ROOT / "pyproject.toml")
    assert result.returncode == 0, result.stdout + result.stderr
    for contract in CONTRACTS_INSIDE_STAGES:
        assert f"{contract} KEPT" in result.stdout


def _copy_package(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    shutil.copytree(ROOT / "src" / "dflab", src / "dflab", ignore=shutil.ignore_patterns("__pycache__", "ready", "static"))
    return src


def _add_import(src: Path, module: str, line: str) -> None:
    path = src.joinpath(*module.split(".")).with_suffix(".py")
    path.write_text(path.read_text() + f"\n{line}  # noqa: E402\n")


def test_an_import_circle_inside_a_stage_breaks_the_contracts(tmp_path):
    """The two circles the contracts were written against: the model format reaching up to the torch
    detectors, and the report's blocks importing what renders them."""
    src = _copy_package(tmp_path)
    _add_import(src, "dflab.detectors.modelfile", "from dflab.detectors.deep.torch_detector import TorchDetector")
    _add_import(src, "dflab.report.blocks", "from dflab.report.html import render")
    result = _lint(src, ROOT / "pyproject.toml")
    assert result.returncode != 0
    for contract in CONTRACTS_INSIDE_STAGES[0], CONTRACTS_INSIDE_STAGES[2], CONTRACTS_INSIDE_STAGES[3]:
        assert f"{contract} BROKEN" in result.stdout
    assert "dflab.detectors.modelfile -> dflab.detectors.deep.torch_detector" in result.stdout
    assert "dflab.report.blocks -> dflab.report.html" in result.stdout


def test_metrics_that_perturb_images_break_the_contract(tmp_path):
    """Re-scoring perturbed images is the lab's work (:mod:`dflab.lab.robustness`), not a metric's."""
    src = _copy_package(tmp_path)
    _add_import(src, "dflab.metrics.core", "from dflab.augment.perturb import PERTURBATIONS")
    result = _lint(src, ROOT / "pyproject.toml")
    assert f"{CONTRACTS_INSIDE_STAGES[4]} BROKEN" in result.stdout
    assert "dflab.metrics.core -> dflab.augment.perturb" in result.stdout


def test_a_module_outside_the_stage_contracts_breaks_them(tmp_path):
    """Each contract inside a stage names every module of its package: a new one has to take its place."""
    src = _copy_package(tmp_path)
    (src / "dflab" / "report" / "summary.py").write_text('"""A module no contract places."""\n')
    result = _lint(src, ROOT / "pyproject.toml")
    assert result.returncode != 0
    assert f"{CONTRACTS_INSIDE_STAGES[2]} BROKEN" in result.stdout
    assert "dflab.report.summary" in result.stdout


def test_an_upward_import_breaks_the_contract(tmp_path):
    """The check is not vacuous: the runtime layer importing the CLI is reported."""
    src = _copy_package(tmp_path)
    _add_import(src, "dflab.runtime.progress", "from dflab.cli import app")
    result = _lint(src, ROOT / "pyproject.toml")
    assert result.returncode != 0
    assert "BROKEN" in result.stdout and "dflab.runtime.progress -> dflab.cli" in result.stdout


def _private_imports(package: Path) -> list[str]:
    """``module: from other import _name`` for every private name one module of ``package`` takes from another."""
    import ast

    found = []
    for path in sorted(package.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("dflab"):
                found += [f"{path.relative_to(package.parent)}: from {node.module} import {alias.name}"
                          for alias in node.names if alias.name.startswith("_") and not alias.name.startswith("__")]
    return found


def test_no_module_imports_another_modules_private_names():
    """What two modules share is public; a leading underscore means "only here"."""
    assert _private_imports(ROOT / "src" / "dflab") == []


def test_a_private_import_is_found(tmp_path):
    src = _copy_package(tmp_path)
    _add_import(src, "dflab.report.html", "from dflab.report.tables import _private")
    assert _private_imports(src / "dflab") == ["dflab/report/html.py: from dflab.report.tables import _private"]
