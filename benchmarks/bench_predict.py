"""`dflab predict` as a user runs it, against the network's own limit, measured in one run.

    .venv/bin/python benchmarks/bench_predict.py [--crops 300] [--rounds 5] [--baseline-src DIR]
        [--parts crops,photos512,photos1024,video,startup]

* ``crops``: ``dflab predict FOLDER`` on Task_2_3/evaluation face crops (224 px JPEGs), images/s
  with the command's start-up (measured on one image in the same round) taken out, against the bare
  onnxruntime forward of the same network on the same faces already cropped, resized and normalised
  (batches of 16; both mirror views when the model averages them): the network limit. Target: >= 0.6x the limit.
* ``photos512``, ``photos1024``: the same on photos made of video frames (the 7 FaceForensics++ and 4
  DeeperForensics clips, 8 frames each, long side 512 or 1024 px, JPEG q92). Target: >= 2.5x the
  rate of ``--baseline-src`` (the code before the batched path, run by the same Python).
* ``video``: seconds per 32-frame clip of ``predict_video`` (the ready detector, MTCNN) on each clip,
  against sampling the frames alone. Target: <= 0.8 s per clip.
* ``startup``: wall seconds of ``dflab predict one.jpg --quiet`` (graph already in the cache).
  Target: < 3 s. Beside it, the answers that need no model: ``dflab --version``, ``dflab --help`` and
  ``dflab predict`` on a mistyped path.

Every part's ways take turns within each of ``--rounds`` rounds; numbers are medians over rounds,
ratios medians of each round's own ratio. ``--baseline-src``: a ``src`` folder of another checkout
(e.g. ``git worktree add /tmp/before e27b24a``), whose ``dflab predict`` runs beside this one's.
Writes the table to stdout and, with ``--json``, every round's numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from shared_media import clip_paths, evaluation_crop_paths

ROOT = Path(__file__).resolve().parents[1]


def predict_seconds(folder: Path, out: Path, src: Path | None) -> float:
    """Wall seconds of ``dflab predict FOLDER --quiet`` (of ``src``'s code when given)."""
    env = {**os.environ, "PYTHONPATH": str(src)} if src else dict(os.environ)
    out.unlink(missing_ok=True)
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "dflab", "predict", str(folder), "--csv", str(out), "--quiet"],
                   check=True, env=env, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def command_seconds(arguments: list[str], src: Path | None) -> float:
    """Wall seconds of ``dflab ARGUMENTS`` (of ``src``'s code when given), whatever its exit status."""
    env = {**os.environ, "PYTHONPATH": str(src)} if src else dict(os.environ)
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "dflab", *arguments], env=env, capture_output=True, check=False)
    return time.perf_counter() - started


def make_photos(folder: Path, side: int, per_clip: int = 8) -> int:
    from PIL import Image

    from dflab.media.video import sample_frames

    folder.mkdir(parents=True, exist_ok=True)
    count = 0
    for clip in clip_paths():
        for frame in sample_frames(clip, per_clip):
            picture = Image.fromarray(frame.image)
            scale = side / max(picture.size)
            picture.resize((round(picture.width * scale), round(picture.height * scale)), Image.LANCZOS).save(
                folder / f"{clip.parent.name}_{clip.stem}_{frame.index:05d}.jpg", quality=92)
            count += 1
    return count


def network_input(scorer, folder: Path) -> np.ndarray:
    """The faces ``dflab predict`` finds in ``folder``, cropped, resized and normalised: the batch
    the bare network is timed on."""
    from dflab.detectors.deep.onnx_backend import exportable
    from dflab.detectors.deep.tensors import resize_square, to_tensor
    from dflab.inference.photos import find_faces

    network = exportable(scorer)
    found = find_faces(sorted(folder.iterdir()), framing=scorer.face_framing)
    crops = [crop for index in found.crops for crop in found.crops[index]]
    return np.stack([to_tensor(resize_square(crop, network.input_size), network.mean, network.std).numpy()
                     for crop in crops]).astype(np.float32)


def network_faces_per_second(scorer, batch: np.ndarray) -> float:
    """The bare onnxruntime forward in batches of 16 (and of the mirrored batch, when the model
    averages the two views): faces/s."""
    from dflab.detectors.deep.onnx_backend import exportable

    network = exportable(scorer)
    session = network.onnx_.session()
    started = time.perf_counter()
    for start in range(0, len(batch), 16):
        chunk = batch[start:start + 16]
        session.run(None, {"images": chunk})
        if network.test_flip:
            session.run(None, {"images": np.ascontiguousarray(chunk[..., ::-1])})
    return len(batch) / (time.perf_counter() - started)


