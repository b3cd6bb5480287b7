"""What a JPEG costs to decode by each route, beside what the handcrafted features cost on it.

Issue 18 part 4 asks block-DCT and spectrum for >= 0.8x of decode-only throughput. On a 224^2 JPEG
that leaves a quarter of the decode time for the features. This benchmark gives the numbers that
decide whether that is possible, on one core, in one process (no workers, no cache):

* decode routes: ``dflab.media.images.decode_image`` (the route every extractor takes: Pillow, EXIF
  orientation, RGB), Pillow to RGB without the checks, Pillow to YCbCr and to luma only (``draft``:
  the decoder skips the colour conversion, or the chroma altogether), OpenCV to RGB and to luma;
* each extractor on already decoded images (its work beyond the decode).

Rounds interleave the routes over the same files; each figure is the median over rounds of the
mean microseconds per image. Each decode route is also compared with what the features compute from
``decode_image`` today: the RGB pixels for RGB routes, the grey image (OpenCV's RGB to grey) for the
luma routes and the Y plane of the YCbCr route: the files that give exactly the same pixels, and the
largest difference in grey levels.

    python benchmarks/bench_jpeg_decode.py --data ../shared/datasets/Task_2_3 --limit 600 --rounds 5
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np
from PIL import Image
from threadpoolctl import threadpool_limits

from dflab.detectors.handcrafted.block_dct import BlockDCTFeatures
from dflab.detectors.handcrafted.ela import ELAFeatures
from dflab.detectors.handcrafted.spectrum import SpectrumFeatures
from dflab.media.images import decode_image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_features import image_files  # noqa: E402


def pillow(mode: str):
    def decode(data: bytes) -> np.ndarray:
        with Image.open(io.BytesIO(data)) as image:
            image.draft(mode, image.size)  # JPEG only: the decoder's own output colour space
            return np.asarray(image.convert(mode) if image.mode != mode else image)
    return decode


def opencv(flag: int):
    def decode(data: bytes) -> np.ndarray:
        return cv2.imdecode(np.frombuffer(data, np.uint8), flag)
    return decode


DECODERS = {
    "decode_image (Pillow, EXIF, RGB)": decode_image,
    "Pillow to RGB": pillow("RGB"),
    "Pillow to YCbCr (no colour conversion)": pillow("YCbCr"),
    "Pillow to luma only": pillow("L"),
    "OpenCV to RGB": opencv(cv2.IMREAD_COLOR),
    "OpenCV to luma only": opencv(cv2.IMREAD_GRAYSCALE),
}

EXTRACTORS = {"block-dct": BlockDCTFeatures(), "spectrum": SpectrumFeatures(), "ela": ELAFeatures()}


def as_features_see_it(name: str, pixels: np.ndarray) -> np.ndarray:
    """The route's output in the form it would replace: RGB, or the grey / Y plane."""
    if name.startswith("OpenCV to RGB"):
        return cv2.cvtColor(pixels, cv2.COLOR_BGR2RGB)
    if "YCbCr" in name:
        return pixels[..., 0]
    return pixels


def agreement(name: str, files: list[bytes], decoded: list[np.ndarray]) -> str:
    """'identical files / all, largest |difference|' against what the features use now."""
    identical, largest = 0, 0
    for data, rgb in zip(files, decoded):
        got = as_features_see_it(name, DECODERS[name](data))
        expected = rgb if got.ndim == 3 else cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        difference = int(np.abs(got.astype(np.int16) - expected).max())
        identical += difference == 0
        largest = max(largest, difference)
    return f"{identical}/{len(files)}, {largest}"


def per_image_us(run, items) -> float:
    started = time.perf_counter()
    for item in items:
        run(item)
    return (time.perf_counter() - started) / len(items) * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="folder of JPEG images (searched recursively)")
    parser.add_argument("--limit", type=int, default=600, help="files, spread over the sorted list")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    cv2.setNumThreads(1)
    paths = [p for p in image_files(args.data, args.limit) if p.lower().endswith((".jpg", ".jpeg"))]
    if not paths:
        raise SystemExit(f"{args.data}: no JPEG files")
    files = [Path(p).read_bytes() for p in paths]
    decoded = [decode_image(data) for data in files]
    runs = {name: (decoder, files) for name, decoder in DECODERS.items()}
    runs |= {f"{name} features on decoded RGB": (extractor, decoded) for name, extractor in EXTRACTORS.items()}
    timings: dict[str, list[float]] = {name: [] for name in runs}
    with threadpool_limits(1):
        for run, items in runs.values():  # warm-up: caches, lazy tables
            per_image_us(run, items[:50])
        for _ in range(args.rounds):
            for name, (run, items) in runs.items():
                timings[name].append(per_image_us(run, items))

    height, width = decoded[0].shape[:2]
    print(f"{len(files)} JPEGs from {args.data} (first {width}x{height}), {args.rounds} interleaved rounds, one core\n")
    print("| route | µs per image (median) | per round | same pixels as now: files, largest difference |")
    print("|---|---|---|---|")
    for name, values in timings.items():
        same = agreement(name, files, decoded) if name in DECODERS else "-"
        print(f"| {name} | {statistics.median(values):.0f} | {min(values):.0f}-{max(values):.0f} | {same} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
