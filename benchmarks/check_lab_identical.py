"""Check that the lab's numbers did not move: run the handcrafted lab on ../shared from an empty feature
cache and compare the sha256 of its ``scores.csv`` and ``scores_validation.csv`` with the reference.

    python benchmarks/check_lab_identical.py [--shared ../shared] [--out DIR]

The reference digests were measured on 2026-12-02 after the block DCT's products moved to float64
(commit ccd1923), identical with OpenBLAS's AVX2 and AVX-512 kernels (``OPENBLAS_CORETYPE=Haswell``
and ``SkylakeX``), with

    dflab lab --task1 ../shared/datasets/Task_1 --task23 ../shared/datasets/Task_2_3 \
        --detector ela-gb --detector block-dct --no-task3 --out OUT

(Before, with float32 products, the digests depended on the CPU's kernel.)

The paths in scores.csv are absolute: the digests hold for the data at /work/shared (this machine).
Exit status 0 when both files are byte-identical, 1 when one differs, 2 when the data is missing.
A change that is meant to move these numbers updates the digests here and says why in RESULTS.md.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REFERENCE = {
    "scores.csv": "e31e35a4c5cac70a3f710e6a3d682b0bc3556ce3f359d5f0fed408f7918cbead",
    "scores_validation.csv": "b91b31a4d6fbef694fba1ac9e2e7c2a84c9a0844a4e9a5dc5bded61bb7f34b5d",
}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=Path(__file__).resolve().parents[2] / "shared")
    parser.add_argument("--out", type=Path, help="where the lab writes (default: a temporary folder)")
    args = parser.parse_args()
    datasets = args.shared / "datasets"
    if not (datasets / "Task_1").is_dir() or not (datasets / "Task_2_3").is_dir():
        print(f"{datasets}: Task_1 and Task_2_3 not found (give --shared)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as scratch:
        out = args.out or Path(scratch) / "lab"
        # An empty feature cache: every number is computed by the code under test, none reused.
        env = {**os.environ, "DFLAB_CACHE": str(Path(scratch) / "cache")}
        command = [sys.executable, "-m", "dflab", "lab", "--task1", str(datasets / "Task_1"),
                   "--task23", str(datasets / "Task_2_3"), "--detector", "ela-gb", "--detector", "block-dct",
                   "--no-task3", "--out", str(out), "--quiet"]
        subprocess.run(command, env=env, check=True)
        failed = False
        for name, expected in REFERENCE.items():
            measured = sha256(out / name)
            same = measured == expected
            failed |= not same
            print(f"{name}: {measured} {'identical' if same else 'DIFFERS from ' + expected}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
