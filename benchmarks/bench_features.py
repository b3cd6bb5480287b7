"""Throughput of the handcrafted feature extractors against the codec work each cannot avoid, and their memory.

Each extractor is compared with its own limit, run the same way (``dflab.media.feature_extraction.extract``
over the same files, the same worker processes, the same chunks, the feature cache off), with only
the codec work in it:

* block-DCT and spectrum: decoding the file (``decode``);
* ELA: decoding the file, then the JPEG round trips of the grey image at each of its qualities
  (``decode + ELA JPEG round trips``), with ELA's own codec (OpenCV's libjpeg-turbo).

Rounds interleave the runs (limit, extractor, next limit, ...) and each extractor's ratio is the
median over rounds of ``limit seconds / extractor seconds``, so a changing load on the machine weighs
on both sides alike. Target (issue 18): every ratio >= 0.8; the script exits with status 1 when one
is below it. The OS file cache is warmed first, and the worker pool started before timing.

Memory: each extractor is also streamed (``features.iter_extract``, each chunk reduced and dropped,
as block-DCT scoring does) over the first quarter of the files and over all of them, sampling the
resident memory of this process and all its descendants (workers included; Linux ``/proc``). Flat
means the peak over all files is within 10% + 20 MiB of the peak over a quarter.

    python benchmarks/bench_features.py --data ../shared/datasets/Task_1 --workers 2 --limit 600
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from pathlib import Path

from dataclasses import dataclass

import cv2
import numpy as np

from dflab.detectors.handcrafted.block_dct import BlockDCTFeatures
from dflab.detectors.handcrafted.ela import ELA_ENCODER, ELAFeatures
from dflab.detectors.handcrafted.spectrum import SpectrumFeatures
from dflab.media import feature_extraction as features
from dflab.media.images import jpeg_round_trip
from dflab.runtime.memory import keep_freed_memory

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp"}
TARGET_RATIO = 0.8

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


@dataclass(frozen=True)
class DecodeOnly:
    """The limit of block-DCT and spectrum: ``extract`` decodes the file, and nothing else is done."""

    def __call__(self, image: np.ndarray) -> np.ndarray:
        return np.zeros(1, np.float32)

    def cache_key(self) -> str:
        return "bench-decode-only"


@dataclass(frozen=True)
class DecodeAndRoundTrips:
    """ELA's limit: the decoded file's grey image JPEG-coded and decoded at each of ELA's qualities."""

    qualities: tuple[int, ...]
    color: bool = False

    def __call__(self, image: np.ndarray) -> np.ndarray:
        picture = image if self.color else cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
        for quality in self.qualities:
            jpeg_round_trip(picture, quality, encoder=ELA_ENCODER)
        return np.zeros(1, np.float32)

    def cache_key(self) -> str:
        return f"bench-round-trips-{self.qualities}-{self.color}"


def limit_of(extractor) -> tuple[str, object]:
    if isinstance(extractor, ELAFeatures):
        return "decode + ELA JPEG round trips", DecodeAndRoundTrips(extractor.qualities, extractor.color)
    return "decode", DecodeOnly()


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
    parser.add_argument("--repeats", type=int, default=15, help="rounds (each times every limit and extractor once)")
    parser.add_argument("--no-memory", action="store_true", help="skip the memory measurement")
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = parser.parse_args(argv)
    os.environ.setdefault("DFLAB_QUIET", "1")

    paths = image_files(args.data, args.limit)
    workers = max(1, args.workers)
    for path in paths:  # warm the OS file cache so the first measurement does not pay for the disk
        Path(path).read_bytes()
    print(f"{len(paths)} files under {args.data}, {workers} worker(s), median of {args.repeats} rounds, "
          f"load average {os.getloadavg()[0]:.2f}", flush=True)

    rows = []
    for name, extractor in EXTRACTORS.items():
        limit_name, limit = limit_of(extractor)
        rows.append({"stage": name, "limit": limit_name, "extractor": extractor, "limit_extractor": limit,
                     "seconds": [], "limit_seconds": [], "ratios": []})
    # Warm-up run: starts dflab's worker pool (kept for the process) and imports in the workers.
    for row in rows:
        for extractor in (row["limit_extractor"], row["extractor"]):
            features.extract(paths[:features.MIN_ITEMS_FOR_WORKERS * 2], extractor, workers=workers, cache_dir=False)
    for _ in range(args.repeats):
        for row in rows:
            limit_s = time_extract(paths, row["limit_extractor"], workers)
            seconds = time_extract(paths, row["extractor"], workers)
            row["limit_seconds"].append(limit_s)
            row["seconds"].append(seconds)
            row["ratios"].append(limit_s / seconds)
    for row in rows:
        row["images_per_s"] = len(paths) / float(np.median(row["seconds"]))
        row["limit_images_per_s"] = len(paths) / float(np.median(row["limit_seconds"]))
        row["ratio"] = float(np.median(row["ratios"]))

    if not args.no_memory:
        quarter = paths[: max(len(paths) // 4, features.MIN_ITEMS_FOR_WORKERS)]
        for row in rows:
            extractor = row["extractor"]
            small = peak_tree_memory(lambda: stream(quarter, extractor, workers))
            full = peak_tree_memory(lambda: stream(paths, extractor, workers))
            if small is not None:
                row.update(peak_mib_quarter=small / 2 ** 20, peak_mib_all=full / 2 ** 20,
                           memory_flat=bool(full <= small * 1.1 + 20 * 2 ** 20))

    print(f"{'extractor':<10} {'images/s':>9} {'limit':<30} {'images/s':>9} {'ratio':>6} {'per round':<18} "
          f"{'peak MiB (1/4 -> all files)':>28}")
    for row in rows:
        memory = (f"{row['peak_mib_quarter']:.0f} -> {row['peak_mib_all']:.0f} "
                  f"({'flat' if row['memory_flat'] else 'GROWS'})" if "peak_mib_all" in row else "")
        rounds = ", ".join(f"{ratio:.2f}" for ratio in row["ratios"])
        print(f"{row['stage']:<10} {row['images_per_s']:>9.1f} {row['limit']:<30} {row['limit_images_per_s']:>9.1f} "
              f"{row['ratio']:>6.2f} {rounds:<18} {memory:>28}")
    slow = [row["stage"] for row in rows if row["ratio"] < TARGET_RATIO]
    if args.out:
        kept = [{k: v for k, v in row.items() if k not in ("extractor", "limit_extractor")} for row in rows]
        args.out.write_text(json.dumps({"data": str(args.data), "files": len(paths), "workers": workers,
                                        "repeats": args.repeats, "load_average": os.getloadavg(),
                                        "target_ratio": TARGET_RATIO, "rows": kept}, indent=2))
    if slow:
        print(f"below {TARGET_RATIO}x of their limit: {', '.join(slow)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
