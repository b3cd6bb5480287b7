"""``scores.csv``: every file scored once per task and detector, appended as it goes, so an interrupted
run resumes where it stopped.

Images are scored in chunks of :data:`SCORE_CHUNK`. A video is scored as ``dflab predict`` scores it
(:func:`dflab.inference.video.predict_video`: frames sampled evenly, faces followed as persons, cut
as the model's training crops were, scored) and written one video at a time: one row per frame of the
person whose verdict the video takes,
its ``path`` the video's followed by :data:`FRAME_MARK` and the frame's index, so that frame- and
video-level metrics group the frames by the video's id; a video without a usable face is one row
with no score and the reason."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from dflab.data.files import is_video_file
from dflab.detectors import Detector
from dflab.media.images import failure_reason
from dflab.runtime.files import append_csv, drop_partial_last_line
from dflab.runtime.progress import progress_bar, quiet_progress

if TYPE_CHECKING:  # the cluster engine (dask) is imported only by runs that use one
    from dflab.runtime.cluster import OnCluster

SCORE_COLUMNS = ["task", "detector", "dataset", "split", "path", "video", "label", "score", "error"]


#: Files scored per write: an interrupted run loses at most one chunk.
SCORE_CHUNK = 512


#: Between a video's path and a frame index in the ``path`` of a frame's row.
FRAME_MARK = "#frame="


#: Frames sampled per video when a manifest lists video files (as ``dflab predict``).
FRAMES_PER_VIDEO = 32


def scored_source(path: str) -> str:
    """The manifest path a ``scores.csv`` row belongs to (a video's for its frames' rows)."""
    return path.rsplit(FRAME_MARK, 1)[0] if FRAME_MARK in path else path


def score_manifest(detector: Detector, manifest: pd.DataFrame, *, scores_file: Path, task: str,
                   detector_name: str, split: str, cluster: OnCluster | None = None,
                   frames_per_video: int = FRAMES_PER_VIDEO) -> pd.DataFrame:
    """Score every file of ``manifest`` not yet in ``scores_file`` (appending as it goes); return all rows
    of this task × detector (a video's: one per scored frame). ``cluster``: the chunks are scored there
    (by the model its loader loads on each worker), each appended as it finishes."""
    done = read_scores(scores_file)
    mine = done[(done["task"] == task) & (done["detector"] == detector_name)]
    written = set(mine["path"])
    sources_done = {scored_source(path) for path in written}
    score = partial(score_rows, task=task, detector_name=detector_name, split=split, frames_per_video=frames_per_video)
    is_video = manifest["path"].map(is_video_file).to_numpy(dtype=bool)
    videos, manifest = manifest[is_video], manifest[~is_video]
    # A batch's shape decides how BLAS sums it: the chunks are the same in every run (from the whole
    # manifest, on a cluster too), and a chunk that a stopped run left half written is scored whole
    # again, only its missing rows appended. Chunks of the remaining files alone would change their
    # scores in the last digit.
    chunks = [manifest.iloc[start:start + SCORE_CHUNK] for start in range(0, len(manifest), SCORE_CHUNK)]
    chunks += [videos.iloc[start:start + 1] for start in range(len(videos))]
    chunks = [chunk for chunk in chunks if not chunk["path"].isin(sources_done).all()]
    scored = (score(detector, chunk) for chunk in chunks) if cluster is None else \
        (rows for _, rows in cluster.map(score, chunks))
    n_videos = sum(1 for chunk in chunks if chunk["path"].map(is_video_file).any())
    with progress_bar(f"{detector_name}: {task}: videos", n_videos) as advance:
        for rows in scored:
            append_csv(scores_file, rows[~rows["path"].isin(written)])
            if rows["path"].map(scored_source).map(is_video_file).any():
                advance(1)
    everything = read_scores(scores_file)
    wanted = set(manifest["path"]) | set(videos["path"])
    return everything[(everything["task"] == task) & (everything["detector"] == detector_name)
                      & everything["path"].map(scored_source).isin(wanted)].reset_index(drop=True)


def score_rows(detector: Detector, chunk: pd.DataFrame, *, task: str, detector_name: str, split: str,
               frames_per_video: int = FRAMES_PER_VIDEO) -> pd.DataFrame:
    """The ``scores.csv`` rows of one chunk of the manifest (of images, or of videos)."""
    if chunk["path"].map(is_video_file).any():
        return pd.concat([_video_rows(detector, row, task=task, detector_name=detector_name, split=split,
                                      frames_per_video=frames_per_video) for row in chunk.itertuples(index=False)],
                         ignore_index=True)
    scores = detector.predict_proba(chunk, on_error="nan")
    return pd.DataFrame({
        "task": task, "detector": detector_name, "dataset": chunk["dataset"].to_numpy(), "split": split,
        "path": chunk["path"].to_numpy(), "video": chunk["video"].to_numpy(),
        "label": chunk["label"].to_numpy(), "score": scores,
        "error": [failure_reason(p) if np.isnan(s) else "" for p, s in zip(chunk["path"], scores)],
    }, columns=SCORE_COLUMNS)


def _video_rows(detector: Detector, row, *, task: str, detector_name: str, split: str,
                frames_per_video: int) -> pd.DataFrame:
    from dflab.inference.video import predict_video

    with quiet_progress():  # one bar over the videos, not one per video
        result = predict_video(detector, row.path, n_frames=frames_per_video, framing=detector.face_framing)
    common = {"task": task, "detector": detector_name, "dataset": row.dataset, "split": split, "video": row.video,
              "label": row.label}
    if result["status"] != "ok":
        frames = [{**common, "path": row.path, "score": float("nan"), "error": result["reason"] or result["status"]}]
    else:
        # The frames of the person whose verdict the video takes, as predict gives it (one row per frame).
        frames = [{**common, "path": f"{row.path}{FRAME_MARK}{frame['frame_index']}", "score": frame["p_fake"],
                   "error": "" if np.isfinite(frame["p_fake"]) else "face crop could not be scored"}
                  for frame in result["frame_scores"] if frame["person"] == result["person"]]
    return pd.DataFrame(frames, columns=SCORE_COLUMNS)


def read_scores(path: Path) -> pd.DataFrame:
    if not Path(path).exists():
        return pd.DataFrame(columns=SCORE_COLUMNS)
    drop_partial_last_line(path)
    frame = pd.read_csv(path, dtype={"video": str, "error": str, "path": str}, keep_default_na=False,
                        na_values={"score": ["", "nan", "NaN"]}, encoding_errors="surrogateescape")
    return frame


def skipped_files(scores: pd.DataFrame) -> list[dict]:
    """One entry per file that could not be scored, with the reason and where it was met."""
    failed = scores[scores["error"].astype(str).str.len() > 0]
    out = []
    for path, rows in failed.groupby("path", sort=True):
        stages = sorted({f"{t}/{d}" for t, d in zip(rows["task"], rows["detector"])})
        out.append({"path": str(path), "reason": str(rows["error"].iloc[0]), "stage": ", ".join(stages)})
    return out
