"""Detectors behind one interface (see :mod:`dflab.detectors.base`) and their registry."""

from dflab.detectors.base import Detector, NotFittedError, load_detector
from dflab.detectors.modelfile import ModelFileError
from dflab.detectors.registry import available, create, get, register

__all__ = ["Detector", "ModelFileError", "NotFittedError", "load_detector", "available", "create", "get",
           "register"]
