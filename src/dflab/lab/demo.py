"""``dflab demo``: the whole lab on a small generated dataset, no data or weights needed."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from dflab.data.synthetic.demo_lab import make_lab
from dflab.lab.config import LabConfig
from dflab.lab.protocol import run_lab
from dflab.runtime.progress import info

#: Sized so that the demo runs in well under 3 minutes on 2 CPU cores.
DEMO_SIZES = dict(n_videos_dev=24, n_videos_eval=12, frames_per_video=8, size=128, n_t23_dev=100, n_t23_eval=50)


def run_demo(out: str | Path, *, detectors: Sequence[str] = ("ela-logreg", "ela-rf"), seed: int = 0,
             workers: int | None = None, command: str = "", n_boot: int = 500) -> dict:
    """Generate the synthetic lab under ``out/data`` and run Tasks 1-3 on it; returns the metrics."""
    out = Path(out)
    data_root = out / "data"
    if not (data_root / "README.txt").exists():
        info(f"generating the synthetic lab in {data_root}")
        make_lab(data_root, seed=seed, overwrite=True, **DEMO_SIZES)
    config = LabConfig(task1=data_root / "Task_1", task23=data_root / "Task_2_3", detectors=list(detectors),
                       out=out, seed=seed, n_boot=n_boot, workers=workers, synthetic=True,
                       title="deepfake-lab demo (synthetic data)", command=command or "dflab demo")
    return run_lab(config)
