"""JPEG forensics: the quality a quantisation table was made with (IJG scaling fit, exact-IJG check) and
evidence of double compression (periodic histograms of quantised DCT coefficients)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

#: Median periodicity score above which double JPEG compression is reported (see :func:`double_compression`;
#: single compressions of real faces score 0.2-0.8, double ones 2-6).
DOUBLE_JPEG_THRESHOLD = 1.5


#: Quantised coefficient magnitudes 1..DCT_HISTOGRAM_BINS make up each histogram.
DCT_HISTOGRAM_BINS = 20


#: The low-frequency DCT coefficients (row, column) tested for double compression.
DCT_FREQUENCIES = ((0, 1), (1, 0), (1, 1), (0, 2), (2, 0), (2, 1), (1, 2))


#: Fewer non-zero coefficients than this in a histogram say nothing about its shape.
MIN_COEFFICIENTS = 100


#: IJG (libjpeg) Annex K base tables, natural (row-major) order.
IJG_LUMINANCE = np.array([
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
    14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99])


IJG_CHROMINANCE = np.array([
    17, 18, 24, 47, 99, 99, 99, 99, 18, 21, 26, 66, 99, 99, 99, 99, 24, 26, 56, 99, 99, 99, 99, 99,
    47, 66, 99, 99, 99, 99, 99, 99, *([99] * 32)])


def ijg_table(base: np.ndarray, quality: int) -> np.ndarray:
    """libjpeg's ``jpeg_set_quality`` scaling of a base table (baseline: entries clamped to 1..255)."""
    quality = min(100, max(1, int(quality)))
    scale = 5000 // quality if quality < 50 else 200 - 2 * quality
    return np.clip((base * scale + 50) // 100, 1, 255)


def quality_estimate(luminance: np.ndarray, chrominance: np.ndarray | None = None) -> dict[str, Any]:
    """The IJG quality whose tables are closest (mean absolute difference over every table given)
    and whether they are IJG's tables exactly."""
    observed = [np.asarray(luminance).ravel()]
    bases = [IJG_LUMINANCE]
    if chrominance is not None:
        observed.append(np.asarray(chrominance).ravel())
        bases.append(IJG_CHROMINANCE)
    errors = []
    for quality in range(1, 101):
        errors.append(float(np.mean([np.abs(o - ijg_table(b, quality)).mean() for o, b in zip(observed, bases)])))
    best = int(np.argmin(errors)) + 1
    exact = errors[best - 1] == 0.0
    return {"estimated_quality": best, "ijg_exact": exact, "fit_error": round(errors[best - 1], 3),
            "encoder": f"IJG/libjpeg standard tables at quality {best}" if exact
            else f"not IJG's tables (closest IJG quality {best}, mean difference {errors[best - 1]:.1f})"}


def _dct_matrix() -> np.ndarray:
    k = np.arange(8)
    matrix = np.sqrt(2 / 8) * np.cos(np.pi * (2 * k[None, :] + 1) * k[:, None] / 16)
    matrix[0] /= np.sqrt(2)
    return matrix


_DCT = _dct_matrix()


def quantised_luma_coefficients(luma: np.ndarray, table: np.ndarray) -> np.ndarray:
    """The JPEG's quantised luminance DCT coefficients recovered from its decoded Y plane: the 8x8
    block DCT (on the JPEG grid, level-shifted by 128) divided by the table and rounded. (N, 8, 8)."""
    height, width = (luma.shape[0] // 8) * 8, (luma.shape[1] // 8) * 8
    blocks = luma[:height, :width].astype(np.float64).reshape(height // 8, 8, width // 8, 8).transpose(0, 2, 1, 3)
    coefficients = np.einsum("ij,abjk,lk->abil", _DCT, blocks - 128.0, _DCT)
    return np.rint(coefficients / np.asarray(table, np.float64).reshape(8, 8)).reshape(-1, 8, 8)


def histogram_periodicity(values: np.ndarray, bins: int = DCT_HISTOGRAM_BINS) -> float | None:
    """How periodic the histogram of |values| over 1..bins is, or None with too few values.

    The histogram is divided by its own 5-bin moving average (the smooth Laplacian-like decay of
    natural images goes, the peaks and gaps of double quantisation stay), and the strongest Fourier
    component of period <= bins / 2 is returned, scaled by 1/sqrt(bins)."""
    magnitudes = np.abs(np.asarray(values)).astype(np.int64)
    magnitudes = magnitudes[(magnitudes > 0) & (magnitudes <= bins)]
    if len(magnitudes) < MIN_COEFFICIENTS:
        return None
    histogram = np.bincount(magnitudes, minlength=bins + 1)[1:].astype(np.float64)
    envelope = np.convolve(np.pad(histogram, 2, mode="edge"), np.ones(5) / 5, mode="valid")
    relative = histogram / np.maximum(envelope, 1e-9) - 1.0
    spectrum = np.abs(np.fft.rfft(relative))[2:]
    return float(spectrum.max() / math.sqrt(bins))


def double_compression(luma: np.ndarray, table: np.ndarray) -> dict[str, Any]:
    """The double-JPEG test on a decoded Y plane and its luminance table: the median periodicity over
    :data:`DCT_FREQUENCIES` (coefficients quantised with a step of 1 carry no trace and are skipped)."""
    coefficients = quantised_luma_coefficients(luma, table)
    table = np.asarray(table).reshape(8, 8)
    scores = {}
    for row, column in DCT_FREQUENCIES:
        if table[row, column] < 2:
            continue
        score = histogram_periodicity(coefficients[:, row, column])
        if score is not None:
            scores[f"{row},{column}"] = round(score, 3)
    if not scores:
        return {"score": None, "suspected": None, "frequencies": {}, "reason": "too few non-zero coefficients"}
    median = float(np.median(list(scores.values())))
    return {"score": round(median, 3), "suspected": median > DOUBLE_JPEG_THRESHOLD, "frequencies": scores}
