"""Error Level Analysis (ELA) + classic classifiers, as compared in the lab report.

ELA re-saves the image as JPEG at quality ``q`` and takes the absolute difference: regions that were
pasted, resampled or compressed differently from the rest re-compress differently (a blurred,
swapped-in face loses less detail than the sharp frame around it).

Features, for the main quality ``quality`` (default 90) and each of ``extra_qualities`` (default 50:
a coarse re-save sees a different frequency band than a fine one):

* the ELA map averaged over a ``grid`` x ``grid`` lattice of cells (where the error is), and
* mean, standard deviation, 50th/90th/99th percentile and maximum of the map (how much),

all as ``log(1 + value)``, so linear classifiers see ratios. ``color=False`` (default) re-saves the
luminance as a grayscale JPEG, 2-3x faster than a colour JPEG and as discriminative on Task 1;
``color=True`` re-saves the RGB image and averages the three channel errors. The percentiles come
from the map's integer histogram (``np.percentile(..., method="inverted_cdf")`` values), one
``cv2.calcHist`` instead of a sort. JPEG coding is OpenCV's libjpeg(-turbo).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

from dflab.detectors.handcrafted.classic import FeatureClassifierDetector
from dflab.detectors.registry import register
from dflab.media.images import ImageLike, jpeg_round_trip, load_image

_PERCENTILES = (50, 90, 99)


_FRACTIONS = np.asarray(_PERCENTILES, dtype=np.float64) / 100.0


#: Statistics per quality: mean, std, the percentiles, max.
N_STATS = 3 + len(_PERCENTILES)


#: ELA's JPEG codec (its measured numbers were made with it).
ELA_ENCODER = "opencv"


def ela_image(image: np.ndarray, quality: int = 90) -> np.ndarray:
    """|image - JPEG(image, quality)| as float32 (H, W, 3), in grey levels (0..255)."""
    return cv2.absdiff(image, jpeg_round_trip(image, quality, encoder=ELA_ENCODER)).astype(np.float32)


def ela_map(image: np.ndarray, quality: int = 90, color: bool = False) -> np.ndarray:
    """The ELA map used for features: (H, W) uint8. Grayscale: |Y - JPEG(Y)| (``image`` RGB, or already
    grey (H, W)); colour: the mean of the three channels' errors, rounded."""
    if color:
        error = cv2.absdiff(image, jpeg_round_trip(image, quality, encoder=ELA_ENCODER))
        return cv2.transform(error, np.full((1, 3), 1.0 / 3.0))  # saturating round of the channel mean
    gray = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    return cv2.absdiff(gray, jpeg_round_trip(gray, quality, encoder=ELA_ENCODER))


def ela_visual(image: np.ndarray, quality: int = 90) -> np.ndarray:
    """The ELA image scaled to [0, 1] for display (brightest difference = 1)."""
    ela = ela_image(image, quality).max(axis=2)
    peak = float(ela.max())
    return ela / peak if peak > 0 else ela


def cell_means(error: np.ndarray, grid: int) -> np.ndarray:
    """Mean of a uint8 map over a grid x grid lattice of cells (cell edges at ``i * size // grid``),
    from its integral image: (grid * grid,). Maps smaller than the grid are first repeated up to it."""
    height, width = error.shape
    if height < grid or width < grid:
        error = cv2.resize(error, (max(width, grid), max(height, grid)), interpolation=cv2.INTER_NEAREST)
        height, width = error.shape
    integral = cv2.integral(error)  # (H + 1, W + 1) running sums
    rows, cols, areas = _cell_layout(height, width, grid)
    corners = integral[rows, cols].astype(np.int64)
    sums = corners[1:, 1:] - corners[:-1, 1:] - corners[1:, :-1] + corners[:-1, :-1]
    return (sums / areas).ravel()


