"""Error level analysis: how much an image changes when JPEG-compressed again (edited or pasted regions
often change more or less than the rest). The maps feed the ELA features, the block-DCT detector and the
ELA CNN."""

from __future__ import annotations

import cv2
import numpy as np

from dflab.media.images import jpeg_round_trip

#: ELA's JPEG codec (its measured numbers were made with it).
ELA_ENCODER = "opencv"


def ela_image(image: np.ndarray, quality: int = 90) -> np.ndarray:
    """|image - JPEG(image, quality)| as float32 (H, W, 3), in grey levels (0..255)."""
    return cv2.absdiff(image, jpeg_round_trip(image, quality, encoder=ELA_ENCODER)).astype(np.float32)


def ela_map(image: np.ndarray, quality: int = 90, color: bool = False) -> np.ndarray:
    """The ELA map used for features: (H, W) uint8. Grayscale: |Y - JPEG(Y)| (``image`` RGB, or already
    grey (H, W)); colour: the mean of the three channels' errors, rounded."""
    if color:
        error = cv2.absdiff(image, jpeg_round_trip(image, quality, encoder=ELA_ENCODER))
        return cv2.transform(error, np.full((1, 3), 1.0 / 3.0))  # saturating round of the channel mean
    gray = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    return cv2.absdiff(gray, jpeg_round_trip(gray, quality, encoder=ELA_ENCODER))
