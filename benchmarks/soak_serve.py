"""Soak test of `dflab serve`: C clients upload for an hour a mix of good photos, good videos and the
hostile kinds of the API tests, and the server is watched for errors, latency, memory and file
descriptors, window by window.

    .venv/bin/python benchmarks/soak_serve.py [--minutes 60] [--window 10] [--clients 16]
        [--seed 0] [--out soak.json]

Good uploads: face crops of Task_2_3 and the Celeb-DF sample (``/api/predict``, heatmaps on or off)
and the FaceForensics++ / DeeperForensics clips (``/api/jobs`` then polling, 8 frames). Hostile
uploads: empty, text, a zip, a PDF named .mp4, PNG decompression-bomb headers, a truncated JPEG, a
cut MP4, an upload over the size limit, a body that is not multipart, a broken multipart body, an
option out of range. A good upload counts as an error unless it is answered 200 (or 202 and then
``done``); a hostile one unless it is answered 4xx with a one-line ``detail``.

Prints one JSON line per window (errors, p50/p95 latency of photos and of videos, the server's
resident memory, open file descriptors and threads at the window's end, upload folders left in the
temporary directory), then a summary with the targets: 0 errors on good uploads, memory and
descriptors flat after the first window (warm-up), p95 steady. Not a test: numbers depend on the
machine and on what else runs on it.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_serve import cpu_seconds, multipart, rss_mb, start_server  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "datasets"


def png_header(width: int, height: int) -> bytes:
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))


def hostile_uploads(photo: Path, video: Path, max_upload_bytes: int) -> list[tuple[str, bytes, str]]:
    """(file name, bytes, query string): each must be answered 4xx with one line."""
    return [
        ("empty.jpg", b"", ""),
        ("holiday.jpg", b"Dear all, photos from the holiday attached.\n", ""),
        ("archive.png", b"PK\x03\x04" + bytes(range(256)) * 4, ""),
        ("document.mp4", b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n" + b"0" * 500, ""),
        ("bomb.png", png_header(10_000, 10_000), ""),
        ("huge-bomb.png", png_header(40_000, 40_000), ""),
        ("cut.jpg", photo.read_bytes()[:1500], ""),
        ("cut.mp4", b"\x00\x00\x00\x20ftypisom\x00\x00\x02\x00isomiso2avc1mp41" + b"\x00" * 200, ""),
        ("big.jpg", b"\xff\xd8\xff\xe0" + os.urandom(max_upload_bytes + 2 ** 16), ""),
        ("frames.mp4", video.read_bytes(), "?frames=0"),
    ]


def request(port: int, method: str, url: str, body: bytes | None = None,
            content_type: str | None = None) -> tuple[int, str]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=900)
    try:
        connection.request(method, url, body=body, headers={"Content-Type": content_type} if content_type else {})
        response = connection.getresponse()
        return response.status, response.read().decode("utf-8", "replace")
    except (ConnectionError, http.client.HTTPException) as err:  # the server cut an oversize upload short
        return -1, f"{type(err).__name__}: {err}"
    finally:
        connection.close()


def one_line_refusal(status: int, text: str) -> bool:
    if not 400 <= status < 500:
        return False
    try:
        detail = json.loads(text)["detail"]
    except (ValueError, KeyError, TypeError):
        return False
    return isinstance(detail, str) and bool(detail.strip()) and "\n" not in detail


class Soak:
    def __init__(self, args, server, port: int, photos: list[Path], videos: list[Path], hostile: list):
        self.args, self.server, self.port = args, server, port
        self.photos, self.videos, self.hostile = photos, videos, hostile
        self.lock = threading.Lock()
        self.window: dict = self._empty_window()
        self.stop = threading.Event()

    @staticmethod
    def _empty_window() -> dict:
        return {"good": 0, "good_errors": [], "hostile": 0, "hostile_wrong": [], "photo_s": [], "video_s": []}

    def record(self, key: str, value) -> None:
        """key: photo_s / video_s (a good upload answered, with its seconds), good_errors,
        hostile_ok or hostile_wrong."""
        with self.lock:
            if key != "hostile_ok":
                self.window[key].append(value)
            self.window["hostile" if key.startswith("hostile") else "good"] += 1

    def good_photo(self, rng: random.Random) -> None:
        path = rng.choice(self.photos)
        body, content_type = multipart(path.name, path.read_bytes())
        heatmap = "true" if rng.random() < 0.3 else "false"
        start = time.perf_counter()
        status, text = request(self.port, "POST", f"/api/predict?heatmap={heatmap}", body, content_type)
        seconds = time.perf_counter() - start
        if status == 200 and json.loads(text)["results"]:
            self.record("photo_s", seconds)
        else:
            self.record("good_errors", f"{status} {path.name}: {text[:160]}")

    def good_video(self, rng: random.Random) -> None:
        path = rng.choice(self.videos)
        body, content_type = multipart(path.name, path.read_bytes())
        start = time.perf_counter()
        status, text = request(self.port, "POST", "/api/jobs?frames=8&heatmap=false", body, content_type)
        if status != 202:
            self.record("good_errors", f"{status} {path.name}: {text[:160]}")
            return
        job_id = json.loads(text)["id"]
        while True:
            status, text = request(self.port, "GET", f"/api/jobs/{job_id}")
            job = json.loads(text) if status == 200 else {}
            if status != 200 or job.get("status") == "failed":
                self.record("good_errors", f"{status} {path.name} job: {text[:160]}")
                return
            if job["status"] == "done":
                self.record("video_s", time.perf_counter() - start)
                return
            time.sleep(0.25)

    def bad_upload(self, rng: random.Random) -> None:
        kind = rng.randrange(len(self.hostile) + 2)
        if kind == len(self.hostile):
            name, (status, text) = "raw body", request(self.port, "POST", "/api/predict", b"raw bytes", "image/jpeg")
        elif kind == len(self.hostile) + 1:
            name, (status, text) = "broken multipart", request(
                self.port, "POST", "/api/predict", b"--b\r\ngarbage", "multipart/form-data; boundary=b")
        else:
            name, content, query = self.hostile[kind]
            body, content_type = multipart(name, content)
            status, text = request(self.port, "POST", f"/api/predict{query}", body, content_type)
        # An oversize upload may be cut short by the server before the client finished sending it.
        if one_line_refusal(status, text) or (name == "big.jpg" and status == -1):
            self.record("hostile_ok", name)
        else:
            self.record("hostile_wrong", f"{status} {name}: {text[:160]}")

    def client(self, seed: int) -> None:
        rng = random.Random(seed)
        while not self.stop.is_set():
            draw = rng.random()
            try:
                if draw < self.args.video_share:
                    self.good_video(rng)
                elif draw < self.args.video_share + self.args.hostile_share:
                    self.bad_upload(rng)
                else:
                    self.good_photo(rng)
            except Exception as err:  # a crash of the client is recorded, never silent
                self.record("good_errors", f"client: {type(err).__name__}: {err}")

    def take_window(self) -> dict:
        with self.lock:
            window, self.window = self.window, self._empty_window()
        return window


def percentile(values: list[float], q: float) -> float | None:
    values = sorted(values)
    return round(values[min(len(values) - 1, int(q * len(values)))], 3) if values else None


def server_state(pid: int) -> dict:
    upload_folders = sum(1 for p in Path(tempfile.gettempdir()).glob("dflab-serve-*"))
    return {"rss_mb": round(rss_mb(pid), 1), "peak_rss_mb": round(rss_mb(pid, "VmHWM"), 1),
            "open_fds": len(os.listdir(f"/proc/{pid}/fd")), "threads": len(os.listdir(f"/proc/{pid}/task")),
            "upload_folders": upload_folders, "cpu_s": round(cpu_seconds(pid), 1),
            # What else ran: latency on a shared machine moves with its load, not only the server's.
            "machine_load_1min": round(os.getloadavg()[0], 2)}


def summarise(windows: list[dict]) -> dict:
    after_warm_up = windows[1:] or windows
    rss = [w["server"]["rss_mb"] for w in after_warm_up]
    fds = [w["server"]["open_fds"] for w in after_warm_up]
    p95 = [w["photo_p95_s"] for w in after_warm_up if w["photo_p95_s"] is not None]
    return {
        "windows": len(windows), "good_uploads": sum(w["good"] for w in windows), "good_errors": sum(w["good_errors"] for w in windows),
        "hostile_uploads": sum(w["hostile"] for w in windows),
        "hostile_wrong_answers": sum(w["hostile_wrong"] for w in windows),
        "rss_mb_after_warm_up": {"min": min(rss), "max": max(rss), "first": rss[0], "last": rss[-1]},
        "open_fds_after_warm_up": {"min": min(fds), "max": max(fds)},
        "photo_p95_s_after_warm_up": {"min": min(p95), "max": max(p95)} if p95 else None,
        "targets": {
            "no_errors_on_good_uploads": sum(w["good_errors"] for w in windows) == 0,
            # Flat: the last window holds no more than 5% (memory) or 4 descriptors more than the first
            # after warm-up: an allocator's high-water mark moves a little, a leak keeps climbing.
            "memory_flat": rss[-1] <= rss[0] * 1.05,
            "descriptors_flat": fds[-1] <= fds[0] + 4,
            "p95_steady": (max(p95) <= 1.5 * min(p95)) if p95 else False,
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--window", type=float, default=10.0, help="minutes per reported window")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--video-share", type=float, default=0.1, help="share of requests that are videos")
    parser.add_argument("--hostile-share", type=float, default=0.25, help="share of requests that are hostile")
    parser.add_argument("--max-upload-mb", type=float, default=8.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="also write the windows and summary as JSON here")
    args = parser.parse_args()

    photos = sorted((SHARED / "Task_2_3" / "evaluation").rglob("*.jpg"))[::20] + sorted(
        (SHARED / "celebdf_sample").rglob("*.png"))[::5] + sorted((SHARED / "celebdf_sample").rglob("*.jpg"))[::5]
    videos = sorted((SHARED / "videos").rglob("*.mp4"))
    if not photos or not videos:
        sys.exit(f"{SHARED}: the shared photos and videos are needed")
    max_upload_bytes = int(args.max_upload_mb * 2 ** 20)
    hostile = hostile_uploads(photos[0], videos[0], max_upload_bytes)

    server, port = start_server(None, ["--max-upload-mb", str(args.max_upload_mb)])
    soak = Soak(args, server, port, photos, videos, hostile)
    header = {"date": time.strftime("%Y-%m-%d %H:%M"), "cpus": os.cpu_count(), "minutes": args.minutes,
              "clients": args.clients, "photos": len(photos), "videos": len(videos),
              "video_share": args.video_share, "hostile_share": args.hostile_share, "seed": args.seed,
              "server_at_start": server_state(server.pid)}
    print(json.dumps(header), flush=True)
    threads = [threading.Thread(target=soak.client, args=(args.seed * 1000 + i,), daemon=True)
               for i in range(args.clients)]
    windows = []
    try:
        for thread in threads:
            thread.start()
        start = time.monotonic()
        for index in range(max(1, round(args.minutes / args.window))):
            time.sleep(max(0.0, start + (index + 1) * args.window * 60 - time.monotonic()))
            taken = soak.take_window()
            window = {"window": index + 1, "minutes": round((time.monotonic() - start) / 60, 1),
                      "good": taken["good"], "good_errors": len(taken["good_errors"]),
                      "hostile": taken["hostile"], "hostile_wrong": len(taken["hostile_wrong"]),
                      "photos": len(taken["photo_s"]), "photo_p50_s": percentile(taken["photo_s"], 0.5),
                      "photo_p95_s": percentile(taken["photo_s"], 0.95),
                      "videos": len(taken["video_s"]), "video_p50_s": percentile(taken["video_s"], 0.5),
                      "video_p95_s": percentile(taken["video_s"], 0.95),
                      "server": server_state(server.pid),
                      "error_examples": (taken["good_errors"] + taken["hostile_wrong"])[:5]}
            print(json.dumps(window), flush=True)
            windows.append(window)
            if server.poll() is not None:
                sys.exit(f"dflab serve exited with status {server.returncode}")
    finally:
        soak.stop.set()
        for thread in threads:
            thread.join(timeout=120)
        server.terminate()
        server.wait(timeout=30)
    summary = summarise(windows)
    summary["upload_folders_after_stop"] = sum(1 for _ in Path(tempfile.gettempdir()).glob("dflab-serve-*"))
    result = {**header, "windows": windows, "summary": summary}
    print(json.dumps(result["summary"], indent=2))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
