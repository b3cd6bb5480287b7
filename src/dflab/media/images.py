"""One image loader for every stage: files (or arrays) in, RGB uint8 arrays out.

Every failure becomes an :class:`ImageError` whose message names the file and the reason, so batch
stages can skip the file, record the reason and go on.
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path
from typing import Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

#: Largest accepted image (pixels); larger files are refused as possible decompression bombs.
MAX_PIXELS = 64_000_000


ImageLike = Union[str, os.PathLike, np.ndarray]


class ImageError(ValueError):
    """A file that cannot be used as an image. ``str(err)`` is one line: ``<path>: <reason>``."""

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode == "RGB":
        return img
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        # 16-bit and float greyscale: rescale to 8 bits instead of clipping at 255.
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        scaled = (arr - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(arr)
        return Image.fromarray(scaled.round().astype(np.uint8), "L").convert("RGB")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        # Composite on white so transparent regions do not become arbitrary colours.
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


def decode_image(data: bytes, name: str = "<bytes>") -> np.ndarray:
    """Decode encoded image bytes to an RGB uint8 array (H, W, 3), EXIF orientation applied."""
    if not data:
        raise ImageError(name, "empty file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                width, height = img.size
                if width * height > MAX_PIXELS:
                    raise ImageError(name, f"image too large ({width}x{height} > {MAX_PIXELS} pixels)")
                img.load()
                img = ImageOps.exif_transpose(img)
                arr = np.asarray(_to_rgb(img), dtype=np.uint8)
    except ImageError:
        raise
    except UnidentifiedImageError:
        raise ImageError(name, "not an image (format not recognised)") from None
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as err:
        raise ImageError(name, f"refused as a possible decompression bomb ({err})") from None
    except (OSError, SyntaxError, ValueError) as err:
        reason = str(err).strip() or type(err).__name__
        if "truncated" in reason.lower():
            reason = "truncated or corrupt image data"
        raise ImageError(name, f"cannot decode image ({reason})") from None
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.size == 0:
        raise ImageError(name, f"unexpected decoded shape {arr.shape}")
    return np.ascontiguousarray(arr)


def load_image(source: ImageLike) -> np.ndarray:
    """Load a path (or pass through an array) as an RGB uint8 array of shape (H, W, 3)."""
    if isinstance(source, np.ndarray):
        return as_rgb_array(source)
    path = Path(source)
    return decode_image(read_image_bytes(path), str(path))


def read_image_bytes(path: str | os.PathLike) -> bytes:
    """The bytes of an image file; a file that cannot be read is an :class:`ImageError` saying why."""
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise ImageError(path, "file not found") from None
    except IsADirectoryError:
        raise ImageError(path, "is a folder, not an image file") from None
    except OSError as err:
        raise ImageError(path, f"cannot read file ({err.strerror or err})") from None


def probe_image(source: ImageLike) -> str:
    """Why ``source`` cannot be an image ("" when its header reads as one): a cheap check of every
    file of a training set before hours of training, without decoding the pixels."""
    if isinstance(source, np.ndarray):
        return ""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(source) as img:
                width, height = img.size
    except FileNotFoundError:
        return "file not found"
    except IsADirectoryError:
        return "is a folder, not an image file"
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as err:
        return "not an image (format not recognised)" if isinstance(err, UnidentifiedImageError) else \
            f"unreadable ({err})"
    if width * height > MAX_PIXELS:
        return f"image too large ({width}x{height} > {MAX_PIXELS} pixels)"
    return ""


def image_size(source: ImageLike) -> tuple[int, int]:
    """(width, height) of an image from its header, without decoding the pixels; (0, 0) when it does
    not read as an image (loading it says why)."""
    if isinstance(source, np.ndarray):
        return (int(source.shape[1]), int(source.shape[0])) if source.ndim >= 2 else (0, 0)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(source) as img:
                return img.size
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        return 0, 0


def as_rgb_array(arr: np.ndarray, name: str = "<array>") -> np.ndarray:
    """Validate/convert an in-memory image: (H, W), (H, W, 1|3|4), any numeric dtype -> RGB uint8."""
    arr = np.asarray(arr)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3 or arr.shape[2] not in (1, 3, 4) or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ImageError(name, f"expected an (H, W[, 1|3|4]) image array, got shape {arr.shape}")
    if arr.dtype != np.uint8:
        if np.issubdtype(arr.dtype, np.floating) and np.nanmax(arr) <= 1.0:
            arr = arr * 255.0
        arr = np.clip(np.nan_to_num(arr), 0, 255).round().astype(np.uint8)
    if arr.shape[2] == 1:
        arr = np.repeat(arr, 3, axis=2)
    elif arr.shape[2] == 4:
        arr = arr[:, :, :3]
    return np.ascontiguousarray(arr)


def source_name(source: ImageLike) -> str:
    """A printable name for an image source (its path, or a description of an array)."""
    if isinstance(source, np.ndarray):
        return f"<array {source.shape}>"
    return str(source)


def failure_reason(path: str) -> str:
    """Why a file got no score: the loader's reason, or the detector's when the image itself is fine."""
    try:
        load_image(path)
    except ImageError as err:
        return err.reason
    return "the detector could not score this image"


#: The two JPEG codecs in use. Both are libjpeg, but with different colour conversion and rounding, so a
#: stage keeps the one its numbers were measured with (ELA and training augmentation: OpenCV).
JPEG_ENCODERS = ("pillow", "opencv")


def jpeg_round_trip(image: np.ndarray, quality: int, *, encoder: str = "pillow") -> np.ndarray:
    """The image after JPEG encoding at ``quality`` and decoding: RGB (H, W, 3) or grey (H, W) uint8."""
    if not 0 <= int(quality) <= 100:
        raise ValueError(f"JPEG quality must be in 0..100, got {quality}")
    if encoder == "pillow":
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="JPEG", quality=int(quality))
        buffer.seek(0)
        with Image.open(buffer) as decoded:
            return np.asarray(decoded.convert("L" if image.ndim == 2 else "RGB")).copy()
    if encoder != "opencv":
        raise ValueError(f"unknown JPEG encoder {encoder!r}: expected one of {', '.join(JPEG_ENCODERS)}")
    import cv2

    params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)]
    if image.ndim == 2:
        _, encoded = cv2.imencode(".jpg", image, params)
        return cv2.imdecode(encoded, cv2.IMREAD_GRAYSCALE)
    # OpenCV codes BGR: hand it BGR so the JPEG's YCbCr conversion sees the true colours.
    _, encoded = cv2.imencode(".jpg", np.ascontiguousarray(image[:, :, ::-1]), params)
    return cv2.imdecode(encoded, cv2.IMREAD_COLOR)[:, :, ::-1]
