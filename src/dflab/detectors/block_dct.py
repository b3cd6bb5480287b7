"""Block-DCT detector: the lab report's best Task 1 system, made fast.

The grayscale image is cut into ``block`` x ``block`` blocks every ``stride`` pixels. Each block is
described by

* its 2-D DCT (type II, orthonormal): the first ``dct_coefficients`` coefficients in JPEG zig-zag
  order (low frequencies first), as ``log(1 + |c|)`` (``magnitude="log"``, default: the sign of an AC
  coefficient depends on where an edge lies, its size on how sharp the block is) or signed
  (``magnitude="raw"``);
* the DCT of its normalised 256-bin histogram, first ``hist_coefficients`` coefficients (the
  histogram's overall shape: contrast, smoothness);
* optionally the 2-D DCT of its Error Level Analysis image (``ela_coefficients``, as the report tried).

Any part is switched off with 0 coefficients. With the defaults (32x32 blocks, 64 + 32 coefficients)
a block has 96 numbers. Training uses only blocks that are mostly skin (fraction of pixels inside the
YCbCr skin box ``Cr in [133, 173], Cb in [77, 127]`` >= ``skin_threshold``), each labelled with its
image's label; scoring scores every block and the image score is the mean block P(fake).

Everything is computed for all blocks of an image at once (strided block views, ``scipy.fft.dctn``
over the block axes, one ``np.bincount`` for all histograms); the extractor returns one
``(n_blocks, n_features + 1)`` array per image whose last column is the block's skin fraction, so the
per-file feature cache of :mod:`dflab.features` stores it as is.

Images smaller than one block are upscaled (bilinear, aspect ratio kept) until both sides reach one
block, with a warning; pixels right of / below the last whole block are not scored (at most
``stride - 1`` pixels; the heatmap of :meth:`BlockDCTDetector.explain` extends the nearest block
over them).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np
import scipy.fft
from numpy.lib.stride_tricks import sliding_window_view
from sklearn.metrics import roc_auc_score

from .. import features
from ..images import ImageError, ImageLike, load_image, source_name
from ..progress import warn
from .base import Detector, as_sources, as_training_set
from .classic import CLASSIFIERS, make_classifier
from .ela import ela_image
from .registry import register

#: Default YCbCr skin box (Chai & Ngan 1999): Cr in [133, 173], Cb in [77, 127].
SKIN_CR = (133, 173)
SKIN_CB = (77, 127)
#: Images are scored this many at a time: block features of one batch are held, never the whole set.
SCORE_BATCH = 512


@lru_cache(maxsize=16)
def zigzag_indices(size: int) -> np.ndarray:
    """Flat indices of a ``size`` x ``size`` matrix in JPEG zig-zag order (DC first)."""
    rows, cols = np.indices((size, size))
    diagonal = (rows + cols).ravel()
    # Along odd anti-diagonals the scan runs down (row increasing), along even ones up (column increasing).
    within = np.where(diagonal % 2 == 1, rows.ravel(), cols.ravel())
    return np.lexsort((within, diagonal))


def fit_to_block(image: np.ndarray, block: int) -> np.ndarray:
    """The image itself, or upscaled (bilinear, aspect kept) so both sides are at least ``block``."""
    height, width = image.shape[:2]
    if height >= block and width >= block:
        return image
    scale = block / min(height, width)
    size = (max(block, int(round(width * scale))), max(block, int(round(height * scale))))
    return cv2.resize(image, size, interpolation=cv2.INTER_LINEAR)


def grid_shape(height: int, width: int, block: int, stride: int) -> tuple[int, int]:
    """Blocks per column and per row of an image at least one block in size."""
    return (height - block) // stride + 1, (width - block) // stride + 1


def block_view(plane: np.ndarray, block: int, stride: int) -> np.ndarray:
    """A (n_blocks, block, block) copy of the plane's blocks, row-major over the block grid."""
    windows = sliding_window_view(plane, (block, block))[::stride, ::stride]
    return windows.reshape(-1, block, block)


