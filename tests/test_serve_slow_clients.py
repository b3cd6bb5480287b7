"""Slow clients against a real uvicorn server: an upload whose body stops arriving (a slowloris:
headers sent, then nothing), or trickles in, is answered 408 and frees its place among the
``max_jobs`` uploads in flight; nothing is scored, so a stand-in scorer serves."""

from __future__ import annotations

import json
import select
import socket
import threading
import time

import pytest

pytest.importorskip("fastapi")
uvicorn = pytest.importorskip("uvicorn")

from dflab.serve.app import create_app  # noqa: E402


class NeverScores:
    """A scorer with what the app reads at start-up; these tests never get as far as scoring."""

    name = "stand-in"
    face_framing = None
    model_info_ = {"thresholds": {"frame": 0.5}}

    def predict_proba(self, images, **kwargs):
        raise AssertionError("nothing should be scored")


@pytest.fixture
def server(tmp_path):
    app = create_app(NeverScores(), max_jobs=1, upload_idle_s=1.0, upload_deadline_s=2.5)
    listening = socket.socket()
    listening.bind(("127.0.0.1", 0))
    listening.listen(16)
    running = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    thread = threading.Thread(target=running.run, kwargs={"sockets": [listening]}, daemon=True)
    thread.start()
    for _ in range(200):
        if running.started:
            break
        time.sleep(0.05)
    assert running.started
    yield listening.getsockname()[1]
    running.should_exit = True
    thread.join(timeout=10)
    listening.close()


HEAD = ("POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; boundary=b\r\n"
        "Content-Length: 100000\r\n\r\n")
PART = '--b\r\nContent-Disposition: form-data; name="file"; filename="slow.jpg"\r\n\r\n'


def answer(connection: socket.socket, timeout: float = 15) -> tuple[int, dict, str]:
    """(status, headers, body) of the one answer on ``connection`` (read until the server closes it)."""
    connection.settimeout(timeout)
    data = b""
    while True:
        part = connection.recv(65536)
        if not part:
            break
        data += part
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), {k.lower(): v for k, v in headers.items()}, body.decode()


def http(port: int, method: str, path: str, body: bytes = b"", content_type: str = "") -> tuple[int, str]:
    with socket.create_connection(("127.0.0.1", port)) as connection:
        extra = f"Content-Type: {content_type}\r\n" if content_type else ""
        connection.sendall(f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n{extra}"
                           f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
        status, _, text = answer(connection)
        return status, text


def text_upload(port: int) -> int:
    body = (PART.replace("slow.jpg", "note.txt") + "just text\r\n--b--\r\n").encode()
    return http(port, "POST", "/api/predict", body, "multipart/form-data; boundary=b")[0]


def test_headers_then_silence_answered_408_and_its_slot_freed(server):
    stalled = socket.create_connection(("127.0.0.1", server))
    start = time.monotonic()
    stalled.sendall(HEAD.encode())  # headers, then nothing
    time.sleep(0.3)
    assert text_upload(server) == 503  # max_jobs=1: the stalled upload holds the only place ...
    status, headers, body = answer(stalled)
    waited = time.monotonic() - start
    assert status == 408 and "upload too slow" in json.loads(body)["detail"], body
    assert 1.0 <= waited < 10, waited
    stalled.close()
    assert json.loads(http(server, "GET", "/api/health")[1])["in_flight"] == 0
    assert text_upload(server) == 415  # ... and gives it back: the next upload is admitted (and checked)


def test_a_trickling_upload_stops_at_the_deadline(server):
    trickling = socket.create_connection(("127.0.0.1", server))
    start = time.monotonic()
    trickling.sendall(HEAD.encode() + PART.encode())
    while time.monotonic() - start < 8 and not select.select([trickling], [], [], 0.4)[0]:
        trickling.sendall(b"\xff")  # a byte every 0.4 s until the answer comes: never idle for 1 s
    status, _, body = answer(trickling)
    assert status == 408 and "not all there after 2.5 s" in json.loads(body)["detail"], body
    assert 2.5 <= time.monotonic() - start < 8
    trickling.close()
    assert json.loads(http(server, "GET", "/api/health")[1])["in_flight"] == 0
