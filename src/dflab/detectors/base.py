"""The detector contract, and the safe model format every detector saves to.

Every detector follows scikit-learn's contract (parameters in ``__init__``, ``get_params``, ``fit``,
``predict_proba``), scores images with P(fake), may ``explain`` one image with a heatmap, and saves
to a folder (or ``.zip``) holding ``config.json`` plus ``arrays.safetensors`` and, for scikit-learn
parts, ``*.skops`` files. Loading verifies every file's sha256 and never runs code from the file.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path
from typing import Any, ClassVar, Sequence

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator

from .. import __version__
from ..images import ImageError, ImageLike, load_image

MODEL_FORMAT = "dflab-model"
MODEL_FORMAT_VERSION = 1
ARRAYS_FILE = "arrays.safetensors"
CONFIG_FILE = "config.json"

#: Parameters that change how a detector runs here, not what it computes; never saved in a model.
RUNTIME_PARAMS = frozenset({"workers", "cache_dir", "device", "verbose", "checkpoint_dir"})

#: Modules whose classes a stranger's ``.skops`` file may instantiate.
_TRUSTED_SKOPS_PREFIXES = ("sklearn.", "numpy.", "scipy.sparse.", "builtins.", "collections.")


class ModelFileError(ValueError):
    """A model file/folder that cannot be loaded: ``<path>: <reason>``."""

    def __init__(self, path: str | Path, reason: str):
        self.path, self.reason = str(path), reason
        super().__init__(f"{path}: {reason}")


class NotFittedError(RuntimeError):
    pass


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
        return getattr(self, "fitted_", False)

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
    def save(self, path: str | Path, *, info: dict | None = None) -> Path:
        """Write the trained model to a folder, or to a zip when ``path`` ends in ``.zip``."""
        self._check_fitted()
        files, config_state = _serialise_state(self._get_state())
        config = {
            "format": MODEL_FORMAT,
            "format_version": MODEL_FORMAT_VERSION,
            "detector": self.name,
            "params": _jsonable(self.model_params()),
            "state": config_state,
            "dflab_version": __version__,
            "files": {name: hashlib.sha256(data).hexdigest() for name, data in sorted(files.items())},
            "info": _jsonable(info or {}),
        }
        config["content_hash"] = _content_hash(config)
        config_bytes = json.dumps(config, indent=2, sort_keys=True).encode()
        path = Path(path)
        if path.suffix.lower() == ".zip":
            path.parent.mkdir(parents=True, exist_ok=True)
            with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
                archive.writestr(CONFIG_FILE, config_bytes)
                for name, data in files.items():
                    archive.writestr(name, data)
        else:
            path.mkdir(parents=True, exist_ok=True)
            for name, data in files.items():
                (path / name).write_bytes(data)
            (path / CONFIG_FILE).write_bytes(config_bytes)  # last: a folder with a config is complete
        return path

    @classmethod
    def load(cls, path: str | Path, **runtime_params) -> "Detector":
        """Load a model saved by :meth:`save` (any detector type; the config names it)."""
        from .registry import create

        config, files = read_model_files(path)
        detector = create(config["detector"], **config["params"], **runtime_params)
        if cls is not Detector and not isinstance(detector, cls):
            raise ModelFileError(path, f"holds a {config['detector']} model, not a {cls.__name__}")
        try:
            detector._set_state(_deserialise_state(files, config.get("state", {}), path))
        except (KeyError, ValueError, TypeError) as err:
            raise ModelFileError(path, f"model state does not fit {config['detector']} ({err})") from None
        detector.fitted_ = True
        detector.model_info_ = config.get("info", {})
        return detector


def load_detector(path: str | Path, **runtime_params) -> Detector:
    """Load any saved dflab model (folder or .zip)."""
    return Detector.load(path, **runtime_params)


# -- helpers for subclasses -------------------------------------------------------------------

def load_images(sources: Sequence[ImageLike], on_error: str = "raise") -> list[np.ndarray | None]:
    """Decode sources; failures raise (``on_error="raise"``) or become ``None``."""
    out: list[np.ndarray | None] = []
    for source in sources:
        try:
            out.append(load_image(source))
        except ImageError:
            if on_error == "raise":
                raise
            out.append(None)
    return out


# -- serialisation ----------------------------------------------------------------------------

def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    raise TypeError(f"cannot store {type(value).__name__} in a model config")


def _content_hash(config: dict) -> str:
    payload = {k: config[k] for k in ("detector", "params", "state", "files")}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def _serialise_state(state: dict[str, Any]) -> tuple[dict[str, bytes], dict[str, Any]]:
    from safetensors.numpy import save as save_arrays

    arrays: dict[str, np.ndarray] = {}
    files: dict[str, bytes] = {}
    config_state: dict[str, Any] = {}
    for key, value in state.items():
        if isinstance(value, np.ndarray):
            # np.ascontiguousarray would turn 0-d arrays (e.g. BatchNorm counters) into shape (1,).
            arrays[key] = value if value.flags.c_contiguous else value.copy(order="C")
        elif isinstance(value, BaseEstimator):
            import skops.io

            files[f"{key}.skops"] = skops.io.dumps(value)
        else:
            config_state[key] = _jsonable(value)
    if arrays:
        files[ARRAYS_FILE] = save_arrays(arrays)
    return files, config_state


def _deserialise_state(files: dict[str, bytes], config_state: dict, path) -> dict[str, Any]:
    from safetensors.numpy import load as load_arrays

    state: dict[str, Any] = dict(config_state)
    for name, data in files.items():
        if name == ARRAYS_FILE:
            state.update(load_arrays(data))
        elif name.endswith(".skops"):
            state[name[: -len(".skops")]] = _load_skops(data, f"{path}/{name}")
    return state


def _load_skops(data: bytes, name: str):
    import skops.io

    untrusted = skops.io.get_untrusted_types(data=data)
    refused = [t for t in untrusted if not t.startswith(_TRUSTED_SKOPS_PREFIXES)]
    if refused:
        raise ModelFileError(name, f"refusing to load types outside scikit-learn/numpy: {', '.join(refused)}")
    return skops.io.loads(data, trusted=untrusted)


def read_model_files(path: str | Path) -> tuple[dict, dict[str, bytes]]:
    """Read and verify a saved model: returns (config, {file name: bytes}). Raises ModelFileError."""
    path = Path(path)
    if not path.exists():
        raise ModelFileError(path, "no such model file or folder")
    try:
        if path.is_dir():
            if not (path / CONFIG_FILE).exists():
                raise ModelFileError(path, f"not a dflab model folder (no {CONFIG_FILE})")
            config = json.loads((path / CONFIG_FILE).read_text())
            names = list(config.get("files", {}))
            files = {name: (path / name).read_bytes() for name in names}
        elif zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                config = json.loads(archive.read(CONFIG_FILE))
                files = {name: archive.read(name) for name in config.get("files", {})}
        else:
            raise ModelFileError(path, "not a dflab model (expected a folder or a .zip with config.json)")
    except ModelFileError:
        raise
    except (OSError, KeyError, json.JSONDecodeError, zipfile.BadZipFile) as err:
        raise ModelFileError(path, f"unreadable model ({type(err).__name__}: {err})") from None
    if config.get("format") != MODEL_FORMAT:
        raise ModelFileError(path, f"not a dflab model (format {config.get('format')!r})")
    if config.get("format_version", 0) > MODEL_FORMAT_VERSION:
        raise ModelFileError(path, f"model format {config['format_version']} is newer than this dflab supports")
    for name, expected in config["files"].items():
        if "/" in name or "\\" in name or name.startswith("."):
            raise ModelFileError(path, f"unsafe file name in config: {name!r}")
        if hashlib.sha256(files[name]).hexdigest() != expected:
            raise ModelFileError(path, f"{name} does not match its sha256 in {CONFIG_FILE} (file changed or damaged)")
    if config.get("content_hash") != _content_hash(config):
        raise ModelFileError(path, "content hash mismatch: config.json was edited or damaged")
    return config, files


def read_model_config(path: str | Path) -> dict:
    return read_model_files(path)[0]