def skin_mask(image: np.ndarray, cr_range=SKIN_CR, cb_range=SKIN_CB) -> np.ndarray:
    """Boolean (H, W): pixels inside the YCbCr skin box."""
    ycrcb = cv2.cvtColor(image, cv2.COLOR_RGB2YCrCb)
    cr, cb = ycrcb[:, :, 1], ycrcb[:, :, 2]
    return (cr >= cr_range[0]) & (cr <= cr_range[1]) & (cb >= cb_range[0]) & (cb <= cb_range[1])


def block_dct_coefficients(blocks: np.ndarray, count: int, magnitude: str) -> np.ndarray:
    """First ``count`` zig-zag coefficients of each block's orthonormal 2-D DCT-II: (n_blocks, count)."""
    size = blocks.shape[-1]
    coefficients = scipy.fft.dctn(blocks.astype(np.float32), type=2, axes=(1, 2), norm="ortho", workers=1)
    kept = coefficients.reshape(len(blocks), -1)[:, zigzag_indices(size)[:count]]
    return np.log1p(np.abs(kept)) if magnitude == "log" else kept


def block_histogram_dct(blocks: np.ndarray, count: int) -> np.ndarray:
    """First ``count`` coefficients of the DCT-II of each uint8 block's normalised 256-bin histogram."""
    n = len(blocks)
    # One bincount for every block: block i's grey level g lands in bin i * 256 + g.
    offsets = (np.arange(n, dtype=np.int64) * 256)[:, None]
    counts = np.bincount((blocks.reshape(n, -1) + offsets).ravel(), minlength=n * 256).reshape(n, 256)
    histograms = counts.astype(np.float32) / blocks[0].size
    return scipy.fft.dct(histograms, type=2, axis=1, norm="ortho", workers=1)[:, :count]


@dataclass(frozen=True)
class BlockDCTFeatures:
    """Per-block features of one image: ``(n_blocks, n_features + 1)``, last column = skin fraction."""

    block: int = 32
    stride: int = 32
    dct_coefficients: int = 64
    hist_coefficients: int = 32
    ela_coefficients: int = 0
    ela_quality: int = 90
    magnitude: str = "log"
    skin_cr: tuple[int, int] = SKIN_CR
    skin_cb: tuple[int, int] = SKIN_CB

    def __post_init__(self):
        if self.block < 2 or self.stride < 1:
            raise ValueError(f"block must be >= 2 and stride >= 1 (got block={self.block}, stride={self.stride})")
        if self.magnitude not in ("log", "raw"):
            raise ValueError(f"magnitude must be 'log' or 'raw', not {self.magnitude!r}")
        for name in ("dct_coefficients", "ela_coefficients"):
            if not 0 <= getattr(self, name) <= self.block ** 2:
                raise ValueError(f"{name} must be in 0..{self.block ** 2} for {self.block}x{self.block} blocks")
        if not 0 <= self.hist_coefficients <= 256:
            raise ValueError("hist_coefficients must be in 0..256")
        if self.n_features == 0:
            raise ValueError("every block feature is switched off (all coefficient counts are 0)")

    @property
    def n_features(self) -> int:
        return self.dct_coefficients + self.hist_coefficients + self.ela_coefficients

    def cache_key(self) -> str:
        return (f"block-dct-v1-b{self.block}-s{self.stride}-d{self.dct_coefficients}-h{self.hist_coefficients}"
                f"-e{self.ela_coefficients}q{self.ela_quality}-{self.magnitude}"
                f"-cr{self.skin_cr[0]}:{self.skin_cr[1]}-cb{self.skin_cb[0]}:{self.skin_cb[1]}")

    def __call__(self, image: np.ndarray) -> np.ndarray:
        height, width = image.shape[:2]
        image = fit_to_block(image, self.block)
        if image.shape[0] != height or image.shape[1] != width:
            warn(f"block-dct: {width}x{height} image is smaller than one {self.block}x{self.block} block; "
                 f"upscaled to {image.shape[1]}x{image.shape[0]}")
        gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
        blocks = block_view(gray, self.block, self.stride)
        parts = []
        if self.dct_coefficients:
            parts.append(block_dct_coefficients(blocks, self.dct_coefficients, self.magnitude))
        if self.hist_coefficients:
            parts.append(block_histogram_dct(blocks, self.hist_coefficients))
        if self.ela_coefficients:
            ela = ela_image(image, self.ela_quality).mean(axis=2)
            parts.append(block_dct_coefficients(block_view(ela, self.block, self.stride), self.ela_coefficients,
                                                self.magnitude))
        mask = skin_mask(image, self.skin_cr, self.skin_cb).view(np.uint8)
        skin = block_view(mask, self.block, self.stride).sum(axis=(1, 2), dtype=np.int64) / self.block ** 2
        parts.append(skin[:, None])
        return np.concatenate([np.asarray(p, dtype=np.float32) for p in parts], axis=1)


