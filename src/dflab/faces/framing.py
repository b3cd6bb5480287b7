"""Crop policy: re-frame face crops so that every database shows faces at the same scale.

Databases crop faces differently: the UADFV crops of ``Task_1`` show the head and shoulders (the
face box is about 0.7 of the crop), the DFDC crops of ``Task_2_3`` are tight (the face box reaches
past the crop, about 1.5x its side). A network trained on one framing sees the other as a different
kind of image. A crop policy with a ``scale`` (:func:`reframe`) finds the face in each image (MTCNN), and cuts
the square ``scale`` x the face box around its centre, moved and, if needed, shrunk to stay inside
the image (no black padding: a tight crop stays the whole image). The same policy is applied at
training and at scoring time because it is part of the detector's parameters. Images where no face
is found are used as they are.

Face locations are computed once per file (in parallel worker processes) and cached under the
feature cache, keyed by the file's content hash and the detector settings, like any other feature.
The 5 MTCNN landmarks come along, moved into the re-framed crop, for self-blended masks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from dflab.media.feature_extraction import extract
from dflab.media.images import ImageLike

#: Layout of one located face: found flag, box (x0, y0, x1, y1), score, 5 landmarks (x, y).
_N_VALUES = 1 + 4 + 1 + 10


@dataclass(frozen=True)
class FaceLocator:
    """Extractor (see :mod:`dflab.media.feature_extraction`): the largest face of an image as a flat float32 array.

    ``min_face_size`` 80: the faces of face crops are large, and MTCNN's finer pyramid levels for
    smaller faces cost about 5x the time on 256 px crops (measured on Task_1)."""

    min_face_size: int = 80
    min_score: float = 0.9

    def cache_key(self) -> str:
        return f"face-location-v1-mtcnn-m{self.min_face_size}-s{self.min_score}"

    def __call__(self, image: np.ndarray) -> np.ndarray:
        faces = _mtcnn(self.min_face_size, self.min_score).detect(image)
        out = np.zeros(_N_VALUES, dtype=np.float32)
        if faces:
            face = max(faces, key=lambda f: f.area)
            out[0], out[1:5], out[5] = 1.0, face.box, face.score
            if face.landmarks is not None and np.shape(face.landmarks) == (5, 2):
                out[6:] = np.asarray(face.landmarks, dtype=np.float32).ravel()
        return out


_DETECTORS: dict = {}


def _mtcnn(min_face_size: int, min_score: float):
    key = (min_face_size, min_score)
    if key not in _DETECTORS:  # one network per process (worker processes build their own)
        import multiprocessing

        import torch

        from dflab.faces.mtcnn import MTCNNDetector

        if multiprocessing.parent_process() is not None:
            # A worker owns one core: torch's own thread pool would fight the other workers for it.
            torch.set_num_threads(1)
        _DETECTORS[key] = MTCNNDetector(min_face_size=min_face_size, min_score=min_score, device="cpu")
    return _DETECTORS[key]


@dataclass(frozen=True)
class FaceLocation:
    box: tuple[float, float, float, float]
    landmarks: np.ndarray | None  # (5, 2) or None


def locate_faces(sources: Sequence[ImageLike], *, workers: int | None = None, cache_dir=True,
                 locator: FaceLocator = FaceLocator(), description: str = "locating faces"
                 ) -> list[FaceLocation | None]:
    """The largest face of each source (None where none is found or the file is unusable).
    ``cache_dir``: True = dflab's feature cache, a path, or False/None for no cache."""
    result = extract(sources, locator, workers=workers, cache_dir=cache_dir, description=description)
    located: list[FaceLocation | None] = []
    for values in result.features:
        if values is None or values[0] < 0.5:
            located.append(None)
            continue
        landmarks = values[6:].reshape(5, 2) if np.any(values[6:]) else None
        located.append(FaceLocation(tuple(float(v) for v in values[1:5]), landmarks))
    return located


def square_region(box: Sequence[float], scale: float, height: int, width: int) -> tuple[int, int, int, int]:
    """The square (x0, y0, x1, y1) of side ``scale`` x the box's longer side around its centre,
    shifted to lie inside the image and shrunk to the image's shorter side when larger."""
    x0, y0, x1, y1 = (float(v) for v in box)
    side = min(max(x1 - x0, y1 - y0) * float(scale), float(min(height, width)))
    side = max(1, int(round(side)))
    left = int(round((x0 + x1) / 2 - side / 2))
    top = int(round((y0 + y1) / 2 - side / 2))
    left = min(max(left, 0), width - side)
    top = min(max(top, 0), height - side)
    return left, top, left + side, top + side


@dataclass(frozen=True)
class FaceFraming:
    """How a model's training crops frame a face, so that a face found in a photo or a video frame
    can be cut the same way: a square of ``scale`` x the face box's longer side, its centre
    ``shift_y`` box sides below the box's centre (crops often show more chin than forehead), moved
    inside the picture when it passes an edge. Measured on the training crops (MTCNN boxes) and kept
    in the model's ``info``."""

    scale: float
    shift_y: float = 0.0

    @classmethod
    def from_info(cls, info: dict | None) -> "FaceFraming | None":
        framing = (info or {}).get("framing")
        if not isinstance(framing, dict) or not isinstance(framing.get("scale"), (int, float)):
            return None
        return cls(float(framing["scale"]), float(framing.get("shift_y", 0.0)))

    def to_info(self) -> dict:
        return {"scale": self.scale, "shift_y": self.shift_y}

    def region(self, box: Sequence[float], height: int, width: int) -> tuple[int, int, int, int]:
        x0, y0, x1, y1 = (float(v) for v in box)
        shift = self.shift_y * max(x1 - x0, y1 - y0)
        return square_region((x0, y0 + shift, x1, y1 + shift), self.scale, height, width)

    def crop(self, image: np.ndarray, box: Sequence[float]) -> np.ndarray:
        left, top, right, bottom = self.region(box, *image.shape[:2])
        return np.ascontiguousarray(image[top:bottom, left:right])


def reframe(image: np.ndarray, face: FaceLocation | None, scale: float | None
            ) -> tuple[np.ndarray, np.ndarray | None]:
    """``(crop, landmarks in the crop)`` under the policy; the image itself when there is no policy
    or no face."""
    if not scale or face is None:
        return image, None if face is None else face.landmarks
    height, width = image.shape[:2]
    left, top, right, bottom = square_region(face.box, scale, height, width)
    crop = np.ascontiguousarray(image[top:bottom, left:right])
    landmarks = None if face.landmarks is None else face.landmarks - np.array([left, top], dtype=np.float32)
    return crop, landmarks
