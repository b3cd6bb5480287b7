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
import scipy.sparse

from dflab.detectors.handcrafted.classic import FeatureClassifierDetector
from dflab.detectors.registry import register

#: Added to |F| before the log, as in the authors' code.
EPSILON = 1e-8


@lru_cache(maxsize=32)
def _ring_layout(height: int, width: int) -> tuple[np.ndarray, np.ndarray, int]:
    """For an rfft2 of an (height, width) image: the ring of every coefficient, its weight (2 for
    columns whose mirror image is not stored, else 1), and the number of rings."""
    ky = np.fft.fftfreq(height, 1.0 / height)[:, None]  # signed integer frequency indices
    kx = np.arange(width // 2 + 1, dtype=np.float64)[None, :]
    rings = np.floor(np.hypot(ky, kx)).astype(np.int64)  # |-H/2| = H/2: the sign of ky does not matter
    weights = np.full(rings.shape, 2.0)
    weights[:, 0] = 1.0  # kx = 0: its own mirror column
    if width % 2 == 0:
        weights[:, -1] = 1.0  # kx = W/2 (Nyquist): stored once, its mirror aliases onto itself
    rings, weights = rings.ravel(), weights.ravel()
    for array in (rings, weights):
        array.setflags(write=False)
    return rings, weights, int(rings.max()) + 1


@lru_cache(maxsize=32)
def _ring_averager(height: int, width: int) -> scipy.sparse.csr_matrix:
    """Sparse (n_rings, n_rfft_coefficients) matrix whose product with the flattened half spectrum is
    the mean over each ring of the full spectrum."""
    rings, weights, n_rings = _ring_layout(height, width)
    ring_weight = np.bincount(rings, weights=weights, minlength=n_rings)
    values = weights / ring_weight[rings]
    return scipy.sparse.csr_matrix((values, (rings, np.arange(len(rings)))), shape=(n_rings, len(rings)))


def azimuthal_average(gray: np.ndarray) -> np.ndarray:
    """Mean of ``20 log(|F| + eps)`` over each integer-radius ring of the image's 2-D spectrum.

    The FFT runs in float64 for float64 input and in float32 otherwise (8-bit images: float32 is
    exact to ~1e-7 relative, and 1.5x faster)."""
    gray = np.asarray(gray)
    gray = gray if gray.dtype == np.float64 else gray.astype(np.float32)
    spectrum = scipy.fft.rfft2(gray, workers=1)
    magnitude = 20.0 * np.log(np.abs(spectrum) + EPSILON)
    return _ring_averager(*gray.shape) @ magnitude.ravel().astype(np.float64)


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
        curve = resample_profile(azimuthal_average(gray), self.n_points)
        low, high = float(curve.min()), float(curve.max())
        # A flat curve (a black image: eps everywhere) stays flat: min-max scaling would blow its
        # rounding noise up to [0, 1] (or divide by zero).
        flat = high - low <= 1e-6 * max(1.0, abs(high), abs(low))
        scaled = np.zeros_like(curve) if flat else (curve - low) / (high - low)
        return scaled.astype(np.float32)


@dataclass(eq=False, repr=False)  # parameters as fields: scikit-learn reads them from __init__
@register("spectrum-logreg", description="Durall et al. 2019: azimuthal average of the log spectrum + "
          "logistic regression", family="handcrafted", classifier="logreg")
@register("spectrum-svm", description="Durall et al. 2019: azimuthal average of the log spectrum + RBF SVM "
          "(calibrated probabilities)", family="handcrafted", classifier="svm")
class SpectrumDetector(FeatureClassifierDetector):
    n_points: int = 128
    classifier: str = "logreg"
    seed: int = 0
    workers: int | None = None
    cache_dir: str | None = None

    def make_extractor(self) -> SpectrumFeatures:
        return SpectrumFeatures(n_points=int(self.n_points))
