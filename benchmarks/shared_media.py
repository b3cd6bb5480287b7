"""The media of ../shared the benchmarks run on: the Task_2_3 evaluation face crops and the
FaceForensics++ and DeeperForensics clips (each benchmark imports this module from its own folder)."""

from __future__ import annotations

from pathlib import Path

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"
CLIP_FOLDERS = (SHARED / "videos" / "ffpp_c23", SHARED / "videos" / "deeperforensics")


def evaluation_crop_paths(count: int) -> list[Path]:
    """The first ``count`` Task_2_3 evaluation crops (224 px), in name order."""
    return sorted((SHARED / "Task_2_3" / "evaluation").rglob("*.jpg"))[:count]


def clip_paths() -> list[Path]:
    """The 11 video clips, in name order."""
    return sorted(path for root in CLIP_FOLDERS for path in root.rglob("*.mp4"))
