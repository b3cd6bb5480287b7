"""Loading a model file never runs code from it, never lets it choose runtime settings, and a damaged
or crafted file always ends as one ``ModelFileError: <path>: <reason>`` (exit 2 from the command)."""

from __future__ import annotations

import hashlib
import io
import json
import pickle
import shutil
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import skops.io
from PIL import Image

from dflab.detectors import create, load_detector
from dflab.detectors.base import RUNTIME_PARAMS
from dflab.detectors.modelfile import TRUSTED_SKOPS_TYPES, ModelFileError, config_content_hash

DFLAB = Path(sys.executable).with_name("dflab")


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("security-images")
    rng = np.random.default_rng(3)
    rows = []
    for i in range(16):
        path = folder / f"{i:02d}.jpg"
        pixels = rng.normal(128, 10 + 20 * (i % 2), (40, 40, 3)).clip(0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(path, quality=85)
        rows.append({"path": str(path), "label": i % 2, "video": f"v{i}"})
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def saved_model(images, tmp_path_factory):
    folder = tmp_path_factory.mktemp("security-model") / "model"
    create("ela-logreg", workers=1).fit(images).save(folder)
    return folder


def _copy(saved_model: Path, tmp_path: Path) -> Path:
    target = tmp_path / "model"
    shutil.copytree(saved_model, target)
    return target


def _rehash(folder: Path, edit=None) -> None:
    """What an attacker does after changing a file: recompute every sha256 and the content hash."""
    config = json.loads((folder / "config.json").read_text())
    if edit is not None:
        edit(config)
    config["files"] = {name: (hashlib.sha256((folder / name).read_bytes()).hexdigest()
                              if (folder / name).is_file() and "/" not in name else digest)
                       for name, digest in config["files"].items()}
    config["content_hash"] = config_content_hash(config)
    (folder / "config.json").write_text(json.dumps(config))


def _skops_payload(function: str, *args) -> bytes:
    """A .skops file whose loading calls ``builtins.<function>(*args)`` (skops's constructor node)."""
    schema = json.loads(zipfile.ZipFile(io.BytesIO(skops.io.dumps(tuple(args)))).read("schema.json"))
    content = {k: v for k, v in schema.items() if k not in ("protocol", "_skops_version")}
    evil = {"__class__": function, "__module__": "builtins", "__loader__": "ConstructorFromReduceNode",
            "content": content, "protocol": schema["protocol"], "_skops_version": schema["_skops_version"]}
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("schema.json", json.dumps(evil))
    return buffer.getvalue()


def _assert_refused(folder: Path, needle: str = "") -> str:
    with pytest.raises(ModelFileError) as caught:
        load_detector(folder)
    message = str(caught.value)
    assert message.startswith(str(folder)) and "\n" not in message and needle in message
    return message


# -- 1. skops: an allow-list of types, computed from the models this package makes --------------

@pytest.mark.slow
def test_skops_allow_list_is_exactly_what_our_models_need():
    from sklearn.isotonic import IsotonicRegression
    from sklearn.linear_model import LogisticRegression

    from dflab.detectors.handcrafted.classic import CLASSIFIERS, make_classifier

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(60, 4)), np.repeat([0, 1], 30)
    fitted = [make_classifier(name, 0, value).fit(x, y) for name, (_, values) in CLASSIFIERS.items()
              for value in values]
    fitted += [LogisticRegression().fit(x, y), IsotonicRegression(out_of_bounds="clip").fit(x[:, 0], y)]
    needed = set()
    for model in fitted:
        data = skops.io.dumps(model)
        needed |= set(skops.io.get_untrusted_types(data=data))
    assert needed == set(TRUSTED_SKOPS_TYPES)
    assert not any(name.startswith(("builtins.", "os.", "posix.", "subprocess.")) for name in TRUSTED_SKOPS_TYPES)


def test_the_crafted_skops_payload_is_live(tmp_path):
    """The payload of the next test really runs code when trusted the way the old prefix rule did."""
    target = tmp_path / "created-by-skops"
    payload = _skops_payload("open", str(target), "w")
    assert skops.io.get_untrusted_types(data=payload) == ["builtins.open"]
    skops.io.loads(payload, trusted=["builtins.open"]).close()
    assert target.exists()


