"""Face detectors by name (``mtcnn``, ``blazeface``), built once per process."""

from __future__ import annotations

from functools import lru_cache

from dflab.faces.blazeface import BlazeFaceDetector
from dflab.faces.detection import FaceDetector
from dflab.faces.mtcnn import MTCNNDetector

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
