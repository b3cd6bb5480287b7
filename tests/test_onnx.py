"""ONNX Runtime scoring of the CNN detectors: export, scores equal to PyTorch's, automatic use of a
graph held by the model, the sha256 check of the graph, and the ``--backend`` choice.

One export in all (10-20 s on 2 shared cores): the network exported in memory by ``backend="onnx"``
(module fixture); ``dflab export`` is handed that graph of the same network instead of exporting again."""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import onnx
import pandas as pd
import pytest
import torch
from onnx import TensorProto, helper
from PIL import Image

from dflab.detectors import create, load_detector
from dflab.detectors.deep.onnx_backend import GRAPH_FILE, OnnxBackend, scoring_network
from dflab.detectors.modelfile import SAFE_FILE_NAME, ModelFileError, config_content_hash, check_graph

from .conftest import require_shared

MAX_DELTA_P = 1e-4


def _tiny_lite0(**params):
    """An untrained EfficientNet-Lite0 at 64 px, ready to score (its weights do not matter to equality)."""
    detector = create("efficientnet-lite0", input_size=64, pretrained=False, device="cpu", batch_size=8, **params)
    torch.manual_seed(0)
    detector.model_ = detector.build_model(pretrained=False).eval()
    return detector


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory):
    """11 images of several sizes (a last partial batch of 3) and one file that is no image."""
    folder = tmp_path_factory.mktemp("onnx-images")
    rng = np.random.default_rng(1)
    for i in range(11):
        size = (48, 80, 120)[i % 3]
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(folder / f"{i:02d}.png")
    (folder / "broken.png").write_bytes(b"not a png")
    return folder


@pytest.fixture(scope="module")
def models(tmp_path_factory, image_folder):
    """``plain``: a saved model without a graph; ``with_graph``: the same model saved after scoring with
    ``backend="onnx"`` (exported in memory), so it holds the graph. Also the first scores of both paths."""
    root = tmp_path_factory.mktemp("onnx-models")
    detector = _tiny_lite0()
    detector.save(root / "plain")
    sources = sorted(str(p) for p in image_folder.iterdir())
    torch_scores = detector.predict_proba(sources, on_error="nan")
    detector.set_params(backend="onnx")
    onnx_scores = detector.predict_proba(sources, on_error="nan")
    assert isinstance(detector.onnx_, OnnxBackend)
    detector.save(root / "with_graph")
    return {"plain": root / "plain", "with_graph": root / "with_graph", "sources": sources,
            "torch_scores": torch_scores, "onnx_scores": onnx_scores}


def _count_onnx_runs(monkeypatch) -> list[int]:
    """Wrap :class:`OnnxBackend` calls: the list grows by one per batch onnxruntime scores."""
    calls: list[int] = []
    original = OnnxBackend.__call__

    def counted(self, batch):
        calls.append(len(batch))
        return original(self, batch)

    monkeypatch.setattr(OnnxBackend, "__call__", counted)
    return calls


def _dflab(monkeypatch, capsys, *args) -> tuple[int, str, str]:
    """Run the ``dflab`` command in this process (no interpreter start-up): exit status, stdout, stderr."""
    from dflab.cli import main

    monkeypatch.setattr(sys, "argv", ["dflab", *map(str, args)])
    try:
        main()
        status = 0
    except SystemExit as exit_:
        status = exit_.code or 0
    captured = capsys.readouterr()
    return status, captured.out, captured.err


@pytest.mark.slow
def test_in_memory_export_scores_as_pytorch_and_is_saved_with_the_model(models):
    torch_scores, onnx_scores = models["torch_scores"], models["onnx_scores"]
    assert np.isnan(torch_scores[-1]) and np.isnan(onnx_scores[-1])  # broken.png sorts last
    assert np.abs(onnx_scores[:-1] - torch_scores[:-1]).max() <= MAX_DELTA_P
    assert np.ptp(torch_scores[:-1]) > 1e-3  # the images give different scores: equality means something
    config = json.loads((models["with_graph"] / "config.json").read_text())
    graph = (models["with_graph"] / GRAPH_FILE).read_bytes()
    assert config["files"][GRAPH_FILE] == hashlib.sha256(graph).hexdigest()
    assert "backend" not in config["params"]  # a runtime setting, never saved
    exported = onnx.load_model_from_string(graph)
    batch_dim = exported.graph.input[0].type.tensor_type.shape.dim[0]
    assert batch_dim.dim_param and not batch_dim.dim_value  # a dynamic batch
    assert [d.dim_value for d in exported.graph.input[0].type.tensor_type.shape.dim[1:]] == [3, 64, 64]


