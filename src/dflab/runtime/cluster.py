"""Chunks of work on a Dask distributed cluster: a local one (``local[:N]``, N worker processes on this
machine) or a running scheduler (``tcp://host:8786``), for corpora too big for one machine.

Dask does the scheduling: a chunk whose worker dies is run again on another worker (the scheduler's
``allowed-failures``), a chunk that raises is retried (``submit(retries=...)``), and results come back
as they finish (``as_completed``). What dflab adds is one thing: the model (or face detector) a chunk
needs is loaded once per worker, by a worker plugin, and kept there for every chunk that worker runs.

Dask was chosen over Ray because it is pure Python wheels (no 100 MB native runtime), a local cluster
starts in seconds from a test, and the same ``Client`` API drives a multi-machine cluster started with
``dask scheduler`` / ``dask worker ADDRESS``.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import re
import uuid
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

from distributed import Client, LocalCluster, as_completed, get_worker
from distributed.diagnostics.plugin import WorkerPlugin

from dflab.runtime.messages import one_line

#: Times a chunk whose task raised is submitted again (a worker that dies is the scheduler's business).
CHUNK_RETRIES = 2

#: Chunks per worker at least, so that a small corpus still spreads over every worker.
_CHUNKS_PER_WORKER = 4

_LOCAL = re.compile(r"^local(?::(\d+))?$")


class ClusterError(RuntimeError):
    """The cluster cannot be reached or cannot run the work; the message is one line."""


@contextlib.contextmanager
def connect(address: str) -> Iterator[Any]:
    """A ``distributed.Client`` for ``address``: ``local`` (one worker process per core), ``local:N``
    (N worker processes, one thread each) or a scheduler's address (``tcp://host:8786``, ``host:8786``).
    A local cluster is started here and shut down on exit."""
    local = _LOCAL.match(address.strip())
    try:
        if local:
            n_workers = int(local.group(1)) if local.group(1) else _cores()
            if n_workers < 1:
                raise ClusterError(f"{address}: a local cluster needs at least one worker")
            cluster = LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                                   dashboard_address=None, silence_logs=logging.CRITICAL)
            with cluster, Client(cluster) as client:
                yield client
        else:
            with Client(address) as client:  # waits distributed.comm.timeouts.connect (dask config)
                yield client
    except (OSError, TimeoutError) as err:
        raise ClusterError(f"{address}: cannot reach the Dask scheduler ({err})") from None


def _cores() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1))


class _LoadOnWorker(WorkerPlugin):
    """Worker plugin: ``load()`` once when a worker joins (new workers, and workers restarted after a
    crash, get it too); tasks read the loaded value back by the plugin's name."""

    def __init__(self, name: str, load: Callable[[], Any]):
        self.name, self.load, self.value = name, load, None

    def setup(self, worker) -> None:
        from dflab.runtime.memory import keep_freed_memory
        from dflab.runtime.progress import set_quiet

        keep_freed_memory()  # what the dflab command does in its own process (see runtime.memory)
        set_quiet(True)  # the caller reports progress per chunk; workers' own bars would interleave on its terminal
        self.value = self.load()


def _run_chunk(plugin_name: str, work: Callable[[Any, Any], Any], chunk: Any) -> Any:
    return work(get_worker().plugins[plugin_name].value, chunk)


def map_chunks(client, load: Callable[[], Any], work: Callable[[Any, Any], Any], chunks: Sequence[Any],
               *, retries: int = CHUNK_RETRIES) -> Iterator[tuple[int, Any]]:
    """``(index, work(loaded, chunks[index]))`` for every chunk, in the order they finish, where
    ``loaded = load()`` ran once on the worker. ``load`` and ``work`` must be picklable (top-level
    functions, ``functools.partial`` of them) and whatever ``load`` reads must be readable on every
    worker. A chunk that still fails after the retries, or whose workers kept dying, raises
    :class:`ClusterError`."""
    plugin_name = f"dflab-load-{uuid.uuid4().hex[:12]}"  # runs sharing a cluster keep their own models
    try:
        try:
            client.register_plugin(_LoadOnWorker(plugin_name, load), name=plugin_name)
        except Exception as err:  # noqa: BLE001 - whatever load() raised on a worker, as one line
            raise ClusterError(f"cannot load the model on the cluster's workers "
                               f"({one_line(f'{type(err).__name__}: {err}')})") from None
        futures = {client.submit(_run_chunk, plugin_name, work, chunk, retries=retries, pure=False): index
                   for index, chunk in enumerate(chunks)}
        for future in as_completed(futures):
            index = futures.pop(future)
            try:
                result = future.result()
            except Exception as err:  # noqa: BLE001 - a chunk's failure (KilledWorker included), as one line
                for other in futures:
                    other.cancel()
                raise ClusterError(f"chunk {index + 1} of {len(chunks)} failed on the cluster "
                                   f"({one_line(f'{type(err).__name__}: {err}')})") from None
            future.release()  # its result is handed over: the cluster need not keep it
            yield index, result
    finally:
        with contextlib.suppress(Exception):  # the cluster may already be gone
            client.unregister_worker_plugin(plugin_name)


@dataclass(frozen=True)
class OnCluster:
    """Work to run on ``client``'s workers with what ``load()`` returns there (a model, a face
    detector), loaded once per worker. ``load`` must be picklable and read only what every worker can."""

    client: Any
    load: Callable[[], Any]

    def chunk_size(self, n_items: int, largest: int) -> int:
        """Items per chunk: at most ``largest`` (what one worker may hold at once), and small enough
        that every worker gets a few chunks."""
        n_workers = max(1, len(self.client.scheduler_info(n_workers=-1)["workers"]))
        return max(1, min(largest, math.ceil(n_items / (n_workers * _CHUNKS_PER_WORKER))))

    def map(self, work: Callable[[Any, Any], Any], chunks: Sequence[Any]) -> Iterator[tuple[int, Any]]:
        """:func:`map_chunks` with this cluster and loader."""
        return map_chunks(self.client, self.load, work, chunks)