def rate_part(name: str, folder: Path, one: Path, count: int, args, scorer, report: dict) -> None:
    faces = network_input(scorer, folder)
    rows = {"this": [], "baseline": [], "limit": [], "ratio_limit": [], "ratio_baseline": []}
    for _ in range(args.rounds):
        for way, src in (("this", None), ("baseline", args.baseline_src)):
            if way == "baseline" and src is None:
                continue
            start_up = predict_seconds(one, Path(args.work) / "one.csv", src)
            seconds = predict_seconds(folder, Path(args.work) / f"{name}.csv", src)
            rows[way].append(count / max(seconds - start_up, 1e-9))
        # the limit as images/s of this folder: faces/s x images per face
        rows["limit"].append(network_faces_per_second(scorer, faces) * count / len(faces))
        rows["ratio_limit"].append(rows["this"][-1] / rows["limit"][-1])
        if rows["baseline"]:
            rows["ratio_baseline"].append(rows["this"][-1] / rows["baseline"][-1])
    report[name] = {"images": count, "faces": len(faces), **{key: [round(v, 3) for v in values]
                                                            for key, values in rows.items()}}
    median = {key: statistics.median(values) if values else float("nan") for key, values in rows.items()}
    print(f"| {name} | {count} ({len(faces)} faces) | {median['this']:.1f} | {median['baseline']:.1f} | "
          f"{median['limit']:.1f} | **{median['ratio_limit']:.2f}** | **{median['ratio_baseline']:.2f}** |", flush=True)


def video_part(scorer, args, report: dict) -> None:
    from dflab.inference.video import predict_video
    from dflab.media.video import sample_frames

    predict_video(scorer, clip_paths()[0], n_frames=8, framing=scorer.face_framing)  # warm-up
    rows = []
    for clip in clip_paths():
        decode, total = [], []
        for _ in range(args.rounds):
            started = time.perf_counter()
            sample_frames(clip, 32)
            decode.append(time.perf_counter() - started)
            started = time.perf_counter()
            predict_video(scorer, clip, n_frames=32, framing=scorer.face_framing)
            total.append(time.perf_counter() - started)
        rows.append((clip, statistics.median(decode), statistics.median(total)))
        print(f"| {clip.parent.parent.name}/{clip.parent.name}/{clip.name} | {rows[-1][1]:.2f} | {rows[-1][2]:.2f} |",
              flush=True)
    report["video"] = [{"clip": str(clip), "decode_s": d, "total_s": t} for clip, d, t in rows]
    print(f"| mean | {np.mean([d for _, d, _ in rows]):.2f} | **{np.mean([t for _, _, t in rows]):.2f}** |")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--crops", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--baseline-src", type=Path)
    parser.add_argument("--parts", default="crops,photos512,photos1024,video,startup")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    parts = args.parts.split(",")

    from dflab.inference.models import load_scorer

    scorer = load_scorer(None, None, None)  # exports the graph into the cache if it is not there yet
    report: dict = {"parts": parts, "rounds": args.rounds, "baseline_src": str(args.baseline_src)}
    with tempfile.TemporaryDirectory(prefix="bench-predict-") as work:
        args.work = work
        crops = Path(work) / "crops"
        crops.mkdir()
        for path in evaluation_crop_paths(args.crops):
            (crops / f"{path.parent.name}_{path.name}").symlink_to(path)
        one = Path(work) / "one"
        one.mkdir()
        (one / "one.jpg").symlink_to(next(crops.iterdir()).resolve())
        print("| input | images | this images/s | baseline images/s | network limit images/s | "
              "this / limit | this / baseline |\n|---|---|---|---|---|---|---|")
        if "crops" in parts:
            rate_part("crops", crops, one, args.crops, args, scorer, report)
        for side in (512, 1024):
            if f"photos{side}" in parts:
                folder = Path(work) / f"photos{side}"
                count = make_photos(folder, side)
                rate_part(f"photos{side}", folder, one, count, args, scorer, report)
        if "startup" in parts:
            answers = {"`dflab --version`": ["--version"], "`dflab --help`": ["--help"],
                       "`dflab predict` on a mistyped path": ["predict", str(Path(work) / "no-such-file.jpg")]}
            trees = {"this": None, **({"baseline": args.baseline_src} if args.baseline_src else {})}
            seconds = {name: {tree: [] for tree in trees} for name in [*answers, "`dflab predict one.jpg`"]}
            for _ in range(args.rounds):
                for tree, src in trees.items():
                    for name, arguments in answers.items():
                        seconds[name][tree].append(command_seconds(arguments, src))
                    seconds["`dflab predict one.jpg`"][tree].append(predict_seconds(one, Path(work) / "one.csv", src))
            report["startup"] = seconds
            print("\n| command | " + " | ".join(f"{tree} s" for tree in trees) + " |\n|---|" + "---|" * len(trees))
            for name, values in seconds.items():
                print(f"| {name} | " + " | ".join(f"{statistics.median(values[tree]):.2f}" for tree in trees) + " |")
        if "video" in parts:
            print("\n| clip | sampling the 32 frames s | predict_video s |\n|---|---|---|")
            video_part(scorer, args, report)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
