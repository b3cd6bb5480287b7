"""`dflab serve` stopped by SIGTERM (a service manager's stop) or Ctrl+C with uploads still queued
exits cleanly and leaves no upload behind in the temporary folder (found by the hour-long soak,
benchmarks/soak_serve.py: each stopped server left its queued uploads in /tmp)."""

from __future__ import annotations

import http.client
import io
import json
import os
import re
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from PIL import Image
from skimage import data as skimage_data

pytestmark = pytest.mark.slow


def _photo() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(skimage_data.astronaut()).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def _submit(port: int, content: bytes) -> int:
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.jpg\"\r\n"
            "Content-Type: image/jpeg\r\n\r\n").encode() + content + f"\r\n--{boundary}--\r\n".encode()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        connection.request("POST", "/api/jobs", body=body,
                           headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
        response = connection.getresponse()
        assert response.status == 202, response.read()
        return json.loads(response.read())["id"]
    finally:
        connection.close()


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT])
def test_a_stopped_server_deletes_its_queued_uploads(tmp_path, stop):
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    entry = Path(sys.executable).with_name("dflab")
    # PYTHONFAULTHANDLER: should it not stop, SIGABRT makes it print every thread's stack (below).
    # SIGINT back to its default in the child: a pytest-xdist worker ignores it, a child inherits that,
    # and Python then installs no Ctrl+C handler (a server started in the background of a shell alike).
    server = subprocess.Popen([str(entry), "serve", "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, env={**os.environ, "TMPDIR": str(temporary), "PYTHONFAULTHANDLER": "1"},
                              preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        line = server.stdout.readline()
        port = int(re.search(r"http://127\.0\.0\.1:(\d+)/", line).group(1))
        photo = _photo()
        for _ in range(6):  # queued behind the warm-up, which scores on the main thread first
            _submit(port, photo)
        assert list(temporary.glob("dflab-serve-*")), "the uploads were not queued"
        server.send_signal(stop)
        try:  # warm-up and a graceful HTTP shutdown take a while on a loaded machine
            output, _ = server.communicate(timeout=180)
        except subprocess.TimeoutExpired:
            server.send_signal(signal.SIGABRT)
            output, _ = server.communicate(timeout=30)
            pytest.fail(f"dflab serve did not stop within 180 s of {stop.name}; its threads:\n{output[-6000:]}")
    finally:
        if server.poll() is None:
            server.kill()
    assert server.returncode == 0, output
    assert "Traceback" not in output
    assert not list(temporary.glob("dflab-serve-*"))
