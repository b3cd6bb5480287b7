"""Video probing and frame sampling (on videos generated here and on the FF++ clips), aggregation and
video-level prediction."""

from __future__ import annotations

import math
from pathlib import Path

import av
import numpy as np
import pytest

from dflab.detectors.base import Detector
from dflab.media.video import VideoError, even_indices, probe, rotate_for_display, sample_frames
from dflab.inference.video import overlay_heatmap, predict_video
from dflab.metrics import aggregate_frames as aggregate

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
FFPP = SHARED / "datasets" / "videos" / "ffpp_c23"
BLAZEFACE = SHARED / "weights" / "blazeface" / "blazeface.pth"

CODEC = "libx264" if "libx264" in av.codecs_available else "mpeg4"
STEP = 5  # grey level step between frames: frame i is filled with i * STEP, so a frame names itself


def make_video(path: Path, n: int = 40, size: tuple[int, int] = (64, 48), *, codec: str = CODEC, rate: int = 10,
               gop: int | None = None, rotation: int | None = None, metadata: dict | None = None,
               noise: bool = False, options: dict | None = None) -> Path:
    """A small video written with PyAV: frame i is grey level i*STEP (or random noise)."""
    rng = np.random.default_rng(0)
    container = av.open(str(path), "w", options=options or {})
    stream = container.add_stream(codec, rate=rate)
    stream.width, stream.height = size
    stream.pix_fmt = "yuv420p"
    if codec == "libx264":
        stream.options = {"crf": "4"}
    if gop:
        stream.codec_context.gop_size = gop
    if metadata:
        stream.metadata.update(metadata)
    if rotation is not None:
        stream.set_display_rotation(rotation)
    for i in range(n):
        if noise:
            image = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
        else:
            image = np.full((size[1], size[0], 3), i * STEP % 256, dtype=np.uint8)
        for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)
    container.close()
    return path


def grey_index(image: np.ndarray) -> int:
    return int(round(float(image.mean()) / STEP))


def decode_all(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]


# -- sampling ---------------------------------------------------------------------------------------

def test_even_indices_cover_whole_video():
    assert even_indices(40, 4).tolist() == [0, 13, 26, 39]
    assert even_indices(3, 8).tolist() == [0, 1, 2]
    assert even_indices(1, 32).tolist() == [0]
    assert even_indices(0, 5).tolist() == []


def test_probe_and_sequential_sampling(tmp_path):
    path = make_video(tmp_path / "grey.mp4", n=40)
    info = probe(path)
    assert (info.frames, info.width, info.height, info.rotation) == (40, 64, 48, 0)
    assert info.fps == pytest.approx(10.0)
    assert info.duration == pytest.approx(4.0, abs=0.15)
    frames = sample_frames(path, 4)
    assert [f.index for f in frames] == [0, 13, 26, 39]
    assert [grey_index(f.image) for f in frames] == [0, 13, 26, 39]
    assert [f.timestamp for f in frames] == pytest.approx([0.0, 1.3, 2.6, 3.9], abs=1e-6)
    assert all(f.image.dtype == np.uint8 and f.image.shape == (48, 64, 3) for f in frames)
    # more frames asked than the video has: every frame once
    assert [f.index for f in sample_frames(path, 100)] == list(range(40))


def test_seeking_returns_exactly_the_frames_a_full_decode_gives(tmp_path):
    # 300 frames, keyframe every 30, B-frames: sampling 6 seeks past whole GOPs and skips non-reference frames.
    path = make_video(tmp_path / "long.mp4", n=300, gop=30)
    everything = decode_all(path)
    frames = sample_frames(path, 6)
    expected = even_indices(300, 6).tolist()
    assert [f.index for f in frames] == expected
    for frame in frames:
        assert np.array_equal(frame.image, everything[frame.index])
        assert abs(float(frame.image.mean()) - frame.index * STEP % 256) < 2  # and it is the frame asked for