def block_heatmap(scores: np.ndarray, height: int, width: int, block: int, stride: int) -> np.ndarray:
    """(height, width) map: each pixel is the mean score of the blocks covering it; pixels outside
    every block (right/bottom remainder) take the value of the nearest covered pixel."""
    rows, cols = grid_shape(height, width, block, stride)
    scores = np.asarray(scores, dtype=np.float64).reshape(rows, cols)
    top = np.arange(rows) * stride
    left = np.arange(cols) * stride
    # 2-D difference arrays: +v at each block's top-left corner, -v just past its edges, then cumsum.
    total = np.zeros((height + 1, width + 1))
    count = np.zeros((height + 1, width + 1))
    for values, target in ((scores, total), (np.ones_like(scores), count)):
        ys, xs = np.meshgrid(top, left, indexing="ij")
        for dy, dx, sign in ((0, 0, 1), (block, 0, -1), (0, block, -1), (block, block, 1)):
            np.add.at(target, (ys + dy, xs + dx), sign * values)
    total = total.cumsum(0).cumsum(1)[:height, :width]
    count = count.cumsum(0).cumsum(1)[:height, :width]
    covered_h, covered_w = (rows - 1) * stride + block, (cols - 1) * stride + block
    heat = total[:covered_h, :covered_w] / np.maximum(count[:covered_h, :covered_w], 1e-12)
    return np.pad(heat, ((0, height - covered_h), (0, width - covered_w)), mode="edge")


def _image_means(block_scores: np.ndarray, owners: np.ndarray, n_images: int) -> np.ndarray:
    """Mean block score per image (NaN for images without blocks)."""
    sums = np.bincount(owners, weights=block_scores, minlength=n_images)
    counts = np.bincount(owners, minlength=n_images)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


@register("block-dct", description="Block DCT + histogram-DCT features of skin blocks, gradient boosting; "
          "image score = mean block score (lab report's Task 1 system)", family="handcrafted")
@register("block-dct-logreg", description="Block DCT + histogram-DCT features of skin blocks, logistic regression",
          family="handcrafted", classifier="logreg")
@register("block-dct-mlp", description="Block DCT + histogram-DCT features of skin blocks, small MLP",
          family="handcrafted", classifier="mlp")
@register("block-dct-ela", description="Block DCT + histogram-DCT + ELA-DCT features of skin blocks, "
          "gradient boosting", family="handcrafted", ela_coefficients=16)
