"""The safe model format: ``config.json`` + ``arrays.safetensors`` + ``*.skops``, in a folder or a zip; every file sha256-checked, sizes capped, and nothing in a file can run code."""

from __future__ import annotations

import hashlib
import json
import re
import struct
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator

from dflab.runtime.messages import one_line

MODEL_FORMAT = "dflab-model"


MODEL_FORMAT_VERSION = 1


ARRAYS_FILE = "arrays.safetensors"


CONFIG_FILE = "config.json"


#: The types, beyond those skops trusts by default (scikit-learn estimators, NumPy arrays, plain
#: containers), that the scikit-learn parts of this package's own models contain: every classifier
#: of :data:`dflab.detectors.handcrafted.classic.CLASSIFIERS`, the siamese MLP, the stacking and calibration
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


#: The only names a model's files may have: no folders, no hidden files, a known kind (``.onnx``: a
#: CNN's exported graph, :mod:`dflab.detectors.deep.onnx_backend`).
SAFE_FILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}\.(safetensors|skops|onnx)$")


_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class ModelFileError(ValueError):
    """A model file/folder that cannot be loaded: ``<path>: <reason>``."""

    def __init__(self, path: str | Path, reason: str):
        self.path, self.reason = str(path), reason
        super().__init__(f"{path}: {reason}")


def jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
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


def config_content_hash(config: dict) -> str:
    payload = {k: config[k] for k in ("detector", "params", "state", "files")}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def serialise_state(state: dict[str, Any], float16: bool = False) -> tuple[dict[str, bytes], dict[str, Any]]:
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
        elif isinstance(value, bytes) and SAFE_FILE_NAME.match(key):
            files[key] = value  # a file kept as it is, named by its key (an exported ONNX graph)
        else:
            config_state[key] = jsonable(value)
    if arrays:
        files[ARRAYS_FILE] = save_arrays(arrays)
    return files, config_state


def deserialise_state(files: dict[str, bytes], config_state: dict, path) -> dict[str, Any]:
    from safetensors.numpy import load as load_arrays

    state: dict[str, Any] = dict(config_state)
    for name, data in files.items():
        if name == ARRAYS_FILE:
            _check_safetensors_header(data, f"{path}/{name}")
            try:
                state.update(load_arrays(data))
            except Exception as err:  # noqa: BLE001 - safetensors' own error type is not importable stably
                raise ModelFileError(f"{path}/{name}", f"not a valid safetensors file ({one_line(err)})") from None
        elif name.endswith(".skops"):
            state[name[: -len(".skops")]] = _load_skops(data, f"{path}/{name}")
        elif name.endswith(".onnx"):
            check_graph(data, f"{path}/{name}")
            state[name] = data
    return state


def check_graph(graph: bytes, where: str | Path) -> None:
    """Refuse a graph that is not ONNX or whose weights live in other files (external data: a path
    the graph names, which would make onnxruntime read any file it points at)."""
    import onnx
    from google.protobuf.message import DecodeError

    try:
        proto = onnx.load_model_from_string(graph)  # from bytes: external data is never read here
    except (DecodeError, ValueError) as err:
        raise ModelFileError(where, f"not a valid ONNX graph ({one_line(err)})") from None
    if not proto.graph.input or not proto.graph.output:
        raise ModelFileError(where, "not a valid ONNX graph (no input or output)")
    external = [tensor.name for tensor in _tensors(proto.graph)
                if tensor.data_location == onnx.TensorProto.EXTERNAL]
    if external:
        raise ModelFileError(where, f"refusing an ONNX graph whose weights are in external files ({external[0][:80]})")


def _tensors(graph):
    """Every tensor a graph holds: its initialisers and the tensors in node attributes, subgraphs included."""
    yield from graph.initializer
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.HasField("t"):
                yield attribute.t
            yield from attribute.tensors
            for subgraph in ([attribute.g] if attribute.HasField("g") else []) + list(attribute.graphs):
                yield from _tensors(subgraph)


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
        raise ModelFileError(name, f"not a valid skops file ({one_line(err)})") from None
    refused = sorted(t for t in untrusted if t not in TRUSTED_SKOPS_TYPES)
    if refused:
        raise ModelFileError(name, f"refusing to load types outside dflab's scikit-learn allow-list: "
                                   f"{', '.join(refused)[:300]}")
    try:
        return skops.io.loads(data, trusted=sorted(untrusted))
    except Exception as err:  # noqa: BLE001 - only allow-listed types are built; anything failing is damage
        raise ModelFileError(name, f"not a valid skops file ({one_line(err)})") from None


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
        raise ModelFileError(path, f"unreadable model ({type(err).__name__}: {one_line(err)})") from None
    for name, expected in config["files"].items():
        if hashlib.sha256(files[name]).hexdigest() != expected:
            raise ModelFileError(path, f"{name} does not match its sha256 in {CONFIG_FILE} (file changed or damaged)")
    if config.get("content_hash") != config_content_hash(config):
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
        raise ModelFileError(path, f"{CONFIG_FILE} is not valid JSON ({one_line(err)})") from None
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
        if not SAFE_FILE_NAME.match(name):
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
