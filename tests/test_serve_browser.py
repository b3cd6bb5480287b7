"""End to end: `dflab serve` in a subprocess on a free local port, its page driven in headless Chromium.

Chromium is Debian's `chromium` package (`.ci/run` installs it), launched by Playwright through its
executable (Playwright's own browser download is not used). The server runs with its default model,
the ready detector; ``DFLAB_SERVE_TEST_MODEL=/path/to/model`` serves another model instead.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from dflab.detectors.ready import DEFAULT_READY, ready_model_dir

from .conftest import require_shared

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]

pytestmark = [pytest.mark.slow, pytest.mark.shared]


def _model_args() -> list[str]:
    override = os.environ.get("DFLAB_SERVE_TEST_MODEL")
    if override:
        return ["--model", override]
    if not (ready_model_dir(DEFAULT_READY) / "config.json").is_file():
        pytest.skip(f"the ready detector {DEFAULT_READY} is not installed (src/dflab/ready/{DEFAULT_READY}/config.json "
                    "missing): `dflab serve` has no default model to serve")
    return []


@pytest.fixture(scope="module")
def server():
    """The address of a running `dflab serve` (port 0: the server picks a free port and prints it)."""
    args = _model_args()
    entry = Path(sys.executable).with_name("dflab")
    command = [str(entry)] if entry.is_file() else [sys.executable, "-m", "dflab"]
    process = subprocess.Popen(command + ["serve", "--port", "0", *args], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, env={**os.environ, "COLUMNS": "200"})
    try:
        line = process.stdout.readline()  # blocks until the server prints its address (or exits)
        match = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
        assert match, f"dflab serve did not print its address: {line!r} {process.stdout.read() if process.poll() is not None else ''}"
        url = match.group(0)
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(url + "api/health", timeout=5) as answer:
                    assert json.load(answer)["status"] == "ok"
                break
            except OSError:
                assert process.poll() is None and time.monotonic() < deadline, "dflab serve did not come up"
                time.sleep(0.3)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
    if not CHROMIUM.is_file() and not shutil.which("chromium"):
        pytest.skip("chromium is not installed (Debian: apt-get install chromium; .ci/run does it)")
    executable = str(CHROMIUM) if CHROMIUM.is_file() else shutil.which("chromium")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def test_page_scores_a_real_face_and_shows_bad_files(server, browser, tmp_path):
    face = sorted(require_shared("datasets", "Task_2_3", "evaluation", "fake").glob("*.jpg"))[0]
    page = browser.new_page(viewport={"width": 1100, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda err: errors.append(str(err)))
    outside: list[str] = []
    page.on("request", lambda request: None if request.url.startswith((server, "data:", "blob:"))
            else outside.append(request.url))
    page.goto(server)
    _wait_until(page, "document.getElementById('model-name').textContent !== '…'")
    model_name = page.text_content("#model-name")

    page.set_input_files("#file", str(face))
    page.wait_for_selector("#result:not([hidden])", timeout=90_000)
    summary = page.text_content("#summary")
    assert face.name in summary and re.search(r"P\(fake\) \d\.\d{3}", summary), summary
    assert model_name in page.text_content("#details")
    heatmap = page.locator("#heatmap")
    assert heatmap.get_attribute("src").startswith("data:image/png;base64,")
    _wait_until(page, "document.getElementById('heatmap').naturalWidth > 0")
    assert heatmap.is_visible()
    page.screenshot(path=str(tmp_path / "result.png"), full_page=True)
    assert (tmp_path / "result.png").stat().st_size > 10_000

    page.uncheck("#heatmap-toggle")  # the toggle hides the heatmap and keeps the picture
    assert not heatmap.is_visible() and page.locator("#picture").is_visible()
    page.check("#heatmap-toggle")

    with page.expect_download() as download:  # the result as JSON, the fields of `dflab predict --json`
        page.click("#download")
    saved = json.loads(Path(download.value.path()).read_text())
    assert {"detector", "threshold", "results", "photos", "videos"} <= set(saved)
    assert saved["results"][0]["path"] == face.name

    page.click("#card-button")  # the model card, one click away
    assert page.locator("#card-dialog").is_visible() and page.text_content("#card-text").strip()
    page.keyboard.press("Escape")

    page.set_viewport_size({"width": 380, "height": 800})  # phone width: nothing wider than the screen
    assert page.evaluate("document.documentElement.scrollWidth") <= 381
    page.screenshot(path=str(tmp_path / "phone.png"), full_page=True)

    text = tmp_path / "holiday.jpg"
    text.write_text("this is a text file, renamed .jpg\n")
    page.set_input_files("#file", str(text))
    page.wait_for_selector("#error:not([hidden])", timeout=30_000)
    message = page.text_content("#error")
    assert "holiday.jpg" in message and "not an image" in message, message
    assert page.locator("#result").is_hidden()
    page.screenshot(path=str(tmp_path / "error.png"))
    assert not errors, errors
    assert not outside, f"the page fetched from elsewhere: {outside}"
    with urllib.request.urlopen(server + "api/health", timeout=5) as answer:  # the server is still up
        assert json.load(answer)["status"] == "ok"


def test_page_draws_one_curve_per_person_of_a_video(server, browser, tmp_path):
    from .test_video_persons import _two_people

    video = _two_people(tmp_path / "two.mp4")
    page = browser.new_page(viewport={"width": 1100, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda err: errors.append(str(err)))
    page.goto(server)
    page.set_input_files("#file", str(video))
    page.wait_for_selector("#video:not([hidden])", timeout=180_000)
    assert page.locator("#chart polyline").count() == 2
    legend = page.locator("#chart text.legend").all_text_contents()
    assert len(legend) == 2 and sum("(verdict)" in text for text in legend) == 1, legend
    assert "the most fake of 2 people" in page.text_content("#summary")
    page.screenshot(path=str(tmp_path / "persons.png"), full_page=True)
    assert not errors, errors


def _wait_until(page, expression: str, timeout_s: float = 60.0) -> None:
    """Poll ``expression`` from the test side: page.wait_for_function evaluates a string predicate inside
    the page with eval, which the page's Content-Security-Policy (script-src 'self') rightly refuses
    at times; page.evaluate runs through the DevTools protocol, outside the page's CSP."""
    import time

    deadline = time.monotonic() + timeout_s
    while not page.evaluate(expression):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for: {expression}")
        time.sleep(0.1)
