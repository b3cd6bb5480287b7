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
``color=True`` re-saves the RGB image and averages the three channel errors. The percentiles
are ``np.percentile(..., method="inverted_cdf")`` values, counted level by level (an ELA map has
few levels) or from the map's integer histogram, never by a sort. JPEG coding is OpenCV's
libjpeg(-turbo).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

from dflab.detectors.handcrafted.classic import FeatureClassifierDetector
from dflab.detectors.registry import register
from dflab.media.ela import ela_image, ela_map
from dflab.media.images import ImageLike, load_image

_PERCENTILES = (50, 90, 99)


_FRACTIONS = np.asarray(_PERCENTILES, dtype=np.float64) / 100.0


#: Statistics per quality: mean, std, the percentiles, max.
N_STATS = 3 + len(_PERCENTILES)


def ela_visual(image: np.ndarray, quality: int = 90) -> np.ndarray:
    """The ELA image scaled to [0, 1] for display (brightest difference = 1)."""
    ela = ela_image(image, quality).max(axis=2)
    peak = float(ela.max())
    return ela / peak if peak > 0 else ela


#: The largest map whose pixel sums fit an int32 integral image (every pixel at 255).
_INT32_SUM_PIXELS = (2**31 - 1) // 255


def cell_means(error: np.ndarray, grid: int) -> np.ndarray:
    """Mean of a uint8 map over a grid x grid lattice of cells (cell edges at ``i * size // grid``),
    from its integral image: (grid * grid,). Maps smaller than the grid are first repeated up to it."""
    height, width = error.shape
    if height < grid or width < grid:
        error = cv2.resize(error, (max(width, grid), max(height, grid)), interpolation=cv2.INTER_NEAREST)
        height, width = error.shape
    # (H + 1, W + 1) running sums, float64 (exact to 2**53) past int32's 8.4 megapixels.
    depth = cv2.CV_32S if error.size <= _INT32_SUM_PIXELS else cv2.CV_64F
    integral = cv2.integral(error, sdepth=depth)
    corners, combination, areas = _cell_layout(height, width, grid)
    sums = np.take(integral, corners).astype(np.float64) @ combination
    return sums / areas


@lru_cache(maxsize=32)
def _cell_layout(height: int, width: int, grid: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Where the cells' corners are in the flattened integral image ((grid + 1)**2,), how each cell's
    sum combines them (bottom-right - top-right - bottom-left + top-left: ((grid + 1)**2, grid**2))
    and the cells' areas (grid**2,), float64."""
    ys = (np.arange(grid + 1) * height) // grid
    xs = (np.arange(grid + 1) * width) // grid
    corners = (ys[:, None] * (width + 1) + xs[None, :]).ravel()
    side = grid + 1
    combination = np.zeros((side * side, grid * grid))
    for row in range(grid):
        for col in range(grid):
            cell = row * grid + col
            for corner_row, corner_col, sign in ((1, 1, 1), (0, 1, -1), (1, 0, -1), (0, 0, 1)):
                combination[(row + corner_row) * side + col + corner_col, cell] = sign
    areas = np.outer(np.diff(ys), np.diff(xs)).ravel().astype(np.float64)
    for array in (corners, combination, areas):
        array.setflags(write=False)
    return corners, combination, areas


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


#: Percentiles are read level by level, one count of the pixels above each level from 0 up to
#: the 99th percentile (~3 µs each on a 224x224 map; ELA maps' 99th percentile is 1-3 at q90 and
#: about 7, at most 14, at q50 on Task_1 and Task_2_3), against ~45 µs for the map's histogram.
#: A map whose 99th percentile lies above this level (noise-like) is read from its histogram.
_LEVEL_BY_LEVEL_MAX = 16


def percentile_levels(error: np.ndarray) -> list[int]:
    """The 50/90/99th percentiles (inverted CDF) of a 2-D uint8 map: for each, the smallest level
    with at least that fraction of the pixels at or below it."""
    targets = _FRACTIONS * float(error.size)
    levels, level, at_or_below = [], 0, None
    above = np.empty_like(error)
    for target in targets:  # ascending, so each search goes on from the previous level
        while True:
            if at_or_below is None:
                if level > _LEVEL_BY_LEVEL_MAX:
                    cumulative = np.cumsum(level_counts(np.ascontiguousarray(error)), dtype=np.float64)
                    return [int(found) for found in np.searchsorted(cumulative, targets, side="left")]
                marked = error if level == 0 else cv2.compare(error, level, cv2.CMP_GT, dst=above)
                at_or_below = error.size - cv2.countNonZero(marked)
            if at_or_below >= target:
                break
            level, at_or_below = level + 1, None
        levels.append(level)
    return levels


def map_statistics(error: np.ndarray) -> np.ndarray:
    """Mean, std, 50/90/99th percentiles (inverted CDF) and max of a 2-D uint8 map."""
    mean, std = cv2.meanStdDev(error)
    peak = cv2.minMaxLoc(error)[1]
    return np.concatenate([mean.ravel(), std.ravel(), percentile_levels(error), [peak]])


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
