"""`dflab serve`'s HTTP API with FastAPI's test client: good photos and videos, every kind of bad
upload (a 4xx with one line, never a 500), concurrent requests, the 503 of a full queue, no server
path in any answer, the private upload folders deleted.

The scorer is injected: a real EfficientNet-Lite0 (ImageNet weights, no deepfake training, so its
scores are honest but meaningless) with the ready detector's face framing, so it always runs; the
browser test (test_serve_browser.py) serves the ready detector itself.
"""

from __future__ import annotations

import json
import os
import stat
import struct
import subprocess
import sys
import tempfile
import threading
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx", reason="FastAPI's TestClient needs httpx")
from fastapi.testclient import TestClient  # noqa: E402

from dflab.inference.predict import PredictOptions, predict_files, prediction_payload
from dflab.serve.app import create_app
from dflab.inference.photos import NETWORK_BATCH, network_batch_size, network_batch_sizes, score_crops
from dflab.serve.uploads import sniff

from .conftest import require_shared  # noqa: E402

FRAMING = {"scale": 0.72, "shift_y": 0.09}


@pytest.fixture(scope="module")
def scorer():
    from dflab.detectors import create

    detector = create("efficientnet-lite0", pretrained=True, device="cpu")
    detector.model_ = detector.build_model(pretrained=True).eval()
    detector.model_info_ = {"thresholds": {"frame": 0.5}, "framing": dict(FRAMING)}
    return detector


@pytest.fixture(scope="module")
def upload_root(tmp_path_factory):
    """Every upload folder of this module goes here (tempfile.mkdtemp), to check they are deleted."""
    root = tmp_path_factory.mktemp("serve-uploads")
    saved = tempfile.tempdir
    tempfile.tempdir = str(root)
    yield root
    tempfile.tempdir = saved
    assert list(root.iterdir()) == [], "upload folders left behind"


@pytest.fixture(scope="module")
def client(scorer, upload_root):
    with TestClient(create_app(scorer, max_upload_bytes=3 * 2 ** 20, max_video_seconds=120)) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def astronaut_jpeg(tmp_path_factory) -> Path:
    from PIL import Image
    from skimage import data

    path = tmp_path_factory.mktemp("photo") / "astronaut.jpg"
    Image.fromarray(data.astronaut()).save(path, quality=92)
    return path


def post(client, name: str, content: bytes, query: str = "", mime: str = "application/octet-stream"):
    return client.post("/api/predict" + query, files={"file": (name, content, mime)})


def assert_no_server_path(response, upload_root: Path) -> None:
    text = response.text
    for needle in (str(upload_root), tempfile.gettempdir(), "dflab-serve-", "/tmp/", str(Path.cwd()), "Traceback"):
        assert needle not in text, f"{needle!r} in the answer: {text[:300]}"


def assert_refused(response, status: int, *needles: str) -> None:
    assert response.status_code == status, (response.status_code, response.text)
    detail = response.json()["detail"]
    assert isinstance(detail, str) and "\n" not in detail and detail.strip(), detail
    for needle in needles:
        assert needle in detail, detail


