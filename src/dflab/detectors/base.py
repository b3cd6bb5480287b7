"""The detector contract, and the safe model format every detector saves to.

Every detector follows scikit-learn's contract (parameters in ``__init__``, ``get_params``, ``fit``,
``predict_proba``), scores images with P(fake), may ``explain`` one image with a heatmap, and saves
to a folder (or ``.zip``) holding ``config.json`` plus ``arrays.safetensors`` and, for scikit-learn
parts, ``*.skops`` files. Loading verifies every file's sha256 and never runs code from the file.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import zipfile
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator

from dflab import __version__
from dflab.detectors.modelfile import (CONFIG_FILE, MODEL_FORMAT, MODEL_FORMAT_VERSION, ModelFileError,
                                       config_content_hash, deserialise_state, jsonable, read_model_files,
                                       serialise_state)
from dflab.media.images import ImageLike
from dflab.runtime.messages import one_line

#: Parameters that change how a detector runs here, not what it computes; never saved in a model.
RUNTIME_PARAMS = frozenset({"workers", "cache_dir", "device", "verbose", "checkpoint_dir", "backend"})


class NotFittedError(RuntimeError):
    pass


class TrainingDataError(ValueError):
    """Training data a detector cannot learn from (e.g. one class only); the message is one line."""


def require_both_classes(name: str, labels, usable=None, sources=None, reasons=None) -> None:
    """Raise :class:`TrainingDataError` unless the usable training rows hold real and fake images;
    say which class is missing and, when files failed, how many and why (the first one)."""
    labels = np.asarray(labels)
    usable = np.ones(len(labels), bool) if usable is None else np.asarray(usable, bool)
    present = set(np.unique(labels[usable]).tolist())
    if {0, 1} <= present:
        return
    missing = [word for value, word in ((0, "real"), (1, "fake")) if value not in present]
    message = f"{name}: no usable {' or '.join(missing)} image in the training data"
    failed = np.flatnonzero(~usable)
    if len(failed):
        example = failed[0]
        reason = (reasons or {}).get(int(example), "unusable")
        where = str(sources[example]) if sources is not None else f"row {example}"
        message += f" ({len(failed)} of {len(labels)} files failed, e.g. {where}: {reason})"
    raise TrainingDataError(message)


def as_sources(images: Any) -> list[ImageLike]:
    """Normalise the inputs a detector accepts: a manifest DataFrame, one path/array, or a sequence."""
    if isinstance(images, pd.DataFrame):
        if "path" not in images.columns:
            raise ValueError("a manifest DataFrame needs a 'path' column")
        return images["path"].astype(str).tolist()
    if isinstance(images, (str, Path)):
        return [images]
    if isinstance(images, np.ndarray) and images.ndim in (2, 3) and images.dtype != object:
        return [images]
    return list(images)


def as_training_set(data: Any) -> tuple[list[ImageLike], np.ndarray, np.ndarray]:
    """``(sources, labels, groups)`` from a manifest DataFrame (``path``, ``label``[, ``video``])
    or a ``(images, labels)`` tuple. Groups are videos (each sample its own group when unknown)."""
    if isinstance(data, pd.DataFrame):
        sources = as_sources(data)
        labels = data["label"].to_numpy(dtype=np.int64)
        groups = (data["video"].astype(str).to_numpy() if "video" in data.columns
                  else np.asarray([str(i) for i in range(len(data))]))
    else:
        images, labels = data
        sources = as_sources(images)
        labels = np.asarray(labels, dtype=np.int64)
        groups = np.asarray([str(i) for i in range(len(sources))])
    if len(sources) != len(labels):
        raise ValueError(f"{len(sources)} images but {len(labels)} labels")
    if not set(np.unique(labels)) <= {0, 1}:
        raise ValueError("labels must be 0 (real) or 1 (fake)")
    return sources, labels, groups


def _all_or_nothing(fit):
    """``fit`` that, when it raises, leaves the detector's attributes as they were before the call: a
    fit that fails halfway (an ensemble whose members were built before its stacking failed) must not
    leave a detector that looks fitted, nor a half-replaced model in one that was."""
    import functools

    @functools.wraps(fit)
    def all_or_nothing(self, *args, **kwargs):
        before = dict(vars(self))
        try:
            return fit(self, *args, **kwargs)
        except BaseException:
            vars(self).clear()
            vars(self).update(before)
            raise

    return all_or_nothing


class Detector(BaseEstimator):
    """Base class: subclasses implement ``fit``, ``predict_proba`` and ``_get_state``/``_set_state``.

    ``_get_state`` returns a flat dict whose values are NumPy arrays (saved in safetensors),
    scikit-learn estimators (saved with skops) or JSON-serialisable values (saved in the config).
    """

    #: Filled in by the registry when a detector is created by name.
    registry_name: ClassVar[str] = ""
    #: One line for ``dflab detectors``.
    description: ClassVar[str] = ""
    #: Whether ``fit`` learns anything (pretrained or rule-based detectors set False).
    trainable: ClassVar[bool] = True
    #: Whether the trained model ships inside the package (a ready detector: loaded, never saved again).
    shipped: ClassVar[bool] = False

    # Model info before ``load``: none. (Fitted state is what ``fit`` or ``load`` sets: attributes
    # ending in "_", see :meth:`is_fitted`.)
    model_info_: dict | None = None

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "fit" in vars(cls):
            cls.fit = _all_or_nothing(vars(cls)["fit"])

    # -- the contract -------------------------------------------------------------------------
    def fit(self, train, *, valid=None) -> "Detector":
        raise NotImplementedError

    def predict_proba(self, images, *, on_error: str = "raise") -> np.ndarray:
        """P(fake) per image. ``on_error="nan"`` gives NaN for unusable files instead of raising."""
        raise NotImplementedError

    def explain(self, image: ImageLike) -> np.ndarray:
        """A heatmap (H, W) in [0, 1] the size of the image: where the evidence of forgery is."""
        raise NotImplementedError(f"{self.name} has no explanation map")

    def is_fitted(self) -> bool:
        """Whether the detector holds fitted state, decided as scikit-learn's ``check_is_fitted`` does: an
        attribute ending in "_" set on the detector itself (by ``fit``, ``load`` or ``_set_state``;
        class-level defaults do not count). It only looks: nothing is loaded."""
        return any(key.endswith("_") and not key.startswith("__") for key in vars(self))

    # -- optional abilities: declared here with their "none" answer, so callers never probe --------
    def inner(self) -> "Detector":
        """The detector whose model computes the scores: itself, or a shipped model a ready detector holds."""
        return self

    def card(self) -> str:
        """The model card (Markdown) a shipped model comes with; empty for the others."""
        return ""

    def self_blend_examples(self, sources, out_path, *, n: int = 4) -> Path | None:
        """A PNG of training examples made from ``sources`` (self-blended images), for the report; None
        when the detector makes none."""
        return None

    def ready_to_load(self) -> bool:
        """Whether ``fit`` needs no training data and what it loads (published weights, a shipped model)
        is on this machine; False for detectors that learn from data. It only looks: nothing is loaded."""
        return False

    def training_summary(self) -> dict[str, float]:
        """Numbers of the last training the lab reports beside the metrics (e.g. a siamese network's
        pair accuracy); empty when there are none."""
        return {}

    def __sklearn_clone__(self):
        """A new, untrained detector with the same parameters (each cloned, as scikit-learn's ``clone``
        does) and the same registry name, which is not a parameter (an ensemble's cloned members keep
        their names). Built here from the public API: scikit-learn's own helper for it is private."""
        from sklearn.base import clone

        twin = type(self)(**{key: clone(value, safe=False) for key, value in self.get_params(deep=False).items()})
        twin.registry_name = self.registry_name
        return twin

    @property
    def face_framing(self):
        """How this model's training crops frame a face (:class:`dflab.faces.framing.FaceFraming`), when its
        model info records it; ``dflab predict`` then finds and frames faces itself."""
        from dflab.faces.framing import FaceFraming

        return FaceFraming.from_info(self.model_info_)

    @property
    def name(self) -> str:
        return self.registry_name or type(self).__name__

    def _check_fitted(self) -> None:
        if not self.is_fitted():
            raise NotFittedError(f"detector {self.name} is not trained: call fit() or load a trained model")

    # -- state --------------------------------------------------------------------------------
    def _get_state(self) -> dict[str, Any]:
        raise NotImplementedError

    def _set_state(self, state: dict[str, Any]) -> None:
        raise NotImplementedError

    def model_params(self) -> dict[str, Any]:
        return {k: v for k, v in self.get_params(deep=False).items() if k not in RUNTIME_PARAMS}

    # -- files --------------------------------------------------------------------------------
    def save(self, path: str | Path, *, info: dict | None = None, float16: bool = False) -> Path:
        """Write the trained model to a folder, or to a zip when ``path`` ends in ``.zip``.
        ``float16`` stores floating-point arrays at half precision (half the size; loaded back as float32)."""
        self._check_fitted()
        files, config_state = serialise_state(self._get_state(), float16=float16)
        config = {
            "format": MODEL_FORMAT,
            "format_version": MODEL_FORMAT_VERSION,
            "detector": self.name,
            "params": jsonable(self.model_params()),
            "state": config_state,
            "dflab_version": __version__,
            "files": {name: hashlib.sha256(data).hexdigest() for name, data in sorted(files.items())},
            "info": jsonable(info or {}),
        }
        config["content_hash"] = config_content_hash(config)
        config_bytes = json.dumps(config, indent=2, sort_keys=True).encode()
        path = Path(path)
        if path.suffix.lower() == ".zip":
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(path.name + ".tmp")
            with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as archive:
                archive.writestr(CONFIG_FILE, config_bytes)
                for name, data in files.items():
                    archive.writestr(name, data)
            tmp.replace(path)
        else:
            path.mkdir(parents=True, exist_ok=True)
            # A folder with a config is complete: the old config goes first and the new one comes
            # last, atomically, so a save killed half-way leaves a folder that is never read back.
            (path / CONFIG_FILE).unlink(missing_ok=True)
            for name, data in files.items():
                (path / name).write_bytes(data)
            tmp = path / (CONFIG_FILE + ".tmp")
            tmp.write_bytes(config_bytes)
            tmp.replace(path / CONFIG_FILE)
        return path

    @classmethod
    def load(cls, path: str | Path, **runtime_params) -> "Detector":
        """Load a model saved by :meth:`save` (any detector type; the config names it)."""
        from dflab.detectors.registry import UnknownDetectorError, create, get

        config, files = read_model_files(path)
        name = config["detector"]
        try:
            entry = get(name)
        except UnknownDetectorError:
            raise ModelFileError(path, f"unknown detector {name!r} (made by another dflab version?)") from None
        params = _checked_model_params(entry.cls, config["params"], path)
        # A caller's setting the detector does not take (``workers`` for a rule) is not an error.
        accepted = inspect.signature(entry.cls.__init__).parameters
        runtime_params = {k: v for k, v in runtime_params.items() if k in accepted}
        try:
            detector = create(name, **{**params, **runtime_params})
        except (TypeError, ValueError) as err:
            raise ModelFileError(path, f"parameters do not fit {name} ({one_line(err)})") from None
        if cls is not Detector and not isinstance(detector, cls):
            raise ModelFileError(path, f"holds a {name} model, not a {cls.__name__}")
        try:
            detector._set_state(deserialise_state(files, config.get("state", {}), path))
        except ModelFileError:
            raise
        except (KeyError, ValueError, TypeError, RuntimeError, AttributeError, IndexError) as err:
            raise ModelFileError(path, f"model state does not fit {name} ({one_line(err)})") from None
        detector.model_info_ = config.get("info", {})
        return detector


