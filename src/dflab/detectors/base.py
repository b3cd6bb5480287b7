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
import re
import struct
import zipfile
from pathlib import Path
from typing import Any, ClassVar, Sequence

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator

from dflab import __version__
from dflab.images import ImageError, ImageLike, load_image

MODEL_FORMAT = "dflab-model"
MODEL_FORMAT_VERSION = 1
ARRAYS_FILE = "arrays.safetensors"
CONFIG_FILE = "config.json"

#: Parameters that change how a detector runs here, not what it computes; never saved in a model.
RUNTIME_PARAMS = frozenset({"workers", "cache_dir", "device", "verbose", "checkpoint_dir"})

#: The types, beyond those skops trusts by default (scikit-learn estimators, NumPy arrays, plain
#: containers), that the scikit-learn parts of this package's own models contain: every classifier
#: of :data:`dflab.detectors.classic.CLASSIFIERS`, the siamese MLP, the stacking and calibration
#: models (``tests/test_model_security.py`` recomputes the list from them). Nothing else in a
#: ``.skops`` file is ever loaded: never a module prefix, since ``builtins`` alone holds ``open``,
#: ``eval`` and ``getattr``.
TRUSTED_SKOPS_TYPES = frozenset({
    "sklearn.calibration._CalibratedClassifier",
    "sklearn.calibration._SigmoidCalibration",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.neural_network._stochastic_optimizers.AdamOptimizer",
    "sklearn.tree._tree.Tree",
})

#: Limits on what a model file may make this program read.
MAX_CONFIG_BYTES = 16 * 2**20
MAX_MODEL_FILE_BYTES = 2 * 2**30
MAX_SAFETENSORS_HEADER_BYTES = 64 * 2**20
#: The only names a model's files may have: no folders, no hidden files, a known kind.
_SAFE_FILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}\.(safetensors|skops)$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class ModelFileError(ValueError):
    """A model file/folder that cannot be loaded: ``<path>: <reason>``."""

    def __init__(self, path: str | Path, reason: str):
        self.path, self.reason = str(path), reason
        super().__init__(f"{path}: {reason}")


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
    def face_framing(self):
        """How this model's training crops frame a face (:class:`dflab.framing.FaceFraming`), when its
        model info records it; ``dflab predict`` then finds and frames faces itself."""
        from dflab.framing import FaceFraming

        return FaceFraming.from_info(getattr(self, "model_info_", None))

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
        files, config_state = _serialise_state(self._get_state(), float16=float16)
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
            raise ModelFileError(path, f"parameters do not fit {name} ({_one_line(err)})") from None
        if cls is not Detector and not isinstance(detector, cls):
            raise ModelFileError(path, f"holds a {name} model, not a {cls.__name__}")
        try:
            detector._set_state(_deserialise_state(files, config.get("state", {}), path))
        except ModelFileError:
            raise
        except (KeyError, ValueError, TypeError, RuntimeError, AttributeError, IndexError) as err:
            raise ModelFileError(path, f"model state does not fit {name} ({_one_line(err)})") from None
        detector.fitted_ = True
        detector.model_info_ = config.get("info", {})
        return detector


def _one_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return (text[0] if text else type(err).__name__)[:300]


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


def _serialise_state(state: dict[str, Any], float16: bool = False) -> tuple[dict[str, bytes], dict[str, Any]]:
    from safetensors.numpy import save as save_arrays

    arrays: dict[str, np.ndarray] = {}
    files: dict[str, bytes] = {}
    config_state: dict[str, Any] = {}
    for key, value in state.items():
        if isinstance(value, np.ndarray):
            # np.ascontiguousarray would turn 0-d arrays (e.g. BatchNorm counters) into shape (1,).
            if float16 and value.dtype.kind == "f":
                value = value.astype(np.float16)
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
            _check_safetensors_header(data, f"{path}/{name}")
            try:
                state.update(load_arrays(data))
            except Exception as err:  # noqa: BLE001 - safetensors' own error type is not importable stably
                raise ModelFileError(f"{path}/{name}", f"not a valid safetensors file ({_one_line(err)})") from None
        elif name.endswith(".skops"):
            state[name[: -len(".skops")]] = _load_skops(data, f"{path}/{name}")
    return state


def _check_safetensors_header(data: bytes, name: str) -> None:
    """safetensors starts with an 8-byte little-endian header length: check it before parsing."""
    if len(data) < 8:
        raise ModelFileError(name, "not a valid safetensors file (shorter than its header)")
    (header_bytes,) = struct.unpack("<Q", data[:8])
    if header_bytes > min(MAX_SAFETENSORS_HEADER_BYTES, len(data) - 8):
        raise ModelFileError(name, f"not a valid safetensors file (header of {header_bytes} bytes)")


