"""Self-blended images (SBI; Shiohara & Yamasaki, CVPR 2022): pseudo-fakes made from real faces only.

A real face is blended with a slightly transformed copy of itself through a soft face mask:

1. **Mask**: the convex hull of facial landmarks when they are known (68/81-point layouts: hull of
   all points; MTCNN's 5 points: a face outline built from the eyes, nose and mouth corners, see
   :func:`face_hull`), otherwise an ellipse fitted to the aligned crop (centre near the image
   centre, semi-axes 0.30-0.40 of the size).
2. **Copies**: one of the two copies (the inner "source" or, with ``swap_prob``, the outer
   "target", as in the paper) gets colour jitter (RGB shift, hue/saturation, brightness/contrast)
   and frequency jitter (one of: downscale x2/x4 and back up, sharpen, Gaussian blur; optional
   JPEG). The source and the mask are scaled (0.95-1.05) and translated (up to 3 % / 1.5 %).
3. **Mask deformation**: elastic deformation of the mask outline, random erosion or dilation,
   a Gaussian blur with a random kernel on a randomly resized mask (so the feathering is not
   isotropic), then a blend ratio drawn from {0.25, 0.5, 0.75, 1, 1, 1}.

``blended = mask * source + (1 - mask) * target``. Ranges follow the paper's code for 256 px crops
and are scaled with the image size, so small crops work too. Everything is drawn from the
``numpy.random.Generator`` given, so a seed reproduces the images exactly.

Hooks for training: :func:`make_sbi_batch` (reals + their blends, labels 0/1) and
:class:`SelfBlendedDataset` (a map-style dataset, usable with a torch ``DataLoader``, that draws new
blends each epoch via :meth:`SelfBlendedDataset.set_epoch`). :func:`sbi_grid` draws examples for
the report.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import cv2
import numpy as np

from dflab.media.images import ImageLike, jpeg_round_trip, load_image

#: The paper's blend ratios: a full blend half of the time, partial blends otherwise.
BLEND_RATIOS = (0.25, 0.5, 0.75, 1.0, 1.0, 1.0)


#: Crop size the paper's pixel ranges were written for; other sizes scale them.
_REFERENCE_SIZE = 256.0


def _as_generator(rng: np.random.Generator | int | None) -> np.random.Generator:
    if isinstance(rng, np.random.Generator):
        return rng
    return np.random.default_rng(rng)


def _odd(value: float, minimum: int = 3) -> int:
    size = max(minimum, int(round(value)))
    return size if size % 2 else size + 1


def _check_landmarks(landmarks: Any) -> np.ndarray:
    points = np.asarray(landmarks, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 2 or points.shape[0] < 3:
        raise ValueError(f"landmarks: expected (K, 2) points (x, y) with K >= 3, got shape {points.shape}")
    if not np.isfinite(points).all():
        raise ValueError("landmarks: contain NaN or infinite coordinates")
    return points


def face_hull(landmarks: Any) -> np.ndarray:
    """The face outline (M, 2) whose convex hull is the blending region.

    For 5 points (MTCNN: left eye, right eye, nose, left and right mouth corner) the 68-point
    hull (brows, jaw line, chin) is approximated from face proportions in units of the eye
    distance ``d``: brows 0.5 d above the eyes, cheeks/jaw 1.0 d beside the eye and mouth
    centres, chin 0.6 d below the mouth. Other layouts (68, 81, ...) use all their points.
    """
    points = _check_landmarks(landmarks)
    if len(points) != 5:
        return cv2.convexHull(points.astype(np.float32)).reshape(-1, 2).astype(np.float64)
    left_eye, right_eye, _nose, mouth_left, mouth_right = points
    eyes, mouth = (left_eye + right_eye) / 2, (mouth_left + mouth_right) / 2
    d = float(np.linalg.norm(right_eye - left_eye))
    if d < 1e-6:
        raise ValueError("landmarks: the two eye points coincide")
    right = (right_eye - left_eye) / d
    up = eyes - mouth
    up = up / np.linalg.norm(up) if np.linalg.norm(up) > 1e-6 else np.array([-right[1], right[0]])
    outline = [
        eyes + up * 0.5 * d,                                   # brow centre
        eyes + up * 0.45 * d - right * 0.95 * d, eyes + up * 0.45 * d + right * 0.95 * d,  # brow ends
        eyes - right * 1.05 * d, eyes + right * 1.05 * d,      # cheeks at eye level
        mouth - right * 0.9 * d, mouth + right * 0.9 * d,      # jaw at mouth level
        mouth - up * 0.55 * d - right * 0.45 * d, mouth - up * 0.55 * d + right * 0.45 * d,  # chin sides
        mouth - up * 0.65 * d,                                 # chin
        *points,                                               # the landmarks themselves stay inside
    ]
    hull = cv2.convexHull(np.asarray(outline, dtype=np.float32))
    return hull.reshape(-1, 2).astype(np.float64)


def _fill_polygon(shape: tuple[int, int], polygon: np.ndarray) -> np.ndarray:
    mask = np.zeros(shape, np.uint8)
    shift = 4  # sub-pixel vertices
    cv2.fillConvexPoly(mask, np.round(polygon * (1 << shift)).astype(np.int32), 1, cv2.LINE_8, shift)
    return mask.astype(np.float32)


def ellipse_mask(shape: tuple[int, int], rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """A face-sized ellipse for an aligned crop: ``(mask, params)`` with centre, semi-axes (px), angle."""
    height, width = shape
    centre = (width * rng.uniform(0.47, 0.53), height * rng.uniform(0.48, 0.56))
    axes = (width * rng.uniform(0.30, 0.36), height * rng.uniform(0.34, 0.40))
    angle = float(rng.uniform(-8, 8))
    mask = np.zeros(shape, np.uint8)
    shift = 4
    cv2.ellipse(mask, (round(centre[0] * 16), round(centre[1] * 16)), (round(axes[0] * 16), round(axes[1] * 16)),
                angle, 0, 360, 1, -1, cv2.LINE_8, shift)
    return mask.astype(np.float32), {"centre": centre, "axes": axes, "angle": angle}


def face_mask(shape: tuple[int, int], rng: np.random.Generator, landmarks: Any = None) -> tuple[np.ndarray, dict]:
    """The hard (0/1) face region before deformation: landmark hull, or a random ellipse."""
    if landmarks is not None:
        hull = face_hull(landmarks)
        mask = _fill_polygon(shape, hull)
        info = {"kind": "landmarks", "hull": hull}
    else:
        mask, params = ellipse_mask(shape, rng)
        info = {"kind": "ellipse", **params}
    if not mask.any():
        raise ValueError(f"face mask is empty for a {shape[1]}x{shape[0]} image (landmarks outside the image?)")
    return mask, info


def _elastic(mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Wobble the outline: a smooth random displacement field of 0.5-1.5 % of the size (std)."""
    height, width = mask.shape
    size = min(height, width)
    sigma = max(1.0, 0.04 * size)
    amplitude = rng.uniform(0.005, 0.015) * size
    fields = []
    for _ in range(2):
        noise = cv2.GaussianBlur(rng.standard_normal((height, width)).astype(np.float32), (0, 0), sigma)
        fields.append(noise / max(float(noise.std()), 1e-6) * amplitude)
    grid_x, grid_y = np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))
    return cv2.remap(mask, grid_x + fields[0], grid_y + fields[1], cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def _deform_mask(mask: np.ndarray, rng: np.random.Generator, scale: float) -> np.ndarray:
    """Erode or dilate, then feather with a random Gaussian on a randomly resized copy (paper: the
    mask is resized to 192-257 px of 256 before blurring), normalised so the core is 1."""
    height, width = mask.shape
    size = min(height, width)
    operation = rng.choice(["erode", "dilate", "none"], p=[0.4, 0.3, 0.3])
    radius = int(round(rng.uniform(0.0, 0.04) * size))
    if operation != "none" and radius > 0:
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
        changed = (cv2.erode if operation == "erode" else cv2.dilate)(mask, kernel)
        if changed.max() > 0.5:  # never erode a small face away entirely
            mask = changed
    small = (max(4, round(width * rng.uniform(0.75, 1.0))), max(4, round(height * rng.uniform(0.75, 1.0))))
    resized = cv2.resize(mask, small, interpolation=cv2.INTER_LINEAR)
    ksize = _odd(rng.uniform(5, 26) * scale)
    sigma = rng.uniform(ksize / 6, ksize / 2.5)
    blurred = cv2.GaussianBlur(resized, (ksize, ksize), sigma)
    blurred = cv2.resize(blurred, (width, height), interpolation=cv2.INTER_LINEAR)
    blurred[blurred < 1e-3] = 0.0  # exact zeros away from the face: the background stays untouched
    peak = float(blurred.max())
    return np.clip(blurred / peak, 0.0, 1.0) if peak > 0 else blurred


def _colour_jitter(image: np.ndarray, rng: np.random.Generator, ops: list[str]) -> np.ndarray:
    out = image.astype(np.float32)
    if rng.random() < 0.3:
        out += rng.uniform(-20, 20, 3).astype(np.float32)
        ops.append("rgb_shift")
    if rng.random() < 0.5:
        hsv = cv2.cvtColor(np.clip(out, 0, 255) / 255.0, cv2.COLOR_RGB2HSV)  # H in degrees, S and V in [0, 1]
        hsv[..., 0] = (hsv[..., 0] + rng.uniform(-5, 5)) % 360
        hsv[..., 1] = np.clip(hsv[..., 1] * rng.uniform(0.85, 1.15), 0, 1)
        hsv[..., 2] = np.clip(hsv[..., 2] * rng.uniform(0.9, 1.1), 0, 1)
        out = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB) * 255.0
        ops.append("hue_saturation_value")
    # Brightness/contrast as albumentations' RandomBrightnessContrast(0.1, 0.1), always applied.
    contrast, brightness = 1 + rng.uniform(-0.1, 0.1), rng.uniform(-0.1, 0.1) * 255
    out = out * contrast + brightness
    ops.append("brightness_contrast")
    return np.clip(out, 0, 255)


