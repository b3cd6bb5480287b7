"""A hostile-input corpus run through the ``dflab`` command's entry point, each case a process of its
own (forked from one that has imported the command: tests/forked_entry_point.py), as a careless or hostile
user would: bad images, videos, datasets, manifests, model files and command lines.

Every case must exit 0 or 2 with no traceback; an exit 2 prints one line naming the file or option;
nothing may be written outside the folders the command was told to write (each case runs in an
empty working folder with its own HOME and cache).
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

# Each row runs the dflab command in a new process: the fast loop (-m 'not slow') leaves them to make test.
pytestmark = pytest.mark.slow

DFLAB = Path(sys.executable).with_name("dflab")


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims width x height pixels and holds almost nothing (a decompression bomb's header)."""
    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + \
        chunk(b"IEND", b"")


def _jpeg(pixels: np.ndarray, **options) -> bytes:
    import io

    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", **options)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Bad files and a trained model, made once; each case copies what it needs."""
    root = tmp_path_factory.mktemp("hostile")
    rng = np.random.default_rng(0)
    good = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    files = root / "files"
    files.mkdir()
    good_jpeg = _jpeg(good, quality=90)
    (files / "good.jpg").write_bytes(good_jpeg)
    bad = {
        "empty.png": b"",
        "empty.jpg": b"",
        "text.jpg": b"hello, I am not a picture\n",
        "html.png": b"<html><body>not an image</body></html>",
        "truncated.jpg": good_jpeg[: len(good_jpeg) // 3],
        "truncated.png": b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR",
        "bomb.png": _png_header_only(30_000, 30_000),
        "zeros.jpg": b"\0" * 4096,
        "random.png": rng.integers(0, 256, 2048, dtype=np.uint8).tobytes(),
        "pdf.jpg": b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj<<>>endobj\n",
        "empty.mp4": b"",
        "text.mp4": b"not a video at all",
        "truncated.mp4": b"\0\0\0\x18ftypmp42\0\0\0\0mp42isom" + b"\0" * 40,
        "random.avi": rng.integers(0, 256, 4096, dtype=np.uint8).tobytes(),
        "jpeg-named.mp4": good_jpeg,
    }
    for name, payload in bad.items():
        (files / name).write_bytes(payload)
    odd = {
        "tiny.png": np.zeros((1, 1, 3), np.uint8),
        "grey.png": rng.integers(0, 256, (40, 40), dtype=np.uint8),
        "rgba.png": rng.integers(0, 256, (40, 40, 4), dtype=np.uint8),
        "wide.png": rng.integers(0, 256, (8, 900, 3), dtype=np.uint8),
    }
    for name, pixels in odd.items():
        Image.fromarray(pixels).save(files / name)
    Image.fromarray(good).convert("CMYK").save(files / "cmyk.jpg")
    (files / "[").mkdir()  # so that a path holds "[/bold]", the markup that used to crash the messages
    Image.fromarray(good).save(files / "[" / "bold]markup[red].png")
    (files / "a folder.png").mkdir()
    names = root / "names"  # a folder of good pictures with names that are not UTF-8
    names.mkdir()
    for raw in (b"caf\xe9.jpg", b"\xff\xfe.jpg"):
        with open(os.path.join(os.fsencode(names), raw), "wb") as handle:
            handle.write(good_jpeg)

    from dflab.data.synthetic.demo_lab import make_lab

    make_lab(root / "lab", n_videos_dev=3, n_videos_eval=2, frames_per_video=2, size=48, n_t23_dev=4,
             n_t23_eval=4, seed=4)
    model = root / "model"
    result = subprocess.run([str(DFLAB), "train", str(root / "lab" / "Task_1"), "--detector", "ela-logreg",
                             "--out", str(model), "--quiet"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return root


# -- the cases --------------------------------------------------------------------------------
# Each case: (arguments, expected exit codes, needle for the one error line). ``{files}``,
# ``{lab}``, ``{model}``, ``{out}``, ``{made}`` are replaced; ``make`` builds extra input in ``made``.

def _symlink_loop(made: Path, corpus: Path) -> None:
    dataset = made / "looped"
    for label in ("real", "fake"):
        (dataset / "development" / label).mkdir(parents=True)
        for i in range(2):
            Image.fromarray(np.full((24, 24, 3), 60 * i + 40 * (label == "fake"), np.uint8)).save(
                dataset / "development" / label / f"{i}.png")
        os.symlink("..", dataset / "development" / label / "loop")
        os.symlink("/no/such/file.png", dataset / "development" / label / "dangling.png")


def _csv(text: str):
    def make(made: Path, corpus: Path) -> None:
        (made / "m.csv").write_text(text.format(good=corpus / "files" / "good.jpg"))
    return make


def _one_class_dataset(made: Path, corpus: Path) -> None:
    for i in range(3):
        (made / "onlyreal" / "real").mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((24, 24, 3), 50 * i, np.uint8)).save(made / "onlyreal" / "real" / f"{i}.png")


def _unreadable_fakes(made: Path, corpus: Path) -> None:
    for label in ("real", "fake"):
        folder = made / "badfakes" / "development" / label
        folder.mkdir(parents=True)
        for i in range(3):
            if label == "real":
                Image.fromarray(np.full((24, 24, 3), 50 * i, np.uint8)).save(folder / f"v{i}.png")
            else:
                (folder / f"v{i}.png").write_bytes(b"broken")


def _model_edit(edit):
    def make(made: Path, corpus: Path) -> None:
        shutil.copytree(corpus / "model", made / "model")
        config = json.loads((made / "model" / "config.json").read_text())
        edit(config, made / "model")
        (made / "model" / "config.json").write_text(json.dumps(config))
    return make


def _pickle_model(made: Path, corpus: Path) -> None:
    import pickle

    (made / "evil.zip").write_bytes(pickle.dumps({"a": 1}))


CASES: dict[str, tuple] = {}


def case(name, args, codes=(2,), needle="", make=None):
    CASES[name] = (args, codes, needle, make)


# Images through predict (a trained handcrafted model, then the scoring of one bad file at a time).
for _name in ("empty.png", "empty.jpg", "text.jpg", "html.png", "truncated.jpg", "truncated.png", "bomb.png",
              "zeros.jpg", "random.png", "pdf.jpg"):
    case(f"predict {_name}", ["predict", "{files}/" + _name, "--model", "{model}"], (2,), _name)
    case(f"predict --faces whole {_name}", ["predict", "{files}/" + _name, "--model", "{model}", "--faces", "whole"],
         (2,), _name)
for _name in ("tiny.png", "grey.png", "rgba.png", "wide.png", "cmyk.jpg", "good.jpg"):
    case(f"predict odd {_name}", ["predict", "{files}/" + _name, "--model", "{model}"], (0,))
case("predict a markup name", ["predict", "{files}/[/bold]markup[red].png", "--model", "{model}"], (0,))
case("predict a missing markup name", ["predict", "{files}/[/bold]gone[red].png", "--model", "{model}"], (2,),
     "[/bold]gone[red].png")
case("predict a folder named .png", ["predict", "{files}/a folder.png", "--model", "{model}"], (2,), "a folder.png")
case("predict non-UTF-8 names", ["predict", "{names}", "--model", "{model}", "--csv", "{out}/s.csv"], (0,))
case("manifest of non-UTF-8 names", ["data", "manifest", "{names}", "--layout", "realfake", "--out", "{out}/m.csv"],
     (2,), "names")
case("predict the whole bad folder", ["predict", "{files}", "--model", "{model}", "--csv", "{out}/s.csv"], (0,))
# Videos.
# A JPEG named .mp4 decodes as a one-frame video without a face: status "no face", exit 0.
case("predict video jpeg-named.mp4", ["predict", "{files}/jpeg-named.mp4", "--model", "{model}"], (0,))
for _name in ("empty.mp4", "text.mp4", "truncated.mp4", "random.avi"):
    case(f"predict video {_name}", ["predict", "{files}/" + _name, "--model", "{model}"], (2,), _name)
    case(f"faces extract {_name}", ["faces", "extract", "{files}/" + _name, "--out", "{out}/faces"], (0,))
# Datasets and manifests.
case("summary of an empty folder", ["data", "summary", "{made}"], (2,), "made")
case("summary of a symlink loop", ["data", "summary", "{made}/looped"], (0,), "", _symlink_loop)
case("manifest with missing columns", ["data", "summary", "{made}/m.csv"], (2,), "m.csv", _csv("a,b\n1,2\n"))
case("manifest with bad labels", ["data", "summary", "{made}/m.csv"], (2,), "label", _csv("path,label\n{good},maybe\n"))
case("manifest listing missing files", ["data", "summary", "{made}/m.csv"], (2,), "do not exist",
     _csv("path,label\n/no/such.png,0\n"))
case("manifest with duplicated rows", ["data", "summary", "{made}/m.csv"], (0,), "",
     _csv("path,label\n{good},0\n{good},0\n"))
case("manifest real and fake at once", ["data", "summary", "{made}/m.csv"], (2,), "both real and fake",
     _csv("path,label\n{good},0\n{good},1\n"))
case("empty manifest", ["data", "summary", "{made}/m.csv"], (2,), "m.csv", _csv(""))
case("binary manifest", ["data", "summary", "{made}/m.csv"], (2,), "m.csv", _csv("\0\1\2\3 path,label"))
case("train on one class", ["train", "{made}/onlyreal", "--detector", "ela-logreg", "--out", "{out}/m", "--split", "all"],
     (2,), "", _one_class_dataset)
case("train when every fake is unreadable", ["train", "{made}/badfakes", "--detector", "ela-logreg", "--out",
                                             "{out}/m"], (2,), "no usable fake image", _unreadable_fakes)
case("train a CNN when every fake is unreadable", ["train", "{made}/badfakes", "--detector", "efficientnet-lite0",
                                                   "--out", "{out}/m"], (2,), "no usable fake image", _unreadable_fakes)
case("lab on a missing folder", ["lab", "--task1", "/no/such/lab", "--detector", "ela-logreg", "--out", "{out}/o"],
     (2,), "/no/such/lab")
case("evaluate a missing split", ["evaluate", "{lab}/Task_1", "--model", "{model}", "--split", "nosuch",
                                  "--out", "{out}/e"], (2,), "nosuch")
case("train with an unknown layout", ["train", "{lab}/Task_1", "--detector", "ela-logreg", "--out", "{out}/m",
                                      "--layout", "weird"], (2,), "weird")
# Model files.
case("model is not a model", ["predict", "{files}/good.jpg", "--model", "{files}"], (2,), "files")
case("model is a pickle", ["predict", "{files}/good.jpg", "--model", "{made}/evil.zip"], (2,), "evil.zip", _pickle_model)
case("model config edited", ["predict", "{files}/good.jpg", "--model", "{made}/model"], (2,), "content hash",
     _model_edit(lambda c, _: c["params"].update(quality=10)))
case("model config empty object", ["predict", "{files}/good.jpg", "--model", "{made}/model"], (2,), "not a dflab model",
     _model_edit(lambda c, folder: c.clear()))
case("model with a runtime setting", ["predict", "{files}/good.jpg", "--model", "{made}/model"], (2,), "",
     _model_edit(lambda c, _: c["params"].update(cache_dir="/tmp/elsewhere")))
case("model with a traversing file name", ["predict", "{files}/good.jpg", "--model", "{made}/model"], (2,),
     "unsafe file name", _model_edit(lambda c, _: c["files"].update({"../../x.skops": "0" * 64})))
case("model listed file missing", ["predict", "{files}/good.jpg", "--model", "{made}/model"], (2,), "",
     _model_edit(lambda c, folder: [p.unlink() for p in folder.glob("*.skops")]))
# Command-line misuse.
for _args, _needle in (
        (["--nope"], "--nope"), (["nope"], "nope"), (["predict"], "Missing argument"),
        (["predict", "{files}/good.jpg", "--frames", "0"], "--frames"),
        (["predict", "{files}/good.jpg", "--frames", "x"], "--frames"),
        (["predict", "{files}/good.jpg", "--threshold", "-1"], "--threshold"),
        (["predict", "{files}/good.jpg", "--aggregation", "max"], "--aggregation"),
        (["predict", "{files}/good.jpg", "--face-detector", "dlib"], "--face-detector"),
        (["faces", "extract", "{files}/good.jpg", "--out", "{out}/f", "--size", "4"], "--size"),
        (["lab", "--task1", "{lab}/Task_1", "--detector", "ela-logreg", "--per-video", "0"], "--per-video"),
        (["lab", "--task1", "{lab}/Task_1", "--detector", "ela-logreg", "--n-boot", "-5"], "--n-boot"),
        (["lab", "--task1", "{lab}/Task_1", "--detector", "nope"], "nope"),
        (["lab", "--task1", "{lab}/Task_1", "--detector", "ela-logreg", "--param", "nokey"], "nokey"),
        (["lab", "--task1", "{lab}/Task_1", "--detector", "ela-logreg", "--param", "colour=3"], "colour"),
        (["predict", "{files}/good.jpg", "--model", "{model}", "--csv", "{files}"], "--csv"),
        (["predict", "{files}/good.jpg", "--model", "{model}", "--json", "{files}/good.jpg/x.json"], "--json"),
        (["data", "manifest", "{lab}/Task_1", "--out", "{files}"], "--out"),
        (["weights", "fetch", "nope"], "nope"),
        (["weights", "fetch", "blazeface", "--url", "file:///no/such/file", "--dest", "{out}/w"], "blazeface"),
):
    case("cli " + " ".join(_args)[:60], _args, (2,), _needle)


def _fill(args, mapping):
    return [a.replace("{files}", mapping["files"]).replace("{lab}", mapping["lab"]).replace("{model}", mapping["model"])
            .replace("{out}", mapping["out"]).replace("{made}", mapping["made"]).replace("{names}", mapping["names"])
            for a in args]


@pytest.fixture(scope="module")
def dflab_command(tmp_path_factory):
    """The dflab command, each run a process forked from one that has imported it (tests/forked_entry_point.py)."""
    from tests.forked_entry_point import ForkedEntryPoint

    home = tmp_path_factory.mktemp("entry-home")
    entry = ForkedEntryPoint({**os.environ, "HOME": str(home), "COLUMNS": "200", "MPLCONFIGDIR": str(home / "mpl")})
    yield entry
    entry.close()


@pytest.mark.parametrize("name", sorted(CASES))
def test_hostile_input(corpus, dflab_command, tmp_path, name):
    args, codes, needle, make = CASES[name]
    made, out, work, home = tmp_path / "made", tmp_path / "out", tmp_path / "work", tmp_path / "home"
    for folder in (made, out, work, home):
        folder.mkdir()
    # The test session's ONNX graph of the ready detector (tests/conftest.py) for every case: the cases
    # test answers, not the one-off export.
    (home / "cache").mkdir()
    (home / "cache" / "graphs").symlink_to((Path(os.environ["DFLAB_CACHE"]) / "graphs").resolve())
    if make is not None:
        make(made, corpus)
    mapping = {"files": str(corpus / "files"), "lab": str(corpus / "lab"), "model": str(corpus / "model"),
               "out": str(out), "made": str(made), "names": str(corpus / "names")}
    before = {p for p in (corpus / "files").rglob("*")}
    env = {**os.environ, "HOME": str(home), "DFLAB_CACHE": str(home / "cache"), "COLUMNS": "200",
           "DFLAB_WEIGHTS": str(home / "weights")}
    returncode, stdout, stderr = dflab_command.run(_fill(args, mapping), cwd=work, env=env, timeout=300)
    output = stdout + stderr
    assert returncode in codes, (name, returncode, stderr[-2000:])
    assert "Traceback" not in output, (name, output[-3000:])
    if returncode == 2:  # one error line, the last thing said (warnings about skipped files may precede it)
        lines = [line for line in stderr.splitlines() if line.strip()]
        errors = [line for line in lines if line.startswith("error:")]
        assert len(errors) == 1 and lines[-1] == errors[0], (name, stderr)
        assert needle in errors[0], (name, errors[0])
    assert not any(work.iterdir()), (name, list(work.iterdir()))  # nothing written where it was run
    assert {p for p in (corpus / "files").rglob("*")} == before  # nothing written beside the inputs


def test_the_corpus_is_large_enough():
    assert len(CASES) >= 80


def test_the_forked_command_answers_as_the_installed_one(corpus, dflab_command, tmp_path):
    """The cases' forked runs print and exit as the installed ``dflab`` does, and a command that
    crashes shows its traceback and status 1 (which the cases would catch)."""
    work = tmp_path / "work"
    work.mkdir()
    env = {**os.environ, "COLUMNS": "200"}
    # The corpus's model, not the ready detector: a first export of its graph would speak in one run only.
    for name in ("text.jpg", "good.jpg"):
        args = ["predict", str(corpus / "files" / name), "--model", str(corpus / "model")]
        installed = subprocess.run([str(DFLAB), *args], capture_output=True, text=True, cwd=work, env=env, timeout=300)
        assert dflab_command.run(args, cwd=work, env=env, timeout=300) == (
            installed.returncode, installed.stdout, installed.stderr)
    # A crash: on the test's request the child raises before the command runs.
    status, _, stderr = dflab_command.run(["--version"], cwd=work, env={**env, "DFLAB_TEST_CRASH": "1"}, timeout=60)
    assert status == 1 and "Traceback" in stderr and "RuntimeError: crash on purpose" in stderr
