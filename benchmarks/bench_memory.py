"""Peak memory of ``dflab predict`` / ``dflab evaluate`` on big folders: does it stay flat with the input?

Generates small JPEG faces (``--size`` px, from :func:`dflab.data.synthetic.faces.make_face`; fakes carry a blurred,
re-compressed patch) into a temporary folder, every file different (its index is written into its
pixels, so the per-file feature cache never serves one file for another), then runs the ``dflab``
command on the first N files for every N of ``--counts`` and reports the command's peak RSS
(``/usr/bin/time -v``: the largest of the process and the workers it waited for) and its images/s
(start-up included). Models: ``ela`` = ``ela-logreg`` trained on 64 generated faces; ``cnn`` = an
untrained EfficientNet-Lite0 at ``--size`` px (its speed and memory do not depend on its weights).
The feature cache starts empty for every run. Target (issue 18): the peak at the largest count
within 10% of the peak at the smallest, and under 2 GB.

Usage: python benchmarks/bench_memory.py [--counts 10000,50000,100000] [--models ela,cnn]
       [--commands predict,evaluate] [--cnn-counts 2000,5000,10000] [--size 64] [--workdir /tmp]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

TARGET_GROWTH = 0.10
TARGET_PEAK_BYTES = 2 * 2**30


def generate_faces(root: Path, count: int, size: int, seed: int = 0) -> list[Path]:
    """``count`` JPEGs alternately under ``root/real`` and ``root/fake``, each one unique."""
    from dflab.data.synthetic.faces import make_face

    rng = np.random.default_rng(seed)
    pool = [make_face(rng, size) for _ in range(32)]
    (root / "real").mkdir(parents=True, exist_ok=True)
    (root / "fake").mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(count):
        image = pool[index % len(pool)].copy()
        fake = index % 2 == 1
        if fake:  # a pasted region at a lower resolution
            half = size // 2
            patch = cv2.resize(cv2.resize(image[:half, :half], (half // 4, half // 4)), (half, half))
            image[size // 4:size // 4 + half, size // 4:size // 4 + half] = patch
        image[0, :4] = np.frombuffer(index.to_bytes(12, "little"), np.uint8).reshape(4, 3)  # unique content
        path = root / ("fake" if fake else "real") / f"{index:06d}.jpg"
        cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])
        paths.append(path)
    return paths


def subset_folder(paths: list[Path], count: int, where: Path) -> Path:
    """A folder with the first ``count`` files as hard links (no copy), in the same real/fake layout."""
    folder = where / f"first-{count}"
    if not folder.exists():
        for path in paths[:count]:
            target = folder / path.parent.name / path.name
            target.parent.mkdir(parents=True, exist_ok=True)
            os.link(path, target)
    return folder


def make_models(where: Path, size: int) -> dict[str, Path]:
    import torch

    from dflab.detectors import create
    from dflab.data.synthetic.faces import make_face

    rng = np.random.default_rng(1)
    images = [make_face(rng, size) for _ in range(64)]
    labels = np.arange(64) % 2
    for image in images[1::2]:
        image[size // 4:3 * size // 4, size // 4:3 * size // 4] = cv2.GaussianBlur(
            image[size // 4:3 * size // 4, size // 4:3 * size // 4], (0, 0), 2)
    ela = create("ela-logreg", workers=1, cache_dir=str(where / "train-cache")).fit((images, labels))
    ela.save(where / "ela-logreg")
    cnn = create("efficientnet-lite0", input_size=size, pretrained=False, device="cpu")
    torch.manual_seed(0)
    cnn.model_ = cnn.build_model(pretrained=False).eval()
    cnn.save(where / "lite0")
    return {"ela": where / "ela-logreg", "cnn": where / "lite0"}


def run_measured(command: list[str], env: dict) -> tuple[float, float, str]:
    """(peak RSS in bytes, wall seconds, stderr tail) of ``command`` under ``/usr/bin/time -v``."""
    started = time.perf_counter()
    done = subprocess.run(["/usr/bin/time", "-v", *command], capture_output=True, text=True, env=env)
    wall = time.perf_counter() - started
    match = re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr)
    if done.returncode != 0 or match is None:
        raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}): {done.stderr[-800:]}")
    return int(match.group(1)) * 1024, wall, done.stderr


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--counts", default="10000,50000,100000")
    parser.add_argument("--cnn-counts", default="", help="Counts for the CNN (default: --counts).")
    parser.add_argument("--models", default="ela,cnn")
    parser.add_argument("--commands", default="predict,evaluate")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()))
    args = parser.parse_args()
    counts = {"ela": [int(c) for c in args.counts.split(",")]}
    counts["cnn"] = [int(c) for c in (args.cnn_counts or args.counts).split(",")]
    models = args.models.split(",")
    work = Path(tempfile.mkdtemp(prefix="dflab-bench-memory-", dir=args.workdir))
    failed = False
    try:
        started = time.perf_counter()
        paths = generate_faces(work / "all", max(max(counts[m]) for m in models), args.size)
        print(f"generated {len(paths)} JPEGs of {args.size} px in {time.perf_counter() - started:.0f} s "
              f"({sum(p.stat().st_size for p in paths) / 2**20:.0f} MB)", flush=True)
        model_paths = make_models(work, args.size)
        print("| command | model | images | peak RSS (MB) | wall s | images/s |")
        print("|---|---|---|---|---|---|")
        for model in models:
            for command in args.commands.split(","):
                peaks = []
                for count in counts[model]:
                    folder = subset_folder(paths, count, work)
                    cache = work / "cache"
                    shutil.rmtree(cache, ignore_errors=True)
                    env = {**os.environ, "DFLAB_CACHE": str(cache), "COLUMNS": "200"}
                    out = work / f"out-{command}-{model}-{count}"
                    base = [sys.executable, "-m", "dflab", command, str(folder), "--model", str(model_paths[model]), "-q"]
                    extra = (["--faces", "whole", "--csv", str(out) + ".csv"] if command == "predict"
                             else ["--split", "all", "--out", str(out), "--n-boot", "200"])
                    peak, wall, _ = run_measured(base + extra, env)
                    peaks.append(peak)
                    print(f"| {command} | {model} | {count} | {peak / 2**20:.0f} | {wall:.0f} | {count / wall:.0f} |",
                          flush=True)
                    shutil.rmtree(out, ignore_errors=True)
                growth = peaks[-1] / peaks[0] - 1
                ok = growth <= TARGET_GROWTH and peaks[-1] < TARGET_PEAK_BYTES
                failed |= not ok
                print(f"  {command} {model}: peak {counts[model][-1]} vs {counts[model][0]} images "
                      f"{growth:+.1%} ({'met' if ok else 'MISSED'})", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