@lru_cache(maxsize=32)
def _cell_layout(height: int, width: int, grid: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The cell corners' rows (grid + 1, 1) and columns (1, grid + 1) in the integral image, and the
    cells' areas (grid, grid) as float64."""
    ys = (np.arange(grid + 1) * height) // grid
    xs = (np.arange(grid + 1) * width) // grid
    areas = np.outer(np.diff(ys), np.diff(xs)).astype(np.float64)
    for array in (ys, xs, areas):
        array.setflags(write=False)
    return ys[:, None], xs[None, :], areas


#: Consecutive pixels are counted in different histograms ("lanes"), then added: an ELA map has
#: few distinct levels, and counting runs of one value into one bin waits on that bin each time
#: (a 224x224 map: 72 µs in one histogram, 33 µs in 8 lanes, same counts).
_LANES = 8


#: Maps up to this many pixels use lanes (their lane image is kept, one per map size).
_LANES_MAX_PIXELS = 1 << 20


@lru_cache(maxsize=8)
def _lane_image(height: int, width: int) -> np.ndarray:
    lanes = (np.arange(height * width) % _LANES).astype(np.uint8).reshape(height, width)
    lanes.setflags(write=False)
    return lanes


def level_counts(error: np.ndarray) -> np.ndarray:
    """How many pixels of a uint8 map have each level 0..255: (256,) float64."""
    if error.size > _LANES_MAX_PIXELS:
        return cv2.calcHist([error], [0], None, [256], [0, 256]).ravel().astype(np.float64)
    lanes = _lane_image(*error.shape)
    return cv2.calcHist([lanes, error], [0, 1], None, [_LANES, 256], [0, _LANES, 0, 256]).sum(axis=0, dtype=np.float64)


def map_statistics(error: np.ndarray) -> np.ndarray:
    """Mean, std, 50/90/99th percentiles (inverted CDF, from the histogram) and max of a uint8 map."""
    counts = level_counts(np.ascontiguousarray(error))
    cumulative = np.cumsum(counts, dtype=np.float64)
    # inverted CDF: the smallest level whose cumulative count reaches p% of the pixels
    percentiles = np.searchsorted(cumulative, _FRACTIONS * cumulative[-1], side="left")
    mean, std = cv2.meanStdDev(error)
    peak = cv2.minMaxLoc(error)[1]
    return np.concatenate([mean.ravel(), std.ravel(), percentiles, [peak]])


@dataclass(frozen=True)
class ELAFeatures:
    """Per quality: the ELA map's grid x grid cell means + its statistics, all log(1 + x)."""

    quality: int = 90
    grid: int = 8
    extra_qualities: tuple[int, ...] = (50,)
    color: bool = False

    @property
    def qualities(self) -> tuple[int, ...]:
        return (int(self.quality), *(int(q) for q in self.extra_qualities))

    @property
    def n_features(self) -> int:
        return len(self.qualities) * (self.grid ** 2 + N_STATS)

    def cache_key(self) -> str:
        qualities = ",".join(str(q) for q in self.qualities)
        return f"ela-v2-q{qualities}-g{self.grid}-{'color' if self.color else 'gray'}"

    def __call__(self, image: np.ndarray) -> np.ndarray:
        parts = []
        picture = image if self.color else cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)  # grey once, for every quality
        for quality in self.qualities:
            error = ela_map(picture, quality, self.color)
            parts += [cell_means(error, self.grid), map_statistics(error)]
        return np.log1p(np.concatenate(parts)).astype(np.float32)


@dataclass(eq=False, repr=False)  # parameters as fields: scikit-learn reads them from __init__
@register("ela-logreg", description="Error Level Analysis (JPEG q90 + q50) map and statistics + logistic regression",
          family="handcrafted", classifier="logreg")
@register("ela-svm", description="Error Level Analysis features + PCA + RBF SVM", family="handcrafted",
          classifier="svm")
@register("ela-rf", description="Error Level Analysis features + random forest", family="handcrafted",
          classifier="rf")
@register("ela-gb", description="Error Level Analysis features + gradient boosting", family="handcrafted",
          classifier="gb")
@register("ela-adaboost", description="Error Level Analysis features + AdaBoost", family="handcrafted",
          classifier="adaboost")
class ELADetector(FeatureClassifierDetector):
    quality: int = 90
    grid: int = 8
    extra_qualities: tuple[int, ...] = (50,)
    color: bool = False
    classifier: str = "logreg"
    seed: int = 0
    workers: int | None = None
    cache_dir: str | None = None

    def make_extractor(self) -> ELAFeatures:
        return ELAFeatures(quality=int(self.quality), grid=int(self.grid),
                           extra_qualities=tuple(int(q) for q in self.extra_qualities), color=bool(self.color))

    def explain(self, image: ImageLike) -> np.ndarray:
        return ela_visual(load_image(image), self.quality)
