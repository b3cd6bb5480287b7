"""Face detection (MTCNN, BlazeFace) on the FF++ clips, crops, tracking and face extraction."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import av
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from dflab.faces.detection import Face, FaceDetector, box_iou, weighted_nms
from dflab.faces.geometry import crop_face, crop_region
from dflab.faces.crops import extract_faces, read_sources
from dflab.faces.finder import get_face_detector
from dflab.faces.tracking import select_faces, track_faces
from dflab.media.video import sample_frames

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
FFPP = SHARED / "datasets" / "videos" / "ffpp_c23"
BLAZEFACE_DIR = SHARED / "weights" / "blazeface"
CLIPS = sorted(FFPP.glob("*/*.mp4")) if FFPP.is_dir() else []


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """The test machine's cores are shared: torch's thread pool waits on descheduled threads for
    every small op of MTCNN's cascade, which makes it several times slower than one thread."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def need_shared(*paths: Path) -> None:
    for path in paths:
        if not path.exists():
            pytest.skip(f"../shared not present: {path}")


@lru_cache(maxsize=None)
def clip_frames(clip: Path, n: int = 4):
    return tuple(sample_frames(clip, n))


def make_grey_video(path: Path, n: int = 10) -> Path:
    container = av.open(str(path), "w")
    stream = container.add_stream("mpeg4", rate=10)
    stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
    rng = np.random.default_rng(1)
    for _ in range(n):
        image = np.full((64, 64, 3), rng.integers(0, 256, 3), dtype=np.uint8)
        for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)
    container.close()
    return path


# -- geometry ---------------------------------------------------------------------------------------

def test_crop_face_centres_and_scales_the_box():
    image = np.zeros((200, 300, 3), dtype=np.uint8)
    image[80:120, 130:170] = (255, 0, 0)  # a 40x40 red "face" centred at (150, 100)
    crop = crop_face(image, (130, 80, 170, 120), scale=2.0, size=64)
    assert crop.shape == (64, 64, 3) and crop.dtype == np.uint8
    # 2x the box: the red square fills the middle half of the crop
    assert crop[20:44, 20:44, 0].min() > 200 and crop[:12, :, 0].max() < 60 and crop[:, 52:, 0].max() < 60
    assert crop_region((130, 80, 170, 120), scale=2.0) == (110, 60, 190, 140)
    # not square: a tall box keeps its shape and the longer side becomes `size`
    tall = crop_face(image, (140, 60, 160, 140), scale=1.0, size=64, square=False)
    assert tall.shape == (64, 16, 3)


def test_crop_face_pads_at_the_border_and_keeps_the_face_centred():
    image = np.full((100, 100, 3), 200, dtype=np.uint8)
    crop = crop_face(image, (0, 0, 40, 40), scale=1.5, size=60)  # region (-10,-10)..(50,50)
    assert crop.shape == (60, 60, 3)
    assert crop[:8, :8].max() == 0 and crop[:, :8].max() == 0  # padded with black
    assert crop[15:, 15:].min() == 200
    with pytest.raises(ValueError, match="outside"):
        crop_face(image, (300, 300, 340, 340))
    with pytest.raises(ValueError, match="empty face box"):
        crop_face(image, (50, 50, 50, 60))


def test_box_iou_and_weighted_nms():
    a = np.array([[0, 0, 10, 10]])
    b = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30]])
    assert box_iou(a, b)[0] == pytest.approx([1.0, 50 / 150, 0.0])
    boxes = np.array([[0, 0, 10, 10], [2, 0, 12, 10], [50, 50, 60, 60]], dtype=float)
    merged = weighted_nms(boxes, np.array([0.9, 0.3, 0.8]), 0.3)
    assert len(merged) == 2
    assert merged[0][1] == 0.9 and merged[0][0] == pytest.approx([0.5, 0, 10.5, 10])  # (0*0.9 + 2*0.3)/1.2
    assert merged[1][0] == pytest.approx([50, 50, 60, 60])


