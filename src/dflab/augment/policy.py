"""The random augmentation of CNN training (flips, rescaling, blur, colour, JPEG and H.264 re-compression),
seeded per epoch and item. :data:`PRESETS` names the two used by the detectors' ``augment`` parameter."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from dflab.media.images import jpeg_round_trip
from dflab.media.video import h264_round_trip


@dataclass(frozen=True)
class Augmentation:
    """Training augmentation on RGB uint8 images; each transform fires with its probability."""

    flip: float = 0.5
    colour: float = 0.8
    colour_strength: float = 0.2
    blur: float = 0.2
    blur_sigma: tuple[float, float] = (0.2, 1.2)
    rescale: float = 0.3
    rescale_range: tuple[float, float] = (0.5, 0.9)
    jpeg: float = 0.5
    jpeg_quality: tuple[int, int] = (50, 95)
    h264: float = 0.0
    h264_crf: tuple[int, int] = (18, 40)

    def __call__(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        h, w = image.shape[:2]
        if rng.random() < self.flip:
            image = image[:, ::-1]
        if rng.random() < self.rescale:
            # Down and up again: the resampling blur of a face pasted at another scale.
            factor = rng.uniform(*self.rescale_range)
            small = cv2.resize(image, (max(1, round(w * factor)), max(1, round(h * factor))),
                               interpolation=cv2.INTER_AREA)
            image = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
        if rng.random() < self.blur:
            image = cv2.GaussianBlur(np.ascontiguousarray(image), (0, 0), rng.uniform(*self.blur_sigma))
        if rng.random() < self.colour:
            image = self._colour(image, rng)
        if rng.random() < self.jpeg:
            quality = int(rng.integers(self.jpeg_quality[0], self.jpeg_quality[1] + 1))
            image = jpeg_round_trip(image, quality, encoder="opencv")
        # Drawn only when enabled, so that the presets without it keep their random stream (and models).
        if self.h264 > 0 and rng.random() < self.h264:
            crf = int(rng.integers(self.h264_crf[0], self.h264_crf[1] + 1))
            image = h264_round_trip(np.ascontiguousarray(image), crf)
        return np.ascontiguousarray(image)

    def _colour(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        s = self.colour_strength
        x = image.astype(np.float32)
        x = x * rng.uniform(1 - s, 1 + s)  # brightness
        grey = x.mean(axis=2, keepdims=True)
        x = grey + (x - grey) * rng.uniform(1 - s, 1 + s)  # saturation
        x = x.mean() + (x - x.mean()) * rng.uniform(1 - s, 1 + s)  # contrast
        return np.clip(x, 0, 255).astype(np.uint8)


#: ``standard``: the augmentation every CNN detector has trained with. ``shortcut``: the same applied to
#: real and fake faces alike, with the cues a detector learns as shortcuts for "fake" on one database
#: made common to both classes: down- and up-scaling over a wider range and more often (a small, soft
#: real face must not read as fake) and video-codec (H.264) re-encoding at random quality.
PRESETS = {
    "standard": Augmentation(),
    "shortcut": Augmentation(rescale=0.5, rescale_range=(0.3, 1.0), jpeg=0.4, jpeg_quality=(40, 95), h264=0.4,
                             h264_crf=(20, 38)),
}
