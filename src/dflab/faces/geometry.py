"""Face boxes to crops: the square region around a box at a scale, and the resized crop."""

from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np


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
