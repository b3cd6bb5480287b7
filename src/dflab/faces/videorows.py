"""Video datasets -> face-crop manifests: the stage between scanning a dataset and training on it.

A scanned manifest (see :mod:`dflab.data`) may list video files (FaceForensics++, DFDC, real/fake
folders of videos, lab folders holding videos). Detectors score images, so each video row is
replaced by one row per face crop (the largest face of each sampled frame), with the video's
label, split, video id, pair and dataset, so video-level metrics group the crops by the original
video. Extraction goes through :func:`dflab.faces.extract_faces`, whose per-video cache (content
hash + extraction settings) makes a rerun reuse the crops instead of decoding and detecting again.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from dflab.data.files import is_video_file
from dflab.faces.detection import FaceDetector
from dflab.faces.crops import extract_faces

#: One row per video of the manifest: how its face extraction went.
STATUS_COLUMNS = ["path", "video", "label", "split", "dataset", "status", "reason", "frames",
                  "frames_with_face", "faces"]


#: Where the lab writes the status rows of all its manifests (inside its ``manifests/`` folder).
STATUS_FILE = "video_faces_status.csv"


def expand_video_rows(manifest: pd.DataFrame, cache_dir: str | os.PathLike, *, n_frames: int = 16,
                      detector: str | FaceDetector = "mtcnn", scale: float = 1.3, size: int = 256,
                      detector_options: dict | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Replace each video row of ``manifest`` by one row per face crop; keep image rows as they are.

    Faces come from ``n_frames`` frames sampled evenly over each video (largest face per frame,
    cut ``scale`` x the box, ``size`` px square), extracted into ``cache_dir`` and reused from there
    on a rerun with the same settings. A crop row keeps every column of its video row (label, split,
    video, pair, dataset and any extras) with ``path`` set to the crop and two added columns:
    ``source`` (the video file) and ``frame_index``. Rows keep the manifest's order.

    Returns ``(frame_manifest, status)``: ``status`` has one row per video (``STATUS_COLUMNS``);
    ``status`` is ``ok``, ``no_face`` or ``error`` with a one-line ``reason``. A video that yields
    no crop has no row in ``frame_manifest``; :func:`skipped_videos` lists those.
    """
    manifest = manifest.reset_index(drop=True)
    is_video = manifest["path"].map(is_video_file).to_numpy(dtype=bool)
    if not is_video.any():
        return manifest.copy(), pd.DataFrame(columns=STATUS_COLUMNS)
    video_paths = list(dict.fromkeys(manifest.loc[is_video, "path"].astype(str)))
    crops = extract_faces(video_paths, cache_dir, n_frames=n_frames, detector=detector, scale=scale,
                          size=size, policy="largest", detector_options=detector_options)
    by_source = {str(Path(source)): part for source, part in crops.groupby("source", sort=False)}
    status_by_source = {str(Path(s["source"])): s for s in crops.attrs["sources"]}

    # Each row is repeated once (an image) or once per crop (a video; zero times without a crop).
    counts = np.ones(len(manifest), dtype=np.int64)
    crop_paths: list[str] = []
    frame_indices: list[int] = []
    status_rows: list[dict] = []
    for position in np.flatnonzero(is_video):
        row = manifest.iloc[position]
        source = str(Path(row["path"]))
        extraction = status_by_source[source]
        part = by_source.get(source)
        n_crops = 0 if part is None else len(part)
        state, reason = str(extraction["status"]), str(extraction["reason"] or "")
        if state == "ok" and n_crops == 0:
            # Faces were found but every box was degenerate: nothing to score either.
            state, reason = "no_face", "no usable face crop"
        status_rows.append({"path": row["path"], "video": row["video"], "label": row["label"],
                            "split": row["split"], "dataset": row["dataset"], "status": state, "reason": reason,
                            "frames": int(extraction["frames"]),
                            "frames_with_face": int(extraction["frames_with_face"]), "faces": n_crops})
        counts[position] = n_crops
        if n_crops:
            crop_paths.extend(part["path"].astype(str))
            frame_indices.extend(part["frame_index"].astype("int64"))
    frame_manifest = manifest.iloc[np.repeat(np.arange(len(manifest)), counts)].reset_index(drop=True)
    from_video = np.repeat(is_video, counts)
    frame_manifest["source"] = np.where(from_video, frame_manifest["path"].astype(str), None)
    frame_manifest.loc[from_video, "path"] = crop_paths
    frame_manifest["frame_index"] = pd.Series(pd.NA, index=frame_manifest.index, dtype="Int64")
    frame_manifest.loc[from_video, "frame_index"] = frame_indices
    return frame_manifest, pd.DataFrame(status_rows, columns=STATUS_COLUMNS)


def skipped_videos(status: pd.DataFrame) -> list[dict]:
    """The videos that gave no face crop, as the lab's skipped-file entries (path, reason, stage)."""
    if status is None or status.empty:
        return []
    failed = status[status["status"] != "ok"].drop_duplicates("path").sort_values("path")
    return [{"path": str(path), "reason": str(reason) or str(state), "stage": "faces"}
            for path, state, reason in zip(failed["path"], failed["status"], failed["reason"])]


def read_video_status(folder: str | os.PathLike) -> pd.DataFrame:
    """The status rows the lab wrote to ``folder/STATUS_FILE`` (empty when it has none)."""
    path = Path(folder) / STATUS_FILE
    if not path.is_file():
        return pd.DataFrame(columns=STATUS_COLUMNS)
    return pd.read_csv(path, dtype={"video": str, "reason": str, "split": str, "dataset": str},
                       keep_default_na=False)