def png_header(width: int, height: int) -> bytes:
    """A PNG that claims ``width`` x ``height`` pixels (a decompression bomb's header) with one tiny IDAT."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))


# -- good files ---------------------------------------------------------------------------------

def test_photo_with_a_face_same_answer_as_dflab_predict(client, scorer, astronaut_jpeg, upload_root):
    response = post(client, "astronaut.jpg", astronaut_jpeg.read_bytes(), mime="image/jpeg")
    assert response.status_code == 200, response.text
    body = response.json()
    expected = prediction_payload(predict_files(scorer, [astronaut_jpeg], PredictOptions()), scorer.name)
    assert set(expected) <= set(body)  # the fields of `dflab predict --json`, plus the page's
    assert body["detector"] == expected["detector"] and body["threshold"] == expected["threshold"] == 0.5
    assert body["framing"] == expected["framing"] == FRAMING
    assert [r["path"] for r in body["results"]] == ["astronaut.jpg"] * len(expected["results"])
    for got, want in zip(body["results"], expected["results"]):  # one prediction function for both
        assert got["box"] == want["box"] and got["verdict"] == want["verdict"]
        assert got["p_fake"] == pytest.approx(want["p_fake"], abs=1e-5)
    photo = body["photos"][0]
    assert photo["status"] == "ok" and photo["path"] == "astronaut.jpg" and (photo["width"], photo["height"]) == (512, 512)
    assert len(photo["faces"]) >= 1 and all(f["verdict"] in ("real", "fake") for f in photo["faces"])
    assert photo["heatmap"].startswith("data:image/png;base64,")
    assert body["kind"] == "image" and body["file"] == "astronaut.jpg"
    assert_no_server_path(response, upload_root)


def test_real_face_from_shared_and_no_heatmap_option(client, upload_root):
    face = sorted(require_shared("datasets", "Task_2_3", "evaluation", "real").glob("*.jpg"))[0]
    body = post(client, face.name, face.read_bytes(), "?heatmap=false").json()
    assert body["results"][0]["path"] == face.name and body["results"][0]["p_fake"] is not None
    assert body["photos"][0]["faces"] and body["photos"][0]["heatmap"] is None


@pytest.mark.slow
def test_video_from_shared_with_job_progress(client, upload_root):
    video = sorted(require_shared("datasets", "videos", "ffpp_c23", "fake").glob("*.mp4"))[0]
    submitted = client.post("/api/jobs?frames=6&aggregation=mean_logit",
                            files={"file": ("../../etc/" + video.name, video.read_bytes(), "video/mp4")})
    assert submitted.status_code == 202, submitted.text
    job_id = submitted.json()["id"]
    seen = []
    for _ in range(1200):
        job = client.get(f"/api/jobs/{job_id}").json()
        seen.append((job["status"], job["progress"]["done"], job["progress"]["total"]))
        if job["status"] in ("done", "failed"):
            break
        threading.Event().wait(0.05)
    assert job["status"] == "done", job
    body = job["result"]
    assert job["progress"] == {"done": 6, "total": 6, "unit": "frames"}
    video_result = body["videos"][0]
    assert video_result["video"] == video.name and body["results"][0]["path"] == video.name  # base name only
    assert video_result["status"] == "ok" and video_result["aggregation"] == "mean_logit"
    assert video_result["frames"] == 6 and len(video_result["frame_scores"]) == video_result["frames_with_face"] > 0
    times = [f["timestamp"] for f in video_result["frame_scores"]]
    assert times == sorted(times) and all(0 <= f["p_fake"] <= 1 for f in video_result["frame_scores"])
    assert body["results"][0]["verdict"] in ("real", "fake")
    assert len(video_result["heatmaps"]) == len(video_result["frame_scores"])
    assert all(url.startswith("data:image/png;base64,") for url in video_result["heatmaps"])
    persons = [{k: v for k, v in person.items() if k != "thumbnail"} for person in video_result["persons"]]
    assert persons and all(p["thumbnail"].startswith("data:image/png;base64,") for p in video_result["persons"])
    assert video_result["person"] == max(persons, key=lambda p: p["p_fake"])["person"]
    no_pictures = {k: v for k, v in video_result.items() if k not in ("heatmaps", "persons")}
    assert "/" not in json.dumps({**no_pictures, "persons": persons}).replace("\\/", "")
    assert client.get("/api/jobs/no-such-job").status_code == 404


def test_picture_without_a_face_is_an_answer_not_an_error(client, upload_root):
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.full((120, 160, 3), 128, np.uint8)).save(buffer, "PNG")
    response = post(client, "wall.png", buffer.getvalue())
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["results"][0]["verdict"] == "no face" and body["photos"][0]["status"] == "no_face"


def test_video_over_the_duration_limit(scorer, upload_root):
    video = sorted(require_shared("datasets", "videos", "ffpp_c23", "real").glob("*.mp4"))[0]
    with TestClient(create_app(scorer, max_video_seconds=1, max_video_frames=10)) as small:
        assert_refused(post(small, video.name, video.read_bytes()), 413, "too long", video.name)


# -- bad files: a 4xx with one line -------------------------------------------------------------

def _truncated_jpeg(path: Path) -> bytes:
    return path.read_bytes()[:1500]


@pytest.mark.parametrize("name,content,status,needle", [
    ("empty.jpg", b"", 400, "empty file"),
    ("holiday.jpg", b"Dear all, photos from the holiday attached.\n", 415, "not an image or a video (text)"),
    ("archive.png", b"PK\x03\x04" + bytes(range(256)) * 4, 415, "not an image or a video"),
    ("document.mp4", b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n" + b"0" * 500, 415, "not an image or a video"),
    ("bomb.png", png_header(10_000, 10_000), 413, "image too large"),
    ("huge-bomb.png", png_header(40_000, 40_000), 413, "image too large"),
    ("cut.mp4", b"\x00\x00\x00\x20ftypisom\x00\x00\x02\x00isomiso2avc1mp41" + b"\x00" * 200, 422, "cut.mp4"),
])
def test_bad_uploads_are_refused_in_one_line(client, upload_root, name, content, status, needle):
    response = post(client, name, content)
    assert_refused(response, status, needle, name)
    assert_no_server_path(response, upload_root)


def test_truncated_jpeg_and_truncated_video(client, upload_root, astronaut_jpeg):
    assert_refused(post(client, "cut.jpg", _truncated_jpeg(astronaut_jpeg)), 422, "cut.jpg", "truncated")
    video = sorted(require_shared("datasets", "videos", "ffpp_c23", "real").glob("*.mp4"))[0]
    response = post(client, "half.mp4", video.read_bytes()[:20_000])
    assert response.status_code in (200, 422), response.text  # what frames decode are used, else one line
    assert_no_server_path(response, upload_root)


def test_oversize_refused_while_streaming(client, upload_root):
    big = b"\xff\xd8\xff\xe0" + os.urandom(4 * 2 ** 20)
    assert_refused(post(client, "big.jpg", big), 413, "too large", "3 MB")

    boundary = "dflabtestboundary"

    def body():  # chunked, no Content-Length: the limit holds on what arrives
        yield (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"stream.jpg\"\r\n"
               "Content-Type: image/jpeg\r\n\r\n").encode()
        for _ in range(64):
            yield b"\xff" * 2 ** 17
        yield f"\r\n--{boundary}--\r\n".encode()

    response = client.post("/api/predict", content=body(),
                           headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert_refused(response, 413, "too large")


def test_malformed_requests(client, upload_root):
    assert_refused(client.post("/api/predict", content=b"raw bytes", headers={"Content-Type": "image/jpeg"}),
                   415, "multipart/form-data")
    assert_refused(client.post("/api/predict", data={"other": "field"}, files={"x": ("a.txt", b"x")}), 400, "no file")
    assert_refused(client.post("/api/predict", content=b"--b\r\ngarbage",
                               headers={"Content-Type": "multipart/form-data; boundary=b"}), 400)
    assert_refused(client.post("/api/predict?frames=0", files={"file": ("a.jpg", b"x")}), 422, "frames")
    assert_refused(client.post("/api/predict?aggregation=max", files={"file": ("a.jpg", b"x")}), 422, "aggregation")


# -- load -----------------------------------------------------------------------------------------

def test_concurrent_requests_all_answered(client, astronaut_jpeg, upload_root):
    content = astronaut_jpeg.read_bytes()

    def one(i):
        return post(client, f"same-{i}.jpg", content, "?heatmap=false")

    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(one, range(6)))
    assert [a.status_code for a in answers] == [200] * 6
    scores = {round(a.json()["results"][0]["p_fake"], 5) for a in answers}
    assert len(scores) == 1
    assert [a.json()["file"] for a in answers] == [f"same-{i}.jpg" for i in range(6)]


class Gate:
    """A scorer that waits at the gate before scoring (to hold the queue full); it counts the
    images of each network call."""

    def __init__(self, inner):
        self.inner, self.open, self.entered = inner, threading.Event(), threading.Event()
        self.folders, self.calls = [], []

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def predict_proba(self, images, **kwargs):
        self.folders += [p for p in Path(tempfile.gettempdir()).glob("dflab-serve-*")]
        self.calls.append(len(images))
        self.entered.set()
        assert self.open.wait(60)
        return self.inner.predict_proba(images, **kwargs)


def wait_done(client, job_id: str) -> dict:
    for _ in range(1200):
        state = client.get(f"/api/jobs/{job_id}").json()
        if state["status"] in ("done", "failed"):
            return state
        threading.Event().wait(0.05)
    raise AssertionError(f"job {job_id} not finished: {state}")


def test_full_queue_answers_503_with_retry_after(scorer, astronaut_jpeg, upload_root):
    gate = Gate(scorer)
    content = astronaut_jpeg.read_bytes()
    with TestClient(create_app(gate, max_jobs=2)) as client:
        first = client.post("/api/jobs?heatmap=false", files={"file": ("a.jpg", content)})
        assert first.status_code == 202 and gate.entered.wait(30)
        second = client.post("/api/jobs?heatmap=false", files={"file": ("b.jpg", content)})
        assert second.status_code == 202
        assert client.get(f"/api/jobs/{second.json()['id']}").json()["position"] == 0
        full = client.post("/api/predict", files={"file": ("c.jpg", content)})
        assert_refused(full, 503, "busy")
        assert int(full.headers["Retry-After"]) >= 1
        health = client.get("/api/health").json()  # the event loop is free while the worker scores
        assert health["in_flight"] == 2 and health["queued"] == 1
        # the upload folder is private (0700) while its file is scored
        assert gate.folders and all(stat.S_IMODE(f.stat().st_mode) == 0o700 for f in gate.folders if f.exists())
        gate.open.set()
        for job in (first, second):
            assert wait_done(client, job.json()["id"])["status"] == "done"
        assert client.post("/api/predict?heatmap=false", files={"file": ("d.jpg", content)}).status_code == 200


def test_queued_photos_scored_together_same_answers_as_alone(scorer, astronaut_jpeg, tmp_path, upload_root):
    """Photos waiting while the worker is busy are scored as one batch (one network call for all
    their faces), each answer as `dflab predict` gives for that file alone; a photo with no face
    in the batch still gets its own "no face" answer."""
    from PIL import Image

    astronaut = Image.open(astronaut_jpeg)
    photos = {"astronaut.jpg": astronaut_jpeg}
    for name, picture in (("mirrored.png", astronaut.transpose(Image.Transpose.FLIP_LEFT_RIGHT)),
                          ("small.png", astronaut.resize((256, 256))), ("wall.png", Image.new("RGB", (160, 120), "grey")),
                          ("wide.jpg", Image.fromarray(np.hstack([np.asarray(astronaut)] * 2)))):
        picture.save(tmp_path / name)
        photos[name] = tmp_path / name
    alone = {name: predict_files(scorer, [path], PredictOptions()) for name, path in photos.items()}
    gate = Gate(scorer)
    with TestClient(create_app(gate)) as client:
        holding = client.post("/api/jobs?heatmap=false", files={"file": ("first.jpg", astronaut_jpeg.read_bytes())})
        assert holding.status_code == 202 and gate.entered.wait(30)  # the worker waits at the gate
        queued = {name: client.post("/api/jobs" + ("?heatmap=false" if name != "small.png" else ""),
                                    files={"file": (name, path.read_bytes())}).json()["id"]
                  for name, path in photos.items()}
        gate.open.set()
        answers = {name: wait_done(client, job_id) for name, job_id in queued.items()}
    faces = {name: len(result["photos"][0]["faces"]) for name, result in alone.items()}
    assert faces["wall.png"] == 0 and faces["wide.jpg"] >= 2 and all(faces[n] >= 1 for n in photos if n != "wall.png")
    # The held job, then one batch for all the faces (its count rounded up to an even number).
    assert gate.calls == [faces["astronaut.jpg"], network_batch_size(sum(faces.values()))]
    for name, answer in answers.items():
        assert answer["status"] == "done" and answer["progress"] == {"done": 1, "total": 1, "unit": "files"}, answer
        body, want = answer["result"], alone[name]
        assert body["file"] == name and [row["path"] for row in body["results"]] == [name] * len(want["rows"])
        for got, expected in zip(body["results"], want["rows"]):
            assert (got["face"], got["box"], got["verdict"], got["error"]) == \
                (expected["face"], expected["box"], expected["verdict"], expected["error"])
            if expected["verdict"] in ("real", "fake"):
                assert got["p_fake"] == pytest.approx(expected["p_fake"], abs=1e-5)
        photo, expected_photo = body["photos"][0], want["photos"][0]
        assert (photo["status"], photo["reason"], photo["width"], photo["height"]) == \
            (expected_photo["status"], expected_photo["reason"], expected_photo["width"], expected_photo["height"])
        assert [f["box"] for f in photo["faces"]] == [f["box"] for f in expected_photo["faces"]]
        assert (photo["heatmap"] is not None) == (name == "small.png")  # only the photo that asked for one


class Recorder:
    """A scorer that records the crops of each network call and scores a crop by its mean pixel."""

    batch_size = 32

    def __init__(self):
        self.calls = []

    def predict_proba(self, images, **kwargs):
        self.calls.append([int(image[0, 0, 0]) for image in images])
        return np.array([image.mean() / 255 for image in images])


def test_network_batches_are_even_sizes_at_most_sixteen_with_each_crop_scored_once():
    assert [network_batch_size(n) for n in range(1, 8)] == [1, 2, 4, 4, 6, 6, 8]
    assert network_batch_sizes() == [16, 14, 12, 10, 8, 6, 4, 2, 1]  # the warm-up's order: largest first
    crops = [np.full((4, 4, 3), value, np.uint8) for value in range(NETWORK_BATCH + 3)]
    recorder = Recorder()
    scores = score_crops(recorder, crops)
    np.testing.assert_allclose(scores, [value / 255 for value in range(NETWORK_BATCH + 3)])
    # 19 crops: one full call, then 3 crops padded with a copy of the chunk's first to 4.
    assert recorder.calls == [list(range(16)), [16, 17, 18, 16]]
    assert score_crops(recorder, []).shape == (0,)


def test_warm_up_runs_every_batch_size_and_sets_the_memory_ceiling(scorer):
    from dflab.serve.memory import MEMORY_SLACK
    from dflab.serve.queue import Scoring

    recorder = Recorder()
    recorder.face_framing = scorer.face_framing
    scoring = Scoring(recorder, max_jobs=4, predict_options={}, own_thread=False, warm_up=True)
    assert scoring.memory.limit_mb is None
    scoring.stop()
    scoring.run_here()  # warms up, then returns: stopped with nothing queued
    assert [len(call) for call in recorder.calls] == network_batch_sizes()
    from dflab.runtime.memory import resident_mb

    assert 0 < scoring.memory.limit_mb <= resident_mb() * (1 + MEMORY_SLACK) * 1.05
    scoring.memory.limit_mb = 1.0  # far below: the next check hands the freed memory back
    scoring.memory.check()
    assert scoring.memory.releases == 1
    scoring.memory.limit_mb = 10 ** 9
    scoring.memory.check()
    assert scoring.memory.releases == 1


def test_model_health_docs_and_page(client, upload_root):
    model = client.get("/api/model").json()
    assert model["name"] == "efficientnet-lite0" and model["threshold"] == 0.5 and isinstance(model["card"], str)
    health = client.get("/api/health").json()
    assert health["status"] == "ok" and health["memory_mb"] > 100 and health["memory_releases"] == 0
    assert health["memory_ceiling_mb"] is None  # create_app does not warm up unless asked (dflab serve does)
    schema = client.get("/openapi.json").json()
    assert {"/api/predict", "/api/jobs", "/api/jobs/{job_id}", "/api/model", "/api/health"} <= set(schema["paths"])
    assert "multipart/form-data" in schema["paths"]["/api/predict"]["post"]["requestBody"]["content"]
    docs = client.get("/docs")  # written here from the schema: no Swagger UI, nothing from a CDN
    assert docs.status_code == 200 and docs.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in docs.headers["Content-Security-Policy"]
    assert "http:" not in docs.text and "https:" not in docs.text and "<script" not in docs.text
    for path in schema["paths"]:
        assert f"{path}</code></h2>" in docs.text
    assert "frames" in docs.text and "mean_logit" in docs.text and "503" in docs.text
    assert client.get("/redoc").status_code == 404
    page = client.get("/")
    assert page.status_code == 200 and "/static/app.js" in page.text and "http" not in page.text.split("<body>")[0]
    for asset in ("app.js", "style.css"):
        assert client.get(f"/static/{asset}").status_code == 200
    assert "default-src 'self'" in page.headers["Content-Security-Policy"]


def test_upload_folders_are_all_deleted(client, upload_root, astronaut_jpeg):
    # scored, refused after the upload, refused while streaming: every upload folder is gone
    # (the fixture checks it again once the whole module has run)
    assert post(client, "a.jpg", astronaut_jpeg.read_bytes(), "?heatmap=false").status_code == 200
    assert post(client, "b.jpg", b"not a picture").status_code == 415
    assert post(client, "c.jpg", _truncated_jpeg(astronaut_jpeg)).status_code == 422
    assert post(client, "d.jpg", b"\xff\xd8\xff" + bytes(4 * 2 ** 20)).status_code == 413
    assert client.get("/api/health").json()["in_flight"] == 0
    assert list(upload_root.iterdir()) == []


def test_sniff_reads_content_not_names():
    assert sniff(b"\xff\xd8\xff\xe0\x00\x10JFIF") == ("image", "JPEG", ".jpg")
    assert sniff(b"\x00\x00\x00\x18ftypmp42")[0] == "video"
    assert sniff(b"\x1a\x45\xdf\xa3\x01") == ("video", "Matroska/WebM", ".mkv")
    assert sniff(b"RIFF\x00\x00\x00\x00WEBPVP8 ") == ("image", "WebP", ".webp")
    assert sniff(b"hello.jpg") is None and sniff(b"") is None


@pytest.mark.slow
def test_serve_command_validates_options(tmp_path):
    def dflab(*args):
        return subprocess.run([sys.executable, "-m", "dflab", "serve", *args], capture_output=True, text=True,
                              env={**os.environ, "COLUMNS": "200"}, timeout=60)

    for args in (["--port", "70000"], ["--max-upload-mb", "0"], ["--max-jobs", "0"]):
        result = dflab(*args)
        assert result.returncode == 2 and "Traceback" not in result.stderr, (args, result.stderr)
    result = dflab("--model", str(tmp_path / "no-such-model"))
    assert result.returncode == 2 and "no-such-model" in result.stderr and "Traceback" not in result.stderr