@pytest.mark.slow
def test_a_model_holding_a_graph_scores_with_onnxruntime_unless_told_otherwise(models, monkeypatch):
    calls = _count_onnx_runs(monkeypatch)
    loaded = load_detector(models["with_graph"])
    assert loaded.backend == "auto"
    auto = loaded.predict_proba(models["sources"], on_error="nan")
    assert calls == [8, 3]  # two batches, the broken file left out of the second
    np.testing.assert_allclose(auto, models["onnx_scores"], atol=1e-7)
    loaded.set_params(backend="torch")
    forced_torch = loaded.predict_proba(models["sources"], on_error="nan")
    assert len(calls) == 2
    assert np.nanmax(np.abs(forced_torch - models["torch_scores"])) <= 1e-7
    assert np.nanmax(np.abs(auto - forced_torch)) <= MAX_DELTA_P


@pytest.mark.slow
def test_mirror_test_time_augmentation_runs_both_views_through_the_graph(models, monkeypatch):
    calls = _count_onnx_runs(monkeypatch)
    sources = models["sources"][:-1]
    torch_tta = load_detector(models["plain"], test_flip=True).predict_proba(sources)
    onnx_tta = load_detector(models["with_graph"], test_flip=True).predict_proba(sources)
    assert len(calls) == 4  # 2 batches x 2 views
    assert np.abs(onnx_tta - torch_tta).max() <= MAX_DELTA_P
    assert np.abs(onnx_tta - models["onnx_scores"][:-1]).max() > 1e-4  # the mirror changed the scores


@pytest.mark.slow
def test_a_graph_is_not_used_for_a_network_it_was_not_exported_from(models):
    detector = load_detector(models["with_graph"])
    device = torch.device("cpu")
    assert isinstance(scoring_network(detector, detector.model_, device), OnnxBackend)
    detector.model_ = detector.build_model(pretrained=False).eval()  # what training again does
    assert scoring_network(detector, detector.model_, device) is detector.model_
    assert GRAPH_FILE not in detector._get_state()


@pytest.mark.slow
def test_scoring_never_exports_the_graph_is_made_when_the_backend_or_network_is_set(models, image_folder,
                                                                                  monkeypatch):
    from dflab.detectors.deep import onnx_backend

    exported = (models["with_graph"] / GRAPH_FILE).read_bytes()  # the plain model's network, exported
    exports: list[int] = []

    def counted_export(network, input_size):
        exports.append(input_size)
        return exported

    monkeypatch.setattr(onnx_backend, "export_graph", counted_export)
    sources = models["sources"]
    # Loading with backend "onnx" exports once, at load; scoring twice exports nothing more and
    # leaves the detector as it was (the same graph object, the same attributes).
    loaded = load_detector(models["plain"], backend="onnx")
    assert exports == [64] and isinstance(loaded.onnx_, OnnxBackend) and loaded.onnx_.network is loaded.model_
    attributes = {key: id(value) for key, value in vars(loaded).items()}
    scores = loaded.predict_proba(sources, on_error="nan")
    loaded.predict_proba(sources, on_error="nan")
    assert exports == [64] and {key: id(value) for key, value in vars(loaded).items()} == attributes
    assert np.nanmax(np.abs(scores - models["onnx_scores"])) <= 1e-7
    # Choosing the backend after loading exports then, not at the first scoring.
    other = load_detector(models["plain"])
    assert exports == [64] and other.onnx_ is None
    other.set_params(backend="onnx")
    assert exports == [64, 64] and other.onnx_.network is other.model_
    other.set_params(backend="onnx")  # the graph of this network is held: not exported again
    assert len(exports) == 2
    # A network with backend "onnx" but no graph of it (replaced by hand) is refused, not exported.
    other.model_ = other.build_model(pretrained=False).eval()
    with pytest.raises(ValueError, match="no ONNX graph of its network"):
        other.predict_proba(sources[:2])
    assert len(exports) == 2
    # Training with backend "onnx" exports at the end of fit; the graph is for this run only: the saved
    # model is the one a PyTorch training saves (as the lab has always written it).
    images = [np.random.default_rng(i).integers(0, 256, (64, 64, 3), dtype=np.uint8) for i in range(8)]
    trained = create("efficientnet-lite0", input_size=64, pretrained=False, device="cpu", batch_size=4, epochs=1,
                     warmup_epochs=0, backend="onnx").fit((images, np.arange(8) % 2))
    assert len(exports) == 3 and trained.onnx_.network is trained.model_
    attributes = {key: id(value) for key, value in vars(trained).items()}
    trained.predict_proba(images)
    assert len(exports) == 3 and {key: id(value) for key, value in vars(trained).items()} == attributes
    assert GRAPH_FILE not in trained._get_state()