def _frequency_jitter(image: np.ndarray, rng: np.random.Generator, ops: list[str], jpeg_prob: float) -> np.ndarray:
    height, width = image.shape[:2]
    choice = rng.choice(["downscale", "sharpen", "blur"])
    if choice == "downscale":
        factor = int(rng.choice([2, 4]))
        small = cv2.resize(image, (max(1, width // factor), max(1, height // factor)), interpolation=cv2.INTER_NEAREST)
        out = cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)
    elif choice == "sharpen":
        # albumentations' Sharpen(alpha=(0.2, 0.5), lightness=(0.5, 1.0)).
        alpha, lightness = rng.uniform(0.2, 0.5), rng.uniform(0.5, 1.0)
        identity = np.zeros((3, 3), np.float32)
        identity[1, 1] = 1
        effect = np.array([[-1, -1, -1], [-1, 8 + lightness, -1], [-1, -1, -1]], np.float32)
        out = cv2.filter2D(image, -1, (1 - alpha) * identity + alpha * effect, borderType=cv2.BORDER_REFLECT_101)
    else:
        out = cv2.GaussianBlur(image, (0, 0), rng.uniform(0.5, 1.5), borderType=cv2.BORDER_REFLECT_101)
    ops.append(str(choice))
    out = np.clip(out, 0, 255)
    if rng.random() < jpeg_prob:
        quality = int(rng.integers(60, 96))
        out = jpeg_round_trip(np.round(out).astype(np.uint8), quality).astype(np.float32)
        ops.append(f"jpeg{quality}")
    return out.astype(np.float32)


def _affine(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """Scale 0.95-1/0.95 about the centre, translation up to 3 % (x) and 1.5 % (y) of the size."""
    height, width = shape
    scale = rng.uniform(0.95, 1 / 0.95)
    matrix = cv2.getRotationMatrix2D((width / 2, height / 2), 0.0, scale)
    matrix[:, 2] += (rng.uniform(-0.03, 0.03) * width, rng.uniform(-0.015, 0.015) * height)
    return matrix


def self_blend(image: ImageLike, rng: np.random.Generator | int | None, *, landmarks: Any = None,
               swap_prob: float = 0.5, jpeg_prob: float = 0.2, blend_ratios: Sequence[float] = BLEND_RATIOS,
               return_info: bool = False):
    """Blend a face with a transformed copy of itself: ``(blended, mask)``.

    ``image``: RGB (or greyscale) face crop, array or path. ``landmarks``: (K, 2) pixel points of
    this image, or None for the ellipse mask. ``swap_prob``: chance that the jittered copy is the
    outer one (the paper's 0.5; 0 keeps everything outside the mask identical to ``image``).
    ``jpeg_prob``: chance of a JPEG pass in the frequency jitter.

    Returns ``blended`` (H, W, 3) uint8 and ``mask`` (H, W) float32 in [0, 1]: the weight of the
    inner copy per pixel (blend ratio included). With ``return_info`` a third item describes what
    was drawn (mask kind and geometry, ratio, operations), for reports and tests.
    """
    rng = _as_generator(rng)
    target = load_image(image).astype(np.float32)
    height, width = target.shape[:2]
    scale = min(height, width) / _REFERENCE_SIZE

    mask, info = face_mask((height, width), rng, landmarks)
    source = target.copy()
    ops: list[str] = []
    swapped = bool(rng.random() < swap_prob)
    jittered = _frequency_jitter(_colour_jitter(target if swapped else source, rng, ops), rng, ops, jpeg_prob)
    if swapped:
        target = jittered
    else:
        source = jittered

    matrix = _affine((height, width), rng)
    source = cv2.warpAffine(source, matrix, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
    mask = cv2.warpAffine(mask, matrix, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                          borderValue=0)
    mask = _deform_mask(_elastic(mask, rng), rng, scale)
    ratio = float(rng.choice(np.asarray(blend_ratios, dtype=np.float64)))
    mask = (mask * ratio).astype(np.float32)

    alpha = mask[..., None]
    blended = np.clip(np.round(alpha * source + (1 - alpha) * target), 0, 255).astype(np.uint8)
    if not return_info:
        return blended, mask
    info.update({"ratio": ratio, "swapped": swapped, "operations": ops, "affine": matrix})
    return blended, mask, info


def make_sbi_batch(real_images: Sequence[ImageLike], rng: np.random.Generator | int | None, *,
                   landmarks: Sequence[Any] | None = None, **options) -> tuple[list[np.ndarray], np.ndarray]:
    """Reals (label 0) followed by their self-blended versions (label 1), in the same order.

    ``landmarks``: one entry per image (an array or None), or None for ellipse masks everywhere.
    ``options`` go to :func:`self_blend`. The same seed gives the same batch.
    """
    rng = _as_generator(rng)
    reals = [load_image(image) for image in real_images]
    if landmarks is not None and len(landmarks) != len(reals):
        raise ValueError(f"{len(reals)} images but {len(landmarks)} landmark entries")
    blends = [self_blend(real, rng, landmarks=None if landmarks is None else landmarks[i], **options)[0]
              for i, real in enumerate(reals)]
    labels = np.r_[np.zeros(len(reals), np.int64), np.ones(len(blends), np.int64)]
    return reals + blends, labels


class SelfBlendedDataset:
    """Map-style dataset of ``2 * len(sources)`` items: item ``i < n`` is real image ``i`` (label 0),
    item ``n + i`` a self-blend of image ``i`` (label 1) drawn from ``(seed, epoch, i)``.

    ``__getitem__`` returns ``(image uint8 (H, W, 3), label)``; a torch ``DataLoader`` with shuffling
    mixes reals and blends. Call :meth:`set_epoch` each epoch for new blends (the paper draws new
    ones every time an image is used). Real fakes can be mixed in by concatenating datasets.
    """

    def __init__(self, sources: Sequence[ImageLike], *, landmarks: Sequence[Any] | None = None, seed: int = 0,
                 **options):
        self.sources = list(sources)
        if landmarks is not None and len(landmarks) != len(self.sources):
            raise ValueError(f"{len(self.sources)} images but {len(landmarks)} landmark entries")
        self.landmarks = landmarks
        self.seed, self.epoch, self.options = int(seed), 0, options

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return 2 * len(self.sources)

    def __getitem__(self, index: int) -> tuple[np.ndarray, int]:
        n = len(self.sources)
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} items")
        index %= len(self)
        real = load_image(self.sources[index % n])
        if index < n:
            return real, 0
        i = index - n
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, self.epoch, i]))
        points = None if self.landmarks is None else self.landmarks[i]
        return self_blend(real, rng, landmarks=points, **self.options)[0], 1