@pytest.mark.parametrize("function,make_args", [
    ("open", lambda target: (str(target), "w")),
    ("eval", lambda target: (f"open({str(target)!r}, 'w')",)),
    ("exec", lambda target: (f"__import__('os').system('touch {target}')",)),
    ("getattr", lambda target: (__import__("os"), "system")),
])
def test_crafted_skops_runs_nothing(saved_model, tmp_path, function, make_args):
    folder = _copy(saved_model, tmp_path)
    target = tmp_path / "must-not-exist"
    skops_file = next(folder.glob("*.skops"))
    args = make_args(target)
    if function == "getattr":  # getattr(os, "system"): skops cannot hold a module, so a string stands in
        args = ("os", "system")
    skops_file.write_bytes(_skops_payload(function, *args))
    _rehash(folder)
    message = _assert_refused(folder, "allow-list")
    assert f"builtins.{function}" in message
    assert not target.exists()


# -- 2. runtime settings never come from a model file --------------------------------------------

@pytest.mark.parametrize("key,value", [("cache_dir", "/tmp/dflab-hijacked-cache"), ("workers", 64),
                                       ("device", "cuda"), ("checkpoint_dir", "/tmp/dflab-hijacked-ckpt"),
                                       ("verbose", True), ("backend", "onnx")])
def test_runtime_settings_in_a_model_file_are_refused(saved_model, tmp_path, key, value):
    assert key in RUNTIME_PARAMS
    folder = _copy(saved_model, tmp_path)
    _rehash(folder, lambda config: config["params"].update({key: value}))
    _assert_refused(folder, f"runtime setting {key!r}")
    assert not Path(str(value)).exists() or not isinstance(value, str)


def test_runtime_settings_come_from_the_caller(saved_model, images, tmp_path):
    cache = tmp_path / "my-cache"
    detector = load_detector(saved_model, workers=1, cache_dir=str(cache))
    detector.predict_proba(images.iloc[:2])
    assert detector.cache_dir == str(cache) and any(cache.rglob("*"))


# -- 3. damaged or crafted model folders and zips: always ModelFileError ------------------------

def _config_edit(edit):
    def damage(folder: Path) -> None:
        config = json.loads((folder / "config.json").read_text())
        edit(config)
        (folder / "config.json").write_text(json.dumps(config))
    return damage


def _rehashed_edit(edit):
    return lambda folder: _rehash(folder, edit)


def _replace_file(name_or_glob: str, data: bytes, rename: str | None = None):
    def damage(folder: Path) -> None:
        old = next(folder.glob(name_or_glob))
        new = folder / (rename or old.name)
        old.unlink()
        new.write_bytes(data)
        def edit(config):
            digest = config["files"].pop(old.name)
            config["files"][new.name] = digest
        _rehash(folder, edit)
    return damage


def _flip_byte(folder: Path) -> None:
    skops_file = next(folder.glob("*.skops"))
    data = bytearray(skops_file.read_bytes())
    data[len(data) // 2] ^= 0x5A
    skops_file.write_bytes(bytes(data))
    _rehash(folder)


def _huge_header(folder: Path) -> None:
    (folder / "arrays.safetensors").write_bytes(struct.pack("<Q", 2**62) + b"{}")
    _rehash(folder, lambda config: config["files"].update({"arrays.safetensors": "0" * 64}))


def _truncated_safetensors(folder: Path) -> None:
    header = json.dumps({"w": {"dtype": "F32", "shape": [1000, 1000], "data_offsets": [0, 4_000_000]}}).encode()
    (folder / "arrays.safetensors").write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * 16)
    _rehash(folder, lambda config: config["files"].update({"arrays.safetensors": "0" * 64}))


PICKLE = pickle.dumps({"weights": [1, 2, 3]})

