"""Detectors behind one interface (see :mod:`dflab.detectors.base`) and their registry."""

from .base import Detector, ModelFileError, NotFittedError, load_detector
from .registry import available, create, get, register

__all__ = ["Detector", "ModelFileError", "NotFittedError", "load_detector", "available", "create", "get",
           "register"]
