"""Benchmark `dflab serve`: N uploads from C concurrent clients to a local server, against one
`dflab predict FOLDER` run over the same images on the same machine.

    .venv/bin/python benchmarks/bench_serve.py [--images FOLDER] [--requests 500] [--clients 16]
        [--model PATH] [--heatmap] [--no-compare]

Prints p50/p95 latency, errors, images/s, CPU seconds per image and the server's memory (resident
size after each tenth of the requests, at the end, and its peak), against `dflab predict`'s
images/s and CPU per image (its start-up, measured on one image, taken out). Server batches and
`dflab predict` runs alternate (``--rounds``), so a changing load on the machine weighs on both.
Not a test: numbers depend on the machine.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import resource
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


def start_server(model: str | None, extra: list[str] = ()) -> tuple[subprocess.Popen, int]:
    args = (dflab_command() + ["serve", "--port", "0", "--max-jobs", "64"] + (["--model", model] if model else [])
            + list(extra))
    server = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    line = server.stdout.readline()
    match = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
    if not match:
        server.kill()
        sys.exit(f"dflab serve did not start: {line}{server.stdout.read()}")
    threading.Thread(target=server.stdout.read, daemon=True).start()  # drain its output
    return server, int(match.group(1))


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime, all threads


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def serve_round(server, port: int, jobs: list[Path], args, memory: dict, counter: list) -> dict:
    latencies, errors = [], []
    lock = threading.Lock()

    def one(path: Path):
        seconds, status, text = upload(port, path, args.heatmap)
        with lock:
            counter[0] += 1
            if status == 200:
                latencies.append(seconds)
            else:
                errors.append(f"{status} {path.name}: {text[:120]}")
            if counter[0] == max(1, args.requests // 10):
                memory["after_first_tenth_mb"] = rss_mb(server.pid)
            if counter[0] % max(1, args.requests // 10) == 0:  # resident size after each tenth
                memory.setdefault("by_tenth_mb", []).append(round(rss_mb(server.pid), 1))

    cpu, start = cpu_seconds(server.pid), time.perf_counter()
    with ThreadPoolExecutor(args.clients) as pool:
        list(pool.map(one, jobs))
    wall, cpu = time.perf_counter() - start, cpu_seconds(server.pid) - cpu
    return {"requests": len(jobs), "errors": len(errors), "error_examples": errors[:3], "wall_s": round(wall, 2),
            "images_per_s": round(len(latencies) / wall, 3), "cpu_s_per_image": round(cpu / max(1, len(latencies)), 4),
            "latencies": latencies}


def predict_run(target: Path, args, heatmaps: Path) -> tuple[float, float]:
    model = ["--model", args.model] if args.model else []
    extra = ["--heatmap", str(heatmaps)] if args.heatmap else []
    cpu, start = children_cpu(), time.perf_counter()
    subprocess.run(dflab_command() + ["predict", str(target), "--quiet", *model, *extra], check=True,
                   stdout=subprocess.DEVNULL)
    return time.perf_counter() - start, children_cpu() - cpu


def run_benchmark(images: list[Path], args) -> dict:
    """Rounds that alternate a server batch and a `dflab predict FOLDER` run, so that a machine
    whose load changes (a training running beside) weighs on both alike."""
    folder = Path(tempfile.mkdtemp(prefix="bench-serve-"))
    server, port = start_server(args.model)
    try:
        for path in images:
            shutil.copy(path, folder / f"{path.parent.name}-{path.name}")
        heatmaps = Path(tempfile.mkdtemp(prefix="bench-serve-heatmaps-"))
        upload(port, images[0], args.heatmap)  # warm-up: model and face detector loaded
        one_wall, one_cpu = (0.0, 0.0) if args.no_compare else predict_run(next(folder.iterdir()), args, heatmaps)
        memory, counter, rounds = {}, [0], []
        per_round = max(1, args.requests // args.rounds)
        jobs = [images[i % len(images)] for i in range(per_round * args.rounds)]
        for r in range(args.rounds):
            served = serve_round(server, port, jobs[r * per_round:(r + 1) * per_round], args, memory, counter)
            entry = {"serve": served}
            if not args.no_compare:
                wall, cpu = predict_run(folder, args, heatmaps)
                entry["predict"] = {"images": len(images), "wall_s": round(wall, 2),
                                    "images_per_s": round(len(images) / wall, 3),
                                    "images_per_s_without_startup": round((len(images) - 1) / max(1e-9, wall - one_wall), 3),
                                    "cpu_s_per_image_without_startup": round((cpu - one_cpu) / (len(images) - 1), 4)}
                entry["ratio_images_per_s"] = round(served["images_per_s"] / entry["predict"]["images_per_s_without_startup"], 3)
                entry["ratio_cpu_per_image"] = round(entry["predict"]["cpu_s_per_image_without_startup"]
                                                     / max(1e-9, served["cpu_s_per_image"]), 3)
            print(json.dumps({k: ({kk: vv for kk, vv in v.items() if kk != "latencies"} if isinstance(v, dict) else v)
                              for k, v in entry.items()}), flush=True)
            rounds.append(entry)
        memory["end_mb"] = rss_mb(server.pid)
        memory["peak_mb"] = rss_mb(server.pid, "VmHWM")
        latencies = sorted(x for e in rounds for x in e["serve"].pop("latencies"))
        wall = sum(e["serve"]["wall_s"] for e in rounds)
        summary = {"requests": len(jobs), "clients": args.clients, "heatmap": args.heatmap,
                   "errors": sum(e["serve"]["errors"] for e in rounds),
                   "images_per_s": round(len(latencies) / wall, 3),
                   "p50_s": round(statistics.median(latencies), 3) if latencies else None,
                   "p95_s": round(latencies[min(len(latencies) - 1, int(0.95 * len(latencies)))], 3) if latencies else None,
                   "memory": {k: round(v, 1) if isinstance(v, float) else v for k, v in memory.items()}}
        if not args.no_compare:
            summary["predict_startup_and_one_image_s"] = round(one_wall, 2)
            summary["median_ratio_images_per_s"] = statistics.median(e["ratio_images_per_s"] for e in rounds)
            summary["median_ratio_cpu_per_image"] = statistics.median(e["ratio_cpu_per_image"] for e in rounds)
        return {"summary": summary, "rounds": rounds}
    finally:
        server.terminate()
        server.wait(timeout=30)
        shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=Path, default=DEFAULT_IMAGES, help="folder of face images (searched recursively)")
    parser.add_argument("--limit", type=int, default=100, help="distinct images used (requests cycle over them)")
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--model", help="model folder (default: the server's default, the ready detector)")
    parser.add_argument("--heatmap", action="store_true", help="ask for heatmaps (and `dflab predict --heatmap`)")
    parser.add_argument("--rounds", type=int, default=3, help="server batches alternating with `dflab predict` runs")
    parser.add_argument("--no-compare", action="store_true", help="skip the `dflab predict FOLDER` runs")
    args = parser.parse_args()
    images = sorted(p for p in args.images.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    if not images:
        sys.exit(f"{args.images}: no images")
    step = max(1, len(images) // args.limit)
    images = images[::step][:args.limit]
    result = {"date": time.strftime("%Y-%m-%d %H:%M"), "cpus": os.cpu_count(), "images": str(args.images),
              "distinct_images": len(images), "model": args.model or "default (ready detector)",
              **run_benchmark(images, args)}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
