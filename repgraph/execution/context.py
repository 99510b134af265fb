"""Which runner an analysis uses: that of an explicit ``client=``, of the innermost
``with repgraph.parallel(client):`` block, or, with neither, the in-process runner.

Runners for clients are *provided* by other parts and registered here (``register_runner``), as
joblib's ``register_parallel_backend`` does: ``repgraph.distributed`` registers the Dask runner.
This module imports nothing of repgraph, so every floor may use it.
"""
from __future__ import annotations

import contextlib
import contextvars
from dataclasses import dataclass
from typing import Callable

_ACTIVE = contextvars.ContextVar("repgraph_active_client", default=None)


@dataclass(frozen=True)
class RunnerProvider:
    """How a kind of client runs tasks: ``accepts(client)`` tells its clients, ``make(client)``
    gives the runner, ``connect(address)`` opens a client from an address; ``describe`` names the
    client type in errors."""

    name: str
    describe: str
    accepts: Callable[[object], bool]
    make: Callable[[object], object]
    connect: Callable[[str], object]


_PROVIDERS: dict[str, RunnerProvider] = {}


def register_runner(provider: RunnerProvider) -> None:
    """Make ``client=`` and ``parallel(...)`` accept the clients of ``provider`` (replacing a
    provider of the same name).

    Parameters
    ----------
    provider : RunnerProvider

    Returns
    -------
    None
    """
    _PROVIDERS[provider.name] = provider


def provider_of(client) -> RunnerProvider:
    """The registered provider that accepts ``client``; a ``TypeError`` naming the accepted client
    types when none does."""
    for provider in _PROVIDERS.values():
        if provider.accepts(client):
            return provider
    kinds = " or ".join(p.describe for p in _PROVIDERS.values()) or "a client of a registered runner"
    raise TypeError(f"client must be {kinds}, got {type(client).__name__}; for a scheduler address use "
                    "`with repgraph.parallel('tcp://host:8786'):`.")


@contextlib.contextmanager
def parallel(client):
    """Run repgraph's analyses inside the ``with`` block on a cluster.

    Every function that takes ``client=`` and is called without one inside the block uses this
    client (a context variable: blocks nest, and each thread or asyncio task sees its own).

    Parameters
    ----------
    client : distributed.Client or str
        A connected client, or a scheduler address (``"tcp://host:8786"``): a client is then
        opened for the block (by the first registered provider, Dask's) and closed at its end.

    Yields
    ------
    distributed.Client
        The client in use.

    Raises
    ------
    ImportError
        For an address without ``dask[distributed]`` (``pip install 'repgraph[dask]'``).
    TypeError
        If ``client`` is neither a client of a registered runner nor an address.

    Examples
    --------
    >>> from distributed import Client
    >>> from repgraph.execution import active_client, parallel
    >>> client = Client(processes=False, n_workers=1, threads_per_worker=1, dashboard_address=None)
    >>> with parallel(client):
    ...     active_client() is client
    True
    >>> active_client() is None
    True
    >>> client.close()
    """
    owned = None
    if isinstance(client, str):
        if not _PROVIDERS:
            raise TypeError("no cluster runner is registered to connect to an address.")
        owned = next(iter(_PROVIDERS.values())).connect(client)
    provider_of(owned or client)
    token = _ACTIVE.set(owned or client)
    try:
        yield _ACTIVE.get()
    finally:
        _ACTIVE.reset(token)
        if owned is not None:
            owned.close()


def active_client(client=None):
    """The client an analysis runs on: ``client`` if given, else that of the innermost
    ``parallel`` block, else None (run in this process).

    Parameters
    ----------
    client : distributed.Client, optional
        An explicit client; it wins over any ``parallel`` block.

    Returns
    -------
    distributed.Client or None

    Raises
    ------
    TypeError
        If ``client`` is not a client of a registered runner (an address goes to ``parallel``).

    Examples
    --------
    >>> from repgraph.execution import active_client
    >>> active_client() is None
    True
    """
    if client is None:
        return _ACTIVE.get()
    provider_of(client)
    return client


@contextlib.contextmanager
def without_client():
    """Inside the block no client is active: a task running on a worker (or in a thread of a
    cluster started in this process) computes what it was given, and a public function it calls
    runs in that process instead of submitting tasks of its own."""
    token = _ACTIVE.set(None)
    try:
        yield
    finally:
        _ACTIVE.reset(token)
