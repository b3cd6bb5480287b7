"""Face extraction on a Dask cluster (``dflab faces extract --cluster``): sources split into chunks,
each extracted on a worker with the face detector it built once."""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Callable, Sequence

from dflab.faces.detection import FaceDetector
from dflab.faces.finder import get_face_detector
from dflab.runtime.progress import progress_bar

if TYPE_CHECKING:  # dask itself is imported by the caller that starts the cluster
    from dflab.runtime.cluster import OnCluster

#: Sources per chunk at most: a chunk of videos is minutes of work, and a dead worker loses only its chunk
#: (what it finished is kept: each source's crops and status.json are written as it completes).
FACES_CHUNK = 16


def face_detector_loader(name: str, **options) -> Callable[[], FaceDetector]:
    """What a worker runs to build the face detector ``name`` (its weights read on the worker)."""
    return partial(get_face_detector, name, **options)


def extract_on_cluster(cluster: OnCluster, sources: Sequence, extract: Callable) -> list[tuple[list[dict], dict]]:
    """``extract(source, face_detector=...)`` for every source on the cluster: (rows, status) per source,
    in the order of ``sources``."""
    size = cluster.chunk_size(len(sources), FACES_CHUNK)
    chunks = [list(sources[start:start + size]) for start in range(0, len(sources), size)]
    results: list[list[tuple[list[dict], dict]]] = [[] for _ in chunks]
    with progress_bar("extracting faces", len(sources)) as advance:
        for index, chunk_results in cluster.map(partial(_extract_chunk, extract=extract), chunks):
            results[index] = chunk_results
            advance(len(chunk_results))
    return [result for chunk_results in results for result in chunk_results]


def _extract_chunk(face_detector: FaceDetector, sources: Sequence, *, extract: Callable) -> list[tuple[list[dict], dict]]:
    return [extract(source, face_detector=face_detector) for source in sources]
