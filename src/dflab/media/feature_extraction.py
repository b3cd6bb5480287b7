"""Feature extraction over many images: parallel worker processes, per-file cache, bad files skipped.

An *extractor* is a picklable callable object (``image: RGB uint8 array -> np.ndarray``) with a
``cache_key()`` string that changes whenever its parameters change. Cached features are keyed by
the file's content hash and that key, so a second run over the same data only reads small ``.npy``
files, and renaming or moving the data does not invalidate the cache.
"""

from __future__ import annotations

import atexit
import hashlib
import multiprocessing as mp
import os
import tempfile
from collections import deque
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Callable, Iterator, Protocol, Sequence

import numpy as np

from dflab.runtime.files import default_cache_dir
from dflab.media.images import ImageError, ImageLike, as_rgb_array, decode_image, read_image_bytes, source_name
from dflab.runtime.memory import is_keeping_freed_memory, keep_freed_memory
from dflab.runtime.progress import progress_bar

#: Below this many files the work runs in-process: starting workers would cost more than it saves.
MIN_ITEMS_FOR_WORKERS = 48


#: Chunks queued per worker: enough to keep every worker busy, few enough to keep memory flat.
_IN_FLIGHT_PER_WORKER = 4


class Extractor(Protocol):
    def __call__(self, image: np.ndarray) -> np.ndarray: ...

    def cache_key(self) -> str: ...


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
    data = read_image_bytes(path)
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
    # Extractors run small matrix products per image: a BLAS thread pool only adds overhead there
    # (4x slower block-DCT measured), in this process as in the workers.
    with _thread_controller().limit(limits=1):
        for source in sources:
            try:
                out.append((_extract_one(extractor, source, cache_dir), None))
            except ImageError as err:
                out.append((None, err.reason))
            except Exception as err:  # noqa: BLE001 - a bad file must not stop a batch; the reason is reported
                out.append((None, f"feature extraction failed ({type(err).__name__}: {err})"))
    return out


@lru_cache(maxsize=1)
def _thread_controller():
    # Inspecting the loaded thread pools takes milliseconds; doing it once makes each limit() cheap.
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


def _limit_worker_threads() -> None:
    # Each worker is one process on one core: nested thread pools would oversubscribe the CPU.
    try:
        import cv2

        cv2.setNumThreads(1)
    except ImportError:  # pragma: no cover - OpenCV is a dependency
        pass


def _init_worker(keep_memory: bool = False) -> None:
    # BLAS/OpenMP pools (NumPy matmul, scikit-learn) too: one thread per worker process.
    _thread_controller().limit(limits=1)
    _limit_worker_threads()
    if keep_memory:  # as the parent does (the workers start from a fresh interpreter)
        keep_freed_memory()


_POOLS: dict[int, ProcessPoolExecutor] = {}


def _pool(workers: int) -> ProcessPoolExecutor:
    """A process pool kept for the life of this process: starting workers costs seconds, so every
    extraction call (training, validation, scoring chunks) reuses the same ones."""
    pool = _POOLS.get(workers)
    if pool is None:
        # Not fork: a child forked after OpenCV/OpenMP/torch started threads in the parent can
        # deadlock (seen with cv2.setNumThreads). forkserver children start from a clean server
        # that has the heavy modules imported once. As with any multiprocessing code, a user script
        # calling this with workers > 1 needs the ``if __name__ == "__main__":`` guard.
        if "forkserver" in mp.get_all_start_methods():
            context = mp.get_context("forkserver")
            context.set_forkserver_preload(["numpy", "cv2", "PIL.Image", "dflab.media.feature_extraction", "dflab.detectors.handcrafted.classic"])
        else:
            context = mp.get_context("spawn")
        pool = _POOLS[workers] = ProcessPoolExecutor(max_workers=workers, mp_context=context,
                                                     initializer=_init_worker,
                                                     initargs=(is_keeping_freed_memory(),))
        atexit.register(pool.shutdown, wait=False, cancel_futures=True)
    return pool


