"""What a lab run is asked to do (``LabConfig``), as written to ``lab_config.json``."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

TASK_TITLES = {
    "task1": "Task 1 — intra-database",
    "task2": "Task 2 — inter-database (same detector, untouched)",
    "task3": "Task 3 — improved inter-database",
}


@dataclass
class LabConfig:
    task1: Path
    task23: Path | None
    detectors: Sequence[str]
    out: Path
    seed: int = 0
    n_boot: int = 1000
    valid_fraction: float = 0.2
    task3: bool = True
    workers: int | None = None
    #: Quick runs: keep at most this many frames per video / videos per split and label.
    per_video: int | None = None
    max_videos: int | None = None
    synthetic: bool = False
    layout: str | None = None
    title: str = "deepfake-lab report"
    command: str = ""
    detector_params: dict = field(default_factory=dict)
    #: Video datasets: faces are extracted from this many frames per video (cached under out/faces).
    frames_per_video: int = 16
    face_detector: str = "mtcnn"
    #: More public databases whose development rows join Task 3's training part (never its validation).
    task3_data: Sequence[Path] = ()
    #: Which tasks to run; results of the others already in ``out/metrics.json`` are kept.
    tasks: Sequence[int] = (1, 2, 3)
    #: What runs the CNN detectors' networks when scoring: auto, torch or onnx (onnxruntime).
    backend: str = "auto"


def runs_task3(config: LabConfig) -> bool:
    return bool(config.task3) and 3 in config.tasks and config.task23 is not None


def task3_training_sets(config: LabConfig) -> str:
    names = [f"{Path(config.task1).name}/development", f"{Path(config.task23).name}/development"]
    return " + ".join(names + [f"{Path(root).name}/development" for root in config.task3_data])


def config_to_dict(config: LabConfig) -> dict:
    def plain(value):
        if isinstance(value, Path):
            return str(value)
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        return value

    return {k: plain(v) for k, v in asdict(config).items()}
