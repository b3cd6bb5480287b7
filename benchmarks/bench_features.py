"""Throughput of the handcrafted feature extractors against decoding alone, and their memory.

For the same image files and the same number of worker processes this measures

* decode-only throughput: a process pool that only decodes each file with ``dflab.media.images.load_image``;
* each extractor's throughput (ELA, block-DCT, spectrum) through ``dflab.media.extraction.extract`` with the
  feature cache disabled (decoding included, as in real use);

and prints images/s and the ratio extractor / decode. The target is ratio >= 0.8 for every
extractor; the script exits with status 1 when one is below it. Each measurement is repeated
(``--repeats``) and the fastest run kept, which damps the noise of other jobs on the machine.
The OS file cache is warmed first, and every pool is started before timing.

Memory: each extractor is also streamed (``features.iter_extract``, each chunk reduced and dropped,
as block-DCT scoring does) over the first quarter of the files and over all of them, sampling the
resident memory of this process and all its descendants (workers included; Linux ``/proc``). Flat
means the peak over all files is within 10% + 20 MiB of the peak over a quarter.

    python benchmarks/bench_features.py --data ../shared/datasets/Task_1 --workers 2 --limit 600
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from dflab.media import extraction as features
from dflab.detectors.handcrafted.block_dct import BlockDCTFeatures
from dflab.detectors.handcrafted.ela import ELAFeatures
from dflab.detectors.handcrafted.spectrum import SpectrumFeatures
from dflab.media.images import ImageError, load_image
from dflab.runtime.memory import keep_freed_memory

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp"}
TARGET_RATIO = 0.8
CHUNK = 16

EXTRACTORS = {
    "ela": ELAFeatures(),
    "block-dct": BlockDCTFeatures(),
    "spectrum": SpectrumFeatures(),
}


def image_files(root: Path, limit: int | None) -> list[str]:
    """Image files under ``root`` (sorted), ``limit`` of them spread evenly over the sorted list."""
    paths = sorted(str(p) for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not paths:
        raise SystemExit(f"{root}: no image files found")
    if limit and limit < len(paths):
        paths = [paths[i] for i in np.linspace(0, len(paths) - 1, limit).round().astype(int)]
    return paths


def _decode_chunk(paths: list[str]) -> int:
    decoded = 0
    for path in paths:
        try:
            decoded += load_image(path).shape[0] > 0
        except ImageError:
            pass
    return decoded


def _decode_pool(workers: int) -> ProcessPoolExecutor:
    # The same start method and per-worker thread limits as dflab.media.extraction's pool.
    method = "forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn"
    return ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context(method),
                               initializer=features._init_worker)


def time_decode(paths: list[str], workers: int, pool: ProcessPoolExecutor | None) -> float:
    chunks = [paths[i:i + CHUNK] for i in range(0, len(paths), CHUNK)]
    started = time.perf_counter()
    if pool is None:
        decoded = sum(_decode_chunk(chunk) for chunk in chunks)
    else:
        decoded = sum(pool.map(_decode_chunk, chunks))
    elapsed = time.perf_counter() - started
    if decoded == 0:
        raise SystemExit("no file could be decoded")
    return elapsed


def time_extract(paths: list[str], extractor, workers: int) -> float:
    started = time.perf_counter()
    features.extract(paths, extractor, workers=workers, cache_dir=False, description="benchmark")
    return time.perf_counter() - started


def _descendants(pid: int) -> list[int]:
    found, stack = [], [pid]
    while stack:
        current = stack.pop()
        found.append(current)
        try:
            for task in os.listdir(f"/proc/{current}/task"):
                with open(f"/proc/{current}/task/{task}/children") as handle:
                    stack += [int(child) for child in handle.read().split()]
        except OSError:
            continue
    return found


def _tree_rss_bytes() -> int:
    total = 0
    for pid in _descendants(os.getpid()):
        try:
            with open(f"/proc/{pid}/status") as handle:
                for line in handle:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
        except OSError:
            pass
    return total


def peak_tree_memory(run) -> int | None:
    """Peak resident memory (bytes) of this process and its descendants while ``run()`` runs."""
    if not Path("/proc/self/status").exists():
        return None
    peak = [_tree_rss_bytes()]
    done = threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], _tree_rss_bytes())
            done.wait(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        run()
    finally:
        done.set()
        sampler.join()
    return peak[0]


def stream(paths: list[str], extractor, workers: int) -> None:
    """Consume features chunk by chunk, keeping one number per image (what scoring does)."""
    kept = []
    for _, results in features.iter_extract(paths, extractor, workers=workers, cache_dir=False,
                                            description="memory"):
        kept += [float(np.mean(value)) if value is not None else np.nan for value, _ in results]


def main(argv: list[str] | None = None) -> int:
    keep_freed_memory()  # as the dflab command does
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="folder searched recursively for images")
    parser.add_argument("--workers", type=int, default=features.default_workers())
    parser.add_argument("--limit", type=int, default=None, help="use this many files (spread over the folder)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per measurement; the fastest is kept")
    parser.add_argument("--no-memory", action="store_true", help="skip the memory measurement")
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = parser.parse_args(argv)
    os.environ.setdefault("DFLAB_QUIET", "1")

    paths = image_files(args.data, args.limit)
    workers = max(1, args.workers)
    for path in paths:  # warm the OS file cache so the first measurement does not pay for the disk
        Path(path).read_bytes()
    print(f"{len(paths)} files under {args.data}, {workers} worker(s), best of {args.repeats}, "
          f"load average {os.getloadavg()[0]:.2f}", flush=True)

    decode_pool = _decode_pool(workers) if workers > 1 else None
    try:
        time_decode(paths[:CHUNK * workers], workers, decode_pool)  # start the workers before timing
        decode_s = min(time_decode(paths, workers, decode_pool) for _ in range(args.repeats))
    finally:
        if decode_pool is not None:
            decode_pool.shutdown()
    rows = [{"stage": "decode only", "seconds": decode_s, "images_per_s": len(paths) / decode_s, "ratio": 1.0}]
    for name, extractor in EXTRACTORS.items():
        # Warm-up run: starts dflab's worker pool (kept for the process) and imports in the workers.
        features.extract(paths[:features.MIN_ITEMS_FOR_WORKERS * 2], extractor, workers=workers, cache_dir=False)
        seconds = min(time_extract(paths, extractor, workers) for _ in range(args.repeats))
        rows.append({"stage": name, "seconds": seconds, "images_per_s": len(paths) / seconds,
                     "ratio": decode_s / seconds})

    if not args.no_memory:
        quarter = paths[: max(len(paths) // 4, features.MIN_ITEMS_FOR_WORKERS)]
        for row in rows[1:]:
            extractor = EXTRACTORS[row["stage"]]
            small = peak_tree_memory(lambda: stream(quarter, extractor, workers))
            full = peak_tree_memory(lambda: stream(paths, extractor, workers))
            if small is not None:
                row.update(peak_mib_quarter=small / 2 ** 20, peak_mib_all=full / 2 ** 20,
                           memory_flat=bool(full <= small * 1.1 + 20 * 2 ** 20))

    print(f"{'stage':<12} {'images/s':>9} {'ratio':>6}  {'peak MiB (1/4 -> all files)':>28}")
    for row in rows:
        memory = (f"{row['peak_mib_quarter']:.0f} -> {row['peak_mib_all']:.0f} "
                  f"({'flat' if row['memory_flat'] else 'GROWS'})" if "peak_mib_all" in row else "")
        print(f"{row['stage']:<12} {row['images_per_s']:>9.1f} {row['ratio']:>6.2f}  {memory:>28}")
    slow = [row["stage"] for row in rows[1:] if row["ratio"] < TARGET_RATIO]
    if args.out:
        args.out.write_text(json.dumps({"data": str(args.data), "files": len(paths), "workers": workers,
                                        "repeats": args.repeats, "load_average": os.getloadavg(),
                                        "target_ratio": TARGET_RATIO, "rows": rows}, indent=2))
    if slow:
        print(f"below the {TARGET_RATIO}x decode target: {', '.join(slow)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
