"""Speed-up of ``--cluster local:N`` over the single-process run, on the handcrafted extractors.

Generates ``--count`` small JPEG faces (``--size`` px, :func:`dflab.data.synthetic.make_face`, every file
different), trains ``ela-logreg`` on 64 other generated faces, then scores the folder as ``dflab predict
--faces whole`` does: once in this process with one feature worker (the baseline), and once on a local
Dask cluster of N single-threaded workers for every N of ``--workers``. Each run starts with an empty
feature cache; the cluster is started and the model loaded on its workers before the clock starts
(start-up, a few seconds, is printed apart). Efficiency = speed-up / N; target (issue 18) >= 0.8.

Usage: python benchmarks/bench_cluster.py [--count 3000] [--size 64] [--workers 1,2] [--workdir /tmp]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_memory import generate_faces  # noqa: E402

from dflab.runtime.progress import set_quiet  # noqa: E402

TARGET_EFFICIENCY = 0.8


def train_model(where: Path, size: int) -> Path:
    import cv2

    from dflab.data.synthetic.faces import make_face
    from dflab.detectors import create

    rng = np.random.default_rng(1)
    images = [make_face(rng, size) for _ in range(64)]
    for image in images[1::2]:
        image[size // 4:3 * size // 4, size // 4:3 * size // 4] = cv2.GaussianBlur(
            image[size // 4:3 * size // 4, size // 4:3 * size // 4], (0, 0), 2)
    create("ela-logreg", workers=1, cache_dir=str(where / "train-cache")).fit((images, np.arange(64) % 2)).save(
        where / "ela-logreg")
    return where / "ela-logreg"


def fresh_cache(work: Path, name: str) -> None:
    """An empty feature cache for the next run (worker processes inherit it when they start)."""
    cache = work / f"cache-{name}"
    shutil.rmtree(cache, ignore_errors=True)
    os.environ["DFLAB_CACHE"] = str(cache)


def single_process(model: Path, files: list[Path]) -> tuple[float, list[dict]]:
    from dflab.inference.models import load_scorer
    from dflab.inference.predict import PredictOptions, predict_in_chunks

    scorer = load_scorer(model, None, 1)
    started = time.perf_counter()
    rows = [row for result in predict_in_chunks(scorer, files, PredictOptions(faces="whole")) for row in result["rows"]]
    return time.perf_counter() - started, rows


def on_local_cluster(model: Path, files: list[Path], n_workers: int) -> tuple[float, float, list[dict]]:
    from dflab.inference.distributed import predict_on_cluster, scorer_loader
    from dflab.inference.predict import PredictOptions
    from dflab.runtime.cluster import OnCluster, connect

    options = PredictOptions(faces="whole")
    started = time.perf_counter()
    with connect(f"local:{n_workers}") as client:
        client.wait_for_workers(n_workers)
        cluster = OnCluster(client, scorer_loader(model, None))
        # Warm-up outside the clock: the workers import dflab and load the model (the worker plugin runs
        # once per worker when it is registered, so this registration is the one-off cost).
        for _ in predict_on_cluster(cluster, files[:n_workers], options, chunk_size=1):
            pass
        start_up = time.perf_counter() - started
        started = time.perf_counter()
        rows = [row for result in predict_on_cluster(cluster, files, options) for row in result["rows"]]
        return start_up, time.perf_counter() - started, rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=3000)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()))
    args = parser.parse_args()
    set_quiet(True)  # progress bars would land inside the table (the cluster workers inherit this)
    work = Path(tempfile.mkdtemp(prefix="dflab-bench-cluster-", dir=args.workdir))
    failed = False
    try:
        files = generate_faces(work / "faces", args.count, args.size)
        model = train_model(work, args.size)
        print(f"{args.count} JPEGs of {args.size} px; ela-logreg; load average {os.getloadavg()[0]:.1f} at start")
        fresh_cache(work, "single")
        base_wall, base_rows = single_process(model, files)
        expected = sorted(base_rows, key=lambda row: row["path"])
        print("| run | start-up s | scoring s | images/s | speed-up | per worker |")
        print("|---|---|---|---|---|---|")
        print(f"| single process | - | {base_wall:.1f} | {args.count / base_wall:.0f} | 1.00 | - |", flush=True)
        for n_workers in [int(n) for n in args.workers.split(",")]:
            fresh_cache(work, f"cluster-{n_workers}")
            start_up, wall, rows = on_local_cluster(model, files, n_workers)
            same = sorted(rows, key=lambda row: row["path"]) == expected
            speed_up = base_wall / wall
            efficiency = speed_up / n_workers
            failed |= efficiency < TARGET_EFFICIENCY or not same
            print(f"| local:{n_workers} | {start_up:.1f} | {wall:.1f} | {args.count / wall:.0f} | {speed_up:.2f} | "
                  f"{efficiency:.2f}{'' if same else ' (ROWS DIFFER)'} |", flush=True)
        print(f"load average {os.getloadavg()[0]:.1f} at the end")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
