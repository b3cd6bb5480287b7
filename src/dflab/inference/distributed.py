"""Prediction on a Dask cluster (``--cluster``): the files split into chunks, each chunk scored by
:func:`~dflab.inference.predict.predict_files` on a worker that loaded the model once."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Collection, Iterator, Optional, Sequence

from dflab.inference.models import load_scorer
from dflab.inference.predict import PredictOptions, predict_files, prediction_chunks, without_done

if TYPE_CHECKING:  # dask itself is imported by the caller that starts the cluster
    from dflab.runtime.cluster import OnCluster


def scorer_loader(model: Optional[Path], detector: Optional[str], backend: str = "auto") -> Callable[[], object]:
    """What a worker runs to load the scorer of ``--model``/``--detector``: one feature process per
    worker (the cluster's workers are the parallelism); the model path made absolute, since workers
    do not share the caller's working folder."""
    return partial(load_scorer, Path(model).resolve() if model is not None else None, detector, 1, backend)


def predict_on_cluster(cluster: OnCluster, files: Sequence[str | Path], options: PredictOptions = PredictOptions(),
                       *, chunk_size: int | None = None, done: Collection[str] = frozenset()) -> Iterator[dict]:
    """:func:`~dflab.inference.predict.predict_in_chunks` on the cluster: each chunk's result yielded
    as it finishes (chunks finish out of order; the rows within a chunk keep their order)."""
    # The single-machine chunks: every file is scored in the same batch as without a cluster.
    chunks = prediction_chunks([Path(f) for f in files], chunk_size=chunk_size, done=done)
    for _, result in cluster.map(partial(predict_files, options=options), chunks):
        yield without_done(result, done)
