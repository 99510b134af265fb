"""The Dask runner's registration: ``client=`` and ``repgraph.parallel(...)`` accept a
``distributed.Client`` through it (``repgraph.execution.context.register_runner``). Importing this
module imports neither dask nor torch; the package root imports it, so a client is recognised
wherever an analysis is called from."""
from __future__ import annotations

import sys

from ..execution.context import RunnerProvider, register_runner
from .dask_import import require_distributed


def _is_dask_client(client) -> bool:
    # a Client exists only where distributed was imported: nothing is imported to tell
    distributed = sys.modules.get("distributed")
    return distributed is not None and isinstance(client, distributed.Client)


def _cluster_runner(client):
    if client.status in ("closing", "closed"):
        raise ValueError(f"client= is a dask Client that is {client.status}; open a new one (Client(...)) or drop "
                         "client= (and leave any repgraph.parallel block) to run in this process.")
    from .runner import ClusterRunner  # imports dask: only once a client is in use
    return ClusterRunner(client)


def _connect(address: str):
    return require_distributed().Client(address)


DASK = RunnerProvider("dask", "a dask.distributed.Client", _is_dask_client, _cluster_runner, _connect)
register_runner(DASK)
