"""Detector registry: one name -> one builder (a class and its default parameters), timm-style.

A detector module registers itself with ``@register("name", description=...)``; a family of variants
registers one class several times with different defaults (``ela-svm``, ``ela-logreg``, ...).
Adding a detector = one new module + one line in ``DETECTOR_MODULES``.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Callable

#: Modules under ``dflab.detectors`` that register detectors (imported on first use).
DETECTOR_MODULES = (
    "ela",
    "block_dct",
    "spectrum",
    "cnn",
    "mesonet",
    "siamese",
    "ensemble",
    "ready",
)


@dataclass(frozen=True)
class Entry:
    name: str
    cls: type
    description: str
    defaults: dict[str, Any] = field(default_factory=dict)
    #: Family shown by ``dflab detectors`` (e.g. "handcrafted", "deep", "pretrained").
    family: str = ""


_REGISTRY: dict[str, Entry] = {}
_loaded = False


class UnknownDetectorError(KeyError):
    def __str__(self) -> str:  # KeyError quotes its message; this one is read by people
        return self.args[0]


def register(name: str, *, description: str, family: str = "", **defaults) -> Callable[[type], type]:
    def decorator(cls: type) -> type:
        if name in _REGISTRY and _REGISTRY[name].cls is not cls:
            raise ValueError(f"detector name {name!r} is registered twice")
        _REGISTRY[name] = Entry(name, cls, description, dict(defaults), family)
        return cls

    return decorator


def _ensure_loaded() -> None:
    global _loaded
    if not _loaded:
        for module in DETECTOR_MODULES:
            try:
                importlib.import_module(f"dflab.detectors.{module}")
            except ModuleNotFoundError as err:
                if err.name != f"dflab.detectors.{module}":
                    raise
        _loaded = True


def available() -> dict[str, Entry]:
    _ensure_loaded()
    return dict(sorted(_REGISTRY.items()))


def get(name: str) -> Entry:
    _ensure_loaded()
    if name not in _REGISTRY:
        raise UnknownDetectorError(
            f"unknown detector {name!r}; available: {', '.join(sorted(_REGISTRY))} (see `dflab detectors`)")
    return _REGISTRY[name]


def create(name: str, **params):
    """Build a detector by registry name; ``params`` override the variant's defaults."""
    entry = get(name)
    detector = entry.cls(**{**entry.defaults, **params})
    detector.registry_name = name
    return detector
