"""Spectrum detectors: Durall et al. 2019, "Unmasking DeepFakes with simple features".

The grayscale image's 2-D Fourier transform, as log magnitude ``20 log(|F| + eps)``, is averaged over
rings of equal integer radius around the zero frequency (the azimuthal average, i.e. a 1-D power
spectrum), resampled to ``n_points`` values by linear interpolation (the authors used cubic
``griddata``; linear keeps every value inside the measured range), and min-max normalised to [0, 1].
Upsampling in a face-swap pipeline leaves its mark at high frequencies, the end of this curve.
Classifiers: logistic regression (``spectrum-logreg``) and an RBF SVM (``spectrum-svm``) whose
scores are calibrated probabilities (Platt scaling on cross-validation folds).

The ring of radius ``r`` holds the frequencies ``(ky, kx)`` with ``floor(hypot(ky, kx)) == r``,
``ky``/``kx`` the signed frequency indices (DC at the centre of the shifted spectrum, ``(H//2, W//2)``).
It is computed from the half-plane ``rfft2`` with mirrored columns counted twice, which gives exactly
the full-plane average because ``|F(-k)| = |F(k)|`` for a real image.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np
import scipy.fft

from .classic import FeatureClassifierDetector
from .registry import register

#: Added to |F| before the log, as in the authors' code.
EPSILON = 1e-8


@lru_cache(maxsize=32)
def _ring_layout(height: int, width: int) -> tuple[np.ndarray, np.ndarray, int]:
    """For an rfft2 of an (height, width) image: the ring of every coefficient, its weight (2 for
    columns whose mirror image is not stored, else 1), and the number of rings."""
    ky = np.fft.fftfreq(height, 1.0 / height)[:, None]  # signed integer frequency indices
    kx = np.arange(width // 2 + 1, dtype=np.float64)[None, :]
    if height % 2 == 0:
        ky = np.where(ky == -height // 2, height // 2, ky)  # same radius either way; kept positive
    rings = np.floor(np.hypot(ky, kx)).astype(np.int64)
    weights = np.full(rings.shape, 2.0)
    weights[:, 0] = 1.0  # kx = 0: its own mirror column
    if width % 2 == 0:
        weights[:, -1] = 1.0  # kx = W/2 (Nyquist): stored once, its mirror aliases onto itself
    rings.setflags(write=False)
    weights.setflags(write=False)
    return rings.ravel(), weights.ravel(), int(rings.max()) + 1


def azimuthal_average(gray: np.ndarray) -> np.ndarray:
    """Mean of ``20 log(|F| + eps)`` over each integer-radius ring of the image's 2-D spectrum."""
    gray = np.asarray(gray, dtype=np.float64)
    rings, weights, n_rings = _ring_layout(*gray.shape)
    magnitude = 20.0 * np.log(np.abs(scipy.fft.rfft2(gray, workers=1)) + EPSILON)
    totals = np.bincount(rings, weights=magnitude.ravel() * weights, minlength=n_rings)
    counts = np.bincount(rings, weights=weights, minlength=n_rings)
    return totals / counts


def resample_profile(profile: np.ndarray, n_points: int) -> np.ndarray:
    """Linear resampling of a 1-D profile to ``n_points`` samples over the same span."""
    return np.interp(np.linspace(0.0, 1.0, n_points), np.linspace(0.0, 1.0, len(profile)), profile)


@dataclass(frozen=True)
class SpectrumFeatures:
    """The azimuthally averaged log spectrum, ``n_points`` values in [0, 1]."""

    n_points: int = 128

    def __post_init__(self):
        if self.n_points < 2:
            raise ValueError(f"n_points must be at least 2, got {self.n_points}")

    def cache_key(self) -> str:
        return f"spectrum-v1-n{self.n_points}"

    def __call__(self, image: np.ndarray) -> np.ndarray:
        gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
        if min(gray.shape) < 2:
            raise ValueError(f"image {gray.shape[1]}x{gray.shape[0]} is too small for a spectrum (needs 2x2)")
        curve = resample_profile(azimuthal_average(gray), self.n_points)
        low, high = float(curve.min()), float(curve.max())
        # A flat spectrum (e.g. a single-colour image gives only eps everywhere but DC) stays flat, not NaN.
        scaled = (curve - low) / (high - low) if high > low else np.zeros_like(curve)
        return scaled.astype(np.float32)


@register("spectrum-logreg", description="Durall et al. 2019: azimuthal average of the log spectrum + "
          "logistic regression", family="handcrafted", classifier="logreg")
@register("spectrum-svm", description="Durall et al. 2019: azimuthal average of the log spectrum + RBF SVM "
          "(calibrated probabilities)", family="handcrafted", classifier="svm")
class SpectrumDetector(FeatureClassifierDetector):
    def __init__(self, n_points: int = 128, classifier: str = "logreg", seed: int = 0,
                 workers: int | None = None, cache_dir: str | None = None):
        self.n_points = n_points
        self.classifier = classifier
        self.seed = seed
        self.workers = workers
        self.cache_dir = cache_dir

    def make_extractor(self) -> SpectrumFeatures:
        return SpectrumFeatures(n_points=int(self.n_points))
