"""Error Level Analysis (ELA) + classic classifiers, as compared in the lab report.

ELA re-saves the image as JPEG at quality ``q`` and takes the absolute difference: regions that were
pasted, resampled or compressed differently from the rest re-compress differently. Features: the
ELA luminance map downsampled to ``grid`` x ``grid`` cells plus per-channel statistics.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

from ..images import ImageLike, load_image
from .classic import FeatureClassifierDetector
from .registry import register

_PERCENTILES = (50, 90, 99)


def ela_image(image: np.ndarray, quality: int = 90) -> np.ndarray:
    """|image - JPEG(image, quality)| as float32 (H, W, 3), in grey levels (0..255)."""
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=int(quality))
    resaved = np.asarray(Image.open(buffer).convert("RGB"))
    return np.abs(image.astype(np.int16) - resaved.astype(np.int16)).astype(np.float32)


def ela_visual(image: np.ndarray, quality: int = 90) -> np.ndarray:
    """The ELA image scaled to [0, 1] for display (brightest difference = 1)."""
    ela = ela_image(image, quality).max(axis=2)
    peak = float(ela.max())
    return ela / peak if peak > 0 else ela


@dataclass(frozen=True)
class ELAFeatures:
    """ELA map downsampled to grid x grid (mean per cell) + per-channel mean/std/percentiles/max."""

    quality: int = 90
    grid: int = 8

    def cache_key(self) -> str:
        return f"ela-v1-q{self.quality}-g{self.grid}"

    def __call__(self, image: np.ndarray) -> np.ndarray:
        ela = ela_image(image, self.quality)
        luminance = ela.mean(axis=2)
        cells = cv2.resize(luminance, (self.grid, self.grid), interpolation=cv2.INTER_AREA).reshape(-1)
        flat = ela.reshape(-1, 3)
        stats = np.concatenate([flat.mean(0), flat.std(0), np.percentile(flat, _PERCENTILES, axis=0).reshape(-1),
                                flat.max(0)])
        return np.concatenate([cells, stats]).astype(np.float32)


@register("ela-logreg", description="Error Level Analysis (JPEG q90) statistics + logistic regression",
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
    def __init__(self, quality: int = 90, grid: int = 8, classifier: str = "logreg", seed: int = 0,
                 workers: int | None = None, cache_dir: str | None = None):
        self.quality = quality
        self.grid = grid
        self.classifier = classifier
        self.seed = seed
        self.workers = workers
        self.cache_dir = cache_dir

    def make_extractor(self) -> ELAFeatures:
        return ELAFeatures(quality=self.quality, grid=self.grid)

    def explain(self, image: ImageLike) -> np.ndarray:
        return ela_visual(load_image(image), self.quality)
