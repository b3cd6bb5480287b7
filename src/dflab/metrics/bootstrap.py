"""Bootstrap confidence intervals of AUC and EER, resampling videos (never frames) so that the frames of one video move together."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from dflab.metrics.core import MetricsError, as_1d, check_labels_scores

# Upper bound on the number of floats per bootstrap chunk (rows x samples), to bound memory.
_BOOT_CHUNK_ELEMENTS = 2_000_000


def _weighted_auc_eer(
    weights: np.ndarray, is_fake: np.ndarray, value_starts: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """AUC and interpolated EER for many weightings of the same samples at once.

    weights: (n_rows, n_samples) non-negative sample weights (bootstrap multiplicities), with
    samples sorted by score descending; value_starts: index of the first sample of each
    distinct score value. Returns (auc, eer, valid) per row; valid is False where a row has
    zero total weight on one class (those rows' auc/eer are NaN).
    Same definitions as roc_auc (ties count half) and eer (polyline crossing) on the
    resampled data: duplicated points from zero-weight values do not change the polyline.
    """
    fake_weights = np.add.reduceat(weights * is_fake, value_starts, axis=1)
    real_weights = np.add.reduceat(weights * ~is_fake, value_starts, axis=1)
    true_pos = np.cumsum(fake_weights, axis=1)
    false_pos = np.cumsum(real_weights, axis=1)
    n_fake = true_pos[:, -1]
    n_real = false_pos[:, -1]
    valid = (n_fake > 0) & (n_real > 0)
    n_fake_safe = np.where(valid, n_fake, 1.0)
    n_real_safe = np.where(valid, n_real, 1.0)

    # Each real at value u beats the fakes strictly above it and ties half of those at u.
    fakes_above_or_half = true_pos - 0.5 * fake_weights
    auc = np.sum(real_weights * fakes_above_or_half, axis=1) / (n_fake_safe * n_real_safe)

    rows = weights.shape[0]
    zeros = np.zeros((rows, 1))
    tpr = np.hstack([zeros, true_pos / n_fake_safe[:, None]])
    fpr = np.hstack([zeros, false_pos / n_real_safe[:, None]])
    diff = (1.0 - tpr) - fpr  # non-increasing, from 1 to -1 on valid rows
    j = np.argmax(diff <= 0.0, axis=1)
    i = j - 1
    row_index = np.arange(rows)
    diff_i, diff_j = diff[row_index, i], diff[row_index, j]
    denom = np.where(valid, diff_i - diff_j, 1.0)  # diff_i > 0 >= diff_j on valid rows
    fraction = diff_i / denom
    eer_values = fpr[row_index, i] + fraction * (fpr[row_index, j] - fpr[row_index, i])
    auc = np.where(valid, auc, np.nan)
    eer_values = np.where(valid, eer_values, np.nan)
    return auc, eer_values, valid


def _resample_weights(rng: np.random.Generator, rows: int, n_groups: int, sample_codes: np.ndarray) -> np.ndarray:
    """(rows, n_samples) float weights of the next ``rows`` resamples: each sample weighs as many
    times as its group was drawn (``sample_codes``: each sample's group code)."""
    drawn = rng.integers(0, n_groups, size=(rows, n_groups))
    offsets = np.arange(rows)[:, None] * n_groups
    multiplicity = np.bincount((drawn + offsets).ravel(), minlength=rows * n_groups).reshape(rows, n_groups)
    return multiplicity[:, sample_codes].astype(float)


def bootstrap_ci(
    labels: Any,
    scores: Any,
    groups: Any = None,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> dict[str, tuple[float, float]]:
    """Percentile bootstrap confidence intervals for AUC and EER, resampling groups.

    Groups (e.g. videos) are drawn with replacement, as many as there are groups, and every
    sample of a drawn group enters the resample (frames of one video are correlated, so
    resampling frames would understate the uncertainty). groups=None: each sample is its own
    group. Resamples that contain only one class are skipped. Deterministic for a given seed:
    groups are coded in sorted order (pandas.factorize(sort=True)) and resample b draws
    ``numpy.random.default_rng(seed).integers(0, n_groups, size=(n_boot, n_groups))[b]``.
    Returns {"auc": (lo, hi), "eer": (lo, hi)} at level 1 - alpha (numpy.percentile, linear).
    """
    label_int, score_array = check_labels_scores(labels, scores)
    n_boot = int(n_boot)
    if n_boot < 1:
        raise MetricsError(f"n_boot must be at least 1; got {n_boot}")
    if not 0.0 < alpha < 1.0:
        raise MetricsError(f"alpha must be in (0, 1); got {alpha}")
    n_samples = label_int.shape[0]
    if groups is None:
        group_codes = np.arange(n_samples)
        n_groups = n_samples
    else:
        group_array = as_1d(groups, "groups")
        if group_array.shape[0] != n_samples:
            raise MetricsError(
                f"groups and scores differ in length: {group_array.shape[0]} groups, "
                f"{n_samples} scores"
            )
        group_codes, uniques = pd.factorize(group_array, sort=True)
        if (group_codes < 0).any():
            raise MetricsError(f"groups contain {int((group_codes < 0).sum())} missing value(s)")
        n_groups = len(uniques)

    order = np.argsort(-score_array, kind="stable")
    sorted_scores = score_array[order]
    sorted_codes = group_codes[order]
    sorted_is_fake = label_int[order] == 1
    value_starts = np.flatnonzero(np.r_[True, sorted_scores[1:] != sorted_scores[:-1]])

    # The draws are made a chunk of resamples at a time, never as one (n_boot, n_groups) matrix
    # (800 MB at 100k groups): the generator's stream is sequential, so successive row blocks are
    # exactly the rows of the whole matrix and the intervals are the same for a seed.
    rng = np.random.default_rng(seed)
    chunk = max(1, _BOOT_CHUNK_ELEMENTS // n_samples)
    auc_parts, eer_parts, valid_parts = [], [], []
    for start in range(0, n_boot, chunk):
        weights = _resample_weights(rng, min(chunk, n_boot - start), n_groups, sorted_codes)
        auc_chunk, eer_chunk, valid_chunk = _weighted_auc_eer(weights, sorted_is_fake, value_starts)
        del weights  # before the next chunk's draw, so that one chunk's arrays are alive at a time
        auc_parts.append(auc_chunk)
        eer_parts.append(eer_chunk)
        valid_parts.append(valid_chunk)
    valid = np.concatenate(valid_parts)
    if not valid.any():
        raise MetricsError(
            f"none of the {n_boot} bootstrap resamples contained both classes "
            f"({n_groups} group(s)); cannot compute confidence intervals"
        )
    auc_values = np.concatenate(auc_parts)[valid]
    eer_values = np.concatenate(eer_parts)[valid]
    percentiles = [100.0 * alpha / 2.0, 100.0 * (1.0 - alpha / 2.0)]
    auc_lo, auc_hi = np.percentile(auc_values, percentiles)
    eer_lo, eer_hi = np.percentile(eer_values, percentiles)
    return {"auc": (float(auc_lo), float(auc_hi)), "eer": (float(eer_lo), float(eer_hi))}
