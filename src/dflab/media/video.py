"""Video input: probe a file and sample frames evenly over the whole video with PyAV.

Frames come out as RGB uint8 arrays, turned the way the video is meant to be watched (the display
matrix or the legacy ``rotate`` tag of phone videos is honoured). Every failure -- empty file, not a
video, truncated file, audio only, no decodable frame -- is a :class:`VideoError` whose message is
one line ``<path>: <reason>``, so batch stages can record it and go on.

Sampling seeks instead of decoding every frame when that saves work: the container's index says
where the keyframes are, and a seek is made only when the next wanted frame lies past a keyframe
that is ahead of the decoder. Between wanted frames, frames that no other frame refers to are not
decoded at all (``skip_frame=NONREF``), which roughly halves decoding time on H.264. (When a wanted
index has no frame of its own, as in variable-frame-rate files, the next decoded frame serves it.)
"""

from __future__ import annotations

import bisect
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import numpy as np

#: Decode every frame instead of seeking when fewer than this many frames lie between two samples.
SEQUENTIAL_STRIDE = 4


class VideoError(ValueError):
    """A file that cannot be used as a video. ``str(err)`` is one line: ``<path>: <reason>``."""

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


@dataclass(frozen=True)
class VideoInfo:
    """What :func:`probe` reports. ``width``/``height`` are as displayed, i.e. after rotation."""

    frames: int
    fps: float
    duration: float
    width: int
    height: int
    rotation: int  # degrees counter-clockwise applied to decoded frames for display (0, 90, 180, 270)
    codec: str = ""
    frames_estimated: bool = False  # True when the container does not store a frame count


@dataclass
class Frame:
    index: int  # position of the frame in the video, from 0
    timestamp: float  # seconds from the start of the video
    image: np.ndarray  # (H, W, 3) RGB uint8, display orientation


def even_indices(total: int, n: int) -> np.ndarray:
    """``n`` frame indices evenly spaced over ``range(total)``, first and last frame included."""
    if total <= 0 or n <= 0:
        return np.zeros(0, dtype=np.int64)
    if n >= total:
        return np.arange(total, dtype=np.int64)
    return np.unique(np.linspace(0, total - 1, n).round().astype(np.int64))


def rotate_for_display(image: np.ndarray, rotation: int) -> np.ndarray:
    """Turn a decoded frame by ``rotation`` degrees counter-clockwise (FFmpeg's display-matrix angle)."""
    quarter_turns = int(round(rotation / 90.0)) % 4
    if quarter_turns == 0:
        return image
    return np.ascontiguousarray(np.rot90(image, k=quarter_turns))


def _rotation_of(stream, frame) -> int:
    """Counter-clockwise display rotation of a stream: display matrix first, else the ``rotate`` tag."""
    angle = 0.0
    try:
        angle = float(frame.rotation or 0.0)
    except (AttributeError, TypeError, ValueError):
        angle = 0.0
    if angle == 0.0:
        # MP4 used to carry it as "rotate", Matroska tags come back upper-case.
        tag = {k.lower(): v for k, v in (stream.metadata or {}).items()}.get("rotate")
        if tag:
            try:
                angle = -float(tag)  # the legacy tag is clockwise
            except ValueError:
                angle = 0.0
    return int(round(angle / 90.0)) % 4 * 90


def _check_file(path: Path) -> None:
    if not path.exists():
        raise VideoError(path, "file not found")
    if path.is_dir():
        raise VideoError(path, "is a folder, not a video file")
    if path.stat().st_size == 0:
        raise VideoError(path, "empty file (0 bytes)")


def _reason(err: BaseException) -> str:
    text = str(err).strip()
    # PyAV errors read "[Errno 1094995529] Invalid data found when processing input: '/path'"
    if "] " in text:
        text = text.split("] ", 1)[1]
    if ": '" in text:
        text = text.split(": '", 1)[0]
    return text or type(err).__name__


