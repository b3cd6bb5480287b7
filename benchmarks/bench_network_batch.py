"""The ready detector's ``predict_proba`` (onnxruntime) on face crops in calls of n crops: crops/s per
call size, the sizes taking turns, medians over rounds (what :data:`dflab.inference.photos.NETWORK_BATCH`
is chosen by).

    .venv/bin/python benchmarks/bench_network_batch.py [--sizes 2,4,8,16,32] [--rounds 3]

Crops: the first 192 of ../shared/datasets/Task_2_3/evaluation (224 px), decoded beforehand.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="2,4,8,16,32")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)

    from dflab.inference.models import load_scorer
    from dflab.media.images import load_image

    crops = [load_image(path) for path in sorted((SHARED / "Task_2_3" / "evaluation").rglob("*.jpg"))[:192]]
    scorer = load_scorer(None, None, None)
    sizes = [int(size) for size in args.sizes.split(",")]
    for size in sizes:
        scorer.predict_proba(crops[:size])  # warm-up
    rates: dict[int, list[float]] = {size: [] for size in sizes}
    for _ in range(args.rounds):
        for size in sizes:
            started = time.perf_counter()
            for start in range(0, len(crops), size):
                scorer.predict_proba(crops[start:start + size], on_error="nan")
            rates[size].append(len(crops) / (time.perf_counter() - started))
    print("| crops per call | " + " | ".join(map(str, sizes)) + " |")
    print("|---|" + "---|" * len(sizes))
    print("| crops/s | " + " | ".join(f"{statistics.median(rates[size]):.1f}" for size in sizes) + " |")


if __name__ == "__main__":
    main()
