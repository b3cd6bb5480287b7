"""``scores.csv``: every file scored once per task and detector, appended as it goes, so an interrupted run resumes where it stopped."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from dflab.detectors import Detector
from dflab.media.images import failure_reason
from dflab.runtime.files import append_csv, drop_partial_last_line

if TYPE_CHECKING:  # the cluster engine (dask) is imported only by runs that use one
    from dflab.runtime.cluster import OnCluster

SCORE_COLUMNS = ["task", "detector", "dataset", "split", "path", "video", "label", "score", "error"]


#: Files scored per write: an interrupted run loses at most one chunk.
SCORE_CHUNK = 512


def score_manifest(detector: Detector, manifest: pd.DataFrame, *, scores_file: Path, task: str,
                   detector_name: str, split: str, cluster: OnCluster | None = None) -> pd.DataFrame:
    """Score every file of ``manifest`` not yet in ``scores_file`` (appending as it goes); return all rows
    of this task × detector. ``cluster``: the chunks are scored there (by the model its loader loads
    on each worker), each appended as it finishes."""
    done = read_scores(scores_file)
    mine = done[(done["task"] == task) & (done["detector"] == detector_name)]
    written = set(mine["path"])
    score = partial(score_rows, task=task, detector_name=detector_name, split=split)
    # A batch's shape decides how BLAS sums it: the chunks are the same in every run (from the whole
    # manifest, on a cluster too), and a chunk that a stopped run left half written is scored whole
    # again, only its missing rows appended. Chunks of the remaining files alone would change their
    # scores in the last digit.
    chunks = [manifest.iloc[start:start + SCORE_CHUNK] for start in range(0, len(manifest), SCORE_CHUNK)]
    chunks = [chunk for chunk in chunks if not chunk["path"].isin(written).all()]
    scored = (score(detector, chunk) for chunk in chunks) if cluster is None else \
        (rows for _, rows in cluster.map(score, chunks))
    for rows in scored:
        append_csv(scores_file, rows[~rows["path"].isin(written)])
    everything = read_scores(scores_file)
    return everything[(everything["task"] == task) & (everything["detector"] == detector_name)
                      & everything["path"].isin(set(manifest["path"]))].reset_index(drop=True)


def score_rows(detector: Detector, chunk: pd.DataFrame, *, task: str, detector_name: str, split: str) -> pd.DataFrame:
    """The ``scores.csv`` rows of one chunk of the manifest."""
    scores = detector.predict_proba(chunk, on_error="nan")
    return pd.DataFrame({
        "task": task, "detector": detector_name, "dataset": chunk["dataset"].to_numpy(), "split": split,
        "path": chunk["path"].to_numpy(), "video": chunk["video"].to_numpy(),
        "label": chunk["label"].to_numpy(), "score": scores,
        "error": [failure_reason(p) if np.isnan(s) else "" for p, s in zip(chunk["path"], scores)],
    }, columns=SCORE_COLUMNS)


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
