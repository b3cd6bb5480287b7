"""Resident memory of one process scoring batches of changing sizes: how `dflab serve` chose its batch sizes.

Runs ``--batches`` batches of 1-16 random Task_2_3 face crops (random sizes, fixed seed) through
the ready detector's network (``--stage network``) or through MTCNN (``--stage mtcnn``, whole
224 px pictures) in this process, with glibc keeping freed memory as the ``dflab`` command does,
and prints the resident memory after each tenth of the batches and the time taken. ``--sizes``:

* ``as-they-come``: each batch at its own size (1..16);
* ``always-16``: every batch padded to 16;
* ``powers-of-two``: padded to the next power of two;
* ``even-warmed``: padded to an even size (what :func:`dflab.inference.photos.network_batch_size` does),
  after a warm-up over those sizes, largest first (what ``dflab serve`` does at start-up).

    .venv/bin/python benchmarks/bench_batch_memory.py --sizes as-they-come
    .venv/bin/python benchmarks/bench_batch_memory.py --sizes even-warmed
    .venv/bin/python benchmarks/bench_batch_memory.py --stage mtcnn --batches 400
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_IMAGES = ROOT.parent / "shared" / "datasets" / "Task_2_3" / "evaluation"


def padded_size(count: int, sizes: str) -> int:
    from dflab.inference.photos import network_batch_size

    if sizes == "always-16":
        return 16
    if sizes == "powers-of-two":
        return 1 << (count - 1).bit_length()
    if sizes == "even-warmed":
        return network_batch_size(count)
    return count


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=Path, default=DEFAULT_IMAGES)
    parser.add_argument("--stage", choices=("network", "mtcnn"), default="network")
    parser.add_argument("--sizes", choices=("as-they-come", "always-16", "powers-of-two", "even-warmed"),
                        default="as-they-come")
    parser.add_argument("--batches", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    os.environ["DFLAB_QUIET"] = "1"
    from dflab.runtime.memory import keep_freed_memory, resident_mb

    keep_freed_memory()
    from dflab.faces.finder import get_face_detector
    from dflab.inference.models import load_scorer
    from dflab.media.images import load_image
    from dflab.inference.photos import network_batch_sizes

    paths = sorted(p for p in args.images.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    if not paths:
        sys.exit(f"{args.images}: no images")
    pictures = [load_image(p) for p in paths[::max(1, len(paths) // 100)][:100]]
    scorer = load_scorer(None, None, None) if args.stage == "network" else None
    detector = get_face_detector("mtcnn") if args.stage == "mtcnn" else None

    def run(batch):
        if detector is not None:
            detector.detect_batch(batch)
        else:
            scorer.predict_proba([picture[20:200, 20:200] for picture in batch])

    if args.sizes == "even-warmed":
        for size in network_batch_sizes():
            run([pictures[0]] * size)
    rng = random.Random(args.seed)
    by_tenth, started = [], time.perf_counter()
    step = max(1, args.batches // 10)
    for number in range(args.batches):
        count = rng.randint(1, 16)
        batch = rng.sample(pictures, count)
        run(batch + [batch[0]] * (padded_size(count, args.sizes) - count))
        if number % step == step - 1:
            by_tenth.append(round(resident_mb()))
    print(f"{args.stage}, {args.sizes}, {args.batches} batches of 1-16: {time.perf_counter() - started:.1f} s; "
          f"resident MB after each tenth: {by_tenth}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
