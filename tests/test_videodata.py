"""Video datasets -> face-crop manifests (dflab.faces.videorows) and the lab on a folder of videos."""

from __future__ import annotations

import json
import os
from pathlib import Path

import av
import cv2
import numpy as np
import pandas as pd
import pytest
from PIL import Image

import dflab.faces.crops
from dflab.data.layouts import scan
from dflab.faces.detection import Face, FaceDetector
from dflab.lab.config import LabConfig
from dflab.lab.protocol import prepare_manifests, run_lab
from dflab.lab.scoring import read_scores
from dflab.faces.videorows import STATUS_COLUMNS, expand_video_rows, read_video_status, skipped_videos

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
FFPP = SHARED / "datasets" / "videos" / "ffpp_c23"

SQUARE = 20  # side of the bright square that stands in for a face in the generated videos


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """The test machine's cores are shared: MTCNN's many small ops run faster on one torch thread."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


class BrightSquareDetector(FaceDetector):
    """Finds bright blobs on a dark frame (OpenCV connected components): the 'faces' of the
    generated videos. Counts the frames it is asked about, to see what a rerun redoes."""

    name = "bright-square"

    def __init__(self):
        self.frames_seen = 0

    def detect_batch(self, images):
        self.frames_seen += len(images)
        found = []
        for image in images:
            mask = (image.mean(axis=2) > 128).astype(np.uint8)
            count, _, stats, _ = cv2.connectedComponentsWithStats(mask)
            found.append([Face((float(x), float(y), float(x + w), float(y + h)), 1.0)
                          for x, y, w, h, area in stats[1:count] if area >= 16])
        return found


def make_square_video(path: Path, n: int = 12, *, with_square: bool = True, seed: int = 0) -> Path:
    """A 64x64 dark video (mpeg4 via PyAV); with_square: a white square drifting to the right."""
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    container = av.open(str(path), "w")
    stream = container.add_stream("mpeg4", rate=10)
    stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
    for i in range(n):
        image = rng.integers(0, 40, (64, 64, 3), dtype=np.uint8)
        if with_square:
            x = 6 + 2 * i
            image[22:22 + SQUARE, x:x + SQUARE] = 255
        for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)
    container.close()
    return path


@pytest.fixture
def video_dataset(tmp_path: Path) -> Path:
    """realfake layout: two real and two fake videos with a 'face', one faceless video, one text
    file named .mp4, and one image (which must pass through untouched)."""
    root = tmp_path / "clips"
    make_square_video(root / "real" / "a.mp4", seed=1)
    make_square_video(root / "real" / "b.mp4", seed=2)
    make_square_video(root / "fake" / "a_swap.mp4", seed=3)
    make_square_video(root / "fake" / "b_swap.mp4", seed=4)
    make_square_video(root / "fake" / "dark.mp4", with_square=False, seed=5)
    (root / "fake" / "broken.mp4").write_text("this is not a video")
    Image.fromarray(np.full((32, 32, 3), 90, dtype=np.uint8)).save(root / "real" / "still.png")
    return root


def test_video_rows_become_face_crops_with_status_and_cache(video_dataset: Path, tmp_path: Path):
    manifest = scan(video_dataset)
    assert len(manifest) == 7
    detector = BrightSquareDetector()
    cache = tmp_path / "cache"

    frames, status = expand_video_rows(manifest, cache, n_frames=4, detector=detector, size=32)

    assert list(status.columns) == STATUS_COLUMNS
    by_video = status.set_index("video")
    assert set(by_video.index) == {"a", "b", "a_swap", "b_swap", "dark", "broken"}
    assert (by_video.loc[["a", "b", "a_swap", "b_swap"], "status"] == "ok").all()
    assert (by_video.loc[["a", "b", "a_swap", "b_swap"], "faces"] == 4).all()
    assert by_video.loc["dark", "status"] == "no_face"
    assert by_video.loc["dark", "reason"] == "no face in any of 4 frames"
    assert by_video.loc["broken", "status"] == "error" and "not a video" in by_video.loc["broken", "reason"]
    assert detector.frames_seen == 4 * 5  # every readable video sampled at 4 frames

    # Four crops per good video, carrying the video's label, split, video id, pair and dataset.
    crops = frames[frames["source"].notna()]
    assert len(crops) == 16 and len(frames) == 17
    originals = manifest.set_index("path")
    for row in crops.itertuples():
        video_row = originals.loc[row.source]
        assert (row.label, row.split, row.video, row.pair, row.dataset) == (
            video_row["label"], video_row["split"], video_row["video"], video_row["pair"], video_row["dataset"])
        assert Path(row.path).suffix == ".png" and Path(row.path).is_file()
        with Image.open(row.path) as crop:
            pixels = np.asarray(crop.convert("RGB"))
        # the crop is centred on the square: bright middle, dark (or padded) corner
        assert pixels.shape == (32, 32, 3) and pixels[16, 16].mean() > 200 and pixels[1, 1].mean() < 60
    assert crops.groupby("video")["frame_index"].apply(list).to_dict()["a"] == [0, 4, 7, 11]
    assert set(crops.loc[crops["label"] == 1, "video"]) == {"a_swap", "b_swap"}
    assert crops.set_index("video").loc["a_swap", "pair"].unique().tolist() == ["a"]
    # The image row is unchanged and the faceless and broken videos have no row left.
    still = frames[frames["source"].isna()]
    assert still["path"].tolist() == [str(video_dataset / "real" / "still.png")]
    assert still["frame_index"].isna().all()
    assert not frames["video"].isin(["dark", "broken"]).any()

    skipped = skipped_videos(status)
    assert [(Path(s["path"]).name, s["stage"]) for s in skipped] == [("broken.mp4", "faces"), ("dark.mp4", "faces")]
    assert skipped[1]["reason"] == "no face in any of 4 frames"

    # A rerun with the same settings reuses the crops: no frame goes to the detector again.
    again, status_again = expand_video_rows(manifest, cache, n_frames=4, detector=detector, size=32)
    assert detector.frames_seen == 20
    pd.testing.assert_frame_equal(again, frames)
    pd.testing.assert_frame_equal(status_again, status)
    # Other settings (here the frame count) are a different extraction.
    more, _ = expand_video_rows(manifest, cache, n_frames=6, detector=detector, size=32)
    assert detector.frames_seen == 20 + 6 * 5
    assert (more[more["source"].notna()].groupby("video").size() == 6).all()


def test_manifest_without_videos_passes_through(tmp_path: Path):
    root = tmp_path / "imgs"
    for label in ("real", "fake"):
        (root / label).mkdir(parents=True)
        Image.fromarray(np.zeros((16, 16, 3), dtype=np.uint8)).save(root / label / "x.png")
    manifest = scan(root)
    detector = BrightSquareDetector()
    frames, status = expand_video_rows(manifest, tmp_path / "cache", detector=detector)
    pd.testing.assert_frame_equal(frames, manifest)
    assert status.empty and list(status.columns) == STATUS_COLUMNS and detector.frames_seen == 0
    assert skipped_videos(status) == [] and read_video_status(tmp_path).empty
    assert not (tmp_path / "cache").exists()


def _link(target: Path, link: Path) -> None:
    link.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(target, link)


@pytest.mark.slow
def test_lab_on_ffpp_videos_reports_video_level_metrics(tmp_path: Path, monkeypatch):
    if not FFPP.is_dir():
        pytest.skip(f"../shared not present: {FFPP}")
    # A lab layout of the FF++ clips; a real video and the fakes made from it stay on one side.
    root = tmp_path / "ffpp_lab"
    sides = {"development": {"real": ["519", "634"], "fake": ["519_515", "634_660"]},
             "evaluation": {"real": ["004"], "fake": ["004_982", "750_743"]}}
    for split, labels in sides.items():
        for label, names in labels.items():
            for name in names:
                _link(FFPP / label / f"{name}.mp4", root / split / label / f"{name}.mp4")
    (root / "evaluation" / "fake" / "truncated.mp4").write_bytes((FFPP / "fake" / "750_743.mp4").read_bytes()[:2000])

    # Count the frames the face detector sees, to check that a second run extracts nothing.
    seen = []
    real_get = dflab.faces.crops.get_face_detector

    class Counting(FaceDetector):
        def __init__(self, inner):
            self.inner, self.name = inner, inner.name

        def params(self):
            return self.inner.params()

        def detect_batch(self, images):
            seen.append(len(images))
            return self.inner.detect_batch(images)

    monkeypatch.setattr(dflab.faces.crops, "get_face_detector", lambda d="mtcnn", **o: Counting(real_get(d, **o)))

    out = tmp_path / "lab"
    config = LabConfig(task1=root, task23=None, detectors=["ela-logreg"], out=out, n_boot=20,
                       frames_per_video=4, face_detector="mtcnn")
    result = run_lab(config)
    first_frames = sum(seen)
    assert first_frames == 7 * 4  # seven clips, four frames each; the truncated file gives none

    task1 = result["tasks"]["task1"]["detectors"]["ela-logreg"]
    assert "error" not in task1
    for level in ("video_mean_prob", "video_mean_logit"):
        assert (task1[level]["n_real"], task1[level]["n_fake"]) == (1, 2)
        assert 0.0 <= task1[level]["auc"] <= 1.0
    assert task1["frame"]["n"] >= 3 * 3  # most sampled frames of the three clips show a face

    scores = read_scores(out / "scores.csv")
    assert set(scores["video"]) == {"004", "004_982", "750_743"}
    assert set(scores.loc[scores["label"] == 1, "video"]) == {"004_982", "750_743"}
    assert scores["path"].str.endswith(".png").all()
    train = pd.read_csv(out / "manifests" / "task1_train.csv", dtype=str)
    valid = pd.read_csv(out / "manifests" / "task1_valid.csv", dtype=str)
    assert set(train["video"]) | set(valid["video"]) == {"519", "519_515", "634", "634_660"}
    assert not set(train["video"]) & set(valid["video"])

    skipped = {Path(s["path"]).name: s for s in result["skipped"]}
    assert set(skipped) == {"truncated.mp4"} and skipped["truncated.mp4"]["stage"] == "faces"
    assert skipped["truncated.mp4"]["reason"]
    assert json.loads((out / "metrics.json").read_text())["skipped"] == result["skipped"]

    # Preparing the manifests again (as a rerun of the lab does) reuses the extracted faces.
    manifests = prepare_manifests(config)
    assert sum(seen) == first_frames
    assert manifests["task1_eval"]["path"].tolist() == scores["path"].drop_duplicates().tolist()
    assert read_video_status(out / "manifests").set_index("video").loc["truncated", "status"] == "error"
