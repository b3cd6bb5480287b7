"""The ready detector shipped with the package, and `dflab predict` with no model named."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from skimage import data as skimage_data

from dflab.detectors import available, create, load_detector
from dflab.detectors.modelfile import ModelFileError
from dflab.detectors.ready import DEFAULT_READY, ready_model_dir, ready_models

from .conftest import require_shared

DFLAB = Path(sys.executable).with_name("dflab")
READY = ready_model_dir(DEFAULT_READY)


def run(*args, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([str(DFLAB), *map(str, args)], capture_output=True, text=True, timeout=600, cwd=cwd,
                          env={**__import__("os").environ, "COLUMNS": "200"})


def test_the_shipped_file_loads_and_its_hash_matches_the_card():
    assert DEFAULT_READY in ready_models()
    arrays = READY / "arrays.safetensors"
    digest = hashlib.sha256(arrays.read_bytes()).hexdigest()
    card = (READY / "MODEL_CARD.md").read_text()
    config = json.loads((READY / "config.json").read_text())
    assert digest in card and config["files"]["arrays.safetensors"] == digest
    assert sum(p.stat().st_size for p in READY.iterdir()) <= 25 * 2**20
    from safetensors.numpy import load_file

    tensors = load_file(str(arrays))
    assert {str(t.dtype) for t in tensors.values() if t.dtype.kind == "f"} == {"float16"}
    for needle in ("Task_2_3/evaluation", "Task_1/evaluation", "research", "threshold", "dfdc_pool",
                   "Across databases", "real called fake", "Calibration", "Self-blended"):
        assert needle in card
    detector = create(DEFAULT_READY).fit()
    assert detector.is_fitted() and not detector.trainable and available()[DEFAULT_READY].family == "ready"
    info = detector.model_info_
    assert 0 < info["thresholds"]["frame"] < 1 and detector.face_framing.scale > 0
    assert f"{info['thresholds']['frame']:.4f}" in card and info["version"] == 2
    # The card states the intended false-alarm rate, and the rate measured where the threshold was chosen.
    for rates in info["validation_rates"].values():
        assert rates["real_called_fake"] <= info["intended_false_alarms"]
    params = config["params"]
    assert params["weights"] is None and (params["logit_scale"], params["logit_shift"]) != (1.0, 0.0)


def test_a_damaged_shipped_file_is_refused(tmp_path):
    copy = tmp_path / "dflab-face"
    shutil.copytree(READY, copy)
    data = bytearray((copy / "arrays.safetensors").read_bytes())
    data[len(data) // 2] ^= 0x01
    (copy / "arrays.safetensors").write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="sha256"):
        load_detector(copy)


@pytest.mark.slow
def test_detectors_and_weights_list_show_it():
    listing = run("detectors")
    assert listing.returncode == 0
    assert re.search(r"dflab-face\s+ready\s+ready", listing.stdout)
    weights = run("weights", "list")
    digest = hashlib.sha256((READY / "arrays.safetensors").read_bytes()).hexdigest()
    assert weights.returncode == 0 and "dflab-face" in weights.stdout and digest[:16] in weights.stdout


def _rows(csv_path: Path) -> pd.DataFrame:
    return pd.read_csv(csv_path, keep_default_na=False)


@pytest.mark.slow
def test_a_photo_with_two_faces_gives_two_rows_and_a_heatmap(tmp_path):
    astronaut = skimage_data.astronaut()
    photo = tmp_path / "two people.png"
    Image.fromarray(np.concatenate([astronaut, astronaut[:, ::-1]], axis=1)).save(photo)
    result = run("predict", photo, "--csv", tmp_path / "out.csv", "--json", tmp_path / "out.json",
                 "--heatmap", tmp_path / "heat")
    assert result.returncode == 0, result.stderr
    rows = _rows(tmp_path / "out.csv")
    assert list(rows["face"]) == [0, 1] and set(rows["verdict"]) <= {"real", "fake"}
    boxes = [[float(v) for v in box.split()] for box in rows["box"]]
    assert boxes[0][2] < 512 < boxes[1][0]  # one face in each half, left to right
    assert 0 <= rows["p_fake"].min() and rows["p_fake"].max() <= 1
    payload = json.loads((tmp_path / "out.json").read_text())
    assert payload["detector"] == DEFAULT_READY and len(payload["photos"][0]["faces"]) == 2
    heat = Image.open(tmp_path / "heat" / "two people_heatmap.png")
    assert heat.size == (1024, 512)


@pytest.mark.slow
def test_a_picture_without_a_face_says_so(tmp_path):
    gradient = np.tile(np.linspace(0, 255, 200, dtype=np.uint8)[None, :, None], (150, 1, 3))
    picture = tmp_path / "sky.png"
    Image.fromarray(gradient).save(picture)
    result = run("predict", picture, "--csv", tmp_path / "out.csv")
    assert result.returncode == 0, result.stderr
    assert "no face" in result.stdout and "Traceback" not in result.stderr
    rows = _rows(tmp_path / "out.csv")
    assert list(rows["verdict"]) == ["no face"] and rows["p_fake"].iloc[0] == ""


@pytest.mark.slow
@pytest.mark.shared
def test_predict_with_no_flags_on_a_crop_a_frame_and_a_clip(tmp_path):
    crops = require_shared("datasets", "Task_2_3", "evaluation")
    clip = require_shared("datasets", "videos", "ffpp_c23", "fake", "519_515.mp4")
    crop = sorted((crops / "fake").glob("*.jpg"))[0]
    from dflab.media.video import sample_frames

    frame = tmp_path / "frame.png"
    Image.fromarray(sample_frames(clip, 1)[0].image).save(frame)
    for target in (crop, frame, clip):
        result = run("predict", target, "--csv", tmp_path / "rows.csv")
        assert result.returncode == 0, (target, result.stderr)
        rows = _rows(tmp_path / "rows.csv")
        assert len(rows) >= 1 and set(rows["verdict"]) <= {"real", "fake"}, (target, rows)
        assert 0 <= float(rows["p_fake"].iloc[0]) <= 1


@pytest.mark.slow
def test_evaluate_without_a_model_uses_the_ready_detector(tmp_path):
    from dflab.data.synthetic.demo_lab import make_lab

    make_lab(tmp_path / "lab", n_videos_dev=2, n_videos_eval=2, frames_per_video=2, size=64, n_t23_dev=2,
             n_t23_eval=4, seed=1)
    result = run("evaluate", tmp_path / "lab" / "Task_2_3", "--out", tmp_path / "eval", "--n-boot", 20, "--quiet")
    assert result.returncode == 0, result.stderr
    scores = pd.read_csv(tmp_path / "eval" / "scores.csv")
    assert set(scores["detector"]) == {DEFAULT_READY} and scores["score"].notna().all()
