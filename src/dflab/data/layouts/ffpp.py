"""Layout ``ffpp``: FaceForensics++ (original_sequences / manipulated_sequences, methods and compressions)."""

from __future__ import annotations

import os
import re
from pathlib import Path

from dflab.data.files import child_dirs, short_listing, walk_files, is_video_file
from dflab.data.manifest import FAKE, NO_SPLIT, REAL, DataError

# Folder names FaceForensics++ and its re-packagings put between a video id and its frames.
_FFPP_FRAME_FOLDERS = frozenset({"frames", "images", "image", "faces", "face", "crops", "crop"})


# FaceForensics++ also ships manipulation masks and face-swap models: these are not samples.
_FFPP_SKIP_FOLDERS = frozenset({"masks", "mask", "models"})


_FFPP_COMPRESSION = re.compile(r"^(raw|c\d+)$", re.IGNORECASE)


_FFPP_PAIR = re.compile(r"^(\d+)_\d+$")  # target_source, e.g. 000_003 -> 000


_FFPP_DFD_PAIR = re.compile(r"^(\d+)_\d+__(.+)__[^_]+$")  # 01_02__scene__ID -> 01__scene


def _ffpp_video_id(path: Path, top: Path) -> str:
    """The FaceForensics++ id of a sample: a video file's stem, or the folder holding a frame
    (skipping a generic 'frames'/'images' folder between the id and the frames)."""
    if is_video_file(path):
        return path.stem
    folder = path.parent
    if folder.name.lower() in _FFPP_FRAME_FOLDERS and folder.parent != top:
        folder = folder.parent
    return folder.name


def _ffpp_target(video_id: str) -> str | None:
    match = _FFPP_DFD_PAIR.match(video_id)
    if match:
        return f"{match.group(1)}__{match.group(2)}"
    match = _FFPP_PAIR.match(video_id)
    return match.group(1) if match else None


def scan_ffpp(root: Path, extensions: frozenset[str], dataset: str) -> list[dict]:
    children = child_dirs(root)
    originals, manipulated = children.get("original_sequences"), children.get("manipulated_sequences")
    if originals is None and manipulated is None:
        raise DataError(
            f"cannot read {root} as layout ffpp: expected original_sequences/ and/or "
            f"manipulated_sequences/; found: {short_listing(root)}"
        )

    def sample_files(top: Path) -> list[Path]:
        return [
            path for path in walk_files(top, extensions)
            if not _FFPP_SKIP_FOLDERS.intersection(p.lower() for p in path.relative_to(top).parts[:-1])
        ]

    def compression(path: Path, top: Path) -> str | None:
        return next((p.lower() for p in path.relative_to(top).parts[:-1] if _FFPP_COMPRESSION.match(p)), None)

    records: list[dict] = []
    if originals is not None:
        for path in sample_files(originals):
            video_id = _ffpp_video_id(path, originals)
            records.append(
                {"path": os.path.abspath(path), "label": REAL, "split": NO_SPLIT, "video": video_id,
                 "pair": video_id, "dataset": dataset, "method": "original",
                 "compression": compression(path, originals)}
            )
    if manipulated is not None:
        for method_dir in child_dirs(manipulated).values():
            method_name = method_dir.name
            for path in sample_files(method_dir):
                video_id = _ffpp_video_id(path, method_dir)
                records.append(
                    {"path": os.path.abspath(path), "label": FAKE, "split": NO_SPLIT,
                     # The same id (e.g. 000_003) exists under every method: these are different videos.
                     "video": f"{method_name}/{video_id}", "pair": _ffpp_target(video_id),
                     "dataset": dataset, "method": method_name,
                     "compression": compression(path, method_dir)}
                )
    return records
