"""``dflab predict --csv`` resumes: an interrupted run's CSV (cut anywhere, even mid-row or between
two faces of one file) is completed by the same command, and equals the CSV of a run that was never
interrupted; other settings, or a CSV it did not write, are refused in one line (``--overwrite``
starts anew)."""

from __future__ import annotations

import json
import sys

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from dflab.inference import predict
from dflab.inference.outputs import PredictionsCSV, ResumeError
from dflab.inference.predict import PREDICTION_COLUMNS


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("resume-images")
    rng = np.random.default_rng(1)
    for i in range(11):
        Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(folder / f"{i:02d}.jpg", quality=90)
    (folder / "broken.jpg").write_bytes(b"not a picture")  # an error row resumes like the others
    return folder


def _dflab(monkeypatch, capsys, *args) -> tuple[int, str]:
    from dflab.cli import main

    monkeypatch.setattr(sys, "argv", ["dflab", *map(str, args)])
    try:
        main()
        code = 0
    except SystemExit as exit_:
        code = exit_.code or 0
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def _predict(monkeypatch, capsys, folder, model, csv, *extra):
    return _dflab(monkeypatch, capsys, "predict", folder, "--model", model, "--faces", "whole", "--csv", csv,
                  "--workers", "1", *extra)


def test_a_cut_csv_is_completed_to_the_uninterrupted_one(tiny_ela_model, image_folder, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(predict, "PREDICT_CHUNK", 4)
    whole = tmp_path / "whole.csv"
    assert _predict(monkeypatch, capsys, image_folder, tiny_ela_model, whole)[0] == 0
    expected = whole.read_bytes()
    assert len(pd.read_csv(whole)) == 12
    lines = expected.split(b"\n")
    for cut_after in (1, 5, 9):  # header + 0 rows, rows cut mid-way, and half a row
        cut = tmp_path / f"cut{cut_after}.csv"
        cut.write_bytes(b"\n".join(lines[:cut_after]) + b"\n" + lines[cut_after][:7])
        # The record as the cut run left it: the rows of its finished chunks (4 files each) written.
        record = json.loads((tmp_path / "whole.csv.run.json").read_text())
        finished = 4 * (max(0, cut_after - 1) // 4)
        (tmp_path / f"cut{cut_after}.csv.run.json").write_text(json.dumps({**record, "rows": finished}))
        scored = []
        original = predict.predict_files

        def watched(scorer, files, options, **kwargs):
            scored.extend(str(f) for f in files)
            return original(scorer, files, options, **kwargs)

        monkeypatch.setattr(predict, "predict_files", watched)
        code, output = _predict(monkeypatch, capsys, image_folder, tiny_ela_model, cut)
        monkeypatch.setattr(predict, "predict_files", original)
        assert code == 0, output
        assert cut.read_bytes() == expected
        # Finished chunks are skipped; the rows of a chunk cut short are dropped and the chunk scored
        # again whole (the same batches as the uninterrupted run: the same scores to the last digit).
        assert len(scored) == 12 - finished, (cut_after, scored)
        if finished:
            assert f"{finished} of 12 files already scored" in output
    # Run again when complete: nothing left to score, the CSV unchanged.
    code, output = _predict(monkeypatch, capsys, image_folder, tiny_ela_model, whole)
    assert code == 0 and "12 of 12 files already scored, 0 left" in output and whole.read_bytes() == expected


def test_other_settings_or_a_foreign_csv_are_refused_and_overwrite_starts_anew(tiny_ela_model, image_folder, tmp_path,
                                                                              monkeypatch, capsys):
    csv = tmp_path / "scores.csv"
    assert _predict(monkeypatch, capsys, image_folder, tiny_ela_model, csv)[0] == 0
    code, output = _predict(monkeypatch, capsys, image_folder, tiny_ela_model, csv, "--threshold", "0.7")
    assert code == 2 and "written with other settings (threshold)" in output and "--overwrite" in output
    assert len(output.strip().splitlines()) == 1
    code, output = _predict(monkeypatch, capsys, image_folder, tiny_ela_model, csv, "--threshold", "0.7", "--overwrite")
    assert code == 0 and "already scored" not in output
    table = pd.read_csv(csv, keep_default_na=False)
    assert len(table) == 12 and set(table.loc[table["error"] == "", "verdict"]) <= {"real", "fake"}
    foreign = tmp_path / "mine.csv"
    foreign.write_text("a,b\n1,2\n")
    code, output = _predict(monkeypatch, capsys, image_folder, tiny_ela_model, foreign)
    assert code == 2 and "was not written by dflab predict" in output and foreign.read_text() == "a,b\n1,2\n"


def test_rows_not_recorded_as_written_are_scored_again(tmp_path):
    """A photo has one row per face, so a cut chunk may hold some of a file's rows: every row past
    the count recorded after the last finished chunk is dropped, and those files scored again."""
    csv = tmp_path / "p.csv"
    run = {"detector": "x", "threshold": None}
    rows = pd.DataFrame([["a.jpg", 0, "1 1 5 5", 0.2, "real", ""], ["b.jpg", 0, "1 1 5 5", 0.9, "fake", ""],
                         ["b.jpg", 1, "9 9 5 5", 0.1, "real", ""]], columns=PREDICTION_COLUMNS)
    first = PredictionsCSV(csv, run, PREDICTION_COLUMNS)
    first.append(rows.iloc[:1])
    first.append(rows.iloc[1:])
    assert PredictionsCSV(csv, run, PREDICTION_COLUMNS).done == {"a.jpg", "b.jpg"}  # complete: nothing dropped
    # Killed after writing b.jpg's rows but before recording them: they are dropped, b.jpg scored again.
    record = json.loads((tmp_path / "p.csv.run.json").read_text())
    (tmp_path / "p.csv.run.json").write_text(json.dumps({**record, "rows": 1}))
    with open(csv, "a") as handle:
        handle.write("b.jpg,2,1 1")  # and half a row past them
    resumed = PredictionsCSV(csv, run, PREDICTION_COLUMNS)
    assert resumed.done == {"a.jpg"} and resumed.left(["a.jpg", "b.jpg", "c.jpg"]) == ["b.jpg", "c.jpg"]
    assert pd.read_csv(csv)["path"].tolist() == ["a.jpg"]
    with pytest.raises(ResumeError, match="other settings \\(threshold\\)"):
        PredictionsCSV(csv, {**run, "threshold": 0.5}, PREDICTION_COLUMNS)
