"""ONNX Runtime against PyTorch eager on CPU: images/s of the ONNX path of a CNN detector against a bare
PyTorch forward pass of the same network on the same batch.

For each model, on the same N face crops (from ``--data`` when present, resized to the network's input
size; random pixels otherwise) and the same thread count, three runs take turns in every round (after
one warm-up each):

* ``torch``: the bare PyTorch network under ``torch.inference_mode`` on the ready-made normalised,
  channels-last batch (with the mirror TTA when the detector uses it: both views, logits averaged);
* ``onnx-graph``: the exported graph alone in onnxruntime on the same batch (same TTA);
* ``onnx-path``: ``predict_proba`` on the RGB uint8 arrays with ``backend="onnx"``: the graph plus the
  detector's own batching, normalisation and TTA, i.e. what every dflab command runs.

Models: ``lite0`` and ``lite2`` (EfficientNet-Lite0 / -Lite2 with their ImageNet weights and a fresh
one-logit head, at 224 / 260 px) and ``ready`` (the shipped dflab-face: trained Lite0 weights stored in
fp16, exported in fp32, mirror TTA on). Speeds are medians over rounds; a ratio is the median over
rounds of each round's own ratio, so a slow spell of a shared machine cancels out. The scores of the
ONNX path are also compared with the PyTorch path's (max |ΔP|). Target (issue 18): ``onnx-path`` at
least 1.5x ``torch``; the script exits with status 1 when a model misses it.

Usage: python benchmarks/bench_onnx.py [--models lite0,lite2,ready] [--images 32] [--batch-size 32]
       [--rounds 5] [--threads 2] [--data ../shared/datasets/Task_2_3/evaluation]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from dflab.detectors import create
from dflab.detectors.deep.onnx_backend import OnnxBackend, export_graph
from dflab.detectors.deep.forward import mirror_averaged
from dflab.detectors.deep.tensors import normalise_batch, resize_square
from dflab.media.images import load_image
from dflab.runtime.memory import keep_freed_memory

TARGET_RATIO = 1.5
DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "Task_2_3" / "evaluation"


def model_detector(name: str, batch_size: int):
    """The CNN detector of ``name`` on the CPU: ImageNet-weighted Lite0/Lite2 or the shipped ready model."""
    if name == "ready":
        return create("dflab-face", device="cpu", batch_size=batch_size).fit().inner()
    detector = create(f"efficientnet-{name}", device="cpu", batch_size=batch_size)
    torch.manual_seed(0)
    detector.model_ = detector.build_model(pretrained=True).eval()
    return detector


def face_arrays(data: Path, n: int, size: int) -> tuple[list[np.ndarray], str]:
    """``n`` RGB uint8 images at ``size`` px: real and fake crops alternately from ``data``, else noise."""
    files = [sorted((data / label).glob("*.jpg")) for label in ("real", "fake")] if data.is_dir() else [[], []]
    if len(files[0]) >= n // 2 and len(files[1]) >= n - n // 2:
        chosen = [f for pair in zip(files[0], files[1]) for f in pair][:n]
        return [resize_square(load_image(f), size) for f in chosen], f"{n} crops of {data}"
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for _ in range(n)], f"{n} random-pixel images"


def interleaved_times(runs: dict, rounds: int) -> dict[str, list[float]]:
    """Seconds per round of each run, the runs taking turns within every round."""
    for run in runs.values():
        run()  # warm-up: first-call allocations, onnxruntime's session start
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            started = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - started)
    return times


def measure(name: str, args, data: Path) -> dict:
    detector = model_detector(name, args.batch_size)
    size = int(detector.input_size)
    images, source = face_arrays(data, args.images, size)
    network = detector.model_.eval().to(memory_format=torch.channels_last)
    started = time.perf_counter()
    graph = OnnxBackend(export_graph(network, size), network)
    export_seconds = time.perf_counter() - started
    detector.onnx_ = graph
    batch = normalise_batch(torch.from_numpy(np.stack(images)), detector.mean, detector.std)
    tta = bool(getattr(detector, "test_flip", False))
    torch_forward = mirror_averaged(network) if tta else network
    graph_forward = mirror_averaged(graph) if tta else graph

    def run_torch():
        with torch.inference_mode():
            for start in range(0, len(batch), args.batch_size):
                torch_forward(batch[start:start + args.batch_size].contiguous(memory_format=torch.channels_last))

    def run_graph():
        for start in range(0, len(batch), args.batch_size):
            graph_forward(batch[start:start + args.batch_size])

    def run_path():
        detector.set_params(backend="onnx")
        return detector.predict_proba(images)

    detector.set_params(backend="torch")
    torch_scores = detector.predict_proba(images)
    delta_p = float(np.abs(run_path() - torch_scores).max())
    times = interleaved_times({"torch": run_torch, "onnx-graph": run_graph, "onnx-path": run_path}, args.rounds)
    speeds = {run: [len(images) / t for t in seconds] for run, seconds in times.items()}
    ratio = statistics.median(t / p for t, p in zip(times["torch"], times["onnx-path"]))
    graph_ratio = statistics.median(t / g for t, g in zip(times["torch"], times["onnx-graph"]))
    return {"model": name, "input": size, "tta": tta, "source": source, "export_s": export_seconds,
            "speeds": {run: statistics.median(v) for run, v in speeds.items()}, "per_round": speeds,
            "ratio_path": ratio, "ratio_graph": graph_ratio, "max_delta_p": delta_p}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default="lite0,lite2,ready")
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    args = parser.parse_args()
    keep_freed_memory()  # as the dflab command runs
    torch.set_num_threads(args.threads)
    missed = []
    print(f"threads {args.threads}, batch {args.batch_size}, {args.rounds} rounds, medians; images/s")
    print("| model | input | TTA | torch | onnx-graph | onnx-path | onnx-path / torch | onnx-graph / torch | max abs dP | export s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name in args.models.split(","):
        r = measure(name.strip(), args, args.data)
        s = r["speeds"]
        print(f"| {r['model']} | {r['input']} | {'on' if r['tta'] else 'off'} | {s['torch']:.1f} | {s['onnx-graph']:.1f} | "
              f"{s['onnx-path']:.1f} | **{r['ratio_path']:.2f}x** | {r['ratio_graph']:.2f}x | {r['max_delta_p']:.1e} | "
              f"{r['export_s']:.0f} |", flush=True)
        print(f"  ({r['source']}; per round: " + "; ".join(
            f"{run} " + " ".join(f"{v:.1f}" for v in values) for run, values in r["per_round"].items()) + ")",
            flush=True)
        if r["ratio_path"] < TARGET_RATIO:
            missed.append(r["model"])
    if missed:
        print(f"below the {TARGET_RATIO}x target: {', '.join(missed)}")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
