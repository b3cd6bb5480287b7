"""Start-up of the ``dflab`` command: wall seconds of ``--version``, ``--help``, a mistyped path and one
photo scored, for this checkout and a baseline source tree, taking turns, medians over rounds.

    git worktree add /tmp/before REV
    .venv/bin/python benchmarks/bench_startup.py --photo PHOTO [--baseline-src /tmp/before/src] [--rounds 3]

Each run is ``python -m dflab ARGS`` in a fresh process with ``PYTHONPATH`` set to the source tree; the
photo run uses the ready detector (its ONNX graph already in the cache).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photo", type=Path, required=True)
    parser.add_argument("--baseline-src", type=Path)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    commands = {"--version": ["--version"], "--help": ["--help"],
                "a mistyped path": ["predict", str(args.photo.with_name("no-such-file.jpg"))],
                "one photo": ["predict", str(args.photo), "--quiet"]}
    trees = {"this": SRC, **({"baseline": args.baseline_src} if args.baseline_src else {})}
    seconds: dict[tuple[str, str], list[float]] = {(tree, name): [] for tree in trees for name in commands}
    for _ in range(args.rounds):
        for tree, src in trees.items():
            for name, command in commands.items():
                started = time.perf_counter()
                subprocess.run([sys.executable, "-m", "dflab", *command], capture_output=True,
                               env={**os.environ, "PYTHONPATH": str(src)}, check=False)
                seconds[(tree, name)].append(time.perf_counter() - started)
    print("| command | " + " | ".join(f"{tree} s" for tree in trees) + " |")
    print("|---|" + "---|" * len(trees))
    for name in commands:
        print(f"| `dflab {' '.join(commands[name][:1])}` ({name}) | "
              + " | ".join(f"{statistics.median(seconds[(tree, name)]):.2f}" for tree in trees) + " |")


if __name__ == "__main__":
    main()
