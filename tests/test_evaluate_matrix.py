"""`dflab evaluate` on video datasets (scored as `dflab predict` scores a video) and on several datasets
at once (one cross-database matrix)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pandas as pd
import pytest
from PIL import Image
from skimage import data as skimage_data

from dflab.lab.scoring import FRAME_MARK, scored_source

from .conftest import require_shared

DFLAB = Path(sys.executable).with_name("dflab")


def run(*args) -> subprocess.CompletedProcess:
    return subprocess.run([str(DFLAB), *map(str, args)], capture_output=True, text=True, timeout=900,
                          env={**__import__("os").environ, "COLUMNS": "200"})


def write_video(path: Path, frames: list[np.ndarray]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuv420p"
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    return path


def face_frames(n: int, *, mirror: bool = False, blur: bool = False) -> list[np.ndarray]:
    """A real face (skimage's astronaut) drifting across n 256x256 frames."""
    import cv2

    face = skimage_data.astronaut()[:400, 50:450]
    face = face[:, ::-1] if mirror else face
    face = cv2.GaussianBlur(face, (0, 0), 2.0) if blur else face
    return [np.ascontiguousarray(cv2.resize(face[4 * i:, 4 * i:], (256, 256))) for i in range(n)]


@pytest.fixture(scope="module")
def datasets(tmp_path_factory) -> tuple[Path, Path]:
    """A realfake folder of videos (two with a face, one without, one that is not a video) and a
    realfake folder of face photos."""
    root = tmp_path_factory.mktemp("evaluate")
    clips = root / "clips"
    write_video(clips / "real" / "a.mp4", face_frames(6))
    write_video(clips / "fake" / "b.mp4", face_frames(6, mirror=True, blur=True))
    gradient = np.tile(np.linspace(0, 255, 128, dtype=np.uint8)[None, :, None], (128, 1, 3))
    write_video(clips / "real" / "sky.mp4", [gradient] * 4)
    (clips / "fake" / "broken.mp4").write_text("not a video")
    photos = root / "photos"
    for label, frames in (("real", face_frames(3)), ("fake", face_frames(3, mirror=True, blur=True))):
        (photos / label).mkdir(parents=True)
        for i, frame in enumerate(frames):
            Image.fromarray(frame).save(photos / label / f"{i}.png")
    return clips, photos


def _scores(out: Path) -> pd.DataFrame:
    return pd.read_csv(out / "scores.csv", dtype={"video": str, "error": str}, keep_default_na=False,
                       na_values={"score": ["", "nan"]})


@pytest.mark.slow
def test_a_folder_of_videos_is_scored_frame_by_frame_as_predict_scores_it(datasets, tmp_path):
    clips, _ = datasets
    out = tmp_path / "ev"
    result = run("evaluate", clips, "--frames", 4, "--n-boot", 20, "--out", out, "--quiet")
    assert result.returncode == 0, result.stderr
    scores = _scores(out)
    frames = scores[scores["path"].str.contains(FRAME_MARK, regex=False)]
    assert set(frames["video"]) == {"a", "b"} and len(frames) == 8 and frames["score"].notna().all()
    skipped = {Path(p).name: reason for p, reason in zip(scores["path"], scores["error"]) if reason}
    assert set(skipped) == {"sky.mp4", "broken.mp4"} and "no face" in skipped["sky.mp4"]
    metrics = json.loads((out / "metrics.json").read_text())
    video_level = metrics["tasks"]["evaluate"]["detectors"]["dflab-face"]["video_mean_prob"]
    assert (video_level["n_real"], video_level["n_fake"], video_level["n_missing"]) == (1, 1, 2)
    assert "sky.mp4" in (out / "report.html").read_text()

    # The frames' scores are predict's for the same video (same sampled frames, faces, framing).
    clip = clips / "real" / "a.mp4"
    predicted = run("predict", clip, "--frames", 4, "--json", tmp_path / "p.json", "--quiet")
    assert predicted.returncode == 0, predicted.stderr
    by_predict = json.loads((tmp_path / "p.json").read_text())["videos"][0]["frame_scores"]
    mine = frames[frames["path"].map(scored_source) == str(clip.resolve())]
    assert len(mine) == len(by_predict) == 4
    np.testing.assert_allclose(sorted(mine["score"]), sorted(f["p_fake"] for f in by_predict), atol=1e-6)


@pytest.mark.slow
def test_several_datasets_give_one_matrix_and_a_rerun_resumes(datasets, tmp_path):
    clips, photos = datasets
    out = tmp_path / "matrix"
    result = run("evaluate", clips, photos, "--frames", 3, "--n-boot", 20, "--out", out)
    assert result.returncode == 0, result.stderr
    assert "real called fake" in result.stdout
    matrix = pd.read_csv(out / "matrix.csv")
    assert list(matrix["dataset"]) == ["clips", "photos"] and list(matrix["split"]) == ["all", "all"]
    assert list(matrix["real_videos"]) == [1, 3] and list(matrix["fake_videos"]) == [1, 3]
    threshold = json.loads((Path(__file__).resolve().parents[1] / "src/dflab/ready/dflab-face/config.json")
                           .read_text())["info"]["thresholds"]["video_mean_prob"]
    scores = _scores(out)
    photo_scores = scores[scores["task"] == "photos"]
    reals = photo_scores[photo_scores["label"] == 0]
    assert matrix["threshold"].iloc[1] == pytest.approx(threshold)
    assert matrix["real_called_fake"].iloc[1] == pytest.approx(float((reals["score"] >= threshold).mean()))
    assert 0 <= matrix["fakes_caught"].iloc[1] <= 1 and 0 <= matrix["video_auc"].iloc[1] <= 1
    html = (out / "report.html").read_text()
    assert "Across datasets" in html and "real called fake" in html

    # Cut after the first video's rows: the rerun scores only what is missing, with the same result.
    whole = (out / "scores.csv").read_text().splitlines(keepends=True)
    first_video = [i for i, line in enumerate(whole) if FRAME_MARK in line]
    (out / "scores.csv").write_text("".join(whole[:first_video[2] + 1]))
    again = run("evaluate", clips, photos, "--frames", 3, "--n-boot", 20, "--out", out, "--quiet")
    assert again.returncode == 0, again.stderr
    assert sorted((out / "scores.csv").read_text().splitlines()) == sorted(line.rstrip("\n") for line in whole)
    assert pd.read_csv(out / "matrix.csv").equals(matrix)


@pytest.mark.slow
def test_perturb_refuses_videos_in_one_line(datasets, tmp_path):
    clips, _ = datasets
    result = run("evaluate", clips, "--perturb", "--out", tmp_path / "p")
    assert result.returncode == 2 and "--perturb" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.slow
@pytest.mark.shared
def test_the_shared_cross_database_samples_in_one_matrix(tmp_path):
    ffpp = require_shared("datasets", "videos", "ffpp_c23")
    deeper = require_shared("datasets", "videos", "deeperforensics")
    result = run("evaluate", ffpp, deeper, "--frames", 2, "--n-boot", 20, "--out", tmp_path / "m", "--quiet")
    assert result.returncode == 0, result.stderr
    matrix = pd.read_csv(tmp_path / "m" / "matrix.csv")
    assert list(matrix["real_videos"]) == [3, 2] and list(matrix["fake_videos"]) == [4, 2]
    assert matrix["video_auc"].between(0, 1).all() and matrix["real_called_fake"].between(0, 1).all()


@pytest.mark.slow
def test_a_dataset_where_nothing_can_be_scored_says_why_in_one_line(tmp_path):
    gradient = np.tile(np.linspace(0, 255, 64, dtype=np.uint8)[None, :, None], (64, 1, 3))
    for name in ("real/a.mp4", "fake/b.mp4"):
        write_video(tmp_path / "faceless" / name, [gradient] * 3)
    result = run("evaluate", tmp_path / "faceless", "--frames", 2, "--out", tmp_path / "ev")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "nothing could be scored" in result.stderr and "no face" in result.stderr
