"""dflab's batched MTCNN cascade against facenet-pytorch's ``MTCNN.detect``: ms per image, faces found
the largest difference in boxes, scores and landmarks, and the time of each of MTCNN's three networks.

    .venv/bin/python benchmarks/bench_mtcnn_cascade.py [--rounds 3]

Images: 128 Task_2_3/evaluation face crops (224 px) in batches of 32, and 32 frames of each
FaceForensics++ and DeeperForensics clip of ../shared, shrunk to 640 px as dflab does, one batch per
clip; both get the same batches, taking turns in each round; medians over rounds. PyTorch's default
thread count.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"


class Timed:
    """A network that records (inputs, seconds) of each call."""

    def __new__(cls, net, record):
        import torch

        class _Timed(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.net = net

            def forward(self, x):
                started = time.perf_counter()
                out = self.net(x)
                record.append((len(x), time.perf_counter() - started))
                return out

        return _Timed()


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)

    from facenet_pytorch import MTCNN

    from dflab.faces.detection import downscale_for_detection
    from dflab.faces.mtcnn import MTCNNDetector
    from dflab.media.images import load_image
    from dflab.media.video import sample_frames

    crops = [load_image(path) for path in sorted((SHARED / "Task_2_3" / "evaluation").rglob("*.jpg"))[:128]]
    clips = sorted(path for root in (SHARED / "videos" / "ffpp_c23", SHARED / "videos" / "deeperforensics")
                   for path in root.rglob("*.mp4"))
    sets = {"224 px face crops": [np.stack(crops[start:start + 32]) for start in range(0, len(crops), 32)],
            "video frames (640 px)": [np.stack([downscale_for_detection(frame.image, 640)[0]
                                                for frame in sample_frames(clip, 32)]) for clip in clips]}
    ours = MTCNNDetector()
    reference = MTCNN(keep_all=True, min_face_size=ours.min_face_size, thresholds=list(ours.thresholds),
                      select_largest=False, post_process=False)
    timed = {"P-Net": [], "R-Net": [], "O-Net": []}
    reference.pnet, reference.rnet, reference.onet = (Timed(net, timed[key]) for net, key in zip(
        (reference.pnet, reference.rnet, reference.onet), timed))
    runs = {"facenet-pytorch": lambda batch: reference.detect(batch, landmarks=True), "dflab": ours._cascade}
    print("| images | count | facenet-pytorch ms/image | dflab ms/image | speed-up | faces (both) | max diff |")
    print("|---|---|---|---|---|---|---|")
    notes: list[str] = []
    for name, batches in sets.items():
        count = sum(len(batch) for batch in batches)
        for run in runs.values():
            run(batches[0][:4])  # warm-up
        times: dict[str, list[float]] = {key: [] for key in runs}
        for _ in range(args.rounds):
            for key, run in runs.items():
                started = time.perf_counter()
                for batch in batches:
                    run(batch)
                times[key].append((time.perf_counter() - started) / count * 1000)
        faces, worst = 0, 0.0
        for batch in batches:
            boxes, probs, points = reference.detect(batch, landmarks=True)
            for (got_boxes, got_scores, got_points), want, want_probs, want_points in zip(
                    ours._cascade(batch), boxes, probs, points):
                if want is None:
                    assert len(got_boxes) == 0, "dflab found a face facenet-pytorch did not"
                    continue
                assert len(got_boxes) == len(want), "a different number of faces"
                faces += len(want)
                worst = max(worst, float(np.abs(got_boxes - want[:, :4]).max()),
                            float(np.abs(got_scores - np.asarray(want_probs, dtype=float)).max()),
                            float(np.abs(got_points - want_points).max()))
        for values in timed.values():
            values.clear()
        for batch in batches:
            reference.detect(batch, landmarks=True)
        stages = ", ".join(f"{key} {sum(n for n, _ in v)} inputs {sum(s for _, s in v) * 1000:.0f} ms"
                           for key, v in timed.items())
        notes.append(f"facenet-pytorch's networks on the {count} {name}, one pass: {stages}")
        reference_ms, ours_ms = (statistics.median(times[key]) for key in runs)
        print(f"| {name} | {count} | {reference_ms:.1f} | {ours_ms:.1f} | **{reference_ms / ours_ms:.2f}x** | "
              f"{faces} | {worst:.1e} |", flush=True)
    print("\n" + "\n".join(notes))


if __name__ == "__main__":
    main()