@pytest.mark.slow
def test_dflab_export_adds_a_checked_graph_and_predict_uses_it(models, image_folder, tmp_path, monkeypatch, capsys):
    from dflab.detectors.deep import onnx_backend

    model = tmp_path / "model"
    shutil.copytree(models["plain"], model)
    exported = (models["with_graph"] / GRAPH_FILE).read_bytes()  # the plain model's network, exported
    monkeypatch.setattr(onnx_backend, "export_graph", lambda network, input_size: exported)
    status, out, err = _dflab(monkeypatch, capsys, "export", model, "--onnx", model / GRAPH_FILE)
    assert status == 0, err
    assert "opset 18" in out and "in the model" in out
    config = json.loads((model / "config.json").read_text())
    assert config["files"][GRAPH_FILE] == hashlib.sha256(exported).hexdigest()
    assert (model / GRAPH_FILE).read_bytes() == exported

    calls = _count_onnx_runs(monkeypatch)
    results = {}
    for backend in ("auto", "torch", "onnx"):
        csv = tmp_path / f"{backend}.csv"
        status, _, err = _dflab(monkeypatch, capsys, "predict", image_folder, "--model", model, "--faces", "whole",
                                "--backend", backend, "--csv", csv, "-q")
        assert status == 0, err
        results[backend] = pd.read_csv(csv).set_index("path")["p_fake"]
    assert len(calls) == 4  # auto and onnx: 2 batches each; torch: none
    for backend in ("auto", "onnx"):
        assert (results[backend] - results["torch"]).abs().max() <= MAX_DELTA_P
    assert results["torch"].isna().sum() == 1


@pytest.mark.slow
def test_dflab_export_refuses_a_graph_that_computes_something_else(models, tmp_path, monkeypatch, capsys):
    from dflab.detectors.deep import onnx_backend

    other = tmp_path / "other"
    detector = _tiny_lite0()
    torch.manual_seed(1)
    detector.model_ = detector.build_model(pretrained=False).eval()  # other weights than the graph's
    detector.save(other)
    graph = (models["with_graph"] / GRAPH_FILE).read_bytes()
    monkeypatch.setattr(onnx_backend, "export_graph", lambda network, input_size: graph)
    status, _, err = _dflab(monkeypatch, capsys, "export", other, "--onnx", other / GRAPH_FILE)
    assert status == 2 and "differ from PyTorch's" in err and "not written" in err
    assert not (other / GRAPH_FILE).exists() and GRAPH_FILE not in (other / "config.json").read_text()