def iter_extract(sources: Sequence[ImageLike], extractor: Extractor, *, workers: int | None = None,
                 cache_dir: Path | str | None | bool = True, description: str = "features",
                 chunk_size: int = 16) -> Iterator[tuple[list[int], list[tuple[np.ndarray | None, str | None]]]]:
    """Yield ``(indices, [(features | None, reason | None), ...])`` chunk by chunk, in input order.

    Only a few chunks per worker are in flight at once and a chunk's result is dropped once yielded,
    so memory stays flat however long the input is: a caller that reduces each chunk (e.g. scores
    it and keeps one number per image) never holds every image's features.
    """
    cache_dir = _resolve_cache_dir(cache_dir)
    workers = default_workers() if workers is None else max(1, int(workers))
    n = len(sources)
    chunks = [list(range(start, min(start + chunk_size, n))) for start in range(0, n, chunk_size)]
    with progress_bar(description, n) as advance:
        if workers == 1 or n < MIN_ITEMS_FOR_WORKERS:
            for indices in chunks:
                results = _extract_chunk(extractor, [sources[i] for i in indices], cache_dir)
                advance(len(indices))
                yield indices, results
            return
        pending: deque = deque()
        upcoming = iter(chunks)

        def submit_next() -> bool:
            indices = next(upcoming, None)
            if indices is None:
                return False
            args = (_extract_chunk, extractor, [sources[i] for i in indices], cache_dir)
            try:
                future = _pool(workers).submit(*args)
            except BrokenProcessPool:
                _POOLS.pop(workers, None)  # a worker died earlier (e.g. killed): start a fresh pool once
                future = _pool(workers).submit(*args)
            pending.append((indices, future))
            return True

        for _ in range(_IN_FLIGHT_PER_WORKER * workers):
            if not submit_next():
                break
        while pending:
            indices, future = pending.popleft()
            results = future.result()
            submit_next()
            advance(len(indices))
            yield indices, results


def extract(sources: Sequence[ImageLike], extractor: Extractor, *, workers: int | None = None,
            cache_dir: Path | None | bool = True, description: str = "features",
            chunk_size: int = 16) -> ExtractionResult:
    """Run ``extractor`` over every source (paths or arrays).

    ``cache_dir``: ``True`` = the default cache folder, ``False``/``None`` = no cache, or a folder.
    ``workers``: worker processes (default: all cores); 1 runs in this process.
    """
    features: list[np.ndarray | None] = [None] * len(sources)
    errors: dict[int, str] = {}
    for indices, results in iter_extract(sources, extractor, workers=workers, cache_dir=cache_dir,
                                         description=description, chunk_size=chunk_size):
        for index, (value, reason) in zip(indices, results):
            if reason is None:
                features[index] = value
            else:
                errors[index] = reason
    return ExtractionResult(features, errors)


def _resolve_cache_dir(cache_dir: Path | str | None | bool) -> Path | None:
    if cache_dir is True:
        return default_cache_dir()
    if cache_dir is False or cache_dir is None:
        return None
    return Path(cache_dir)


def stack(result: ExtractionResult, sources: Sequence[ImageLike], *, on_error: str = "raise",
          all_failed_ok: bool = False) -> np.ndarray:
    """Stack per-image feature vectors into (N, D); failed rows are NaN (``on_error="nan"``) or raise.
    When no file at all is usable, that is an error, unless ``all_failed_ok`` (scoring a batch that
    happens to hold only bad files): then every row is NaN (one NaN column)."""
    if result.errors and on_error == "raise":
        index, reason = next(iter(sorted(result.errors.items())))
        raise ImageError(source_name(sources[index]), reason)
    valid = [f for f in result.features if f is not None]
    if not valid and all_failed_ok and on_error == "nan":
        return np.full((len(result.features), 1), np.nan)
    if not valid:
        if result.errors:  # the loader's own reason for the first failure
            index, reason = next(iter(sorted(result.errors.items())))
            more = f" (and {len(result.errors) - 1} more unusable files)" if len(result.errors) > 1 else ""
            raise ImageError(source_name(sources[index]), reason + more)
        raise ImageError(source_name(sources[0]) if sources else "<none>", "no usable image in the input")
    dim = np.asarray(valid[0]).reshape(-1).shape[0]
    matrix = np.full((len(result.features), dim), np.nan, dtype=np.float64)
    for row, value in enumerate(result.features):
        if value is not None:
            matrix[row] = np.asarray(value, dtype=np.float64).reshape(-1)
    return matrix
