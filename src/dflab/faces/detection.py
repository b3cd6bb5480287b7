"""The face-detector interface (``Face``, ``FaceDetector``) and what detectors share (non-maximum suppression, IoU)."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Sequence

import cv2
import numpy as np


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


def downscale_for_detection(image: np.ndarray, max_side: int | None) -> tuple[np.ndarray, float]:
    """Shrink large frames before detection (faces stay large enough); returns (image, factor)."""
    height, width = image.shape[:2]
    if not max_side or max(height, width) <= max_side:
        return image, 1.0
    factor = max_side / max(height, width)
    size = (max(1, round(width * factor)), max(1, round(height * factor)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA), factor


@contextlib.contextmanager
def torch_threads(count: int | None):
    """PyTorch's intra-op threads set to ``count`` (None: unchanged) for the block, then restored."""
    import torch

    before = torch.get_num_threads()
    if count is not None and count != before:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


def default_device(device: str | None) -> str:
    if device:
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


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
