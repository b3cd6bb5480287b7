"""Prediction on a Dask cluster (``--cluster``): the files split into chunks, each chunk scored by
:func:`~dflab.inference.predict.predict_files` on a worker that loaded the model once."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator, Optional, Sequence

from dflab.inference import predict
from dflab.inference.models import load_scorer
from dflab.inference.predict import PredictOptions, predict_files

if TYPE_CHECKING:  # dask itself is imported by the caller that starts the cluster
    from dflab.runtime.cluster import OnCluster


def scorer_loader(model: Optional[Path], detector: Optional[str], backend: str = "auto") -> Callable[[], object]:
    """What a worker runs to load the scorer of ``--model``/``--detector``: one feature process per
    worker (the cluster's workers are the parallelism); the model path made absolute, since workers
    do not share the caller's working folder."""
    return partial(load_scorer, Path(model).resolve() if model is not None else None, detector, 1, backend)


def predict_on_cluster(cluster: OnCluster, files: Sequence[str | Path], options: PredictOptions = PredictOptions(),
                       *, chunk_size: int | None = None) -> Iterator[dict]:
    """:func:`~dflab.inference.predict.predict_in_chunks` on the cluster: each chunk's result yielded
    as it finishes (chunks finish out of order; the rows within a chunk keep their order)."""
    files = [Path(f) for f in files]
    # The single-machine chunks: every file is scored in the same batch as without a cluster, since a
    # batch's shape decides how BLAS sums it (other batches would change scores in the last digit).
    size = chunk_size or predict.PREDICT_CHUNK
    chunks = [files[start:start + size] for start in range(0, len(files), size)]
    for _, result in cluster.map(partial(predict_files, options=options), chunks):
        yield result
