"""Faces: detect them in frames (MTCNN or BlazeFace), crop them, and extract crops from videos/images.

One small interface for detectors: ``detector.detect(image) -> list[Face]`` (and ``detect_batch``),
with boxes in pixel coordinates ``(x0, y0, x1, y1)`` of the image given. :func:`extract_faces` turns
videos, images and folders into PNG crops plus a manifest (one row per crop, with a ``path``
column, so the manifest feeds a detector directly) and a per-source status table; a rerun skips
sources already extracted with the same parameters.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Iterable, Sequence

import cv2
import numpy as np
import pandas as pd

from dflab.images import ImageError, load_image
from dflab.progress import track, warn
from dflab.video import VideoError, is_video_path, sample_frames

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"})

#: Environment variable naming a folder of third-party weights (``<folder>/blazeface/blazeface.pth``).
WEIGHTS_ENV = "DFLAB_WEIGHTS"

#: Bumped when the crop layout changes, so older extractions are not reused.
EXTRACTION_VERSION = 1

MANIFEST_FILE = "faces.csv"
SOURCES_FILE = "sources.csv"


@dataclass(frozen=True)
class Face:
    box: tuple[float, float, float, float]  # (x0, y0, x1, y1) in pixels of the image searched
    score: float  # detector confidence in [0, 1]
    landmarks: np.ndarray | None = None  # (K, 2) points (x, y) in pixels, when the detector gives them

    @property
    def area(self) -> float:
        x0, y0, x1, y1 = self.box
        return max(0.0, x1 - x0) * max(0.0, y1 - y0)


class FaceDetector:
    """Base class: ``detect(image)`` for one RGB uint8 image, ``detect_batch`` for several.
    Subclasses implement at least one of the two."""

    name = ""

    def detect(self, image: np.ndarray) -> list[Face]:
        if type(self).detect_batch is FaceDetector.detect_batch:
            raise NotImplementedError(f"{type(self).__name__} implements neither detect nor detect_batch")
        return self.detect_batch([image])[0]

    def detect_batch(self, images: Sequence[np.ndarray]) -> list[list[Face]]:
        return [self.detect(image) for image in images]

    def params(self) -> dict:
        """What changes the detections (goes into the extraction cache key)."""
        return {"name": self.name}


def _downscale_for_detection(image: np.ndarray, max_side: int | None) -> tuple[np.ndarray, float]:
    """Shrink large frames before detection (faces stay large enough); returns (image, factor)."""
    height, width = image.shape[:2]
    if not max_side or max(height, width) <= max_side:
        return image, 1.0
    factor = max_side / max(height, width)
    size = (max(1, round(width * factor)), max(1, round(height * factor)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA), factor


def _default_device(device: str | None) -> str:
    if device:
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


# -- MTCNN ----------------------------------------------------------------------------------------

class MTCNNDetector(FaceDetector):
    """MTCNN (Zhang et al. 2016) from facenet-pytorch; its weights ship inside the wheel.

    ``min_face_size`` 40 (facenet-pytorch's default is 20) drops the finest image-pyramid levels,
    which hold most of the work, and frames are shrunk to ``max_side`` (640) before detection, as
    the DFDC winner shrank full-HD frames for MTCNN. Together: faces smaller than 1/16 of the frame's
    long side (120 px in 1080p) are not found; raise ``max_side`` for wide shots.
    """

    name = "mtcnn"

    def __init__(self, *, min_face_size: int = 40, thresholds: Sequence[float] = (0.6, 0.7, 0.7),
                 min_score: float = 0.9, max_side: int | None = 640, device: str | None = None):
        try:
            from facenet_pytorch import MTCNN
        except ImportError as err:
            raise ImportError("the MTCNN face detector needs facenet-pytorch: pip install facenet-pytorch") from err
        self.min_face_size, self.thresholds = int(min_face_size), tuple(float(t) for t in thresholds)
        self.min_score, self.max_side = float(min_score), max_side
        self.device = _default_device(device)
        self._mtcnn = MTCNN(keep_all=True, min_face_size=self.min_face_size, thresholds=list(self.thresholds),
                            select_largest=False, post_process=False, device=self.device)

    def params(self) -> dict:
        return {"name": self.name, "min_face_size": self.min_face_size, "thresholds": list(self.thresholds),
                "min_score": self.min_score, "max_side": self.max_side}

    def detect_batch(self, images: Sequence[np.ndarray]) -> list[list[Face]]:
        results: list[list[Face]] = [[] for _ in images]
        # MTCNN batches only images of one size: group them (video frames all share one size).
        groups: dict[tuple, list[int]] = {}
        for i, image in enumerate(images):
            groups.setdefault(image.shape, []).append(i)
        for indices in groups.values():
            scaled = [_downscale_for_detection(images[i], self.max_side) for i in indices]
            factor = scaled[0][1]
            batch = np.stack([image for image, _ in scaled])
            boxes, probs, points = self._mtcnn.detect(batch, landmarks=True)
            for i, frame_boxes, frame_probs, frame_points in zip(indices, boxes, probs, points):
                if frame_boxes is None:
                    continue
                for box, prob, landmark in zip(frame_boxes, frame_probs, frame_points):
                    if prob is None or prob < self.min_score:
                        continue
                    results[i].append(Face(tuple(float(v) / factor for v in box[:4]), float(prob),
                                           np.asarray(landmark, dtype=np.float32) / factor))
        return results


# -- BlazeFace ------------------------------------------------------------------------------------

def _blazeface_anchors() -> np.ndarray:
    """The front model's 896 SSD anchors (x_center, y_center, w, h), normalised to the 128x128 input:
    2 per cell of the 16x16 map (stride 8), then 6 per cell of the 8x8 map (stride 16); fixed size 1."""
    anchors = []
    for grid, per_cell in ((16, 2), (8, 6)):
        for y in range(grid):
            for x in range(grid):
                anchors.extend([((x + 0.5) / grid, (y + 0.5) / grid, 1.0, 1.0)] * per_cell)
    return np.asarray(anchors, dtype=np.float32)


def _blazeface_network():
    import torch
    import torch.nn.functional as F
    from torch import nn

    class BlazeBlock(nn.Module):
        def __init__(self, in_channels: int, out_channels: int, stride: int = 1):
            super().__init__()
            self.stride = stride
            self.channel_pad = out_channels - in_channels
            if stride == 2:
                self.max_pool = nn.MaxPool2d(kernel_size=stride, stride=stride)
            padding = 0 if stride == 2 else 1
            self.convs = nn.Sequential(
                nn.Conv2d(in_channels, in_channels, 3, stride=stride, padding=padding, groups=in_channels),
                nn.Conv2d(in_channels, out_channels, 1),
            )
            self.act = nn.ReLU(inplace=True)

        def forward(self, x):
            if self.stride == 2:
                # TFLite "SAME" padding for a stride-2 3x3 conv pads right/bottom only.
                h = F.pad(x, (0, 2, 0, 2), "constant", 0)
                x = self.max_pool(x)
            else:
                h = x
            if self.channel_pad > 0:
                x = F.pad(x, (0, 0, 0, 0, 0, self.channel_pad), "constant", 0)
            return self.act(self.convs(h) + x)

    class BlazeFaceNet(nn.Module):
        """BlazeFace front-camera model (Bazarevsky et al. 2019), layer names of the common PyTorch port."""

        def __init__(self):
            super().__init__()
            self.backbone1 = nn.Sequential(
                nn.Conv2d(3, 24, 5, stride=2, padding=0), nn.ReLU(inplace=True),
                BlazeBlock(24, 24), BlazeBlock(24, 28), BlazeBlock(28, 32, stride=2), BlazeBlock(32, 36),
                BlazeBlock(36, 42), BlazeBlock(42, 48, stride=2), BlazeBlock(48, 56), BlazeBlock(56, 64),
                BlazeBlock(64, 72), BlazeBlock(72, 80), BlazeBlock(80, 88),
            )
            self.backbone2 = nn.Sequential(
                BlazeBlock(88, 96, stride=2), BlazeBlock(96, 96), BlazeBlock(96, 96), BlazeBlock(96, 96),
                BlazeBlock(96, 96),
            )
            self.classifier_8 = nn.Conv2d(88, 2, 1)
            self.classifier_16 = nn.Conv2d(96, 6, 1)
            self.regressor_8 = nn.Conv2d(88, 32, 1)
            self.regressor_16 = nn.Conv2d(96, 96, 1)

        def forward(self, x):
            x = F.pad(x, (1, 2, 1, 2), "constant", 0)
            b = x.shape[0]
            x = self.backbone1(x)  # (b, 88, 16, 16)
            h = self.backbone2(x)  # (b, 96, 8, 8)
            scores = torch.cat([self.classifier_8(x).permute(0, 2, 3, 1).reshape(b, -1, 1),
                                self.classifier_16(h).permute(0, 2, 3, 1).reshape(b, -1, 1)], dim=1)
            boxes = torch.cat([self.regressor_8(x).permute(0, 2, 3, 1).reshape(b, -1, 16),
                               self.regressor_16(h).permute(0, 2, 3, 1).reshape(b, -1, 16)], dim=1)
            return boxes, scores  # (b, 896, 16), (b, 896, 1)

    return BlazeFaceNet()


def find_weights(name: str, explicit: str | os.PathLike | None = None) -> Path:
    """A third-party weight file: ``explicit`` if given, else where ``dflab weights fetch NAME`` keeps
    it (``$DFLAB_WEIGHTS`` or ``~/.cache/dflab/weights``)."""
    from dflab.weights import local_path

    path = Path(explicit) if explicit is not None else local_path(name)
    if not path.is_file():
        hint = "" if explicit is not None else f" (`dflab weights fetch {name}` downloads it, or set {WEIGHTS_ENV})"
        raise FileNotFoundError(f"{path}: weight file not found{hint}")
    return path


def weighted_nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float,
                 extra: np.ndarray | None = None) -> list[tuple[np.ndarray, float, np.ndarray | None]]:
    """Blending NMS (MediaPipe's): each cluster of overlapping boxes is replaced by the score-weighted
    mean of its members (box and ``extra`` columns), scored by its best member. Boxes are x0,y0,x1,y1."""
    order = np.argsort(-scores)
    boxes, scores = boxes[order], scores[order]
    extra = extra[order] if extra is not None else None
    remaining = np.ones(len(boxes), dtype=bool)
    merged = []
    for i in range(len(boxes)):
        if not remaining[i]:
            continue
        overlap = box_iou(boxes[i:i + 1], boxes)[0]
        members = remaining & (overlap > iou_threshold)
        members[i] = True
        weights = scores[members][:, None]
        box = (boxes[members] * weights).sum(0) / weights.sum()
        points = (extra[members] * weights).sum(0) / weights.sum() if extra is not None else None
        merged.append((box, float(scores[i]), points))
        remaining &= ~members
    return merged


class BlazeFaceDetector(FaceDetector):
    """BlazeFace front-camera model in PyTorch (128x128 input, 896 anchors, 6 landmarks).

    The front model expects a face filling much of its input, so a full frame is cut into square
    tiles of the frame's short side (overlapping, covering the long side), each resized to 128x128,
    and the detections of all tiles are merged with blending NMS.
    """

    name = "blazeface"
    INPUT = 128
    #: Tiles per forward pass. Measured on 2 CPU cores: 96 tiles take 0.46 s in one pass and 0.25 s
    #: in passes of 16, whose activations stay in cache.
    BATCH = 16

    def __init__(self, weights: str | os.PathLike | None = None, *, anchors: str | os.PathLike | None = None,
                 min_score: float = 0.75, nms_iou: float = 0.3, device: str | None = None):
        import torch

        path = find_weights("blazeface", weights)
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # torch raises many types for a bad file; all mean "unusable weights"
            raise ValueError(f"{path}: cannot load BlazeFace weights ({type(err).__name__}: {err})") from None
        self.device = _default_device(device)
        self.net = _blazeface_network()
        try:
            self.net.load_state_dict(state)
        except (RuntimeError, TypeError, AttributeError) as err:
            reason = str(err).splitlines()[0]
            raise ValueError(f"{path}: not BlazeFace front-model weights ({reason})") from None
        self.net.eval().to(self.device)
        anchors_path = Path(anchors) if anchors is not None else path.with_name("anchors.npy")
        self.anchors = (np.load(anchors_path).astype(np.float32) if anchors_path.is_file()
                        else _blazeface_anchors())
        if self.anchors.shape != (896, 4):
            raise ValueError(f"{anchors_path}: expected 896x4 anchors, got {self.anchors.shape}")
        self.weights_path = path
        self.min_score, self.nms_iou = float(min_score), float(nms_iou)

    def params(self) -> dict:
        return {"name": self.name, "min_score": self.min_score, "nms_iou": self.nms_iou,
                "weights_sha256": _file_hash(self.weights_path)[:16]}

    @staticmethod
    def tiles(height: int, width: int) -> list[tuple[int, int, int]]:
        """Square tiles (x0, y0, side) covering the frame; one more than needed, so they overlap."""
        side = min(height, width)
        long_side = max(height, width)
        count = 1 if long_side == side else int(np.ceil(long_side / side)) + 1
        starts = np.linspace(0, long_side - side, count).round().astype(int)
        if width >= height:
            return [(int(s), 0, side) for s in starts]
        return [(0, int(s), side) for s in starts]

    def _raw(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        import torch

        boxes, scores = [], []
        with torch.inference_mode():
            for start in range(0, len(batch), self.BATCH):
                # permute keeps the NHWC bytes: the network runs channels-last, its faster layout here.
                x = torch.from_numpy(batch[start:start + self.BATCH]).to(self.device).permute(0, 3, 1, 2)
                chunk_boxes, chunk_scores = self.net(x.float() / 127.5 - 1.0)
                boxes.append(chunk_boxes.cpu().numpy())
                scores.append(chunk_scores.cpu().numpy()[..., 0])
        return np.concatenate(boxes), np.concatenate(scores)

    def _decode(self, raw: np.ndarray) -> np.ndarray:
        """Raw regressions -> normalised [x0, y0, x1, y1, 6 landmark (x, y)] per anchor."""
        scale = float(self.INPUT)
        a = self.anchors
        x_center = raw[..., 0] / scale * a[:, 2] + a[:, 0]
        y_center = raw[..., 1] / scale * a[:, 3] + a[:, 1]
        w = raw[..., 2] / scale * a[:, 2]
        h = raw[..., 3] / scale * a[:, 3]
        out = np.empty(raw.shape[:-1] + (16,), dtype=np.float32)
        out[..., 0], out[..., 1] = x_center - w / 2, y_center - h / 2
        out[..., 2], out[..., 3] = x_center + w / 2, y_center + h / 2
        out[..., 4::2] = raw[..., 4::2] / scale * a[:, 2:3] + a[:, 0:1]
        out[..., 5::2] = raw[..., 5::2] / scale * a[:, 3:4] + a[:, 1:2]
        return out

    def _shrink(self, image: np.ndarray) -> tuple[np.ndarray, int]:
        """The frame shrunk by the largest whole factor that keeps its short side >= the input size.

        OpenCV's area resampling has a fast path for whole factors: shrinking a 1080p frame once
        this way and then each small tile costs about a sixth of area-resizing every full-size tile.
        The last ``factor - 1`` rows and columns at most are dropped.
        """
        height, width = image.shape[:2]
        factor = min(height, width) // self.INPUT
        if factor < 2:
            return image, 1
        small_h, small_w = height // factor, width // factor
        whole = image[:small_h * factor, :small_w * factor]
        return cv2.resize(whole, (small_w, small_h), interpolation=cv2.INTER_AREA), factor

    def detect_batch(self, images: Sequence[np.ndarray]) -> list[list[Face]]:
        inputs, owners = [], []
        for i, image in enumerate(images):
            small, factor = self._shrink(image)
            for x0, y0, side in self.tiles(*small.shape[:2]):
                tile = small[y0:y0 + side, x0:x0 + side]
                inputs.append(cv2.resize(tile, (self.INPUT, self.INPUT), interpolation=cv2.INTER_AREA))
                owners.append((i, x0 * factor, y0 * factor, side * factor))
        results: list[list[Face]] = [[] for _ in images]
        if not inputs:
            return results
        raw_boxes, raw_scores = self._raw(np.stack(inputs))
        decoded = self._decode(raw_boxes)
        # The reference port clips logits to +-100 before the sigmoid.
        probabilities = 1.0 / (1.0 + np.exp(-np.clip(raw_scores, -100.0, 100.0)))
        candidates: dict[int, list[tuple[np.ndarray, float]]] = {i: [] for i in range(len(images))}
        for (i, x0, y0, side), detections, probs in zip(owners, decoded, probabilities):
            keep = probs >= self.min_score
            for det, p in zip(detections[keep], probs[keep]):
                pixels = det * side + np.tile([x0, y0], 8)
                candidates[i].append((pixels, float(p)))
        for i, found in candidates.items():
            if not found:
                continue
            dets = np.stack([d for d, _ in found])
            scores = np.asarray([p for _, p in found])
            height, width = images[i].shape[:2]
            for box, score, points in weighted_nms(dets[:, :4], scores, self.nms_iou, dets[:, 4:]):
                box = np.clip(box, 0, [width, height, width, height])
                if box[2] - box[0] < 2 or box[3] - box[1] < 2:
                    continue
                results[i].append(Face(tuple(float(v) for v in box), score, points.reshape(6, 2).astype(np.float32)))
        return results


# -- detector registry ----------------------------------------------------------------------------

FACE_DETECTORS = ("mtcnn", "blazeface")


@lru_cache(maxsize=8)
def _cached_detector(name: str, options: tuple) -> FaceDetector:
    kwargs = dict(options)
    if name == "mtcnn":
        return MTCNNDetector(**kwargs)
    if name == "blazeface":
        return BlazeFaceDetector(**kwargs)
    raise ValueError(f"unknown face detector {name!r}; available: {', '.join(FACE_DETECTORS)}")


def get_face_detector(detector: str | FaceDetector = "mtcnn", **options) -> FaceDetector:
    """A face detector by name (``mtcnn``, ``blazeface``), built once per process and options."""
    if isinstance(detector, FaceDetector):
        return detector
    options = {k: (tuple(v) if isinstance(v, list) else v) for k, v in options.items() if v is not None}
    return _cached_detector(str(detector).lower(), tuple(sorted(options.items())))


# -- geometry -------------------------------------------------------------------------------------

def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of boxes (N, 4) and (M, 4) in x0, y0, x1, y1 -> (N, M)."""
    a, b = np.asarray(a, dtype=np.float64).reshape(-1, 4), np.asarray(b, dtype=np.float64).reshape(-1, 4)
    x0 = np.maximum(a[:, None, 0], b[None, :, 0])
    y0 = np.maximum(a[:, None, 1], b[None, :, 1])
    x1 = np.minimum(a[:, None, 2], b[None, :, 2])
    y1 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area_a = np.clip(a[:, 2] - a[:, 0], 0, None) * np.clip(a[:, 3] - a[:, 1], 0, None)
    area_b = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def crop_region(box: Sequence[float], *, scale: float = 1.3, square: bool = True) -> tuple[int, int, int, int]:
    """The region (x0, y0, x1, y1) to cut around a face box: centred on it, ``scale`` times its size
    (its longer side when ``square``). May extend past the image; :func:`crop_face` pads there."""
    x0, y0, x1, y1 = (float(v) for v in box)
    if not (x1 > x0 and y1 > y0):
        raise ValueError(f"empty face box {tuple(box)}")
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    w, h = (x1 - x0) * scale, (y1 - y0) * scale
    if square:
        w = h = max(w, h)
    left, top = int(round(cx - w / 2)), int(round(cy - h / 2))
    return left, top, left + max(1, int(round(w))), top + max(1, int(round(h)))


def crop_face(image: np.ndarray, box: Sequence[float], *, scale: float = 1.3, size: int = 256,
              square: bool = True) -> np.ndarray:
    """Cut a face out of an RGB image: ``scale`` x the box around its centre, square by default,
    padded with black where it passes the image border (so the face stays centred), resized to
    ``size`` x ``size`` (``square=False``: the longer side becomes ``size``, aspect kept)."""
    left, top, right, bottom = crop_region(box, scale=scale, square=square)
    height, width = image.shape[:2]
    inside = image[max(0, top):min(height, bottom), max(0, left):min(width, right)]
    if inside.size == 0:
        raise ValueError(f"face box {tuple(box)} lies outside the {width}x{height} image")
    pad = (max(0, -top), max(0, bottom - height), max(0, -left), max(0, right - width))
    if any(pad):
        inside = cv2.copyMakeBorder(inside, *pad, cv2.BORDER_CONSTANT, value=(0, 0, 0))
    out_h, out_w = inside.shape[:2]
    if square:
        target = (size, size)
    else:
        factor = size / max(out_h, out_w)
        target = (max(1, round(out_w * factor)), max(1, round(out_h * factor)))
    interpolation = cv2.INTER_AREA if target[0] < out_w else cv2.INTER_CUBIC
    return np.ascontiguousarray(cv2.resize(inside, target, interpolation=interpolation))


def track_faces(frames_faces: Sequence[Sequence[Face]], iou_threshold: float = 0.3) -> list[list[int]]:
    """Track ids for faces across sampled frames: each face joins the track whose last box overlaps
    it most (IoU > threshold, one face per track per frame, Hungarian matching), else starts a track."""
    from scipy.optimize import linear_sum_assignment

    last_boxes: list[np.ndarray] = []
    ids: list[list[int]] = []
    for faces in frames_faces:
        frame_ids = [-1] * len(faces)
        if faces and last_boxes:
            iou = box_iou(np.asarray([f.box for f in faces]), np.asarray(last_boxes))
            rows, cols = linear_sum_assignment(-iou)
            for r, c in zip(rows, cols):
                if iou[r, c] > iou_threshold:
                    frame_ids[r] = int(c)
        for k, face in enumerate(faces):
            if frame_ids[k] < 0:
                last_boxes.append(np.asarray(face.box))
                frame_ids[k] = len(last_boxes) - 1
            else:
                last_boxes[frame_ids[k]] = np.asarray(face.box)
        ids.append(frame_ids)
    return ids


def select_faces(frames_faces: Sequence[Sequence[Face]], policy: str = "largest") -> list[list[tuple[Face, int]]]:
    """Apply a policy to detections per frame: ``largest`` keeps the biggest face (track 0), ``all``
    keeps every face with a track id. Returns per frame a list of (face, track_id)."""
    if policy == "largest":
        return [[(max(faces, key=lambda f: f.area), 0)] if faces else [] for faces in frames_faces]
    if policy == "all":
        ids = track_faces(frames_faces)
        return [list(zip(faces, frame_ids)) for faces, frame_ids in zip(frames_faces, ids)]
    raise ValueError(f"unknown face policy {policy!r}; use 'largest' or 'all'")


# -- extraction -----------------------------------------------------------------------------------

@dataclass
class _Source:
    path: Path
    kind: str  # "video" or "image"
    video: str  # video id the crops belong to


def expand_sources(sources: str | os.PathLike | Iterable[str | os.PathLike]) -> list[_Source]:
    """Videos and images from paths and folders (folders are walked, sorted). A file given by name is
    taken whatever its extension (a bad one gets a status); folder walks take known extensions only.
    Video id: the video's file name stem; for frames inside a sub-folder of a walked folder, that
    sub-folder's path (a folder of frames is one video); otherwise the image's stem."""
    if isinstance(sources, (str, os.PathLike)):
        sources = [sources]
    out: list[_Source] = []
    for source in sources:
        path = Path(source)
        if path.is_dir():
            for file in sorted(p for p in path.rglob("*") if p.is_file()):
                suffix = file.suffix.lower()
                if suffix in IMAGE_EXTENSIONS:
                    parent = file.parent.relative_to(path)
                    video = parent.as_posix() if parent.parts else file.stem
                    out.append(_Source(file, "image", video))
                elif is_video_path(file):
                    out.append(_Source(file, "video", file.stem))
        else:
            kind = "image" if path.suffix.lower() in IMAGE_EXTENSIONS else "video"
            out.append(_Source(path, kind, path.stem))
    return out


def _file_hash(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text)[:60] or "source"


def _write_png(path: Path, image: np.ndarray) -> None:
    if not cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 3]):
        raise OSError(f"{path}: cannot write PNG")