def sbi_grid(images: Sequence[ImageLike], out_path: str | os.PathLike, *, seed: int = 0,
             landmarks: Sequence[Any] | None = None, max_rows: int = 6, **options) -> Path:
    """Write a PNG grid of examples, one row per image: real | self-blended | mask (blend weight)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    images = list(images)[:max_rows]
    if not images:
        raise ValueError("sbi_grid: no images given")
    rng = np.random.default_rng(seed)
    fig, axes = plt.subplots(len(images), 3, figsize=(7.5, 2.5 * len(images)), squeeze=False)
    for row, image in enumerate(images):
        real = load_image(image)
        points = None if landmarks is None else landmarks[row]
        blended, mask, info = self_blend(real, rng, landmarks=points, return_info=True, **options)
        panels = [(real, "real"), (blended, f"self-blended ({info['kind']}, ratio {info['ratio']:g})"),
                  (mask, "mask (blend weight)")]
        for ax, (panel, title) in zip(axes[row], panels):
            ax.imshow(panel, cmap="gray", vmin=0, vmax=1) if panel.ndim == 2 else ax.imshow(panel)
            ax.set_title(title, fontsize=8)
            ax.axis("off")
    fig.tight_layout()
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_path, dpi=100)
    plt.close(fig)
    return out_path
