"""The one batched photo path: a folder's photos scored in batches give each photo the answer it gets
alone; batches are bounded in count and pixels; MTCNN batches photos that share a size after its
downscaling; the ready detector's graph comes from the user cache, exported there once."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from dflab.inference import photos
from dflab.inference.predict import PredictOptions, predict_files
from tests.conftest import SHARED

SHARED_CROPS = SHARED / "datasets" / "Task_2_3" / "evaluation"


@pytest.fixture(scope="module")
def scorer():
    from dflab.detectors import create

    detector = create("efficientnet-lite0", pretrained=True, device="cpu")
    detector.model_ = detector.build_model(pretrained=True).eval()
    detector.model_info_ = {"thresholds": {"frame": 0.5}, "framing": {"scale": 1.3, "shift_y": 0.0}}
    return detector


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """Photos of several sizes with one, two and no face, and a file that is not an image."""
    from skimage import data

    root = tmp_path_factory.mktemp("photos")
    astronaut = Image.fromarray(data.astronaut())
    astronaut.save(root / "a_astronaut.jpg", quality=92)
    astronaut.transpose(Image.Transpose.FLIP_LEFT_RIGHT).resize((384, 384)).save(root / "b_mirrored.png")
    Image.fromarray(np.hstack([np.asarray(astronaut)] * 2)).save(root / "c_two.jpg", quality=92)
    Image.new("RGB", (160, 120), "grey").save(root / "d_wall.png")
    (root / "e_broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    astronaut.resize((256, 256)).save(root / "f_small.jpg", quality=90)
    return root


def test_a_folder_scored_in_batches_gives_each_photo_its_answer_alone(scorer, folder, monkeypatch):
    files = sorted(folder.iterdir())
    calls = []
    original = scorer.predict_proba

    def counted(images, **kwargs):
        calls.append(len(images))
        return original(images, **kwargs)

    monkeypatch.setattr(scorer, "predict_proba", counted)
    together = predict_files(scorer, files, PredictOptions())
    batched_calls = list(calls)
    alone = [predict_files(scorer, [file], PredictOptions()) for file in files]
    assert len(batched_calls) == 1  # every face of the folder in one network call (7 faces, padded to 8)
    assert [photo["path"] for photo in together["photos"]] == [str(file) for file in files]
    for got, want in zip(together["photos"], (result["photos"][0] for result in alone)):
        assert (got["status"], got["reason"], got["width"], got["height"]) == \
            (want["status"], want["reason"], want["width"], want["height"])
        assert [face["box"] for face in got["faces"]] == [face["box"] for face in want["faces"]]
        assert [face["verdict"] for face in got["faces"]] == [face["verdict"] for face in want["faces"]]
        np.testing.assert_allclose([face["p_fake"] for face in got["faces"]],
                                   [face["p_fake"] for face in want["faces"]], atol=1e-5)
    statuses = {photo["path"].rsplit("/", 1)[-1]: (photo["status"], len(photo["faces"])) for photo in together["photos"]}
    assert statuses["c_two.jpg"] == ("ok", 2) and statuses["d_wall.png"] == ("no_face", 0)
    assert statuses["e_broken.jpg"][0] == "error"
    rows = {row["path"].rsplit("/", 1)[-1]: row for row in together["rows"]}
    assert rows["d_wall.png"]["verdict"] == "no face" and rows["e_broken.jpg"]["verdict"] == "error"


def test_photo_batches_are_bounded_in_count_and_pixels(tmp_path):
    arrays = [np.zeros((100, 100, 3), np.uint8)] * 5
    assert [len(batch) for batch in photos.photo_batches(arrays, size=2)] == [2, 2, 1]
    assert [len(batch) for batch in photos.photo_batches(arrays, pixels=25_000)] == [2, 2, 1]
    huge = [np.zeros((300, 300, 3), np.uint8)] + arrays[:2]
    assert [len(batch) for batch in photos.photo_batches(huge, pixels=25_000)] == [1, 2]  # alone when too large
    (tmp_path / "bad.jpg").write_bytes(b"nothing")
    Image.new("RGB", (640, 480)).save(tmp_path / "good.png")
    assert photos.photo_batches([tmp_path / "bad.jpg", tmp_path / "good.png"]) == \
        [[tmp_path / "bad.jpg", tmp_path / "good.png"]]


@pytest.mark.slow
def test_mtcnn_finds_the_same_faces_in_photos_sharing_a_size_after_downscaling(monkeypatch):
    from skimage import data

    from dflab.faces.mtcnn import MTCNNDetector

    detector = MTCNNDetector()
    astronaut = data.astronaut()  # 512 x 512: below max_side, not downscaled
    large = np.asarray(Image.fromarray(astronaut).resize((1024, 1024)))
    larger = np.asarray(Image.fromarray(astronaut).resize((1280, 1280)))
    alone = [detector.detect(image) for image in (large, larger, astronaut)]
    calls = []
    original = detector._mtcnn.detect

    def counted(batch, **kwargs):
        calls.append(np.asarray(batch).shape)
        return original(batch, **kwargs)

    monkeypatch.setattr(detector._mtcnn, "detect", counted)
    together = detector.detect_batch([large, larger, astronaut])
    assert sorted(calls) == [(1, 512, 512, 3), (2, 640, 640, 3)]  # the two large ones downscaled to one size
    for got, want in zip(together, alone):
        assert len(got) == len(want) >= 1
        for face, expected in zip(got, want):
            np.testing.assert_allclose(face.box, expected.box, atol=0.05)


@pytest.mark.slow
def test_the_ready_detector_graph_is_exported_once_into_the_cache_and_checked(tmp_path, monkeypatch):
    from dflab.detectors.deep import onnx_backend
    from dflab.media.images import load_image

    monkeypatch.setenv("DFLAB_CACHE", str(tmp_path))
    exports = []
    export = onnx_backend.export_graph
    monkeypatch.setattr(onnx_backend, "export_graph", lambda *args, **kwargs: exports.append(1) or export(*args, **kwargs))
    from dflab.inference.models import load_scorer

    scorer = load_scorer(None, None, None)
    graphs = sorted((tmp_path / "graphs").glob("*.onnx"))
    assert len(exports) == 1 and len(graphs) == 1
    record = json.loads(graphs[0].with_suffix(".json").read_text())
    assert record["sha256"] == onnx_backend.hashlib.sha256(graphs[0].read_bytes()).hexdigest()
    assert scorer.inner().onnx_ is not None
    assert load_scorer(None, None, None).inner().onnx_.graph == graphs[0].read_bytes() and len(exports) == 1

    faces = [load_image(path) for path in sorted(SHARED_CROPS.glob("*/*.jpg"))[:6]] if SHARED_CROPS.is_dir() else \
        [np.random.default_rng(seed).integers(0, 256, (224, 224, 3), dtype=np.uint8) for seed in range(6)]
    with_graph = scorer.predict_proba(faces)
    pytorch = load_scorer(None, None, None, "torch")
    assert pytorch.inner().onnx_ is None and len(exports) == 1  # --backend torch: no graph, no export
    np.testing.assert_allclose(with_graph, pytorch.predict_proba(faces), atol=1e-4)

    exported = graphs[0].read_bytes()
    # Exported again when the file is not the one recorded (the same graph given back: a second real
    # export would only cost this test 12 s).
    monkeypatch.setattr(onnx_backend, "export_graph", lambda *args, **kwargs: exports.append(1) or exported)
    graphs[0].write_bytes(exported[:-10] + b"0123456789")  # tampered: not what was recorded
    again = load_scorer(None, None, None)
    assert len(exports) == 2  # exported again, and the graph recorded
    assert again.inner().onnx_.graph == graphs[0].read_bytes()
    assert json.loads(graphs[0].with_suffix(".json").read_text())["sha256"] == \
        onnx_backend.hashlib.sha256(graphs[0].read_bytes()).hexdigest()
    np.testing.assert_allclose(again.predict_proba(faces), with_graph, atol=1e-6)


def test_face_detection_runs_on_its_own_thread_count_and_gives_the_rest_back():
    import torch

    from dflab.faces.detection import torch_threads

    before = torch.get_num_threads()
    seen = []
    with torch_threads(1):
        seen.append(torch.get_num_threads())
    with pytest.raises(RuntimeError), torch_threads(1):
        raise RuntimeError("a failing detection gives the threads back too")
    assert seen == [1] and torch.get_num_threads() == before


@pytest.mark.slow
def test_without_a_writable_cache_the_ready_detector_scores_with_pytorch_and_says_so(tmp_path, monkeypatch, capsys):
    from dflab.detectors.deep import onnx_backend
    from dflab.inference.models import load_scorer

    blocker = tmp_path / "cache"
    blocker.write_text("a file where the cache folder should be")
    monkeypatch.setenv("DFLAB_CACHE", str(blocker))
    monkeypatch.setattr(onnx_backend, "export_graph", lambda *args, **kwargs: pytest.fail("exported in vain"))
    scorer = load_scorer(None, None, None)  # warnings show even when quiet
    assert scorer.inner().onnx_ is None
    assert "scored with PyTorch (no ONNX graph" in capsys.readouterr().err
    face = np.random.default_rng(0).integers(0, 256, (224, 224, 3), dtype=np.uint8)
    assert 0.0 <= float(scorer.predict_proba([face])[0]) <= 1.0
