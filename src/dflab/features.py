"""Feature extraction over many images: parallel worker processes, per-file cache, bad files skipped.

An *extractor* is a picklable callable object (``image: RGB uint8 array -> np.ndarray``) with a
``cache_key()`` string that changes whenever its parameters change. Cached features are keyed by
the file's content hash and that key, so a second run over the same data only reads small ``.npy``
files, and renaming or moving the data does not invalidate the cache.
"""

from __future__ import annotations

import hashlib
import multiprocessing as mp
import os
import tempfile
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Protocol, Sequence

import numpy as np

from .images import ImageError, ImageLike, as_rgb_array, decode_image, source_name
from .progress import progress_bar

#: Below this many files the work runs in-process: starting workers would cost more than it saves.
MIN_ITEMS_FOR_WORKERS = 48


class Extractor(Protocol):
    def __call__(self, image: np.ndarray) -> np.ndarray: ...

    def cache_key(self) -> str: ...


def default_cache_dir() -> Path:
    """``$DFLAB_CACHE`` or ``~/.cache/dflab`` (XDG)."""
    env = os.environ.get("DFLAB_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "dflab"


def default_workers() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1))


@dataclass
class ExtractionResult:
    """Features per input (``None`` where the input failed) and the failures as ``{index: reason}``."""

    features: list[np.ndarray | None]
    errors: dict[int, str] = field(default_factory=dict)


def _cache_path(cache_dir: Path, extractor_key: str, content_hash: str) -> Path:
    key_dir = hashlib.sha256(extractor_key.encode()).hexdigest()[:16]
    return cache_dir / "features" / key_dir / content_hash[:2] / f"{content_hash}.npy"


def _write_atomic(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            np.save(handle, array, allow_pickle=False)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _extract_one(extractor: Callable, source: ImageLike, cache_dir: Path | None) -> np.ndarray:
    if isinstance(source, np.ndarray):
        return np.asarray(extractor(as_rgb_array(source)))
    path = Path(source)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ImageError(path, "file not found") from None
    except IsADirectoryError:
        raise ImageError(path, "is a folder, not an image file") from None
    except OSError as err:
        raise ImageError(path, f"cannot read file ({err.strerror or err})") from None
    cached = None
    if cache_dir is not None:
        cached = _cache_path(cache_dir, extractor.cache_key(), hashlib.sha256(data).hexdigest())
        if cached.exists():
            try:
                return np.load(cached, allow_pickle=False)
            except (OSError, ValueError):
                pass  # a damaged cache entry is recomputed and overwritten
    features = np.asarray(extractor(decode_image(data, str(path))))
    if cached is not None:
        _write_atomic(cached, features)
    return features


def _extract_chunk(extractor: Callable, sources: Sequence[ImageLike], cache_dir: Path | None):
    _limit_worker_threads()
    out = []
    for source in sources:
        try:
            out.append((_extract_one(extractor, source, cache_dir), None))
        except ImageError as err:
            out.append((None, err.reason))
        except Exception as err:  # noqa: BLE001 - a bad file must not stop a batch; the reason is reported
            out.append((None, f"feature extraction failed ({type(err).__name__}: {err})"))
    return out


def _limit_worker_threads() -> None:
    # Each worker is one process on one core: nested thread pools would oversubscribe the CPU.
    try:
        import cv2

        cv2.setNumThreads(1)
    except ImportError:  # pragma: no cover - OpenCV is a dependency
        pass


def _pool_context():
    # fork: workers start instantly and user scripts need no ``if __name__ == "__main__"`` guard.
    # Workers only run NumPy/OpenCV/Pillow code with one thread each, which is safe after fork.
    return mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")


def extract(sources: Sequence[ImageLike], extractor: Extractor, *, workers: int | None = None,
            cache_dir: Path | None | bool = True, description: str = "features",
            chunk_size: int = 16) -> ExtractionResult:
    """Run ``extractor`` over every source (paths or arrays).

    ``cache_dir``: ``True`` = the default cache folder, ``False``/``None`` = no cache, or a folder.
    ``workers``: worker processes (default: all cores); 1 runs in this process.
    """
    if cache_dir is True:
        cache_dir = default_cache_dir()
    elif cache_dir is False:
        cache_dir = None
    workers = default_workers() if workers is None else max(1, int(workers))
    n = len(sources)
    features: list[np.ndarray | None] = [None] * n
    errors: dict[int, str] = {}
    chunks = [list(range(start, min(start + chunk_size, n))) for start in range(0, n, chunk_size)]

    def collect(indices, results):
        for index, (value, reason) in zip(indices, results):
            if reason is None:
                features[index] = value
            else:
                errors[index] = reason

    with progress_bar(description, n) as advance:
        if workers == 1 or n < MIN_ITEMS_FOR_WORKERS:
            for indices in chunks:
                collect(indices, _extract_chunk(extractor, [sources[i] for i in indices], cache_dir))
                advance(len(indices))
        else:
            with ProcessPoolExecutor(max_workers=min(workers, len(chunks)), mp_context=_pool_context()) as pool:
                futures = [pool.submit(_extract_chunk, extractor, [sources[i] for i in indices], cache_dir)
                           for indices in chunks]
                for indices, future in zip(chunks, futures):
                    collect(indices, future.result())
                    advance(len(indices))
    return ExtractionResult(features, errors)


def stack(result: ExtractionResult, sources: Sequence[ImageLike], *, on_error: str = "raise") -> np.ndarray:
    """Stack per-image feature vectors into (N, D); failed rows are NaN (``on_error="nan"``) or raise."""
    if result.errors and on_error == "raise":
        index, reason = next(iter(sorted(result.errors.items())))
        raise ImageError(source_name(sources[index]), reason)
    valid = [f for f in result.features if f is not None]
    if not valid:
        raise ImageError(source_name(sources[0]) if sources else "<none>", "no usable image in the input")
    dim = np.asarray(valid[0]).reshape(-1).shape[0]
    matrix = np.full((len(result.features), dim), np.nan, dtype=np.float64)
    for row, value in enumerate(result.features):
        if value is not None:
            matrix[row] = np.asarray(value, dtype=np.float64).reshape(-1)
    return matrix