def _load_skops(data: bytes, name: str):
    import skops.io

    try:
        untrusted = skops.io.get_untrusted_types(data=data)
    except Exception as err:  # noqa: BLE001 - a damaged or foreign file: any parse error
        raise ModelFileError(name, f"not a valid skops file ({_one_line(err)})") from None
    refused = sorted(t for t in untrusted if t not in TRUSTED_SKOPS_TYPES)
    if refused:
        raise ModelFileError(name, f"refusing to load types outside dflab's scikit-learn allow-list: "
                                   f"{', '.join(refused)[:300]}")
    try:
        return skops.io.loads(data, trusted=sorted(untrusted))
    except Exception as err:  # noqa: BLE001 - only allow-listed types are built; anything failing is damage
        raise ModelFileError(name, f"not a valid skops file ({_one_line(err)})") from None


def read_model_files(path: str | Path) -> tuple[dict, dict[str, bytes]]:
    """Read and verify a saved model: returns (config, {file name: bytes}). Raises ModelFileError.

    The config is checked against its schema and every file name is checked before any file is
    opened; sizes are capped; every file must match its sha256 and the config its content hash."""
    path = Path(path)
    if not path.exists():
        raise ModelFileError(path, "no such model file or folder")
    try:
        if path.is_dir():
            config_path = path / CONFIG_FILE
            if not config_path.is_file():
                raise ModelFileError(path, f"not a dflab model folder (no {CONFIG_FILE})")
            config = _parse_config(_read_capped(config_path, MAX_CONFIG_BYTES), path)
            files = {}
            for name in config["files"]:
                file_path = path / name
                if not file_path.is_file() or file_path.is_symlink():
                    raise ModelFileError(path, f"{name} is missing (listed in {CONFIG_FILE})")
                files[name] = _read_capped(file_path, MAX_MODEL_FILE_BYTES)
        elif zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                config = _parse_config(_read_member(archive, CONFIG_FILE, MAX_CONFIG_BYTES, path), path)
                files = {name: _read_member(archive, name, MAX_MODEL_FILE_BYTES, path) for name in config["files"]}
        else:
            raise ModelFileError(path, "not a dflab model (expected a folder or a .zip with config.json)")
    except ModelFileError:
        raise
    except (OSError, zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, NotImplementedError, RuntimeError) as err:
        raise ModelFileError(path, f"unreadable model ({type(err).__name__}: {_one_line(err)})") from None
    for name, expected in config["files"].items():
        if hashlib.sha256(files[name]).hexdigest() != expected:
            raise ModelFileError(path, f"{name} does not match its sha256 in {CONFIG_FILE} (file changed or damaged)")
    if config.get("content_hash") != _content_hash(config):
        raise ModelFileError(path, "content hash mismatch: config.json was edited or damaged")
    return config, files


def _read_capped(file_path: Path, limit: int) -> bytes:
    size = file_path.stat().st_size
    if size > limit:
        raise ModelFileError(file_path, f"{size} bytes is more than a model file may hold ({limit})")
    return file_path.read_bytes()


def _read_member(archive: zipfile.ZipFile, name: str, limit: int, path: Path) -> bytes:
    try:
        member = archive.getinfo(name)
    except KeyError:
        raise ModelFileError(path, f"{name} is missing from the archive") from None
    if member.file_size > limit:
        raise ModelFileError(path, f"{name}: {member.file_size} bytes is more than a model file may hold ({limit})")
    return archive.read(member)


def _parse_config(raw: bytes, path: Path) -> dict:
    """``config.json`` -> dict, checked against the schema of :meth:`Detector.save`."""
    try:
        config = json.loads(raw)
    except (ValueError, RecursionError) as err:
        raise ModelFileError(path, f"{CONFIG_FILE} is not valid JSON ({_one_line(err)})") from None
    if not isinstance(config, dict):
        raise ModelFileError(path, f"{CONFIG_FILE} is not a JSON object")
    if config.get("format") != MODEL_FORMAT:
        raise ModelFileError(path, f"not a dflab model (format {str(config.get('format'))[:40]!r})")
    version = config.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise ModelFileError(path, f"{CONFIG_FILE}: format_version must be an integer")
    if version > MODEL_FORMAT_VERSION:
        raise ModelFileError(path, f"model format {version} is newer than this dflab supports")
    schema = {"detector": str, "params": dict, "state": dict, "files": dict, "content_hash": str}
    for key, kind in schema.items():
        if not isinstance(config.get(key), kind):
            found = "missing" if key not in config else type(config[key]).__name__
            raise ModelFileError(path, f"{CONFIG_FILE}: {key!r} must be a {kind.__name__} ({found})")
    if not isinstance(config.setdefault("info", {}), dict):
        raise ModelFileError(path, f"{CONFIG_FILE}: 'info' must be an object")
    for name, digest in config["files"].items():
        if not _SAFE_FILE_NAME.match(name):
            raise ModelFileError(path, f"unsafe file name in config: {name[:80]!r}")
        if not isinstance(digest, str) or not _SHA256.match(digest):
            raise ModelFileError(path, f"{CONFIG_FILE}: the sha256 of {name} is not 64 hex digits")
    thresholds = config["info"].get("thresholds")
    if thresholds is not None and not (isinstance(thresholds, dict) and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in thresholds.values())):
        raise ModelFileError(path, f"{CONFIG_FILE}: info.thresholds must map levels to numbers")
    return config


def read_model_config(path: str | Path) -> dict:
    return read_model_files(path)[0]