def test_tracker_follows_faces_across_frames():
    left = lambda dx: Face((10 + dx, 10, 50 + dx, 50), 0.99)  # noqa: E731
    right = lambda dx: Face((200 + dx, 10, 240 + dx, 50), 0.95)  # noqa: E731
    frames = [[left(0), right(0)], [right(4), left(3)], [left(6)], [right(9), left(8)], [Face((400, 300, 440, 340), 0.9)]]
    ids = track_faces(frames)
    assert ids == [[0, 1], [1, 0], [0], [1, 0], [2]]
    chosen = select_faces(frames, "all")
    assert [[t for _, t in frame] for frame in chosen] == ids
    largest = select_faces([[left(0), Face((0, 0, 100, 100), 0.5)], []], "largest")
    assert largest[0][0][0].box == (0, 0, 100, 100) and largest[1] == []
    with pytest.raises(ValueError, match="policy"):
        select_faces(frames, "first")


# -- detectors on real frames ---------------------------------------------------------------------

def test_blazeface_anchors_match_the_shipped_file():
    need_shared(BLAZEFACE_DIR / "anchors.npy")
    from dflab.faces.blazeface import _blazeface_anchors

    assert np.allclose(_blazeface_anchors(), np.load(BLAZEFACE_DIR / "anchors.npy"))


def test_blazeface_weights_by_env_and_bad_weights(tmp_path, monkeypatch):
    need_shared(BLAZEFACE_DIR / "blazeface.pth")
    from dflab.faces.blazeface import BlazeFaceDetector

    monkeypatch.setenv("DFLAB_WEIGHTS", str(SHARED / "weights"))
    assert BlazeFaceDetector().weights_path == BLAZEFACE_DIR / "blazeface.pth"
    monkeypatch.setenv("DFLAB_WEIGHTS", str(tmp_path / "empty"))
    with pytest.raises(FileNotFoundError, match="DFLAB_WEIGHTS"):
        BlazeFaceDetector()
    bad = tmp_path / "blazeface.pth"
    bad.write_bytes(b"garbage, not a torch file")
    with pytest.raises(ValueError, match="cannot load BlazeFace weights"):
        BlazeFaceDetector(bad)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["mtcnn", "blazeface"])
def test_faces_found_in_most_sampled_frames_of_every_clip(name):
    need_shared(FFPP, BLAZEFACE_DIR)
    options = {"weights": str(BLAZEFACE_DIR / "blazeface.pth")} if name == "blazeface" else {}
    detector = get_face_detector(name, **options)
    for clip in CLIPS:
        frames = clip_frames(clip)
        detections = detector.detect_batch([f.image for f in frames])
        with_face = [faces for faces in detections if faces]
        assert len(with_face) >= 3, f"{name} found faces in {len(with_face)}/4 frames of {clip.name}"
        for frame, faces in zip(frames, detections):
            height, width = frame.image.shape[:2]
            for face in faces:
                x0, y0, x1, y1 = face.box
                assert 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height and 0.5 <= face.score <= 1.0
            if faces:
                # the main face of these news clips is at least 60 px and roughly as wide as tall
                face = max(faces, key=lambda f: f.area)
                w, h = face.box[2] - face.box[0], face.box[3] - face.box[1]
                assert w >= 60 and 0.5 < w / h < 1.5
                assert face.landmarks is not None and face.landmarks.shape[1] == 2


def test_mtcnn_and_blazeface_agree_on_the_face():
    need_shared(FFPP, BLAZEFACE_DIR)
    mtcnn = get_face_detector("mtcnn")
    blazeface = get_face_detector("blazeface", weights=str(BLAZEFACE_DIR / "blazeface.pth"))
    frame = clip_frames(FFPP / "real" / "519.mp4")[0].image
    a = max(mtcnn.detect(frame), key=lambda f: f.area)
    b = max(blazeface.detect(frame), key=lambda f: f.area)
    assert box_iou(np.array([a.box]), np.array([b.box]))[0, 0] > 0.4


