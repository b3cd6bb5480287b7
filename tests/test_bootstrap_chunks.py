"""bootstrap_ci draws its resamples a chunk at a time (bounded memory on big corpora): the intervals
must be bit-identical to drawing the whole (n_boot, n_groups) matrix at once, as it did before."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pandas as pd
import pytest

from dflab.metrics import bootstrap
from dflab.metrics.bootstrap import _weighted_auc_eer, bootstrap_ci


def _whole_matrix_bootstrap(labels, scores, groups, *, n_boot, seed, chunk_elements, alpha=0.05):
    """The implementation before the chunked draw (one rng.integers call for every resample)."""
    labels, scores = np.asarray(labels), np.asarray(scores, dtype=float)
    n_samples = labels.shape[0]
    if groups is None:
        codes, n_groups = np.arange(n_samples), n_samples
    else:
        codes, uniques = pd.factorize(np.asarray(groups), sort=True)
        n_groups = len(uniques)
    drawn = np.random.default_rng(seed).integers(0, n_groups, size=(n_boot, n_groups))
    offsets = np.arange(n_boot)[:, None] * n_groups
    multiplicity = np.bincount((drawn + offsets).ravel(), minlength=n_boot * n_groups).reshape(n_boot, n_groups)
    order = np.argsort(-scores, kind="stable")
    sorted_scores, sorted_codes, sorted_is_fake = scores[order], codes[order], labels[order] == 1
    value_starts = np.flatnonzero(np.r_[True, sorted_scores[1:] != sorted_scores[:-1]])
    chunk = max(1, chunk_elements // n_samples)
    parts = [_weighted_auc_eer(multiplicity[start:start + chunk][:, sorted_codes].astype(float),
                               sorted_is_fake, value_starts) for start in range(0, n_boot, chunk)]
    valid = np.concatenate([p[2] for p in parts])
    percentiles = [100.0 * alpha / 2.0, 100.0 * (1.0 - alpha / 2.0)]
    auc = np.percentile(np.concatenate([p[0] for p in parts])[valid], percentiles)
    eer = np.percentile(np.concatenate([p[1] for p in parts])[valid], percentiles)
    return {"auc": (float(auc[0]), float(auc[1])), "eer": (float(eer[0]), float(eer[1]))}


def _case(n_samples: int, n_groups: int | None, seed: int):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n_samples)
    scores = np.round(rng.normal(labels * 0.7, 1.0), 2)  # rounded: ties across classes
    groups = None if n_groups is None else rng.integers(0, n_groups, n_samples).astype(str)
    return labels, scores, groups


@pytest.mark.parametrize("n_samples, n_groups, n_boot, chunk_elements", [
    (12, None, 2, 2_000_000),           # two resamples, one chunk
    (50, 10, 200, 1_000),               # chunk of 20 rows: 10 whole chunks, boundary exactly at n_boot
    (50, 10, 201, 1_000),               # one row past a boundary
    (50, 10, 199, 1_000),               # one row short of a boundary
    (333, None, 97, 1_000),             # chunk of 3 rows, last chunk partial
    (1_000, 400, 64, 999),              # chunk_elements < n_samples: one row per chunk
    (30_000, None, 150, 2_000_000),     # the real chunk size (66 rows), last chunk partial
])
def test_chunked_draw_is_bit_identical_to_whole_matrix(monkeypatch, n_samples, n_groups, n_boot,
                                                         chunk_elements) -> None:
    monkeypatch.setattr(bootstrap, "_BOOT_CHUNK_ELEMENTS", chunk_elements)
    labels, scores, groups = _case(n_samples, n_groups, seed=n_samples + n_boot)
    for seed in (0, 12345):
        chunked = bootstrap_ci(labels, scores, groups, n_boot=n_boot, seed=seed)
        whole = _whole_matrix_bootstrap(labels, scores, groups, n_boot=n_boot, seed=seed,
                                        chunk_elements=chunk_elements)
        assert chunked == whole  # exact float equality, not approx


def test_peak_memory_does_not_grow_with_resamples() -> None:
    labels, scores, _ = _case(20_000, None, seed=3)

    def peak_bytes(n_boot: int) -> int:
        tracemalloc.start()
        bootstrap_ci(labels, scores, n_boot=n_boot, seed=0)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        return peak

    few, many = peak_bytes(100), peak_bytes(800)
    # the whole-matrix draw held 2 x 800 x 20000 int64 (256 MB) at 800 resamples
    assert many < 1.2 * few, (few, many)