MANIFEST_COLUMNS = ["source", "video", "frame_index", "timestamp", "x0", "y0", "x1", "y1", "confidence",
                    "track_id", "path"]
STATUS_COLUMNS = ["source", "video", "kind", "status", "frames", "frames_with_face", "frames_without_face",
                  "faces", "reason", "cache_key"]


def _status_message(frames: int, with_face: int) -> tuple[str, str]:
    if frames == 0:
        return "error", "no frame"
    if with_face == 0:
        return "no_face", f"no face in any of {frames} frames"
    if with_face < frames:
        return "ok", f"no face in {frames - with_face} of {frames} frames"
    return "ok", ""


def extract_faces(sources, out_dir: str | os.PathLike, *, n_frames: int = 32,
                  detector: str | FaceDetector = "mtcnn", scale: float = 1.3, size: int = 256,
                  square: bool = True, policy: str = "largest", batch_size: int = 16,
                  detector_options: dict | None = None, resume: bool = True) -> pd.DataFrame:
    """Detect and crop faces from videos, images and folders into ``out_dir``.

    Writes ``out_dir/crops/<source>-<key>/*.png``, ``out_dir/faces.csv`` (one row per crop:
    source, video, frame_index, timestamp, x0, y0, x1, y1, confidence, track_id, path) and
    ``out_dir/sources.csv`` (one row per source: status ``ok``/``no_face``/``error``, frames sampled,
    frames with and without a face, faces, reason, cache_key). Returns the crop manifest; the
    status rows are in ``manifest.attrs["sources"]`` (a list of dicts) and :func:`read_sources`.

    The cache key is the source's content hash plus every parameter that changes the crops; with
    ``resume`` a source whose folder holds a completed extraction under the same key is not redone.
    A bad file never stops the batch: it gets status ``error`` and its one-line reason.
    """
    if policy not in ("largest", "all"):
        raise ValueError(f"unknown face policy {policy!r}; use 'largest' or 'all'")
    if n_frames < 1 or size < 8 or scale <= 0:
        raise ValueError("need n_frames >= 1, size >= 8 and scale > 0")
    out_dir = Path(out_dir).resolve()  # manifest paths stay valid from any working folder
    (out_dir / "crops").mkdir(parents=True, exist_ok=True)
    face_detector = get_face_detector(detector, **(detector_options or {}))
    settings = {"version": EXTRACTION_VERSION, "n_frames": n_frames, "detector": face_detector.params(),
                "scale": scale, "size": size, "square": square, "policy": policy}
    settings_hash = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()

    rows: list[dict] = []
    statuses: list[dict] = []
    for source in track(expand_sources(sources), "extracting faces"):
        source_rows, status = _extract_one(source, out_dir, face_detector, settings_hash, n_frames=n_frames,
                                           scale=scale, size=size, square=square, policy=policy,
                                           batch_size=batch_size, resume=resume)
        rows.extend(source_rows)
        statuses.append(status)
        if status["status"] != "ok" or status["frames_without_face"]:
            warn(f"{status['source']}: {status['status']}" + (f" ({status['reason']})" if status["reason"] else ""))
    manifest = pd.DataFrame(rows, columns=MANIFEST_COLUMNS)
    status_table = pd.DataFrame(statuses, columns=STATUS_COLUMNS)
    manifest.to_csv(out_dir / MANIFEST_FILE, index=False)
    status_table.to_csv(out_dir / SOURCES_FILE, index=False)
    manifest.attrs["sources"] = status_table.to_dict("records")
    return manifest