def test_blazeface_shrinking_large_frames_keeps_the_detections(monkeypatch):
    # A 1080p frame is shrunk 8x once (whole-factor area resampling) before tiling, instead of
    # area-resizing each 1080x1080 tile: the faces found must be the same.
    need_shared(FFPP, BLAZEFACE_DIR)
    from dflab.faces.blazeface import BlazeFaceDetector

    detector = BlazeFaceDetector(BLAZEFACE_DIR / "blazeface.pth")
    frames = [f.image for f in clip_frames(FFPP / "fake" / "750_743.mp4")[:4]]
    assert detector._shrink(frames[0])[1] == 8
    shrunk = detector.detect_batch(frames)
    monkeypatch.setattr(detector, "_shrink", lambda image: (image, 1))
    full = detector.detect_batch(frames)
    for a, b in zip(shrunk, full):
        best_a = max(a, key=lambda f: f.score)
        best_b = max(b, key=lambda f: f.score)
        assert box_iou(np.array([best_a.box]), np.array([best_b.box]))[0, 0] > 0.9
        assert np.abs(best_a.landmarks - best_b.landmarks).max() < 12  # pixels in a 1920x1080 frame


# -- extraction -----------------------------------------------------------------------------------

class CountingDetector(FaceDetector):
    """Wraps a detector and counts the frames it is asked about (to see what a rerun redoes)."""

    def __init__(self, inner: FaceDetector):
        self.inner, self.calls, self.name = inner, 0, inner.name

    def params(self) -> dict:
        return self.inner.params()

    def detect_batch(self, images):
        self.calls += len(images)
        return self.inner.detect_batch(images)


def test_extract_faces_videos_images_bad_files_and_resume(tmp_path):
    need_shared(FFPP, BLAZEFACE_DIR)
    clip = FFPP / "real" / "519.mp4"
    sources = tmp_path / "sources"
    (sources / "frames" / "vid7").mkdir(parents=True)
    Image.fromarray(clip_frames(clip)[1].image).save(sources / "frames" / "vid7" / "0001.png")
    make_grey_video(sources / "grey.mp4")
    (sources / "broken.mp4").write_text("not a video")
    (sources / "empty.avi").write_bytes(b"")
    detector = CountingDetector(get_face_detector("blazeface", weights=str(BLAZEFACE_DIR / "blazeface.pth")))
    out = tmp_path / "out"

    manifest = extract_faces([clip, sources], out, n_frames=4, detector=detector, size=128, scale=1.3)
    status = read_sources(out).set_index("source")
    assert status.loc[str(clip), "status"] == "ok" and status.loc[str(clip), "frames"] == 4
    assert status.loc[str(sources / "grey.mp4"), "status"] == "no_face"
    assert status.loc[str(sources / "grey.mp4"), "reason"] == "no face in any of 4 frames"
    assert status.loc[str(sources / "broken.mp4"), "status"] == "error"
    assert "not a video" in status.loc[str(sources / "broken.mp4"), "reason"]
    assert "empty file" in status.loc[str(sources / "empty.avi"), "reason"]
    image_row = status.loc[str(sources / "frames" / "vid7" / "0001.png")]
    assert image_row["status"] == "ok" and image_row["kind"] == "image" and image_row["video"] == "frames/vid7"

    clip_rows = manifest[manifest["source"] == str(clip)]
    assert len(clip_rows) == status.loc[str(clip), "faces"] == status.loc[str(clip), "frames_with_face"]
    assert clip_rows["frame_index"].tolist() == sorted(clip_rows["frame_index"]) and (clip_rows["track_id"] == 0).all()
    assert set(clip_rows["video"]) == {"519"}
    for row in manifest.itertuples():
        with Image.open(row.path) as crop:
            assert crop.size == (128, 128)
        assert row.x1 > row.x0 and row.y1 > row.y0 and 0 < row.confidence <= 1
    assert pd.read_csv(out / "faces.csv")["path"].tolist() == manifest["path"].tolist()
    assert len(manifest.attrs["sources"]) == 5
    first_calls = detector.calls
    assert first_calls == 4 + 4 + 1

    # rerun: completed sources are not redone; the bad ones are tried again and fail the same way
    again = extract_faces([clip, sources], out, n_frames=4, detector=detector, size=128, scale=1.3)
    assert detector.calls == first_calls
    assert again["path"].tolist() == manifest["path"].tolist()
    # other parameters = another cache key = extracted again
    extract_faces([clip], out, n_frames=4, detector=detector, size=96, scale=1.3)
    assert detector.calls == first_calls + 4