def _decoded_indices(monkeypatch) -> list[int]:
    """Records the index of every frame the sampler's decoder produces."""
    import dflab.media.video as video

    seen: list[int] = []
    generate = video._Decoder._generate

    def counting(self):
        for frame in generate(self):
            seen.append(self.index_of_pts(frame.pts))
            yield frame

    monkeypatch.setattr(video._Decoder, "_generate", counting)
    return seen


@pytest.mark.parametrize("source", ["generated", "ffpp"])
def test_sampling_decodes_no_frame_twice_and_skips_unreferenced_ones(tmp_path, monkeypatch, source):
    # MP4 indexes keyframes by decoding time, which runs ahead of display time when there are B-frames;
    # read naively, every seek lands one GOP early and decodes it again.
    if source == "ffpp":
        if not FFPP.is_dir():
            pytest.skip(f"{FFPP} not present (../shared holds the FF++ clips)")
        path = FFPP / "real" / "004.mp4"
    else:
        path = make_video(tmp_path / "long.mp4", n=300, gop=30, options={"movflags": "faststart"})
    total = probe(path).frames
    seen = _decoded_indices(monkeypatch)
    frames = sample_frames(path, 32)
    assert [f.index for f in frames] == even_indices(total, 32).tolist()
    assert len(seen) == len(set(seen)), "a frame was decoded twice"
    assert len(seen) < 0.8 * total  # unreferenced frames between samples are skipped


def test_matroska_without_frame_count(tmp_path):
    path = make_video(tmp_path / "clip.mkv", n=30)
    info = probe(path)
    assert info.frames_estimated and info.frames == 30
    frames = sample_frames(path, 3)
    assert [f.index for f in frames] == [0, 14, 29]
    assert [grey_index(f.image) for f in frames] == [0, 14, 29]


def test_avi_with_mpeg4(tmp_path):
    path = make_video(tmp_path / "clip.avi", n=20, codec="mpeg4")
    frames = sample_frames(path, 3)
    everything = decode_all(path)  # mpeg4 at its default bit rate is too lossy to read grey levels exactly
    assert [f.index for f in frames] == [0, 10, 19]
    assert all(np.array_equal(f.image, everything[f.index]) for f in frames)


# -- rotation ---------------------------------------------------------------------------------------

def _half_white(path: Path, **kwargs) -> Path:
    container = av.open(str(path), "w")
    stream = container.add_stream(CODEC, rate=10)
    stream.width, stream.height, stream.pix_fmt = 64, 32, "yuv420p"
    if kwargs.get("rotation") is not None:
        stream.set_display_rotation(kwargs["rotation"])
    if kwargs.get("metadata"):
        stream.metadata.update(kwargs["metadata"])
    image = np.zeros((32, 64, 3), dtype=np.uint8)
    image[:, :32] = 255  # left half white
    for _ in range(3):
        for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)
    container.close()
    return path


def test_display_matrix_rotation_is_honoured(tmp_path):
    # A phone video: stored landscape, display matrix says turn 90 degrees counter-clockwise.
    path = _half_white(tmp_path / "phone.mp4", rotation=90)
    info = probe(path)
    assert (info.rotation, info.width, info.height) == (90, 32, 64)
    image = sample_frames(path, 1)[0].image
    assert image.shape == (64, 32, 3)
    # counter-clockwise: the stored left half ends up at the bottom
    assert image[40:].mean() > 200 and image[:24].mean() < 50


def test_legacy_rotate_tag_is_honoured(tmp_path):
    # The old "rotate" tag is clockwise; Matroska keeps it as a plain tag (no display matrix).
    path = _half_white(tmp_path / "tagged.mkv", metadata={"rotate": "90"})
    image = sample_frames(path, 1)[0].image
    assert image.shape == (64, 32, 3)
    assert image[:24].mean() > 200 and image[40:].mean() < 50  # clockwise: left half goes to the top
    assert probe(path).rotation == 270


def test_rotate_for_display_quarter_turns():
    image = np.arange(6).reshape(2, 3)
    assert rotate_for_display(image, 0) is image
    assert rotate_for_display(image, 90).tolist() == [[2, 5], [1, 4], [0, 3]]
    assert rotate_for_display(image, -90).tolist() == [[3, 0], [4, 1], [5, 2]]
    assert rotate_for_display(image, 180).tolist() == [[5, 4, 3], [2, 1, 0]]


