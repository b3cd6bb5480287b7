"""Noise residuals: what is left of an image after its content is predicted away, summarised as
co-occurrences and statistics, then a classic classifier (:data:`dflab.detectors.handcrafted.classic.CLASSIFIERS`).

A swapped-in face was rendered, resampled and blended into the frame: its sensor noise and the
camera's processing traces differ from the rest of the picture. High-pass residuals keep those
traces and drop most of the scene (Fridrich & Kodovsky, "Rich models for steganalysis", 2012;
Zhou et al., "Learning rich features for image manipulation detection", CVPR 2018).

Residuals of the grey image (float, grey levels), each divided by its predictor's scale so that
one step of the quantiser means about the same thing for every filter:

* the SRM filter bank (:data:`SRM_FILTERS`): first and second order differences, horizontal and
  vertical, the 3x3 "KB" and the 5x5 "KV" kernels;
* a denoiser residual: the image minus its 3x3 median (a non-linear predictor the linear kernels
  do not reproduce).

Per residual ``r``: ``q = clip(round(r), -T, T)`` (T = ``truncation``), the normalised co-occurrence
histograms of horizontally and vertically adjacent ``q`` pairs ((2T + 1)^2 bins each), and the
statistics of ``r`` (logs of its standard deviation, of its mean absolute value and of its
kurtosis, the fourth standardised moment).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from dflab.detectors.handcrafted.classic import FeatureClassifierDetector
from dflab.detectors.registry import register
from dflab.media.images import ImageLike, load_image


def _kernel(rows, scale: float) -> np.ndarray:
    return np.asarray(rows, dtype=np.float32) / np.float32(scale)


#: name -> kernel, already divided by its scale (the sum of its positive predictor weights).
SRM_FILTERS: dict[str, np.ndarray] = {
    "first-h": _kernel([[0, 0, 0], [0, -1, 1], [0, 0, 0]], 1),
    "first-v": _kernel([[0, 0, 0], [0, -1, 0], [0, 1, 0]], 1),
    "second-h": _kernel([[0, 0, 0], [1, -2, 1], [0, 0, 0]], 2),
    "second-v": _kernel([[0, 1, 0], [0, -2, 0], [0, 1, 0]], 2),
    "kb": _kernel([[-1, 2, -1], [2, -4, 2], [-1, 2, -1]], 4),
    "kv": _kernel([[-1, 2, -2, 2, -1], [2, -6, 8, -6, 2], [-2, 8, -12, 8, -2], [2, -6, 8, -6, 2],
                   [-1, 2, -2, 2, -1]], 12),
}
MEDIAN_RESIDUAL = "median3"
RESIDUAL_NAMES = (*SRM_FILTERS, MEDIAN_RESIDUAL)
N_STATS = 3


def grey_float(image: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32)


def residuals(image: np.ndarray) -> dict[str, np.ndarray]:
    """Every residual of an RGB uint8 image, (H, W) float32 each. The filters are correlations
    (OpenCV's ``filter2D``) with reflected borders (``BORDER_REFLECT_101``)."""
    grey = grey_float(image)
    out = {name: cv2.filter2D(grey, cv2.CV_32F, kernel, borderType=cv2.BORDER_REFLECT_101)
           for name, kernel in SRM_FILTERS.items()}
    out[MEDIAN_RESIDUAL] = grey - cv2.medianBlur(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), 3).astype(np.float32)
    return out


def cooccurrence(quantised: np.ndarray, truncation: int) -> np.ndarray:
    """Normalised histograms of (left, right) and (top, bottom) pairs of a map of integers in
    [-T, T]: ((2T + 1)^2 * 2,), each half summing to 1."""
    levels = 2 * truncation + 1
    q = quantised.astype(np.int64) + truncation
    parts = []
    for first, second in ((q[:, :-1], q[:, 1:]), (q[:-1, :], q[1:, :])):
        counts = np.bincount((first * levels + second).ravel(), minlength=levels * levels).astype(np.float64)
        parts.append(counts / max(1.0, counts.sum()))
    return np.concatenate(parts)


def residual_statistics(residual: np.ndarray) -> np.ndarray:
    """log(std + 1e-3), log(mean |r| + 1e-3) and log(kurtosis) (the kurtosis of a residual that is
    mostly zero runs into the hundreds: its log keeps it on the scale of the others; a constant
    residual has none, and gets 0)."""
    r = residual.astype(np.float64).ravel()
    centred = r - r.mean()
    variance = float(np.mean(centred ** 2))
    kurtosis = float(np.mean(centred ** 4)) / variance ** 2 if variance > 1e-12 else 1.0
    return np.array([np.log(np.sqrt(variance) + 1e-3), np.log(np.mean(np.abs(r)) + 1e-3), np.log(kurtosis)])


@dataclass(frozen=True)
class NoiseResidualFeatures:
    """Co-occurrences + statistics of every residual of :func:`residuals`."""

    truncation: int = 2

    @property
    def n_features(self) -> int:
        return len(RESIDUAL_NAMES) * (2 * (2 * self.truncation + 1) ** 2 + N_STATS)

    def cache_key(self) -> str:
        return f"noise-residual-v1-T{int(self.truncation)}"

    def __call__(self, image: np.ndarray) -> np.ndarray:
        t = int(self.truncation)
        parts = []
        for residual in residuals(image).values():
            quantised = np.clip(np.rint(residual), -t, t)
            parts += [cooccurrence(quantised, t), residual_statistics(residual)]
        return np.concatenate(parts).astype(np.float32)


def residual_energy_map(image: np.ndarray, window: int = 16) -> np.ndarray:
    """The local energy of the SRM residuals: mean over filters of r^2, box-averaged over
    ``window`` x ``window`` pixels, as log(1 + x) scaled to [0, 1] (the log keeps the faint
    regions visible beside strong edges)."""
    energy = np.mean([r * r for name, r in residuals(image).items() if name in SRM_FILTERS], axis=0)
    local = np.log1p(cv2.blur(energy.astype(np.float32), (window, window), borderType=cv2.BORDER_REFLECT_101))
    peak = float(local.max())
    return (local / peak).astype(np.float32) if peak > 0 else np.zeros_like(local)


@dataclass(eq=False, repr=False)  # parameters as fields: scikit-learn reads them from __init__
@register("noise-residual", description="SRM filter bank + median-denoiser residuals: co-occurrences and "
                                        "statistics + logistic regression", family="handcrafted",
          classifier="logreg")
@register("noise-residual-gb", description="SRM + median-denoiser residual co-occurrences + gradient boosting",
          family="handcrafted", classifier="gb")
class NoiseResidualDetector(FeatureClassifierDetector):
    truncation: int = 2
    classifier: str = "logreg"
    seed: int = 0
    workers: int | None = None
    cache_dir: str | None = None

    def make_extractor(self) -> NoiseResidualFeatures:
        if int(self.truncation) < 1:
            raise ValueError(f"truncation must be at least 1, got {self.truncation}")
        return NoiseResidualFeatures(truncation=int(self.truncation))

    def explain(self, image: ImageLike) -> np.ndarray:
        return residual_energy_map(load_image(image))