def test_extract_faces_rejects_bad_parameters(tmp_path):
    with pytest.raises(ValueError, match="policy"):
        extract_faces([], tmp_path, policy="biggest", detector=CountingDetector(FaceDetector()))


def test_face_detector_base_needs_an_implementation():
    with pytest.raises(NotImplementedError, match="neither detect nor detect_batch"):
        FaceDetector().detect(np.zeros((8, 8, 3), np.uint8))


@pytest.mark.parametrize("kernel, stride", [(2, 2), (3, 2), (3, 3)])
def test_strided_max_pool_is_pytorchs_ceil_mode_max_pool_bit_for_bit(kernel, stride):
    import torch

    from dflab.faces.pooling import StridedMaxPool

    pool, generator = StridedMaxPool(kernel, stride), torch.Generator().manual_seed(kernel * 10 + stride)
    for height in range(1, 26):
        for width in (1, 2, 3, 4, 7, 12, 23):
            x = torch.randn(2, 3, height, width, generator=generator)
            if height < kernel or width < kernel:
                continue  # PyTorch refuses maps smaller than the window; so does the replacement
            assert torch.equal(pool(x), torch.max_pool2d(x, kernel, stride, ceil_mode=True)), (height, width)


def test_mtcnn_with_strided_pools_finds_facenet_pytorchs_faces_bit_for_bit():
    """dflab's MTCNN (its pooling layers replaced) against facenet-pytorch's own on scenes with a whole
    face, a face cut by the border, two faces and none: the same boxes, scores and landmarks, exactly."""
    import torch
    from facenet_pytorch import MTCNN
    from skimage import data

    from dflab.faces.mtcnn import MTCNNDetector
    from dflab.faces.pooling import StridedMaxPool

    astronaut = data.astronaut()[:320, 80:400]  # the face at x 100-189, y 62-174
    border = np.roll(astronaut, (-60, -120), axis=(0, 1))  # the face cut by the left edge
    pair = np.concatenate([np.asarray(Image.fromarray(astronaut).resize((160, 160)))] * 2, axis=1)
    pair = np.pad(pair, ((80, 80), (0, 0), (0, 0)), mode="edge")
    noise = np.random.default_rng(0).integers(0, 256, astronaut.shape, dtype=np.uint8)
    scenes = np.stack([astronaut, border, pair, noise])
    ours = MTCNNDetector(device="cpu")._mtcnn
    assert sum(isinstance(layer, StridedMaxPool) for layer in ours.modules()) == 6  # P 1, R 2, O 3
    reference = MTCNN(keep_all=True, min_face_size=40, thresholds=[0.6, 0.7, 0.7], select_largest=False,
                      post_process=False, device="cpu")
    with torch.no_grad():
        want, got = reference.detect(scenes, landmarks=True), ours.detect(scenes, landmarks=True)
    assert [0 if boxes is None else len(boxes) for boxes in got[0]] == [1, 1, 2, 0]
    for want_part, got_part in zip(want, got):
        for want_image, got_image in zip(want_part, got_part):
            np.testing.assert_array_equal(np.asarray(got_image, dtype=float), np.asarray(want_image, dtype=float))