@pytest.mark.slow
def test_a_tampered_or_foreign_graph_is_refused_with_one_line(models, image_folder, tmp_path, monkeypatch, capsys):
    model = tmp_path / "tampered"
    shutil.copytree(models["with_graph"], model)
    graph = bytearray((model / GRAPH_FILE).read_bytes())
    graph[len(graph) // 2] ^= 0xFF
    (model / GRAPH_FILE).write_bytes(bytes(graph))
    status, _, err = _dflab(monkeypatch, capsys, "predict", image_folder, "--model", model, "--faces", "whole")
    assert status == 2
    assert err.strip().count("\n") == 0 and "network.onnx does not match its sha256" in err

    # An attacker who also rewrites the hashes: the graph is still parsed and checked before use.
    (model / GRAPH_FILE).write_bytes(b"MZ\x90\x00 not an onnx graph at all")
    _rehash(model)
    with pytest.raises(ModelFileError, match="network.onnx: not a valid ONNX graph"):
        load_detector(model)
    (model / GRAPH_FILE).write_bytes(_graph_with_external_weights("/etc/passwd"))
    _rehash(model)
    with pytest.raises(ModelFileError, match="external files"):
        load_detector(model)


def test_model_file_names_allow_onnx_graphs_and_nothing_more():
    for name in ("network.onnx", "arrays.safetensors", "classifier.skops", "net-v2_fp32.onnx"):
        assert SAFE_FILE_NAME.match(name), name
    for name in ("network.onnx.py", "network.py", "../network.onnx", ".network.onnx", "sub/network.onnx",
                 "network.ONNX", "network.onnx ", "network.pth", "network.onnx.data"):
        assert not SAFE_FILE_NAME.match(name), name


def test_external_data_graphs_are_refused_and_plain_ones_accepted():
    with pytest.raises(ModelFileError, match="external files"):
        check_graph(_graph_with_external_weights("weights.bin"), "x.onnx")
    check_graph(_identity_graph(), "x.onnx")  # no error


@pytest.mark.slow
def test_backend_settings_reach_every_command(models, monkeypatch, capsys):
    from dflab.inference.models import ModelChoiceError, load_scorer, with_backend
    from dflab.lab.config import LabConfig
    from dflab.lab.protocol import _runtime_params, build_detector

    assert load_scorer(models["with_graph"], None, None, "torch").backend == "torch"
    assert load_scorer(None, "dflab-face", None, "onnx").backend == "onnx"
    with pytest.raises(ModelChoiceError, match="--backend onnx: ela-logreg is not a CNN detector"):
        with_backend(create("ela-logreg"), "onnx")
    assert "backend" not in with_backend(create("ela-logreg"), "auto").get_params()
    config = LabConfig(task1=Path("."), task23=None, detectors=["efficientnet-lite0", "ela-logreg"],
                       out=Path("."), backend="onnx")
    assert build_detector("efficientnet-lite0", config).backend == "onnx"
    assert "backend" not in build_detector("ela-logreg", config).get_params()
    assert _runtime_params("efficientnet-lite0", config)["backend"] == "onnx"
    status, _, err = _dflab(monkeypatch, capsys, "predict", ".", "--backend", "tensorrt")
    assert status == 2 and "tensorrt" in err


@pytest.mark.slow
def test_real_faces_score_the_same_through_onnxruntime(models):
    root = require_shared("datasets", "Task_2_3", "evaluation")
    sources = sorted(map(str, (root / "real").glob("*.jpg")))[:12] + sorted(map(str, (root / "fake").glob("*.jpg")))[:12]
    torch_scores = load_detector(models["plain"]).predict_proba(sources)
    onnx_scores = load_detector(models["with_graph"]).predict_proba(sources)
    assert np.abs(onnx_scores - torch_scores).max() <= MAX_DELTA_P


# -- helpers ------------------------------------------------------------------------------------

def _rehash(folder: Path) -> None:
    """What an attacker does after changing a file: recompute every sha256 and the content hash."""
    config = json.loads((folder / "config.json").read_text())
    config["files"] = {name: hashlib.sha256((folder / name).read_bytes()).hexdigest() for name in config["files"]}
    config["content_hash"] = config_content_hash(config)
    (folder / "config.json").write_text(json.dumps(config))


def _identity_graph(initializer=None) -> bytes:
    node = helper.make_node("Add", ["images", "bias"], ["logits"])
    bias = initializer or helper.make_tensor("bias", TensorProto.FLOAT, [1], [0.0])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1])], [bias])
    return helper.make_model(graph).SerializeToString()


def _graph_with_external_weights(location: str) -> bytes:
    """A graph whose one weight onnxruntime would read from ``location`` on this machine."""
    bias = helper.make_tensor("bias", TensorProto.FLOAT, [1], [0.0])
    bias.ClearField("float_data")
    bias.data_location = TensorProto.EXTERNAL
    entry = bias.external_data.add()
    entry.key, entry.value = "location", location
    return _identity_graph(bias)
