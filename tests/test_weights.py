"""Published weights: the table, fetching with sha256 checks (file:// URLs), offline errors, safe loading."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest
import torch

from dflab.runtime import weights
from dflab.runtime.weights import WeightFile, WeightsError


def test_icpr_table_pins_the_hash_in_each_published_file_name():
    from dflab.detectors.deep.pretrained import CONVERTERS, ICPR

    assert len(ICPR) == 10
    for name, checkpoint in ICPR.items():
        entry = checkpoint.file
        assert entry.url.startswith("https://f002.backblazeb2.com/file/icpr2020/")
        assert re.fullmatch(r"[0-9a-f]{64}", entry.sha256)
        assert entry.filename.endswith(f"-{entry.sha256}.pth")
        assert entry.licence and checkpoint.converter in CONVERTERS
        assert weights.get(name) is entry  # declared where fetch and find look


def test_every_family_declares_its_files_beside_its_network():
    """The bottom layer knows no detector: the families declare their files, each with a sha256."""
    import dflab.faces.blazeface as blazeface
    from dflab.detectors import available
    from dflab.detectors.deep import mesonet

    available()
    assert weights.get("blazeface") is blazeface.WEIGHTS and blazeface.WEIGHTS.relative_path == "blazeface/blazeface.pth"
    for name, (_, _, entry) in mesonet.PUBLISHED.items():
        assert weights.get(name) is entry and entry.relative_path.startswith("mesonet/") and entry.filename.endswith(".h5")
    assert all(re.fullmatch(r"[0-9a-f]{64}", entry.sha256) for entry in weights.WEIGHTS.values())
    source = (Path(weights.__file__)).read_text()
    assert not any(name in source for name in ("icpr", "meso", "blazeface"))
    with pytest.raises(ValueError, match="declared twice"):
        weights.declare(WeightFile(**{**blazeface.WEIGHTS.__dict__, "sha256": "0" * 64}))
    assert weights.declare(blazeface.WEIGHTS) == {"blazeface": blazeface.WEIGHTS}  # the same again: no-op


def test_find_and_require_look_in_the_weights_folder_and_check_the_hash(local_entry, tmp_path, monkeypatch):
    entry, payload = local_entry
    monkeypatch.setenv("DFLAB_WEIGHTS", str(tmp_path / "store"))
    assert weights.find("tiny") is None
    with pytest.raises(WeightsError, match="tiny: weights not found at .*dflab weights fetch tiny"):
        weights.require("tiny")
    assert weights.require("tiny", payload) == payload  # a file given by hand is taken as it is
    with pytest.raises(WeightsError, match="tiny: weights file .*absent.pth not found"):
        weights.require("tiny", tmp_path / "absent.pth")
    (tmp_path / "store").mkdir()
    (tmp_path / "store" / "tiny.pth").write_bytes(b"not the published bytes")
    assert weights.find("tiny") == tmp_path / "store" / "tiny.pth"
    with pytest.raises(WeightsError, match="sha256 does not match the published tiny weights"):
        weights.require("tiny")
    (tmp_path / "store" / "tiny.pth").write_bytes(payload.read_bytes())
    assert weights.require("tiny") == tmp_path / "store" / "tiny.pth"


@pytest.fixture
def local_entry(tmp_path, monkeypatch):
    payload = tmp_path / "source" / "tiny.pth"
    payload.parent.mkdir()
    torch.save({"layer.weight": torch.arange(6.0).reshape(2, 3)}, payload)
    digest = hashlib.sha256(payload.read_bytes()).hexdigest()
    entry = WeightFile(name="tiny", url=payload.as_uri(), sha256=digest, description="test file", licence="none")
    monkeypatch.setitem(weights.WEIGHTS, "tiny", entry)
    return entry, payload


def test_fetch_from_a_file_url_checks_the_hash(local_entry, tmp_path):
    entry, payload = local_entry
    path = weights.fetch("tiny", tmp_path / "store")
    assert path == tmp_path / "store" / "tiny.pth"
    assert path.read_bytes() == payload.read_bytes()
    state = weights.load_torch_checkpoint(path)
    assert torch.equal(state["layer.weight"], torch.arange(6.0).reshape(2, 3))
    assert weights.verify("tiny", path) == path


def test_fetch_refuses_a_file_with_another_hash(local_entry, tmp_path, monkeypatch):
    entry, payload = local_entry
    monkeypatch.setitem(weights.WEIGHTS, "tiny", WeightFile(**{**entry.__dict__, "sha256": "0" * 64}))
    with pytest.raises(WeightsError, match="has sha256 .* expected 0{64}"):
        weights.fetch("tiny", tmp_path / "store")
    assert list((tmp_path / "store").iterdir()) == []  # nothing half-written is kept


def test_offline_download_says_what_to_do(local_entry, tmp_path):
    # Port 9 (discard) on localhost refuses connections: the same path as having no network.
    with pytest.raises(WeightsError) as err:
        weights.fetch("tiny", tmp_path, url_override="http://127.0.0.1:9/tiny.pth", timeout=5)
    message = str(err.value)
    assert message.startswith("cannot download tiny from http://127.0.0.1:9/tiny.pth: no network (")
    assert message.endswith("download it elsewhere and pass --weights PATH")
    assert "\n" not in message


def test_unknown_names_and_files_are_clear_errors(tmp_path):
    with pytest.raises(WeightsError, match="unknown weights 'nope'"):
        weights.fetch("nope")
    with pytest.raises(WeightsError, match="weights file not found"):
        weights.load_torch_checkpoint(tmp_path / "absent.pth")


class _Gadget:
    """An arbitrary class: a pickle holding it would run code on a plain torch.load."""


def test_checkpoints_holding_objects_are_refused(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"gadget": _Gadget()}, path)
    with pytest.raises(WeightsError, match="not a plain PyTorch state_dict"):
        weights.load_torch_checkpoint(path)


def test_blazeface_fetched_from_a_local_copy_is_found_by_the_face_detector(tmp_path, monkeypatch):
    from dflab.faces.blazeface import BlazeFaceDetector

    from .conftest import require_shared

    copy = require_shared("weights", "blazeface", "blazeface.pth")
    monkeypatch.setenv("DFLAB_WEIGHTS", str(tmp_path / "weights"))
    with pytest.raises(FileNotFoundError, match="dflab weights fetch blazeface"):
        BlazeFaceDetector()
    path = weights.fetch("blazeface", url_override=copy.as_uri())
    assert path == tmp_path / "weights" / "blazeface" / "blazeface.pth"
    assert weights.get("blazeface").url.startswith("https://")
    detector = BlazeFaceDetector()  # anchors are computed when anchors.npy is not beside the weights
    assert detector.weights_path == path and detector.anchors.shape == (896, 4)
