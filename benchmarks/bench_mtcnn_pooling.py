"""MTCNN as dflab runs it (facenet-pytorch's, its max-pooling layers computed by
:class:`dflab.faces.pooling.StridedMaxPool`) against facenet-pytorch's own: ms per image, faces found,
and whether boxes, scores and landmarks are bit-identical.

    .venv/bin/python benchmarks/bench_mtcnn_pooling.py [--rounds 3]

Images: 128 Task_2_3/evaluation face crops (224 px) in batches of 32, and 32 frames of each
FaceForensics++ and DeeperForensics clip of ../shared, shrunk to 640 px as dflab does, one batch per
clip; both get the same batches, taking turns in each round; medians over rounds. PyTorch's default
thread count.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from shared_media import clip_paths, evaluation_crop_paths


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)

    from facenet_pytorch import MTCNN

    from dflab.faces.detection import downscale_for_detection
    from dflab.faces.mtcnn import MTCNNDetector
    from dflab.media.images import load_image
    from dflab.media.video import sample_frames

    crops = [load_image(path) for path in evaluation_crop_paths(128)]
    clips = clip_paths()
    sets = {"224 px face crops": [np.stack(crops[start:start + 32]) for start in range(0, len(crops), 32)],
            "video frames (640 px)": [np.stack([downscale_for_detection(frame.image, 640)[0]
                                                for frame in sample_frames(clip, 32)]) for clip in clips]}
    ours = MTCNNDetector(device="cpu")._mtcnn
    reference = MTCNN(keep_all=True, min_face_size=ours.min_face_size, thresholds=list(ours.thresholds),
                      select_largest=False, post_process=False, device="cpu")
    runs = {"facenet-pytorch": reference, "dflab": ours}
    print("| images | count | facenet-pytorch ms/image | dflab ms/image | speed-up | faces | bit-identical |")
    print("|---|---|---|---|---|---|---|")
    for name, batches in sets.items():
        count = sum(len(batch) for batch in batches)
        for mtcnn in runs.values():
            mtcnn.detect(batches[0][:4], landmarks=True)  # warm-up
        times: dict[str, list[float]] = {key: [] for key in runs}
        for _ in range(args.rounds):
            for key, mtcnn in runs.items():
                started = time.perf_counter()
                for batch in batches:
                    mtcnn.detect(batch, landmarks=True)
                times[key].append((time.perf_counter() - started) / count * 1000)
        faces, identical = 0, True
        for batch in batches:
            want, got = reference.detect(batch, landmarks=True), ours.detect(batch, landmarks=True)
            for want_part, got_part in zip(want, got):
                for want_image, got_image in zip(want_part, got_part):
                    identical &= (want_image is None and got_image is None) or np.array_equal(
                        np.asarray(want_image, dtype=float), np.asarray(got_image, dtype=float), equal_nan=True)
            faces += sum(len(boxes) for boxes in want[0] if boxes is not None)
        reference_ms, ours_ms = (statistics.median(times[key]) for key in runs)
        print(f"| {name} | {count} | {reference_ms:.1f} | {ours_ms:.1f} | **{reference_ms / ours_ms:.2f}x** | "
              f"{faces} | {'yes' if identical else 'NO'} |", flush=True)


if __name__ == "__main__":
    main()
