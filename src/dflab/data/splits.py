"""Leak-free splits: a video, and a real video with the fakes made from it, are always on one side."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from sklearn.model_selection import StratifiedGroupKFold

from dflab.data.manifest import FAKE, LABEL_NAMES, REAL, DataError, validate_manifest


def group_ids(df: pd.DataFrame) -> np.ndarray:
    """Integer group per row such that rows sharing a video or a pair share a group: connected
    components of the rows' video and pair names (one name space, so a pair named after its real
    video joins that video even where the real row has no pair written)."""
    videos = df["video"].astype(str).to_numpy()
    pairs = df["pair"].to_numpy(dtype=object)
    has_pair = pd.notna(pairs)
    names = pd.Index(pd.unique(np.concatenate([videos, pairs[has_pair].astype(str)])))
    video_node = names.get_indexer(videos)
    pair_node = video_node.copy()
    pair_node[has_pair] = names.get_indexer(pairs[has_pair].astype(str))
    graph = coo_matrix((np.ones(len(df)), (video_node, pair_node)), shape=(len(names), len(names)))
    _, component = connected_components(graph, directed=False)
    return component[video_node]


def split_by_group(
    df: pd.DataFrame, *, valid_fraction: float = 0.2, seed: int = 0
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Train/validation split of one split's rows (e.g. development) where no video and no pair
    falls on both sides, stratified roughly by label (scikit-learn's StratifiedGroupKFold; the
    validation side is one fold of round(1/valid_fraction)). Deterministic for a seed."""
    validate_manifest(df)
    if not 0.0 < valid_fraction < 1.0:
        raise DataError(f"valid_fraction must be between 0 and 1 (exclusive); got {valid_fraction}")
    splits = sorted(df["split"].unique())
    if len(splits) > 1:
        raise DataError(
            f"split_by_group expects rows of one split; got {', '.join(splits)} "
            "(filter first, e.g. df[df.split == 'development'])"
        )
    groups = group_ids(df)
    n_groups = len(np.unique(groups))
    # A fold is 1/n_splits of the data: take the smaller side as the fold and swap when needed.
    flip = valid_fraction > 0.5
    fold_fraction = 1.0 - valid_fraction if flip else valid_fraction
    # Stratified folds need every class in every fold: no more folds than the rarer class has groups.
    groups_per_label = pd.Series(groups).groupby(df["label"].to_numpy()).nunique()
    n_splits = min(max(2, round(1.0 / fold_fraction)), n_groups, int(groups_per_label.min()))
    if n_splits < 2 or len(groups_per_label) < 2:
        raise DataError(
            f"cannot split {splits[0]} rows into training and validation by video: "
            + (f"all {len(df)} rows form one video/pair group" if n_groups < 2 else
               "it needs at least 2 videos of each class (real and fake) "
               f"(has {', '.join(f'{int(n)} {LABEL_NAMES[int(label)]}' for label, n in groups_per_label.items())})"))
    folds = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        # "least populated class has fewer members than n_splits": the class check below says it better.
        warnings.filterwarnings("ignore", message="The least populated class", category=UserWarning)
        rest_idx, fold_idx = next(folds.split(np.zeros(len(df)), df["label"].to_numpy(), groups))
    train_idx, valid_idx = (fold_idx, rest_idx) if flip else (rest_idx, fold_idx)
    train, valid = df.iloc[np.sort(train_idx)], df.iloc[np.sort(valid_idx)]
    for side, part in (("train", train), ("validation", valid)):
        missing = [LABEL_NAMES[label] for label in (REAL, FAKE) if not (part["label"] == label).any()]
        if missing:
            raise DataError(
                f"cannot split {splits[0]} rows ({n_groups} video/pair groups) with valid_fraction "
                f"{valid_fraction}: the {side} side would have no {' or '.join(missing)} samples"
            )
    return train.reset_index(drop=True), valid.reset_index(drop=True)


def _choose_videos(part: pd.DataFrame, limit: int, rng: np.random.Generator) -> set[str]:
    """At most ``limit`` videos per label from one split, taking whole video/pair groups first."""
    videos = part.drop_duplicates("video")[["video", "label"]].copy()
    videos["group"] = pd.Series(group_ids(part), index=part.index).loc[videos.index].to_numpy()
    members = {g: sub for g, sub in videos.groupby("group", sort=True)}
    group_names = list(members)
    order = [group_names[i] for i in rng.permutation(len(group_names))]
    room = {REAL: limit, FAKE: limit}
    chosen: set[str] = set()
    leftovers = []
    for group in order:
        counts = members[group]["label"].value_counts()
        if all(counts.get(label, 0) <= room[label] for label in room):
            chosen.update(members[group]["video"])
            for label in room:
                room[label] -= int(counts.get(label, 0))
        else:
            leftovers.append(group)
    # Groups too big for what is left: fill the remaining room one video at a time.
    for group in leftovers:
        for video, label in zip(members[group]["video"], members[group]["label"]):
            if room[label] > 0:
                chosen.add(video)
                room[label] -= 1
    return chosen


def subsample(
    df: pd.DataFrame,
    *,
    per_video: int | None = None,
    max_videos_per_label: int | None = None,
    seed: int = 0,
) -> pd.DataFrame:
    """Keep at most ``per_video`` rows per video (evenly spaced in path order) and at most
    ``max_videos_per_label`` videos per (split, label), keeping real/fake pairs together where the
    limit allows. Row order is kept; deterministic for a seed."""
    validate_manifest(df)
    for name, value in (("per_video", per_video), ("max_videos_per_label", max_videos_per_label)):
        if value is not None and value < 1:
            raise DataError(f"{name} must be at least 1; got {value}")
    keep = pd.Series(True, index=df.index)
    if max_videos_per_label is not None:
        rng = np.random.default_rng(seed)
        for _, part in df.groupby(["dataset", "split"], sort=True):
            chosen = _choose_videos(part, max_videos_per_label, rng)
            keep.loc[part.index] = part["video"].isin(chosen)
    if per_video is not None:
        kept = df[keep.to_numpy()].sort_values(["dataset", "split", "video", "path"], kind="stable")
        by_video = kept.groupby(["dataset", "split", "video"], sort=False)
        position = by_video.cumcount().to_numpy()
        size = by_video["path"].transform("size").to_numpy()
        # Frame p of n is kept when it is one of floor(j*(n-1)/(k-1) + 0.5), j = 0..k-1 (k = per_video):
        # evenly spaced, first and last included. floor(x + 0.5), not np.round: banker's rounding
        # could pick one index twice.
        k = per_video
        if k == 1:
            picked = position == 0
        else:
            step = (size - 1) / (k - 1)
            nearest_j = np.floor(position / np.maximum(step, 1e-12) + 0.5)
            picked = np.floor(nearest_j * step + 0.5) == position
        picked |= size <= k
        keep.loc[kept.index[~picked]] = False
    return df[keep.to_numpy()].reset_index(drop=True)


def select_split(manifest: pd.DataFrame, split: str, source) -> pd.DataFrame:
    """The rows of ``split`` ("all": every row); a split the dataset does not have is a DataError."""
    if split == "all":
        return manifest.reset_index(drop=True)
    part = manifest[manifest["split"] == split]
    if part.empty:
        splits = ", ".join(sorted(manifest["split"].unique()))
        raise DataError(f"{source}: no '{split}' split (has: {splits}); use --split")
    return part.reset_index(drop=True)