def read_sources(out_dir: str | os.PathLike) -> pd.DataFrame:
    """The per-source status table written by :func:`extract_faces`."""
    return pd.read_csv(Path(out_dir) / SOURCES_FILE, keep_default_na=False)


def _frames_of(source: _Source, n_frames: int) -> list[tuple[int, float, np.ndarray]]:
    if source.kind == "video":
        return [(f.index, f.timestamp, f.image) for f in sample_frames(source.path, n_frames)]
    return [(0, 0.0, load_image(source.path))]


def _extract_one(source: _Source, out_dir: Path, face_detector: FaceDetector, settings_hash: str, *,
                 n_frames: int, scale: float, size: int, square: bool, policy: str, batch_size: int,
                 resume: bool) -> tuple[list[dict], dict]:
    status = {"source": str(source.path), "video": source.video, "kind": source.kind, "status": "error",
              "frames": 0, "frames_with_face": 0, "frames_without_face": 0, "faces": 0, "reason": "",
              "cache_key": ""}
    try:
        if not source.path.is_file():
            raise (VideoError if source.kind == "video" else ImageError)(
                source.path, "file not found" if not source.path.exists() else "not a file")
        key = hashlib.sha256((_file_hash(source.path) + settings_hash).encode()).hexdigest()[:16]
        status["cache_key"] = key
        folder = out_dir / "crops" / f"{_safe_name(source.path.stem)}-{key}"
        done_file = folder / "status.json"
        if resume and done_file.is_file():
            cached = _load_cached(folder, done_file, key, source)
            if cached is not None:
                return cached
        frames = _frames_of(source, n_frames)
        detections: list[list[Face]] = []
        for start in range(0, len(frames), batch_size):
            detections.extend(face_detector.detect_batch([image for _, _, image in frames[start:start + batch_size]]))
        chosen = select_faces(detections, policy)
        folder.mkdir(parents=True, exist_ok=True)
        rows = []
        for (index, timestamp, image), faces in zip(frames, chosen):
            for k, (face, track_id) in enumerate(faces):
                try:
                    crop = crop_face(image, face.box, scale=scale, size=size, square=square)
                except ValueError:  # a degenerate box from the detector: no crop, not a failed source
                    continue
                crop_path = folder / f"{index:06d}_{k}.png"
                _write_png(crop_path, crop)
                rows.append({"source": str(source.path), "video": source.video, "frame_index": index,
                             "timestamp": round(timestamp, 4), "x0": round(face.box[0], 1),
                             "y0": round(face.box[1], 1), "x1": round(face.box[2], 1), "y1": round(face.box[3], 1),
                             "confidence": round(face.score, 5), "track_id": track_id, "path": str(crop_path)})
        with_face = sum(1 for faces in chosen if faces)
        state, reason = _status_message(len(frames), with_face)
        status.update(status=state, frames=len(frames), frames_with_face=with_face,
                      frames_without_face=len(frames) - with_face, faces=len(rows), reason=reason)
        pd.DataFrame(rows, columns=MANIFEST_COLUMNS).to_csv(folder / MANIFEST_FILE, index=False)
        done_file.write_text(json.dumps(status))  # written last: its presence marks a complete extraction
        return rows, status
    except (VideoError, ImageError) as err:
        status["reason"] = err.reason
        return [], status
    except OSError as err:
        status["reason"] = f"cannot read or write ({err.strerror or err})"
        return [], status


def _load_cached(folder: Path, done_file: Path, key: str, source: _Source) -> tuple[list[dict], dict] | None:
    try:
        status = json.loads(done_file.read_text())
        manifest = pd.read_csv(folder / MANIFEST_FILE, keep_default_na=False)
    except (OSError, ValueError):
        return None
    if status.get("cache_key") != key or len(manifest) != status.get("faces"):
        return None
    if not all(Path(p).is_file() for p in manifest["path"]):
        return None
    # The same content may come back under another name: report it under the name given now.
    manifest["source"], manifest["video"] = str(source.path), source.video
    status.update(source=str(source.path), video=source.video)
    return manifest.to_dict("records"), status