# -- bad input --------------------------------------------------------------------------------------

def _audio(path: Path, codec: str) -> Path:
    container = av.open(str(path), "w")
    stream = container.add_stream(codec, rate=16000)
    samples = (np.sin(np.arange(16000) / 10.0) * 3000).astype(np.int16)
    frame_size = stream.codec_context.frame_size or 1024
    for start in range(0, len(samples) - frame_size, frame_size):
        frame = av.AudioFrame.from_ndarray(samples[None, start:start + frame_size], format="s16", layout="mono")
        frame.sample_rate = 16000
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)
    container.close()
    return path


@pytest.mark.parametrize("case", ["empty", "text", "truncated", "audio_m4a", "audio_wav", "missing", "folder"])
def test_bad_files_give_one_line_video_errors(tmp_path, case):
    if case == "empty":
        path = tmp_path / "empty.mp4"
        path.write_bytes(b"")
        expected = "empty file"
    elif case == "text":
        path = tmp_path / "notes.mp4"
        path.write_text("these are meeting notes, not a video\n" * 20)
        expected = "not a video"
    elif case == "truncated":
        # PyAV writes the index (moov) at the end: the first half has none.
        full = make_video(tmp_path / "full.mp4", n=60, noise=True)
        path = tmp_path / "half.mp4"
        path.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
        expected = "truncated"
    elif case == "audio_m4a":
        path = _audio(tmp_path / "voice.m4a", "aac")
        expected = "no video stream (audio only)"
    elif case == "audio_wav":
        path = _audio(tmp_path / "voice.wav", "pcm_s16le")
        expected = "no video stream (audio only)"
    elif case == "missing":
        path = tmp_path / "nowhere.mp4"
        expected = "file not found"
    else:
        path = tmp_path
        expected = "is a folder"
    for call in (probe, sample_frames):
        with pytest.raises(VideoError) as info:
            call(path)
        message = str(info.value)
        assert message.startswith(str(path) + ": ") and expected in message and "\n" not in message


def test_truncated_file_with_index_first_keeps_the_decodable_frames(tmp_path):
    full = make_video(tmp_path / "full.mp4", n=60, noise=True, options={"movflags": "faststart"})
    half = tmp_path / "half.mp4"
    half.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    frames = sample_frames(half, 8)
    assert 1 <= len(frames) < 8
    everything = decode_all(full)
    for frame in frames:  # what comes back is right, just fewer frames
        assert frame.index < 40
        assert np.array_equal(frame.image, everything[frame.index])


def test_one_frame_video(tmp_path):
    path = make_video(tmp_path / "still.mp4", n=1)
    assert probe(path).frames == 1
    frames = sample_frames(path, 32)
    assert len(frames) == 1 and frames[0].index == 0 and frames[0].image.shape == (48, 64, 3)


# -- aggregation ------------------------------------------------------------------------------------

def test_mean_prob_and_mean_logit():
    assert aggregate([0.2, 0.4, 0.9], "mean_prob") == pytest.approx(0.5)
    # logits 0 and ln 9 -> mean ln 3 -> sigmoid 3/4
    assert aggregate([0.5, 0.9], "mean_logit") == pytest.approx(0.75)
    assert aggregate([0.5, float("nan"), 0.9], "mean_logit") == pytest.approx(0.75)
    assert aggregate([0.0, 1.0], "mean_logit") == pytest.approx(0.5)  # clipped, not inf - inf
    assert math.isnan(aggregate([], "mean_prob")) and math.isnan(aggregate([float("nan")], "confident"))
    with pytest.raises(ValueError, match="unknown aggregation"):
        aggregate([0.5], "median")


