"""A folder run says what it left out (issue 26 part 5): animated and still GIFs, dangling links,
unknown file types and unreadable folders are rows with verdict ``skipped`` and the reason, printed
and in the CSV/JSON like a bad file's; hidden files pass silently; a resumed run does not repeat them."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

from dflab.cli import app
from dflab.media.formats import media_files


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "media"
    (root / "sub").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in ("a.png", "sub/b.jpg"):
        Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(root / name)
    frames = [Image.fromarray(np.full((24, 24, 3), 60 * i, np.uint8)) for i in range(3)]
    frames[0].save(root / "moving.gif", save_all=True, append_images=frames[1:])
    frames[0].save(root / "still.gif")
    (root / "notes.txt").write_text("not a picture")
    (root / ".DS_Store").write_bytes(b"\0")
    (root / "gone.jpg").symlink_to(tmp_path / "nowhere.jpg")
    (root / "sub" / "loop").symlink_to(root)  # entered once: its files are not listed twice
    return root


def test_media_files_lists_what_it_leaves_out_with_the_reason(folder):
    files, left_out = media_files(folder)
    assert files == [str(folder / "a.png"), str(folder / "sub" / "b.jpg")]
    reasons = dict(left_out)
    assert set(reasons) == {str(folder / n) for n in ("moving.gif", "still.gif", "notes.txt", "gone.jpg")}
    assert reasons[str(folder / "moving.gif")].startswith("an animated GIF")
    assert reasons[str(folder / "still.gif")].startswith("a GIF")
    assert reasons[str(folder / "notes.txt")] == "not an image or video file name (.txt)"
    assert reasons[str(folder / "gone.jpg")].startswith("a dangling link")


def test_an_unreadable_sub_folder_is_left_out_by_name(folder, monkeypatch):
    locked = folder / "sub"
    scandir = os.scandir

    def refusing(path=".", *args):  # what the kernel answers a user without read permission
        if os.fspath(path) == os.fspath(locked):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return scandir(path, *args)

    monkeypatch.setattr(os, "scandir", refusing)
    files, left_out = media_files(folder)
    assert files == [str(folder / "a.png")]
    assert (str(locked), "folder not readable (Permission denied)") in left_out


@pytest.mark.slow
def test_predict_folder_prints_and_writes_the_left_out_rows_once(folder, tmp_path, tiny_ela_model):
    csv, out_json = tmp_path / "p.csv", tmp_path / "p.json"
    args = ["predict", str(folder), "--model", str(tiny_ela_model), "--csv", str(csv), "--json", str(out_json)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    printed = result.output.replace("\n", "")  # long temporary paths wrap
    assert "skipped" in printed and "notes.txt" in printed
    table = pd.read_csv(csv, keep_default_na=False)
    skipped = table[table["verdict"] == "skipped"]
    assert len(skipped) == 4 and all(skipped["error"] != "")
    assert set(table.loc[table["verdict"] != "skipped", "path"]) == {str(folder / "a.png"), str(folder / "sub" / "b.jpg")}
    rows = json.loads(out_json.read_text())["results"]
    assert sum(row["verdict"] == "skipped" for row in rows) == 4
    again = CliRunner().invoke(app, args[:-2])  # resumed: nothing new, no row repeated
    assert again.exit_code == 0, again.output
    assert len(pd.read_csv(csv)) == len(table)


def test_a_folder_with_nothing_to_score_names_what_it_left_out(tmp_path, tiny_ela_model, monkeypatch, capsys):
    from dflab.cli import main

    (tmp_path / "only").mkdir()
    (tmp_path / "only" / "clip.gif").write_bytes(b"GIF89a")
    monkeypatch.setattr(sys, "argv", ["dflab", "predict", str(tmp_path / "only"), "--model", str(tiny_ela_model)])
    with pytest.raises(SystemExit) as exit_:
        main()
    assert exit_.value.code == 2
    err = capsys.readouterr().err.replace("\n", "")
    assert "no image or video files found" in err and "clip.gif: a GIF" in err
