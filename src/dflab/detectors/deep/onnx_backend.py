"""ONNX Runtime scoring for the CNN detectors: the network's batched forward pass run by onnxruntime.

Only the network moves: decoding, framing, resizing, normalisation and the mirror test-time
augmentation stay in Python (:func:`dflab.detectors.deep.forward.predict_outputs`), so the scores
are the PyTorch path's to float32 rounding. A graph is exported in float32 (the ready detector's
fp16 weights are loaded as float32 first) with a dynamic batch dimension and a fixed input size.

Where the switch happens: :meth:`TorchDetector.predict_proba` asks :func:`scoring_network` for the
callable that maps a normalised batch to logits; every command (``predict``, ``evaluate``, ``lab``,
``serve``) scores through that method, so none needs code of its own. Backends:

* ``auto`` (default): onnxruntime when the model holds an exported graph and runs on the CPU,
  else PyTorch; the front ends (``predict``, ``evaluate``, ``serve``) first give the shipped ready
  detector, which holds no graph, one from the user cache, exported there on first use
  (:func:`attach_cached_graph`);
* ``onnx``: onnxruntime always (on the CPU); a model without a graph is exported when the backend or
  the network is set (:func:`bind_graph`: at ``fit``, load and ``set_params``), never while scoring;
* ``torch``: PyTorch always.

A graph inside a model folder is one of the model's files: listed in ``config.json`` with its
sha256 and checked on load like the weights (:func:`attach_graph`). ONNX files hold no code, but a
graph may point at "external data" files anywhere on disk; such graphs are refused.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from dflab.runtime.choices import Backend
from dflab.detectors.modelfile import (CONFIG_FILE, ModelFileError, check_graph, config_content_hash,
                                       read_model_files)
from dflab.runtime.messages import one_line
from dflab.runtime.progress import info

#: The name an exported graph takes inside a model folder.
GRAPH_FILE = "network.onnx"
#: ONNX opset of exported graphs: 18 is the lowest the torch.export-based exporter writes natively.
OPSET = 18
INPUT_NAME, OUTPUT_NAME = "images", "logits"


def export_graph(network: nn.Module, input_size: int, *, opset: int = OPSET) -> bytes:
    """The ONNX graph (bytes) of ``network`` for float32 NCHW batches of ``input_size`` px, any batch size.

    The network is exported from a float32 CPU copy in eval mode, so the caller's network (its device,
    dtype, memory format) is left as it was."""
    import copy

    network = copy.deepcopy(network).float().cpu().eval()
    example = torch.zeros(2, 3, input_size, input_size)
    batch = torch.export.Dim("batch", min=1)
    with torch.no_grad():
        program = torch.onnx.export(network, (example,), None, dynamo=True, opset_version=opset,
                                    input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                                    dynamic_shapes=({0: batch},), verbose=False)
    return program.model_proto.SerializeToString()


class OnnxBackend:
    """An exported graph run by onnxruntime, called like the network: normalised float32 batch
    (N, 3, H, W) -> logits (N, 1) as a torch tensor.

    ``network`` is the PyTorch network the graph was exported from: the graph stands for that network
    only (a detector trained again gets a new network, and its old graph is then no longer used).
    ``saved``: whether saving the detector writes the graph with the model (not for one exported at
    ``fit``: a model trained to run with onnxruntime is saved as one trained for PyTorch is)."""

    def __init__(self, graph: bytes, network: nn.Module, *, where: str | Path = "<onnx graph>", saved: bool = True):
        self.graph, self.network, self.where, self.saved = graph, network, str(where), saved
        self._session = None

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.graph).hexdigest()

    def session(self):
        """The onnxruntime session (made on first use), with as many threads as PyTorch uses, so that
        the two backends run on the same cores."""
        if self._session is None:
            import onnxruntime as ort

            options = ort.SessionOptions()
            options.intra_op_num_threads = torch.get_num_threads()
            options.inter_op_num_threads = 1
            options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            options.log_severity_level = 3  # warnings about unused initialisers are not the user's business
            # Idle threads sleep instead of spinning: spinning ones take the cores from the face
            # detector (PyTorch) that runs between two network calls.
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            try:
                self._session = ort.InferenceSession(self.graph, options, providers=["CPUExecutionProvider"])
            except Exception as err:  # noqa: BLE001 - onnxruntime raises its own untyped failures
                raise ModelFileError(self.where, f"onnxruntime cannot load the graph ({one_line(err)})") from None
        return self._session

    def input_size(self) -> int | None:
        shape = self.session().get_inputs()[0].shape
        return shape[-1] if isinstance(shape[-1], int) else None

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        expected = self.input_size()
        if expected is not None and batch.shape[-1] != expected:
            raise ValueError(f"{self.where}: the ONNX graph takes {expected} px images, not {batch.shape[-1]} px "
                             "(export the model again after changing input_size)")
        x = batch.detach().float().cpu().contiguous().numpy()  # NCHW, as the graph takes it
        (logits,) = self.session().run([OUTPUT_NAME], {INPUT_NAME: x})
        return torch.from_numpy(np.asarray(logits))


def check_backend(backend: str) -> str:
    if backend not in Backend.names():
        raise ValueError(f"backend must be one of {', '.join(Backend.names())}, not {backend!r}")
    return backend


def scoring_network(detector, model: nn.Module, device: torch.device) -> Callable[[torch.Tensor], torch.Tensor]:
    """What scores a normalised batch for ``detector``: its PyTorch ``model`` or its :class:`OnnxBackend`,
    by the detector's ``backend`` setting (see the module docstring). Only reads the detector: a graph
    is exported beforehand, when the network or the backend is set (:func:`bind_graph`)."""
    backend = check_backend(detector.backend)
    held = detector.onnx_
    if held is not None and held.network is not detector.model_:
        held = None  # trained again since: the graph was of the old network
    if backend == "torch" or (backend == "auto" and (held is None or device.type != "cpu")):
        return model
    if held is None:
        raise ValueError(f"{detector.name}: backend 'onnx' but no ONNX graph of its network "
                         "(set_params(backend='onnx') exports one)")
    return held


def bind_graph(detector, *, saved: bool = True) -> None:
    """With backend "onnx", export the detector's network for onnxruntime now, unless it holds a graph of
    that very network: called where the network or the backend is set (fit, load, set_params), so that
    scoring never exports. ``saved``: see :class:`OnnxBackend`."""
    if check_backend(detector.backend) != "onnx" or detector.model_ is None:
        return
    held = detector.onnx_
    if held is not None and held.network is detector.model_:
        return
    started = time.perf_counter()
    detector.onnx_ = OnnxBackend(export_graph(detector.model_, int(detector.input_size)), detector.model_,
                                 where=f"{detector.name} (exported)", saved=saved)
    info(f"{detector.name}: exported to ONNX for onnxruntime in {time.perf_counter() - started:.0f} s "
         f"(`dflab export MODEL --onnx MODEL/{GRAPH_FILE}` keeps the graph with the model)")


def graph_from_state(state: dict, network: nn.Module, where) -> OnnxBackend | None:
    """The exported graph among a loaded model's files (``*.onnx``, checked by :func:`check_graph` when
    read; at most one), bound to ``network``."""
    graphs = sorted(name for name in state if isinstance(name, str) and name.endswith(".onnx"))
    if not graphs:
        return None
    if len(graphs) > 1:
        raise ModelFileError(where, f"more than one ONNX graph in the model ({', '.join(graphs[:3])})")
    return OnnxBackend(state[graphs[0]], network, where=f"{where}/{graphs[0]}")


def attach_graph(folder: str | Path, graph: bytes, name: str = GRAPH_FILE) -> Path:
    """Put ``graph`` into the model folder as ``name`` and list it, with its sha256, in ``config.json``
    (content hash renewed), so that loading checks it like the model's other files. The config is
    replaced atomically after the graph is written: an interrupted attach leaves the model as it was
    (or with an unlisted file, which loading ignores)."""
    folder = Path(folder)
    config, _ = read_model_files(folder)  # only a sound model gets a graph
    check_graph(graph, folder / name)
    (folder / name).write_bytes(graph)
    config["files"] = {**{k: v for k, v in config["files"].items() if not k.endswith(".onnx")},
                       name: hashlib.sha256(graph).hexdigest()}
    config["content_hash"] = config_content_hash(config)
    tmp = folder / (CONFIG_FILE + ".tmp")
    tmp.write_bytes(json.dumps(config, indent=2, sort_keys=True).encode())
    tmp.replace(folder / CONFIG_FILE)
    return folder / name


#: The user-cache folder (``$DFLAB_CACHE/graphs``) of graphs exported for the ``auto`` backend.
GRAPH_CACHE = "graphs"


def exportable(detector):
    """The detector whose network is exported: a ready detector's inner model, else the detector
    itself; it must be a trained one-network PyTorch detector (one that can hold a graph)."""
    inner = detector.inner()
    if not hasattr(inner, "onnx_") or not isinstance(getattr(inner, "model_", None), nn.Module):
        raise ValueError(f"{detector.name} has no single PyTorch network to export to ONNX "
                         "(the CNN detectors have: efficientnet-*, xception, dflab-face)")
    return inner


def network_key(network: nn.Module, input_size: int) -> str:
    """What names a network's exported graph in the cache: the sha256 of its weights, input size,
    exporter (PyTorch) version and opset; other weights or another exporter, another graph."""
    digest = hashlib.sha256(f"{torch.__version__}|opset {OPSET}|{int(input_size)} px".encode())
    for name, tensor in network.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().float().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def attach_cached_graph(detector, cache_dir: str | Path) -> OnnxBackend | None:
    """Give a CNN ``detector`` (or a ready detector's model) that holds no graph its network's graph
    from ``cache_dir``/graphs, exported there when missing (once per network: 10-50 s), and return it;
    None for a detector with no PyTorch network to export. A cached graph is used only when its
    sha256 is the one recorded beside it when it was written (a truncated or changed file is exported
    again). The cache is trusted as the user's own files are, like pip's or PyTorch Hub's: it holds
    only graphs this function exported, so the model-file check (:func:`check_graph`, whose
    ``import onnx`` alone costs a second of every run) is not repeated on it."""
    from dflab.runtime.files import write_bytes_atomic, write_json_atomic
    from dflab.runtime.progress import warn

    try:
        network_detector = exportable(detector)
    except ValueError:
        return None
    if network_detector.onnx_ is not None and network_detector.onnx_.network is network_detector.model_:
        return network_detector.onnx_
    key = network_key(network_detector.model_, int(network_detector.input_size))
    folder = Path(cache_dir) / GRAPH_CACHE
    graph_path, record_path = folder / f"{key}.onnx", folder / f"{key}.json"
    graph = None
    if graph_path.is_file() and record_path.is_file():
        graph = graph_path.read_bytes()
        try:
            recorded = json.loads(record_path.read_text(encoding="utf-8")).get("sha256")
        except (OSError, ValueError, AttributeError):
            recorded = None
        if recorded != hashlib.sha256(graph).hexdigest():
            warn(f"{graph_path}: not the graph recorded in {record_path.name} (sha256 differs); exporting again")
            graph = None
    if graph is None:
        folder.mkdir(parents=True, exist_ok=True)
        if not os.access(folder, os.W_OK):  # before the export, not after: its 10-50 s would be lost every run
            raise PermissionError(f"{folder}: the cache folder is not writable")
        started = time.perf_counter()
        graph = export_graph(network_detector.model_, int(network_detector.input_size))
        write_bytes_atomic(graph_path, graph)
        write_json_atomic(record_path, {"sha256": hashlib.sha256(graph).hexdigest(), "detector": network_detector.name,
                                        "input_size": int(network_detector.input_size), "torch": torch.__version__,
                                        "opset": OPSET})
        info(f"{network_detector.name}: exported to ONNX for onnxruntime in {time.perf_counter() - started:.0f} s, "
             f"once: kept in {folder}")
    network_detector.onnx_ = OnnxBackend(graph, network_detector.model_, where=graph_path, saved=False)
    return network_detector.onnx_