def test_confident_rule_hand_computed():
    # 32 frames, floor(32 / 2.5) = 12: 13 confident fakes (> 12 and > 11) -> mean of those
    assert aggregate([0.9] * 13 + [0.3] * 19, "confident") == pytest.approx(0.9)
    # 12 confident fakes is not more than 12 -> plain mean
    assert aggregate([0.9] * 12 + [0.3] * 20, "confident") == pytest.approx((12 * 0.9 + 20 * 0.3) / 32)
    # more than 0.9 * 32 = 28.8 confident reals -> mean of those
    assert aggregate([0.1] * 29 + [0.5] * 3, "confident") == pytest.approx(0.1)
    assert aggregate([0.1] * 28 + [0.5] * 4, "confident") == pytest.approx((28 * 0.1 + 4 * 0.5) / 32)
    # 8 frames all fake: floor(8/2.5) = 3 < 8 but the absolute "> 11" keeps the plain mean...
    assert aggregate([0.95] * 6 + [0.5] * 2, "confident") == pytest.approx((6 * 0.95 + 1.0) / 8)
    # ...unless lowered
    assert aggregate([0.95] * 6 + [0.5] * 2, "confident", min_fake_frames=3) == pytest.approx(0.95)


def test_overlay_heatmap_colours_the_hot_region():
    face = np.full((32, 32, 3), 128, dtype=np.uint8)
    heat = np.zeros((16, 16))
    heat[:, 8:] = 1.0  # right half hot, at half resolution
    out = overlay_heatmap(face, heat)
    assert out.shape == face.shape and out.dtype == np.uint8
    assert out[:, 20:, 0].mean() > out[:, :12, 0].mean() + 40  # JET: hot is red
    assert out[:, :12, 2].mean() > out[:, 20:, 2].mean() + 40  # cold is blue


# -- video-level prediction -------------------------------------------------------------------------

class BrightnessDetector(Detector):
    """Test detector following the contract: P(fake) = mean brightness; heatmap = brightness."""

    trainable = False

    def is_fitted(self) -> bool:
        return True

    def predict_proba(self, images, *, on_error: str = "raise") -> np.ndarray:
        return np.asarray([float(np.asarray(image).mean()) / 255.0 for image in images])

    def explain(self, image) -> np.ndarray:
        return np.asarray(image, dtype=np.float64).mean(axis=2) / 255.0


def test_predict_video_bad_file_and_no_face(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_text("not a video")
    result = predict_video(BrightnessDetector(), bad, n_frames=4)
    assert result["status"] == "error" and "not a video" in result["reason"] and math.isnan(result["p_fake"])
    if not BLAZEFACE.is_file():
        pytest.skip(f"../shared not present: {BLAZEFACE}")
    grey = make_video(tmp_path / "grey.mp4", n=20)
    result = predict_video(BrightnessDetector(), grey, n_frames=4, face_detector="blazeface",
                           face_detector_options={"weights": str(BLAZEFACE)})
    assert result["status"] == "no_face" and result["frames"] == 4 and result["frames_with_face"] == 0
    assert result["reason"] == "no face in any of 4 frames" and math.isnan(result["p_fake"])


def test_predict_video_on_ffpp_clip_with_heatmaps(tmp_path):
    clip = FFPP / "real" / "519.mp4"
    if not clip.is_file() or not BLAZEFACE.is_file():
        pytest.skip(f"../shared not present: {clip} / {BLAZEFACE}")
    result = predict_video(BrightnessDetector(), clip, n_frames=4, face_detector="blazeface",
                           face_detector_options={"weights": str(BLAZEFACE)}, aggregation="mean_logit",
                           heatmap_dir=tmp_path / "heat")
    assert result["status"] == "ok" and result["frames"] == 4 and result["frames_with_face"] >= 3
    scores = [row["p_fake"] for row in result["frame_scores"]]
    assert result["p_fake"] == pytest.approx(aggregate(scores, "mean_logit"))
    assert all(0.0 < s < 1.0 for s in scores)
    assert [row["frame_index"] for row in result["frame_scores"]] == sorted(row["frame_index"] for row in result["frame_scores"])
    assert len(result["heatmaps"]) == len(scores)
    from PIL import Image

    for file in result["heatmaps"]:
        with Image.open(file) as image:
            assert image.size == (256, 256)