def runtime_params(cls: type, **values) -> dict[str, Any]:
    """The runtime settings (:data:`RUNTIME_PARAMS`) among ``values`` that detector class ``cls`` takes,
    leaving out those given as None (the detector's own default then holds)."""
    unknown = set(values) - RUNTIME_PARAMS
    if unknown:
        raise ValueError(f"not runtime settings: {sorted(unknown)}")
    accepted = set(cls._get_param_names())
    return {key: value for key, value in values.items() if key in accepted and value is not None}


def _checked_model_params(cls: type, params: dict, path) -> dict:
    """A model file's parameters, checked against the detector's ``__init__``: only its model
    parameters (runtime settings such as ``cache_dir`` come from the caller, never from a file),
    each of the type of its default."""
    signature = inspect.signature(cls.__init__).parameters
    for key, value in params.items():
        if key in RUNTIME_PARAMS:
            raise ModelFileError(path, f"refusing runtime setting {key!r} in the model's parameters "
                                       "(runtime settings come from the command line or the caller)")
        if key not in signature or key == "self":
            raise ModelFileError(path, f"unknown parameter {key!r} for {cls.__name__}")
        default = signature[key].default
        if default is inspect.Parameter.empty or default is None or value is None:
            continue
        expected = (int, float) if type(default) is float else type(default)
        if isinstance(default, (list, tuple)):
            expected = (list, tuple)
        if isinstance(value, bool) != isinstance(default, bool) or not isinstance(value, expected):
            raise ModelFileError(path, f"parameter {key!r} is {type(value).__name__}, expected "
                                       f"{type(default).__name__}")
    return params


def load_detector(path: str | Path, **runtime_params) -> Detector:
    """Load any saved dflab model (folder or .zip)."""
    return Detector.load(path, **runtime_params)
