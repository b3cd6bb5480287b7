"""Robustness perturbations: re-score an evaluation set after the degradations images meet online.

``PERTURBATIONS`` (name -> :class:`Perturbation`):

* ``jpeg90`` / ``jpeg70`` / ``jpeg50``: one JPEG encode + decode with Pillow at that quality
  (libjpeg's default 4:2:0 chroma subsampling).
* ``downscale0.5``: shrink to half size (area averaging) and enlarge back to the original size
  (bilinear). The size is restored so every detector sees the input size it expects; what is lost
  is the detail above half the original Nyquist frequency, as for a face first captured at lower
  resolution.
* ``blur``: Gaussian blur, sigma 1.5 px (OpenCV, reflected borders).
* ``noise``: additive Gaussian noise, sigma 5 grey levels, independent per pixel and channel,
  rounded and clipped to uint8; seeded.

:func:`apply` works on one RGB uint8 array; :func:`perturbed_sources` writes perturbed PNG copies
of many images (cached by content hash, perturbation and seed), so any detector scores them with
``predict_proba(paths)``.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import cv2
import numpy as np
from PIL import Image

from dflab.media.images import (ImageError, ImageLike, as_rgb_array, jpeg_round_trip, load_image, read_image_bytes,
                                source_name)

#: Bumped when a perturbation's implementation changes, so cached copies are not reused.
PERTURB_VERSION = 1


def jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    """JPEG encode at ``quality`` and decode again (Pillow)."""
    return jpeg_round_trip(image, quality)


def downscale(image: np.ndarray, factor: float) -> np.ndarray:
    """Shrink by ``factor`` (area averaging), then enlarge back to the original size (bilinear)."""
    height, width = image.shape[:2]
    small = cv2.resize(image, (max(1, round(width * factor)), max(1, round(height * factor))),
                       interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)


def gaussian_blur(image: np.ndarray, sigma: float) -> np.ndarray:
    return cv2.GaussianBlur(image, (0, 0), sigmaX=float(sigma), borderType=cv2.BORDER_REFLECT_101)


def gaussian_noise(image: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    noisy = image.astype(np.float64) + rng.normal(0.0, float(sigma), image.shape)
    return np.clip(np.round(noisy), 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class Perturbation:
    name: str
    description: str
    function: Callable[..., np.ndarray]
    params: dict[str, Any] = field(default_factory=dict)
    #: Whether the result depends on the random generator (then the seed is part of the cache key).
    random: bool = False

    def __call__(self, image: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        if self.random:
            if rng is None:
                raise ValueError(f"perturbation {self.name} is random: pass rng (a numpy Generator)")
            return self.function(image, **self.params, rng=rng)
        return self.function(image, **self.params)


PERTURBATIONS: dict[str, Perturbation] = {
    "jpeg90": Perturbation("jpeg90", "JPEG quality 90", jpeg, {"quality": 90}),
    "jpeg70": Perturbation("jpeg70", "JPEG quality 70", jpeg, {"quality": 70}),
    "jpeg50": Perturbation("jpeg50", "JPEG quality 50", jpeg, {"quality": 50}),
    "downscale0.5": Perturbation("downscale0.5", "downscale x0.5 and back up (bilinear)", downscale, {"factor": 0.5}),
    "blur": Perturbation("blur", "Gaussian blur, sigma 1.5 px", gaussian_blur, {"sigma": 1.5}),
    "noise": Perturbation("noise", "Gaussian noise, sigma 5 grey levels", gaussian_noise, {"sigma": 5.0},
                          random=True),
}


def _get(name: str) -> Perturbation:
    if name not in PERTURBATIONS:
        raise ValueError(f"unknown perturbation {name!r}; choose from {', '.join(PERTURBATIONS)}")
    return PERTURBATIONS[name]


def apply(name: str, image: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
    """Apply a named perturbation to one image (RGB uint8 in, RGB uint8 of the same shape out).
    ``rng`` is needed by random perturbations (``noise``); without one, seed 0 is used."""
    perturbation = _get(name)
    image = as_rgb_array(image)
    if perturbation.random and rng is None:
        rng = np.random.default_rng(0)
    return perturbation(image, rng)


def _source_bytes(source: ImageLike) -> bytes:
    if isinstance(source, np.ndarray):
        array = np.ascontiguousarray(source)
        return f"{array.shape}{array.dtype}".encode() + array.tobytes()
    return read_image_bytes(source)


def perturbed_sources(sources: Sequence[ImageLike], name: str, out_dir: str | os.PathLike, seed: int = 0, *,
                      on_error: str = "raise") -> list[ImageLike]:
    """Write a perturbed PNG copy of every source under ``out_dir/<name>/`` and return their paths,
    in the order of ``sources``.

    A copy is named by the hash of the source's content, the perturbation (with its parameters and
    :data:`PERTURB_VERSION`) and, for random perturbations, the seed; an existing copy is reused.
    The noise of one image is drawn from ``(seed, content hash)``, so it does not depend on the
    order or number of the other images. ``on_error="keep"`` returns an unreadable source itself
    (a detector's ``predict_proba(..., on_error="nan")`` then scores it NaN) instead of raising.
    """
    if on_error not in ("raise", "keep"):
        raise ValueError(f"on_error must be 'raise' or 'keep', got {on_error!r}")
    perturbation = _get(name)
    key = json.dumps({"name": name, "params": perturbation.params, "version": PERTURB_VERSION,
                      "seed": int(seed) if perturbation.random else None}, sort_keys=True)
    folder = Path(out_dir) / name
    folder.mkdir(parents=True, exist_ok=True)
    out: list[ImageLike] = []
    for source in sources:
        try:
            content_hash = hashlib.sha256(_source_bytes(source)).hexdigest()
            file_hash = hashlib.sha256(f"{key}|{content_hash}".encode()).hexdigest()[:24]
            path = folder / f"{file_hash}.png"
            if not path.exists():
                image = load_image(source)
                rng = (np.random.default_rng(np.random.SeedSequence([int(seed), int(content_hash[:16], 16)]))
                       if perturbation.random else None)
                perturbed = perturbation(image, rng)
                # Write then rename: a crash never leaves a half-written PNG under the cached name.
                partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
                Image.fromarray(perturbed).save(partial, format="PNG")
                os.replace(partial, path)
        except ImageError:
            if on_error == "raise":
                raise
            out.append(source)
            continue
        except OSError as err:
            raise ImageError(source_name(source), f"cannot write its {name} copy in {folder} ({err})") from None
        out.append(str(path))
    return out
