"""Detector registry: one name -> one builder (a class and its default parameters), timm-style.

A detector module registers itself with ``@register("name", description=...)``; a family of variants
registers one class several times with different defaults (``ela-svm``, ``ela-logreg``, ...).
Every module under ``dflab.detectors`` is imported on first use, so adding a detector is one new module
(or one more row in a family's table) and nothing else.
"""

from __future__ import annotations

import importlib
import json
import pkgutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence


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


def _ensure_loaded(until: str | None = None) -> None:
    """Import the modules under ``dflab.detectors``, in the folder's order: a module registers its
    detectors when it is imported, so a new detector is one new file and no list to keep. With
    ``until``, stop at the module that registers that name (a command naming one detector imports what
    it needs, not all 28 modules: the CNN module alone pulls in timm)."""
    global _loaded
    if _loaded or (until is not None and until in _REGISTRY):
        return
    # The folder is walked, not the package imported: the registry sits below every detector.
    for module in pkgutil.walk_packages([str(Path(__file__).parent)], prefix="dflab.detectors."):
        importlib.import_module(module.name)
        if until is not None and until in _REGISTRY:
            return
    _loaded = True


def available() -> dict[str, Entry]:
    _ensure_loaded()
    return dict(sorted(_REGISTRY.items()))


def get(name: str) -> Entry:
    _ensure_loaded(until=name)
    if name not in _REGISTRY:
        raise UnknownDetectorError(
            f"unknown detector {name!r}; available: {', '.join(sorted(_REGISTRY))} (see `dflab detectors`)")
    return _REGISTRY[name]


class ParameterError(ValueError):
    """Detector parameters that cannot be used as given; the message is one line."""


class UnknownParameterError(ParameterError, TypeError):
    """A parameter the detector does not have (a typo); the message is one line naming the valid ones."""


def create(name: str, **params):
    """Build a detector by registry name; ``params`` override the variant's defaults."""
    entry = get(name)
    known = set(entry.cls._get_param_names())
    unknown = sorted(set(params) - known)
    if unknown:
        raise UnknownParameterError(f"detector {name} has no parameter {', '.join(map(repr, unknown))}; "
                                    f"its parameters: {', '.join(sorted(known))}")
    detector = entry.cls(**{**entry.defaults, **params})
    detector.registry_name = name
    return detector


def parse_params(items: Sequence[str], detectors: Sequence[str]) -> dict[str, dict]:
    """``[DETECTOR.]KEY=VALUE`` items (``dflab --param``) -> {detector: {key: value}}; VALUE is JSON or
    text. Without a detector prefix the parameter goes to every detector that accepts it; a key no
    chosen detector has is a :class:`ParameterError`."""
    accepted = {name: set(get(name).cls._get_param_names()) for name in detectors}
    params: dict[str, dict] = {}
    for item in items:
        target, equals, raw = item.partition("=")
        if not equals or not target:
            raise ParameterError(f"--param {item!r}: expected [DETECTOR.]KEY=VALUE, e.g. epochs=5")
        name, dot, key = target.rpartition(".")
        if dot and name not in accepted:
            raise ParameterError(f"--param {item!r}: {name!r} is not one of the chosen detectors ({', '.join(detectors)})")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        targets = [name] if dot else [n for n in detectors if key in accepted[n]]
        if not targets or any(key not in accepted[n] for n in targets):
            where = name if dot else "any chosen detector"
            raise ParameterError(f"--param {item!r}: {where} has no parameter {key!r}")
        for target_name in targets:
            params.setdefault(target_name, {})[key] = value
    return params
