"""How far the ready detector's scores and the face detector's boxes move with the CPU's kernels.

    .venv/bin/python benchmarks/cpu_kernels.py [--shared-crops 200] [--out kernels.json]

Runs the same probe (:func:`probe`) in fresh processes that differ only in the kernels they may use:
PyTorch's ATen kernels (``ATEN_CPU_CAPABILITY``: the CPU's best, ``avx2``, ``default`` = no vector
instructions) together with oneDNN's convolutions (``ONEDNN_MAX_CPU_ISA``), and onnxruntime, which
dispatches by itself and offers no switch, with 1 and 2 threads. Each probe scores face crops with
the shipped ``dflab-face`` (PyTorch and onnxruntime) and runs MTCNN on photos of a face; the report
is the largest difference of P(fake) and of a face box's corners between any two kernel settings.

``tests/test_cpu_kernels.py`` runs the same comparison on fewer images in make test.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED_CROPS = ROOT.parent / "shared" / "datasets" / "Task_2_3" / "evaluation"

#: name -> environment of one probe process. ``default`` also caps oneDNN at SSE4.1, so that no
#: vector unit wider than 128 bits is used anywhere in PyTorch.
KERNELS = {
    "best": {},
    "avx2": {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"},
    "default": {"ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "SSE41"},
}


def probe_images(folder: Path, shared_crops: int) -> tuple[list[Path], list[Path]]:
    """(face crops to score, photos to find faces in), written to ``folder``: the astronaut photo of
    scikit-image at several scales, shifts and JPEG qualities, drawn faces of the synthetic lab, and
    the first ``shared_crops`` DFDC crops of ../shared when present."""
    import numpy as np
    from PIL import Image
    from skimage import data as skimage_data

    from dflab.data.synthetic.faces import make_face

    astronaut = skimage_data.astronaut()
    photos = []
    for index, (top, left, side, size, quality) in enumerate(
            [(0, 40, 420, 512, 95), (30, 80, 360, 300, 85), (0, 0, 512, 640, 75), (60, 120, 300, 224, 90)]):
        crop = Image.fromarray(astronaut[top:top + side, left:left + side]).resize((size, size), Image.BICUBIC)
        buffer = io.BytesIO()
        crop.save(buffer, "JPEG", quality=quality)
        path = folder / f"photo-{index}.jpg"
        path.write_bytes(buffer.getvalue())
        photos.append(path)
    rng = np.random.default_rng(0)
    crops = list(photos)
    for index in range(8):
        path = folder / f"drawn-{index}.png"
        Image.fromarray(make_face(rng, 224, domain="AB"[index % 2])).save(path)
        crops.append(path)
    if shared_crops and SHARED_CROPS.is_dir():
        crops += sorted(SHARED_CROPS.rglob("*.jpg"))[:shared_crops]
    return crops, photos


def probe(crops: list[str], photos: list[str], threads: int) -> dict:
    """P(fake) of each crop by the ready detector on both backends, and MTCNN's boxes on each photo."""
    import numpy as np
    import torch
    from PIL import Image

    torch.set_num_threads(threads)
    from dflab.detectors import create
    from dflab.faces import get_face_detector

    result = {"capability": torch.backends.cpu.get_cpu_capability(), "threads": threads}
    for backend in ("torch", "onnx"):
        detector = create("dflab-face", backend=backend, device="cpu").fit()
        result[f"p_fake_{backend}"] = [float(p) for p in detector.predict_proba(crops)]
    finder = get_face_detector("mtcnn", device="cpu")
    result["boxes"] = [[list(map(float, face.box)) for face in finder.detect(np.asarray(Image.open(p).convert("RGB")))]
                       for p in photos]
    return result


def run_probe(kernel: str, crops: list[Path], photos: list[Path], threads: int = 1) -> dict:
    """:func:`probe` in a fresh process with ``KERNELS[kernel]`` set (the kernel is chosen at import)."""
    env = {**os.environ, **KERNELS[kernel], "OMP_NUM_THREADS": str(threads), "DFLAB_QUIET": "1"}
    code = ("import json, sys; sys.path.insert(0, sys.argv[1]); from cpu_kernels import probe; "
            "print(json.dumps(probe(json.loads(sys.argv[2]), json.loads(sys.argv[3]), int(sys.argv[4]))))")
    done = subprocess.run([sys.executable, "-c", code, str(Path(__file__).parent),
                           json.dumps([str(p) for p in crops]), json.dumps([str(p) for p in photos]), str(threads)],
                          env=env, capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:
        raise RuntimeError(f"probe {kernel} failed: {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def largest_moves(runs: dict[str, dict]) -> dict:
    """Largest |dP| between any two runs (per backend and across backends) and largest box move (px);
    None where two runs found a different number of faces."""
    import numpy as np

    names = list(runs)
    moves = {"p_fake_torch": 0.0, "p_fake_onnx": 0.0, "torch_vs_onnx": 0.0, "box_px": 0.0}
    for a in names:
        for b in names:
            for backend in ("torch", "onnx"):
                key = f"p_fake_{backend}"
                moves[key] = max(moves[key], float(np.max(np.abs(np.subtract(runs[a][key], runs[b][key])))))
            moves["torch_vs_onnx"] = max(moves["torch_vs_onnx"], float(np.max(np.abs(
                np.subtract(runs[a]["p_fake_torch"], runs[b]["p_fake_onnx"])))))
            for boxes_a, boxes_b in zip(runs[a]["boxes"], runs[b]["boxes"]):
                if len(boxes_a) != len(boxes_b):
                    moves["box_px"] = None
                    return moves
                if boxes_a:
                    moves["box_px"] = max(moves["box_px"], float(np.max(np.abs(np.subtract(boxes_a, boxes_b)))))
    return moves


def available_kernels() -> list[str]:
    """The kernel settings this CPU can run that differ from each other: ``best`` is dropped when it
    is the same as ``avx2`` (a CPU without AVX-512), ``avx2`` when the CPU lacks AVX2."""
    import torch

    best = torch.backends.cpu.get_cpu_capability()
    kernels = ["default"]
    if best not in ("DEFAULT", "NO AVX"):
        kernels.append("avx2")
    if best not in ("AVX2", "DEFAULT", "NO AVX"):
        kernels.append("best")
    return kernels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shared-crops", type=int, default=200, help="DFDC crops of ../shared scored too")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="dflab-kernels-") as folder:
        crops, photos = probe_images(Path(folder), args.shared_crops)
        runs = {kernel: run_probe(kernel, crops, photos) for kernel in available_kernels()}
        runs["onnx-2-threads"] = run_probe(available_kernels()[-1], crops, photos, threads=2)
    result = {"crops": len(crops), "photos": len(photos),
              "capabilities": {name: run["capability"] for name, run in runs.items()},
              "faces_per_photo": [len(b) for b in runs["default"]["boxes"]], "largest_moves": largest_moves(runs)}
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.write_text(json.dumps({**result, "runs": runs}, indent=2))


if __name__ == "__main__":
    main()
