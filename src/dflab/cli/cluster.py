"""``--cluster ADDRESS|local[:N]``: run a command's chunks on a Dask cluster (:mod:`dflab.runtime.cluster`)."""

from __future__ import annotations

import contextlib
from typing import Callable, Iterator, Optional

import typer

from dflab.cli.common import UserError

ClusterOption = typer.Option(
    None, "--cluster", metavar="ADDRESS|local[:N]",
    help="Run on a Dask cluster: local (a worker per core), local:N (N workers on this machine) or a "
         "scheduler's address (tcp://host:8786; the model and data must be readable at the same paths on every worker).")


@contextlib.contextmanager
def cluster_for(address: Optional[str], load: Callable[[], object]) -> Iterator[object]:
    """The :class:`~dflab.runtime.cluster.OnCluster` of ``--cluster`` (``load`` run once per worker), or
    None without one."""
    if address is None:
        yield None
        return
    from dflab.runtime.cluster import ClusterError, OnCluster, connect

    try:
        with connect(address) as client:
            yield OnCluster(client, load)
    except ClusterError as err:
        raise UserError(str(err)) from None