DAMAGES = {
    "config is a list": (lambda f: (f / "config.json").write_text("[1, 2]"), "not a JSON object"),
    "config is not JSON": (lambda f: (f / "config.json").write_text("{format: dflab"), "not valid JSON"),
    "config is empty": (lambda f: (f / "config.json").write_text(""), "not valid JSON"),
    "deeply nested config": (lambda f: (f / "config.json").write_text("[" * 100_000 + "]" * 100_000), "JSON"),
    "no detector key": (_config_edit(lambda c: c.pop("detector")), "'detector' must be"),
    "no files key": (_config_edit(lambda c: c.pop("files")), "'files' must be"),
    "files is a list": (_config_edit(lambda c: c.update(files=["a.skops"])), "'files' must be"),
    "params is a string": (_config_edit(lambda c: c.update(params="C=1")), "'params' must be"),
    "format_version is text": (_config_edit(lambda c: c.update(format_version="1")), "format_version"),
    "newer format": (_config_edit(lambda c: c.update(format_version=99)), "newer"),
    "info is a list": (_rehashed_edit(lambda c: c.update(info=[1])), "'info'"),
    "thresholds are text": (_rehashed_edit(lambda c: c.update(info={"thresholds": {"frame": "x"}})), "thresholds"),
    "sha256 not hex": (_config_edit(lambda c: c["files"].update({k: "zz" for k in c["files"]})), "64 hex"),
    "path traversal name": (_rehashed_edit(lambda c: c["files"].update({"../../etc/passwd": "0" * 64})),
                            "unsafe file name"),
    "absolute name": (_rehashed_edit(lambda c: c["files"].update({"/etc/passwd": "0" * 64})), "unsafe file name"),
    "hidden name": (_rehashed_edit(lambda c: c["files"].update({".bashrc.skops": "0" * 64})), "unsafe file name"),
    "listed file missing": (_rehashed_edit(lambda c: c["files"].update({"extra.skops": "0" * 64})), "missing"),
    "edited config, old hash": (_config_edit(lambda c: c["state"].update(x=1)), "content hash"),
    "byte flipped, hashes recomputed": (_flip_byte, "skops"),
    "pickle renamed to .skops": (_replace_file("*.skops", PICKLE), "not a valid skops file"),
    "pickle renamed to .safetensors": (_replace_file("*.skops", PICKLE, "arrays.safetensors"), "safetensors"),
    "enormous safetensors header": (_huge_header, "header"),
    "safetensors shorter than it says": (_truncated_safetensors, "safetensors"),
    "unknown detector": (_rehashed_edit(lambda c: c.update(detector="no-such-detector")), "unknown detector"),
    "unknown parameter": (_rehashed_edit(lambda c: c["params"].update(colour_depth=3)), "unknown parameter"),
    "parameter of the wrong type": (_rehashed_edit(lambda c: c["params"].update(quality="high")), "parameter"),
    "state missing its estimator": (_rehashed_edit(lambda c: c.update(files={})), "state"),
}


@pytest.mark.parametrize("case", sorted(DAMAGES))
def test_damaged_model_folder_is_one_model_file_error(saved_model, tmp_path, case):
    damage, needle = DAMAGES[case]
    folder = _copy(saved_model, tmp_path)
    damage(folder)
    _assert_refused(folder, needle)


def _zip_of(folder: Path, target: Path) -> Path:
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_STORED) as archive:
        for path in sorted(folder.iterdir()):
            archive.write(path, path.name)
    return target


def test_damaged_zips(saved_model, tmp_path):
    good = _zip_of(saved_model, tmp_path / "good.zip")
    assert load_detector(good).is_fitted()
    # A bad CRC: flip a byte inside the stored (uncompressed) skops member.
    data = bytearray(good.read_bytes())
    skops_name = next(saved_model.glob("*.skops")).name.encode()
    offset = data.index(skops_name) + len(skops_name) + 200
    data[offset] ^= 0xFF
    (tmp_path / "crc.zip").write_bytes(bytes(data))
    _assert_refused(tmp_path / "crc.zip")
    # Truncated archive, and a zip without config.json.
    (tmp_path / "cut.zip").write_bytes(good.read_bytes()[: len(data) // 2])
    _assert_refused(tmp_path / "cut.zip")
    with zipfile.ZipFile(tmp_path / "noconfig.zip", "w") as archive:
        archive.writestr("arrays.safetensors", b"x")
    _assert_refused(tmp_path / "noconfig.zip", "config.json")
    # A member that claims to be enormous (a zip bomb's header) is refused before it is read.
    folder = _copy(saved_model, tmp_path)
    with zipfile.ZipFile(tmp_path / "bomb.zip", "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.write(folder / "config.json", "config.json")
        skops_file = next(folder.glob("*.skops"))
        info = zipfile.ZipInfo(skops_file.name)
        archive.writestr(info, b"\0" * (17 * 2**20), compress_type=zipfile.ZIP_DEFLATED)
    from dflab.detectors import modelfile

    limit = modelfile.MAX_MODEL_FILE_BYTES
    modelfile.MAX_MODEL_FILE_BYTES = 16 * 2**20
    try:
        _assert_refused(tmp_path / "bomb.zip", "more than a model file may hold")
    finally:
        modelfile.MAX_MODEL_FILE_BYTES = limit


@pytest.mark.slow
def test_the_command_reports_a_damaged_model_in_one_line(saved_model, images, tmp_path):
    folder = _copy(saved_model, tmp_path)
    next(folder.glob("*.skops")).write_bytes(_skops_payload("open", str(tmp_path / "pwned"), "w"))
    _rehash(folder)
    result = subprocess.run([str(DFLAB), "predict", images.path[0], "--model", str(folder)],
                            capture_output=True, text=True)
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and str(folder) in lines[0] and "Traceback" not in result.stderr
    assert not (tmp_path / "pwned").exists()
