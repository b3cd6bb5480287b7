"""Benchmark `dflab serve`: N uploads from C concurrent clients to a local server, against one
`dflab predict FOLDER` run over the same images on the same machine.

    .venv/bin/python benchmarks/bench_serve.py [--images FOLDER] [--requests 500] [--clients 16]
        [--model PATH] [--heatmap] [--no-compare]

Prints p50/p95 latency, errors, images/s and the server's memory (resident size after the first
tenth of the requests, at the end, and its peak), then `dflab predict`'s images/s (its start-up,
measured on one image, taken out). Not a test: numbers depend on the machine.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_IMAGES = ROOT.parent / "shared" / "datasets" / "Task_2_3" / "evaluation"


def dflab_command() -> list[str]:
    entry = Path(sys.executable).with_name("dflab")
    return [str(entry)] if entry.is_file() else [sys.executable, "-m", "dflab"]


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    text = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(rf"{field}:\s+(\d+) kB", text).group(1)) / 1024


def multipart(name: str, content: bytes) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n"
            "Content-Type: application/octet-stream\r\n\r\n").encode()
    return head + content + f"\r\n--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def upload(port: int, path: Path, heatmap: bool) -> tuple[float, int, str]:
    body, content_type = multipart(path.name, path.read_bytes())
    start = time.perf_counter()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    try:
        connection.request("POST", f"/api/predict?heatmap={'true' if heatmap else 'false'}", body=body,
                           headers={"Content-Type": content_type})
        response = connection.getresponse()
        text = response.read().decode("utf-8", "replace")
        return time.perf_counter() - start, response.status, text
    finally:
        connection.close()


def start_server(model: str | None) -> tuple[subprocess.Popen, int]:
    args = dflab_command() + ["serve", "--port", "0", "--max-jobs", "64"] + (["--model", model] if model else [])
    server = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    line = server.stdout.readline()
    match = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
    if not match:
        server.kill()
        sys.exit(f"dflab serve did not start: {line}{server.stdout.read()}")
    threading.Thread(target=server.stdout.read, daemon=True).start()  # drain its output
    return server, int(match.group(1))


def bench_server(images: list[Path], args) -> dict:
    server, port = start_server(args.model)
    try:
        upload(port, images[0], args.heatmap)  # warm-up: model and face detector loaded
        jobs = [images[i % len(images)] for i in range(args.requests)]
        latencies, errors, memory = [], [], {}
        done = 0
        lock = threading.Lock()

        def one(path: Path):
            nonlocal done
            seconds, status, text = upload(port, path, args.heatmap)
            with lock:
                done += 1
                if status == 200:
                    latencies.append(seconds)
                else:
                    errors.append(f"{status} {path.name}: {text[:120]}")
                if done == max(1, args.requests // 10):
                    memory["after_first_tenth_mb"] = rss_mb(server.pid)

        start = time.perf_counter()
        with ThreadPoolExecutor(args.clients) as pool:
            list(pool.map(one, jobs))
        wall = time.perf_counter() - start
        memory["end_mb"] = rss_mb(server.pid)
        memory["peak_mb"] = rss_mb(server.pid, "VmHWM")
        latencies.sort()
        return {"requests": args.requests, "clients": args.clients, "heatmap": args.heatmap, "errors": len(errors),
                "error_examples": errors[:3], "wall_s": round(wall, 2), "images_per_s": round(len(latencies) / wall, 3),
                "p50_s": round(statistics.median(latencies), 3) if latencies else None,
                "p95_s": round(latencies[min(len(latencies) - 1, int(0.95 * len(latencies)))], 3) if latencies else None,
                "memory": {k: round(v, 1) for k, v in memory.items()}}
    finally:
        server.terminate()
        server.wait(timeout=30)


def bench_predict(images: list[Path], args) -> dict:
    folder = Path(tempfile.mkdtemp(prefix="bench-serve-"))
    try:
        for path in images:
            shutil.copy(path, folder / f"{path.parent.name}-{path.name}")
        model = ["--model", args.model] if args.model else []
        extra = ["--heatmap", str(folder / "heatmaps")] if args.heatmap else []

        def run(target: Path) -> float:
            start = time.perf_counter()
            subprocess.run(dflab_command() + ["predict", str(target), "--quiet", *model, *extra], check=True,
                           stdout=subprocess.DEVNULL)
            return time.perf_counter() - start

        one = run(next(folder.iterdir()))
        whole = run(folder)
        return {"images": len(images), "wall_s": round(whole, 2), "startup_and_one_image_s": round(one, 2),
                "images_per_s": round(len(images) / whole, 3),
                "images_per_s_without_startup": round((len(images) - 1) / max(1e-9, whole - one), 3)}
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=Path, default=DEFAULT_IMAGES, help="folder of face images (searched recursively)")
    parser.add_argument("--limit", type=int, default=100, help="distinct images used (requests cycle over them)")
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--model", help="model folder (default: the server's default, the ready detector)")
    parser.add_argument("--heatmap", action="store_true", help="ask for heatmaps (and `dflab predict --heatmap`)")
    parser.add_argument("--no-compare", action="store_true", help="skip the `dflab predict FOLDER` run")
    args = parser.parse_args()
    images = sorted(p for p in args.images.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    if not images:
        sys.exit(f"{args.images}: no images")
    step = max(1, len(images) // args.limit)
    images = images[::step][:args.limit]
    result = {"date": time.strftime("%Y-%m-%d %H:%M"), "cpus": os.cpu_count(), "images": str(args.images),
              "distinct_images": len(images), "model": args.model or "default (ready detector)",
              "serve": bench_server(images, args)}
    print(json.dumps(result["serve"], indent=2), flush=True)
    if not args.no_compare:
        result["predict_folder"] = bench_predict(images, args)
        result["serve_vs_predict"] = round(result["serve"]["images_per_s"] / result["predict_folder"]["images_per_s"], 3)
        result["serve_vs_predict_without_startup"] = round(
            result["serve"]["images_per_s"] / result["predict_folder"]["images_per_s_without_startup"], 3)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