class BlockDCTDetector(Detector):
    """Scores images by the mean P(fake) of their blocks (see the module docstring).

    ``classifier``: any of :data:`dflab.detectors.classic.CLASSIFIERS` (``logreg``, ``gb`` = histogram
    gradient boosting, ``mlp``, ...); its main hyper-parameter is chosen on ``valid`` by image-level
    AUC of the mean block score. ``max_train_blocks`` caps the training set (random blocks, fixed seed)
    so memory and time stay bounded on large data.
    """

    def __init__(self, block: int = 32, stride: int = 32, dct_coefficients: int = 64, hist_coefficients: int = 32,
                 ela_coefficients: int = 0, ela_quality: int = 90, magnitude: str = "log",
                 skin_threshold: float = 0.5, skin_cr: tuple[int, int] = SKIN_CR, skin_cb: tuple[int, int] = SKIN_CB,
                 classifier: str = "gb", max_train_blocks: int = 200_000, seed: int = 0,
                 workers: int | None = None, cache_dir: str | None = None):
        self.block = block
        self.stride = stride
        self.dct_coefficients = dct_coefficients
        self.hist_coefficients = hist_coefficients
        self.ela_coefficients = ela_coefficients
        self.ela_quality = ela_quality
        self.magnitude = magnitude
        self.skin_threshold = skin_threshold
        self.skin_cr = skin_cr
        self.skin_cb = skin_cb
        self.classifier = classifier
        self.max_train_blocks = max_train_blocks
        self.seed = seed
        self.workers = workers
        self.cache_dir = cache_dir

    def make_extractor(self) -> BlockDCTFeatures:
        return BlockDCTFeatures(block=int(self.block), stride=int(self.stride),
                                dct_coefficients=int(self.dct_coefficients),
                                hist_coefficients=int(self.hist_coefficients),
                                ela_coefficients=int(self.ela_coefficients), ela_quality=int(self.ela_quality),
                                magnitude=self.magnitude, skin_cr=tuple(int(v) for v in self.skin_cr),
                                skin_cb=tuple(int(v) for v in self.skin_cb))

    # -- features -----------------------------------------------------------------------------
    def _iter_blocks(self, sources, description: str, on_error: str):
        """Yield ``(indices, blocks, owners)`` per chunk: the chunk's blocks stacked and, per block,
        the position in ``indices`` of its image. Failed images raise or are left out."""
        extractor = self.make_extractor()
        cache = self.cache_dir if self.cache_dir is not None else True
        for indices, results in features.iter_extract(sources, extractor, workers=self.workers, cache_dir=cache,
                                                      description=description):
            arrays, owners = [], []
            for position, (index, (value, reason)) in enumerate(zip(indices, results)):
                if reason is not None:
                    if on_error == "raise":
                        raise ImageError(source_name(sources[index]), reason)
                    continue
                arrays.append(value)
                owners.append(np.full(len(value), position, dtype=np.int64))
            if arrays:
                yield indices, np.concatenate(arrays), np.concatenate(owners)
            else:
                yield indices, np.empty((0, extractor.n_features + 1), np.float32), np.empty(0, np.int64)

    def _collect(self, sources, description: str) -> tuple[np.ndarray, np.ndarray]:
        """All blocks of all usable images: (blocks with skin column, image index per block)."""
        blocks, owners = [], []
        for indices, chunk, positions in self._iter_blocks(sources, description, on_error="nan"):
            blocks.append(chunk)
            owners.append(np.asarray(indices, dtype=np.int64)[positions])
        n_columns = self.make_extractor().n_features + 1
        return (np.concatenate(blocks) if blocks else np.empty((0, n_columns), np.float32),
                np.concatenate(owners) if owners else np.empty(0, np.int64))

    # -- training -----------------------------------------------------------------------------
    def fit(self, train, *, valid=None):
        if self.classifier not in CLASSIFIERS:
            raise ValueError(f"unknown classifier {self.classifier!r}; choose from {', '.join(CLASSIFIERS)}")
        sources, labels, _ = as_training_set(train)
        blocks, owners = self._collect(sources, f"{self.name}: training features")
        unusable = len(sources) - len(np.unique(owners))
        if unusable:
            warn(f"{self.name}: {unusable} training images unusable, skipped")
        if len(blocks) == 0:
            raise ValueError(f"{self.name}: no usable training image")
        block_labels = labels[owners]
        skin = blocks[:, -1] >= self.skin_threshold
        if not skin.any():
            warn(f"{self.name}: no training block is at least {self.skin_threshold:.0%} skin "
                 f"(YCbCr Cr {self.skin_cr}, Cb {self.skin_cb}); training on all {len(blocks)} blocks")
            skin[:] = True
        elif len(np.unique(block_labels[skin])) < 2:
            warn(f"{self.name}: skin blocks come from only one class; training on all {len(blocks)} blocks")
            skin[:] = True
        if len(np.unique(block_labels[skin])) < 2:
            raise ValueError(f"{self.name}: training data needs both real and fake images")
        chosen = np.flatnonzero(skin)
        if len(chosen) > self.max_train_blocks:
            rng = np.random.default_rng(self.seed)
            chosen = np.sort(rng.choice(chosen, size=int(self.max_train_blocks), replace=False))
        x, y = blocks[chosen, :-1], block_labels[chosen]

        candidates = CLASSIFIERS[self.classifier][1]
        selection = {"chosen": candidates[0], "selection": "default"}
        model = None
        if valid is not None and len(candidates) > 1:
            valid_sources, valid_labels, _ = as_training_set(valid)
            valid_blocks, valid_owners = self._collect(valid_sources, f"{self.name}: validation features")
            present = np.unique(valid_owners)
            if len(np.unique(valid_labels[present])) == 2:
                tried = []
                for value in candidates:
                    candidate = make_classifier(self.classifier, self.seed, value).fit(x, y)
                    block_scores = candidate.predict_proba(valid_blocks[:, :-1])[:, 1]
                    image_scores = _image_means(block_scores, valid_owners, len(valid_sources))[present]
                    tried.append((roc_auc_score(valid_labels[present], image_scores), value, candidate))
                best_auc, best_value, model = max(tried, key=lambda item: item[0])
                selection = {"chosen": best_value, "selection": "validation AUC (mean block score per image)",
                             "valid_auc": float(best_auc),
                             "tried": [[v if v is not None else "none", float(a)] for a, v, _ in tried]}
        if model is None:
            model = make_classifier(self.classifier, self.seed).fit(x, y)
        self.classifier_ = model
        self.selection_ = {**selection, "training_blocks": int(len(chosen)),
                           "skin_blocks": int(skin.sum()), "all_blocks": int(len(blocks))}
        self.fitted_ = True
        return self

    # -- scoring ------------------------------------------------------------------------------
    def predict_proba(self, images, *, on_error: str = "raise") -> np.ndarray:
        self._check_fitted()
        sources = as_sources(images)
        scores = np.full(len(sources), np.nan)
        # Block features are scored chunk by chunk and reduced to one number per image at once.
        for indices, chunk, positions in self._iter_blocks(sources, f"{self.name}: scoring", on_error):
            if len(chunk):
                block_scores = self.classifier_.predict_proba(chunk[:, :-1])[:, 1]
                scores[np.asarray(indices)] = _image_means(block_scores, positions, len(indices))
        return scores

    def block_scores(self, image: ImageLike) -> np.ndarray:
        """P(fake) of every block of one image, as the (rows, cols) block grid."""
        self._check_fitted()
        rgb = fit_to_block(load_image(image), int(self.block))
        blocks = self.make_extractor()(rgb)
        rows, cols = grid_shape(rgb.shape[0], rgb.shape[1], int(self.block), int(self.stride))
        return self.classifier_.predict_proba(blocks[:, :-1])[:, 1].reshape(rows, cols)

    def explain(self, image: ImageLike) -> np.ndarray:
        """Block P(fake) spread over the image: (H, W) in [0, 1], the size of the input image."""
        rgb = load_image(image)
        fitted = fit_to_block(rgb, int(self.block))
        heat = block_heatmap(self.block_scores(fitted), fitted.shape[0], fitted.shape[1], int(self.block),
                             int(self.stride))
        if fitted.shape[:2] != rgb.shape[:2]:
            heat = cv2.resize(heat, (rgb.shape[1], rgb.shape[0]), interpolation=cv2.INTER_AREA)
        return np.clip(heat, 0.0, 1.0)

    # -- state --------------------------------------------------------------------------------
    def _get_state(self):
        return {"classifier": self.classifier_, "selection": self.selection_}

    def _set_state(self, state):
        self.classifier_ = state["classifier"]
        self.selection_ = state.get("selection", {})
