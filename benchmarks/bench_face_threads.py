"""MTCNN on one PyTorch thread against PyTorch's default count: ms per image and faces found.

    .venv/bin/python benchmarks/bench_face_threads.py [--rounds 3]

Images: 128 Task_2_3/evaluation face crops and 8 frames of each FaceForensics++ and DeeperForensics
clip of ../shared, in batches of 32; the two settings take turns in each round; medians over rounds.
"""

from __future__ import annotations

import argparse
import statistics
import time

from shared_media import clip_paths, evaluation_crop_paths


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)

    from dflab.faces.mtcnn import MTCNNDetector
    from dflab.media.images import load_image
    from dflab.media.video import sample_frames

    crops = [load_image(path) for path in evaluation_crop_paths(128)]
    clips = clip_paths()
    frames = [frame.image for clip in clips for frame in sample_frames(clip, 8)]
    detectors = {"1 thread": MTCNNDetector(threads=1), "PyTorch's count": MTCNNDetector(threads=None)}
    for name, images in (("crops", crops), ("frames", frames)):
        times = {setting: [] for setting in detectors}
        found = {}
        for detector in detectors.values():
            detector.detect_batch(images[:8])  # warm-up
        for _ in range(args.rounds):
            for setting, detector in detectors.items():
                started = time.perf_counter()
                faces = []
                for start in range(0, len(images), 32):
                    faces += detector.detect_batch(images[start:start + 32])
                times[setting].append((time.perf_counter() - started) / len(images) * 1000)
                found[setting] = sum(map(len, faces))
        print(name, len(images), {setting: (round(statistics.median(values), 2), found[setting])
                                  for setting, values in times.items()}, flush=True)


if __name__ == "__main__":
    main()
