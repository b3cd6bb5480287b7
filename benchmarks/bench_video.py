"""Seconds per clip for video prediction: decode + face detection + crop + score, vs decode only.

    python benchmarks/bench_video.py [--clips DIR] [--frames 32] [--face-detectors mtcnn,blazeface]
                                     [--detector mesonet4-df | --model PATH] [--threads N] [--target 2.0]

For each FF++ clip (default ``../shared/datasets/videos/ffpp_c23``) and each face detector, it times
the stages of :func:`dflab.inference.video.predict_video` separately on the same 32 sampled frames: decoding
(``sample_frames``), face detection, cropping (largest face, scale 1.3, 256 px) and scoring with a
dflab detector (default: the published MesoNet-4 DF weights, a small real scorer; ``--model`` loads
a saved model). Model loading and one warm-up call are excluded. Prints a table and exits 1 when the
mean end-to-end time per clip of any face detector exceeds ``--target`` seconds.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=Path, default=SHARED / "datasets" / "videos" / "ffpp_c23")
    parser.add_argument("--frames", type=int, default=32)
    parser.add_argument("--face-detectors", default="mtcnn,blazeface")
    parser.add_argument("--detector", default="mesonet4-df", help="registry name of the scorer")
    parser.add_argument("--model", type=Path, help="a saved dflab model to score with instead")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--target", type=float, default=2.0, help="seconds per clip, end to end")
    args = parser.parse_args(argv)

    os.environ.setdefault("DFLAB_WEIGHTS", str(SHARED / "weights"))
    import numpy as np
    import torch

    from dflab.detectors.base import load_detector
    from dflab.detectors.registry import create
    from dflab.faces.geometry import crop_face
    from dflab.faces.finder import get_face_detector
    from dflab.faces.tracking import select_faces
    from dflab.runtime.memory import keep_freed_memory
    from dflab.runtime.progress import set_quiet
    from dflab.inference.video import aggregate
    from dflab.media.video import sample_frames

    keep_freed_memory()  # as the dflab command does
    set_quiet(True)
    if args.threads:
        torch.set_num_threads(args.threads)
    clips = sorted(args.clips.glob("*/*.mp4")) if args.clips.is_dir() else []
    if not clips:
        print(f"no clips under {args.clips} (../shared not present?)", file=sys.stderr)
        return 2
    scorer = load_detector(args.model) if args.model else create(args.detector).fit()
    face_detectors = {name: get_face_detector(name) for name in args.face_detectors.split(",") if name}

    warm = sample_frames(clips[0], 1)[0].image
    for fd in face_detectors.values():
        fd.detect(warm)
    scorer.predict_proba([np.zeros((256, 256, 3), np.uint8)], on_error="nan")

    print(f"{len(clips)} clips, {args.frames} frames each, scorer {scorer.name}, torch threads "
          f"{torch.get_num_threads()}, {os.cpu_count()} CPUs (load average {os.getloadavg()[0]:.1f})")
    header = f"{'clip':<22}{'size':>11}{'decode':>8}"
    for name in face_detectors:
        header += f"  {name + ' detect':>16}{'crop':>7}{'score':>7}{'total':>8}{'faces':>7}"
    print(header)
    totals: dict[str, list[float]] = {name: [] for name in face_detectors}
    decodes = []
    for clip in clips:
        start = time.perf_counter()
        frames = sample_frames(clip, args.frames)
        decode = time.perf_counter() - start
        decodes.append(decode)
        height, width = frames[0].image.shape[:2]
        line = f"{clip.parent.name + '/' + clip.name:<22}{f'{width}x{height}':>11}{decode:>8.2f}"
        for name, fd in face_detectors.items():
            start = time.perf_counter()
            chosen = select_faces(fd.detect_batch([f.image for f in frames]), "largest")
            detect = time.perf_counter() - start
            start = time.perf_counter()
            crops = [crop_face(f.image, faces[0][0].box, scale=1.3, size=256)
                     for f, faces in zip(frames, chosen) if faces]
            crop = time.perf_counter() - start
            start = time.perf_counter()
            scores = scorer.predict_proba(crops, on_error="nan") if crops else []
            aggregate(scores, "mean_prob")
            score = time.perf_counter() - start
            total = decode + detect + crop + score
            totals[name].append(total)
            line += f"  {detect:>16.2f}{crop:>7.2f}{score:>7.2f}{total:>8.2f}{f'{len(crops)}/{len(frames)}':>7}"
        print(line, flush=True)
    print(f"\nmean decode-only {statistics.mean(decodes):.2f} s/clip")
    failed = False
    for name, values in totals.items():
        mean = statistics.mean(values)
        verdict = "ok" if mean <= args.target else f"OVER the {args.target:g} s target"
        failed |= mean > args.target
        print(f"mean end to end with {name}: {mean:.2f} s/clip ({verdict})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
