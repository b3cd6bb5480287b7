"""The application install is pinned: constraints.txt holds an exact version of every package the
package and its tests need, each inside pyproject.toml's range, and the venv that `make` installed
holds exactly those versions (issue 28 part 1)."""

from __future__ import annotations

import re
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "constraints.txt"
STAMP = ROOT / ".venv" / ".installed"


def locked() -> dict[str, Version]:
    pins = {}
    for line in LOCK.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            match = re.fullmatch(r"([A-Za-z0-9_.\-]+)==([^\s;]+)", line)
            assert match, f"constraints.txt: {line!r} is not an exact pin name==version"
            pins[canonicalize_name(match.group(1))] = Version(match.group(2))
    return pins


def requirements() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return [Requirement(r) for r in project["dependencies"] + project["optional-dependencies"]["test"]]


def test_every_requirement_is_pinned_inside_its_range():
    pins = locked()
    for requirement in requirements():
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{requirement.name} is not in constraints.txt: run `make lock`"
        assert requirement.specifier.contains(pins[name], prereleases=True), \
            f"constraints.txt pins {name}=={pins[name]}, outside pyproject.toml's {requirement}: run `make lock`"
    assert canonicalize_name("pip") in pins and canonicalize_name("torch") in pins


def test_the_installed_versions_are_the_locked_ones():
    if not STAMP.is_file() or STAMP.read_text().strip() != LOCK.name:
        pytest.skip("this venv was not installed by `make install` from constraints.txt")
    pins = locked()
    installed = {canonicalize_name(d.metadata["Name"]): Version(d.version) for d in metadata.distributions()}
    moved = {name: f"{installed[name]} (locked {pin})" for name, pin in pins.items()
             if name in installed and installed[name] != pin}
    assert not moved, f"installed versions differ from constraints.txt: {moved}"
    missing = [name for name in (canonicalize_name(r.name) for r in requirements()) if name not in installed]
    assert not missing, missing
