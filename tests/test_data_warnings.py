"""A dataset that would be miscounted says so: duplicated manifest rows are dropped with a warning,
and a class folder that cannot be read (a dangling link, a link loop, no permission) is named in a
warning instead of leaving its class empty without a word (issue 28 part 4)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

from dflab.cli import app
from dflab.data import DataError, load_manifest, read_dataset, save_manifest, scan
from dflab.lab.config import LabConfig
from dflab.lab.protocol import _load_split


def _images(folder: Path, count: int, seed: int = 0) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for index in range(count):
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(folder / f"{index}.png")


@pytest.fixture
def realfake(tmp_path: Path) -> Path:
    root = tmp_path / "faces"
    _images(root / "real", 3, seed=1)
    _images(root / "fake", 2, seed=2)
    return root


def _counts(manifest: pd.DataFrame) -> dict[int, int]:
    return manifest["label"].value_counts().to_dict()


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_a_saved_manifest_with_repeated_rows_is_counted_once_with_a_warning(realfake, tmp_path, capsys, suffix):
    manifest = scan(realfake)
    saved = save_manifest(pd.concat([manifest, manifest.iloc[:2]], ignore_index=True), tmp_path / f"m{suffix}")
    capsys.readouterr()
    loaded = read_dataset(saved) if suffix == ".parquet" else load_manifest(saved)
    assert _counts(loaded) == {0: 3, 1: 2}
    err = capsys.readouterr().err
    assert f"{saved.name}: 2 duplicated row(s) dropped" in err.replace("\n", "")


def test_data_summary_counts_a_repeated_csv_row_once_and_says_so(realfake, tmp_path):
    rows = [f"{p},{'fake' if p.parent.name == 'fake' else 'real'}" for p in sorted(realfake.rglob("*.png"))]
    listing = tmp_path / "list.csv"
    listing.write_text("path,label\n" + "\n".join(rows + rows[:1]) + "\n")
    result = CliRunner().invoke(app, ["data", "summary", str(listing)])
    assert result.exit_code == 0, result.output
    assert "1 duplicated row(s) dropped" in result.output.replace("\n", "")
    assert "5 samples" in result.output


def test_a_file_listed_as_both_real_and_fake_is_an_error(realfake, tmp_path):
    manifest = scan(realfake)
    twice = manifest.iloc[:1].assign(label=1)
    saved = save_manifest(pd.concat([manifest, twice], ignore_index=True), tmp_path / "m.parquet")
    with pytest.raises(DataError, match="listed as both real and fake"):
        load_manifest(saved)


@pytest.mark.parametrize("link", ["dangling", "loop"])
def test_a_class_folder_that_is_a_broken_link_is_named(realfake, capsys, link):
    real = realfake / "real"
    for image in real.iterdir():
        image.unlink()
    real.rmdir()
    real.symlink_to(realfake / "nowhere" if link == "dangling" else real)
    manifest = scan(realfake)
    assert _counts(manifest) == {1: 2}
    err = capsys.readouterr().err.replace("\n", "")
    reason = "a dangling link" if link == "dangling" else "Too many levels of symbolic links"
    assert f"{real}: skipped, not readable ({reason})" in err
    assert err.count(f"{real}: skipped") == 1  # once, though the layout is detected and then scanned


def test_an_unreadable_class_folder_is_named(realfake, capsys, monkeypatch):
    real = realfake / "real"
    if os.geteuid() != 0:
        real.chmod(0)
    else:  # root reads any folder: the refusal the kernel gives a user is made here
        scandir = os.scandir

        def refusing(path=".", *args):
            if os.fspath(path) == os.fspath(real):
                raise PermissionError(13, "Permission denied", os.fspath(path))
            return scandir(path, *args)

        monkeypatch.setattr(os, "scandir", refusing)
    try:
        manifest = scan(realfake)
    finally:
        real.chmod(0o755)
    assert _counts(manifest) == {1: 2}
    assert f"{real}: skipped, folder not readable (Permission denied)" in capsys.readouterr().err.replace("\n", "")


def test_the_lab_names_a_broken_class_folder_too(tmp_path, capsys):
    root = tmp_path / "Task"
    for split in ("development", "evaluation"):
        _images(root / split / "fake", 2)
    _images(root / "evaluation" / "real", 2)
    (root / "development" / "real").symlink_to(tmp_path / "gone")
    part = _load_split(root, "development", LabConfig(task1=str(root), task23=str(root), detectors=["ela-gb"],
                                                        out=str(tmp_path / "out")))
    assert set(part["label"]) == {1}
    assert f"{root / 'development' / 'real'}: skipped, not readable (a dangling link)" in \
        capsys.readouterr().err.replace("\n", "")
