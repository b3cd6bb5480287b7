"""Pairs and triplets for metric learning (siamese, triplet CNNs): sampled within the training split, never across a real video and its fakes."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from dflab.detectors.deep.tensors import ImageDataset


def pair_links(data: Any) -> np.ndarray | None:
    """The manifest's ``pair`` column (the real<->fake source link) as strings, "" where unknown;
    None when the training data carries no links (a tuple, or a manifest without the column)."""
    import pandas as pd

    if not isinstance(data, pd.DataFrame) or "pair" not in data.columns:
        return None
    links = np.asarray(["" if (p is None or (isinstance(p, float) and math.isnan(p))) else str(p)
                        for p in data["pair"]], dtype=object)
    return links if (links != "").any() else None


def _partner(candidates: np.ndarray, videos: np.ndarray, video: str, rng: np.random.Generator,
             tries: int = 8) -> int:
    """A random index from ``candidates`` whose video is not ``video``; -1 when there is none."""
    if len(candidates) == 0:
        return -1
    for _ in range(tries):  # rejection sampling: cheap when the class spans many videos
        pick = candidates[rng.integers(len(candidates))]
        if videos[pick] != video:
            return int(pick)
    others = candidates[videos[candidates] != video]
    return int(others[rng.integers(len(others))]) if len(others) else -1


def sample_pairs(labels: np.ndarray, videos: np.ndarray, links: np.ndarray | None, n_pairs: int,
                 rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(first, second, similar)`` index pairs for contrastive training, half of each kind:

    * dissimilar (similar=0): a fake frame and a frame of the real video it was made from (its
      ``links`` value); a fake without a known source gets a real frame of another video;
    * similar (similar=1): two frames of the same class from different videos.

    Two frames of one video are never paired (a real and a fake never share a video id either).
    """
    labels, videos = np.asarray(labels), np.asarray(videos).astype(str)
    reals, fakes = np.flatnonzero(labels == 0), np.flatnonzero(labels == 1)
    if len(reals) == 0 or len(fakes) == 0:
        raise ValueError("pairs need both real and fake images")
    by_link: dict[str, np.ndarray] = {}
    if links is not None:
        links = np.asarray(links, dtype=object)
        real_links = links[reals]
        for link in set(real_links) - {""}:
            by_link[link] = reals[real_links == link]
    first, second, similar = [], [], []
    n_dissimilar = n_pairs // 2
    for fake in fakes[rng.integers(len(fakes), size=n_dissimilar)]:
        own = by_link.get(links[fake], np.empty(0, np.int64)) if links is not None else np.empty(0, np.int64)
        real = _partner(own, videos, videos[fake], rng)
        if real < 0:
            real = _partner(reals, videos, videos[fake], rng)
        if real >= 0:
            first.append(real), second.append(int(fake)), similar.append(0.0)
    for anchor in rng.integers(len(labels), size=n_pairs - n_dissimilar):
        same = reals if labels[anchor] == 0 else fakes
        partner = _partner(same, videos, videos[anchor], rng)
        if partner >= 0:
            first.append(int(anchor)), second.append(partner), similar.append(1.0)
    order = rng.permutation(len(first))
    return (np.asarray(first, np.int64)[order], np.asarray(second, np.int64)[order],
            np.asarray(similar, np.float32)[order])


def sample_triplets(labels: np.ndarray, videos: np.ndarray, rng: np.random.Generator,
                    links: np.ndarray | None = None) -> np.ndarray:
    """(n, 3) rows ``anchor, positive, negative``: every image once as anchor (shuffled), a positive of
    its class and a negative of the other class, each from another video than the anchor's. With
    ``links``, half the negatives of a fake anchor are frames of its own source video (the hardest
    negative: the same face without the manipulation)."""
    labels, videos = np.asarray(labels), np.asarray(videos).astype(str)
    by_class = {0: np.flatnonzero(labels == 0), 1: np.flatnonzero(labels == 1)}
    own_source: dict[str, np.ndarray] = {}
    if links is not None:
        links = np.asarray(links, dtype=object)
        for link in set(links[by_class[0]]) - {""}:
            own_source[link] = by_class[0][links[by_class[0]] == link]
    rows = []
    for anchor in rng.permutation(len(labels)):
        label = int(labels[anchor])
        positive = _partner(by_class[label], videos, videos[anchor], rng)
        negative = -1
        if label == 1 and links is not None and links[anchor] in own_source and rng.random() < 0.5:
            negative = _partner(own_source[links[anchor]], videos, videos[anchor], rng)
        if negative < 0:
            negative = _partner(by_class[1 - label], videos, videos[anchor], rng)
        if positive >= 0 and negative >= 0:
            rows.append((int(anchor), positive, negative))
    return np.asarray(rows, dtype=np.int64).reshape(-1, 3)


class TupleDataset(Dataset):
    """Rows of image indices into an :class:`ImageDataset` -> ``(k images stacked, target, error)``."""

    def __init__(self, images: ImageDataset, rows: np.ndarray, targets: np.ndarray | None = None):
        self.images, self.rows = images, np.asarray(rows, dtype=np.int64)
        self.targets = np.zeros(len(self.rows), np.float32) if targets is None else np.asarray(targets, np.float32)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int):
        items = [self.images[int(i)] for i in self.rows[index]]
        error = "; ".join(e for _, _, e in items if e)
        return torch.stack([x for x, _, _ in items]), float(self.targets[index]), error


def contrastive_loss(first: torch.Tensor, second: torch.Tensor, similar: torch.Tensor,
                     margin: float) -> torch.Tensor:
    """Hadsell, Chopra & LeCun (2006): similar pairs pulled together (d^2), dissimilar pairs pushed
    to at least ``margin`` apart (max(0, margin - d)^2)."""
    distance = torch.linalg.vector_norm(first - second, dim=1)
    return 0.5 * (similar * distance.pow(2) + (1 - similar) * torch.relu(margin - distance).pow(2)).mean()