def _invalid_data_reason(path: Path) -> str:
    """Why FFmpeg found no usable data: a known container that is cut short, or not a video at all."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(12)
    except OSError:
        head = b""
    if head[4:8] == b"ftyp":
        return "truncated or damaged MP4/MOV file (its index, the moov atom, is missing or unreadable)"
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return "truncated or damaged Matroska/WebM file"
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return "truncated or damaged AVI file"
    return "not a video (format not recognised)"


def _open(path: Path):
    import av

    _check_file(path)
    try:
        container = av.open(str(path), mode="r", metadata_errors="ignore")
    except av.error.InvalidDataError:
        raise VideoError(path, _invalid_data_reason(path)) from None
    except (av.error.FFmpegError, OSError, UnicodeDecodeError) as err:
        reason = _reason(err)
        if "moov atom not found" in reason.lower():
            reason = "truncated or incomplete file (moov atom not found)"
        raise VideoError(path, f"cannot open video ({reason})") from None
    if not container.streams.video:
        kinds = sorted({s.type for s in container.streams})
        container.close()
        what = "audio only" if kinds == ["audio"] else ("no streams" if not kinds else "streams: " + ", ".join(kinds))
        raise VideoError(path, f"no video stream ({what})")
    stream = container.streams.video[0]
    if stream.codec_context is None or not stream.codec_context.name:
        container.close()
        raise VideoError(path, "video stream has no decoder available")
    return container, stream


def _fps(stream) -> float:
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate:
            value = float(rate)
            if 0 < value < 1000:
                return value
    return 25.0


def _start_pts(stream) -> int:
    return int(stream.start_time) if stream.start_time is not None else 0


def _frame_count(container, stream, fps: float) -> tuple[int, bool]:
    """(frames, estimated): the stored count, else the packet index, else duration x fps."""
    if stream.frames and stream.frames > 0:
        return int(stream.frames), False
    duration = _duration(container, stream)
    if duration > 0:
        return max(1, int(round(duration * fps))), True
    return 0, True


def _duration(container, stream) -> float:
    if stream.duration is not None and stream.time_base:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / 1_000_000.0  # AV_TIME_BASE
    return 0.0


def probe(path: str | os.PathLike) -> VideoInfo:
    """Frame count, frame rate, duration, display size and rotation of a video (decodes one frame)."""
    import av

    path = Path(path)
    container, stream = _open(path)
    try:
        fps = _fps(stream)
        frames, estimated = _frame_count(container, stream, fps)
        try:
            first = next(container.decode(stream), None)
        except av.error.FFmpegError as err:
            raise VideoError(path, f"cannot decode video ({_reason(err)})") from None
        if first is None:
            raise VideoError(path, "no decodable video frame")
        rotation = _rotation_of(stream, first)
        width, height = first.width, first.height
        if rotation in (90, 270):
            width, height = height, width
        duration = _duration(container, stream) or (frames / fps if frames else 0.0)
        return VideoInfo(frames=frames, fps=fps, duration=duration, width=width, height=height,
                         rotation=rotation, codec=stream.codec_context.name, frames_estimated=estimated)
    finally:
        container.close()


class _Decoder:
    """Decodes one stream forward, seeking when told, and names every frame by its index."""

    def __init__(self, container, stream, fps: float):
        self.container, self.stream, self.fps = container, stream, fps
        self.time_base = stream.time_base or Fraction(1, 1000)
        self.start = _start_pts(stream)
        self.codec = stream.codec_context
        self._frames: Iterator | None = None
        self.wanted: frozenset[int] = frozenset()  # indices that must be decoded even if unreferenced
        self.last_index = -1
        self.counter = 0  # frames seen since the last seek (for streams without timestamps)
        self.allow_skip = True  # off when frames are counted, since skipped frames would not be

    def index_of_pts(self, pts: int) -> int:
        return int(round(float((pts - self.start) * self.time_base) * self.fps))

    def pts_of_index(self, index: int) -> int:
        return self.start + int(round(index / self.fps / float(self.time_base)))

    def seek(self, index: int) -> None:
        self.container.seek(self.pts_of_index(index), stream=self.stream, backward=True, any_frame=False)
        self._frames = None
        self.last_index = -1

    def _generate(self):
        for packet in self.container.demux(self.stream):
            if self.allow_skip and packet.pts is not None:
                # Decided per packet from its own display timestamp (the decoder copies skip_frame when
                # the packet is submitted), so only wanted frames and the frames others refer to are
                # decoded. Deciding from "the next wanted one and everything after" decoded a few
                # frames past every target, since the decoder runs several packets ahead.
                wanted = self.index_of_pts(packet.pts) in self.wanted
                self.codec.skip_frame = "DEFAULT" if wanted else "NONREF"
            for frame in packet.decode():
                yield frame
        self.codec.skip_frame = "DEFAULT"

    def frames(self):
        if self._frames is None:
            self._frames = self._generate()
            self.counter = 0
        return self._frames

    def index_of(self, frame, sequential: bool) -> int:
        if not sequential and frame.pts is not None:
            return self.index_of_pts(frame.pts)
        return self.counter


def _keyframe_indices(decoder: _Decoder) -> list[int] | None:
    """Display indices of keyframes from the container's packet index (MP4/MOV have one); None if unknown.

    The index holds decoding timestamps, which run ahead of display timestamps by the B-frame delay
    (FF++'s x264 clips: the keyframe shown as frame 250 is stored at DTS frame 248), while seeking
    goes by display timestamp. Taking the index at face value made every seek land one GOP early and
    decode it again, so the index is shifted to start where the stream's first frame is shown.
    """
    try:
        entries = decoder.stream.index_entries
        if not entries:
            return None
        delay = max(0, decoder.start - min(e.timestamp for e in entries))
        keys = sorted({decoder.index_of_pts(e.timestamp + delay) for e in entries if e.is_keyframe})
    except (AttributeError, TypeError, ValueError):
        return None
    return keys or None


def sample_frames(path: str | os.PathLike, n: int = 32) -> list[Frame]:
    """``n`` frames evenly spaced over the whole video (all frames when it has ``n`` or fewer).

    Returns fewer frames when the file ends early (a truncated file keeps what can be decoded);
    raises :class:`VideoError` when no frame at all can be decoded.
    """
    import av

    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    path = Path(path)
    container, stream = _open(path)
    try:
        stream.thread_type = "AUTO"
        fps = _fps(stream)
        total, estimated = _frame_count(container, stream, fps)
        if estimated:
            # No stored frame count (MKV, WebM, some AVI): count packets, which reads but does not decode.
            total = _count_packets(container, stream) or total
            container.seek(0)
        decoder = _Decoder(container, stream, fps)
        targets = even_indices(total, n).tolist() if total else list(range(n))
        sequential = total == 0 or total < SEQUENTIAL_STRIDE * len(targets) or stream.start_time is None
        decoder.allow_skip = not sequential
        decoder.wanted = frozenset(targets)
        keyframes = None if sequential else _keyframe_indices(decoder)
        # The RGB conversion (swscale, GIL released) of each found frame runs on a second thread while
        # decoding goes on: the decoder's own threads leave about a third of two cores idle.
        with ThreadPoolExecutor(max_workers=1) as converter:
            try:
                frames = _collect(decoder, targets, sequential, keyframes,
                                  convert=lambda frame: converter.submit(frame.to_ndarray, format="rgb24"))
            except av.error.FFmpegError as err:
                raise VideoError(path, f"cannot decode video ({_reason(err)})") from None
            if not frames:
                raise VideoError(path, "no decodable video frame (file truncated or corrupt?)")
            rotation = _rotation_of(stream, frames[0][2])
            return [Frame(index=index, timestamp=timestamp, image=rotate_for_display(rgb.result(), rotation))
                    for index, timestamp, _frame, rgb in frames]
    finally:
        container.close()


def _count_packets(container, stream) -> int:
    import av

    try:
        return sum(1 for packet in container.demux(stream) if packet.size > 0)
    except av.error.FFmpegError:
        return 0


def _collect(decoder: _Decoder, targets: list[int], sequential: bool, keyframes: list[int] | None, convert):
    """Decode the wanted frames: (index, timestamp, av.VideoFrame, convert(frame)) in order, one per
    target at most."""
    import av

    found: list = []
    remaining = list(targets)
    while remaining:
        target = remaining[0]
        if not sequential and _should_seek(decoder, target, keyframes):
            decoder.seek(target)
        got = None
        try:
            for frame in decoder.frames():
                index = decoder.index_of(frame, sequential)
                decoder.counter += 1
                decoder.last_index = index
                if index >= target:
                    got = (index, frame)
                    break
        except av.error.FFmpegError:
            # A damaged packet mid-file: keep what was decoded so far (a truncated file is still useful).
            if not found:
                raise
            break
        if got is None:  # end of file before the target: later targets cannot be reached either
            break
        index, frame = got
        if frame.pts is not None:
            timestamp = float((frame.pts - decoder.start) * decoder.time_base)
        else:
            timestamp = index / decoder.fps
        found.append((index, max(0.0, timestamp), frame, convert(frame)))
        # Targets already passed (a seek landed late or frames were missing) are served by this frame.
        remaining = [t for t in remaining if t > index]
    return found


def _should_seek(decoder: _Decoder, target: int, keyframes: list[int] | None) -> bool:
    if decoder._frames is None:
        return target > 0  # fresh decoder stands at the start of the file
    position = decoder.last_index
    if target <= position:
        return True
    if keyframes is None:
        return target - position > 250  # unknown GOP: x264's default keyframe interval
    # Seeking pays only when a keyframe lies between the decoder's position and the target.
    k = bisect.bisect_right(keyframes, target) - 1
    return k >= 0 and keyframes[k] > position + 1


def h264_round_trip(image: np.ndarray, crf: int) -> np.ndarray:
    """The RGB image after H.264 intra coding at constant rate factor ``crf`` (0-51, higher is coarser)
    and decoding with PyAV: the blocking, chroma subsampling (4:2:0) and smoothing of a video codec,
    which JPEG round trips do not give. Odd sizes are padded by edge replication and cropped back."""
    import av

    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an RGB uint8 (H, W, 3) image, got {image.dtype} {image.shape}")
    if not 0 <= int(crf) <= 51:
        raise ValueError(f"H.264 CRF must be in 0..51, got {crf}")
    height, width = image.shape[:2]
    padded = np.pad(image, ((0, height % 2), (0, width % 2), (0, 0)), mode="edge")
    codec = av.CodecContext.create("libx264", "w")
    codec.width, codec.height, codec.pix_fmt = padded.shape[1], padded.shape[0], "yuv420p"
    codec.options = {"crf": str(int(crf)), "preset": "ultrafast", "tune": "zerolatency"}
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(padded), format="rgb24")
    packets = codec.encode(frame) + codec.encode(None)
    decoder = av.CodecContext.create("h264", "r")
    frames = [frame for packet in packets for frame in decoder.decode(packet)] + list(decoder.decode(None))
    if not frames:
        raise ValueError("H.264 round trip gave no frame")
    return np.ascontiguousarray(frames[0].to_ndarray(format="rgb24")[:height, :width])
