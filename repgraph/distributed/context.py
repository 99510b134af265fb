"""Where repgraph's distributed analyses run: on the Dask cluster of an explicit ``client=``, of
the innermost ``with repgraph.parallel(client):`` block, or, with neither, in this process."""
from __future__ import annotations

import contextlib
import contextvars

_ACTIVE = contextvars.ContextVar("repgraph_dask_client", default=None)


def require_distributed():
    """The ``distributed`` module, or an ``ImportError`` naming the extra that installs it."""
    try:
        import distributed
    except ImportError as err:
        raise ImportError("Running repgraph on a Dask cluster needs dask.distributed: "
                          "pip install 'repgraph[dask]'.") from err
    return distributed


def _check_client(client):
    distributed = require_distributed()
    if not isinstance(client, distributed.Client):
        raise TypeError(f"client must be a dask.distributed.Client, got {type(client).__name__}; for a "
                        "scheduler address use `with repgraph.parallel('tcp://host:8786'):`.")
    return client


@contextlib.contextmanager
def parallel(client):
    """Run repgraph's analyses inside the ``with`` block on a Dask cluster.

    Every function that takes ``client=`` and is called without one inside the block uses this
    client (a context variable: blocks nest, and each thread or asyncio task sees its own).

    Parameters
    ----------
    client : distributed.Client or str
        A connected client, or a scheduler address (``"tcp://host:8786"``): a client is then
        opened for the block and closed at its end.

    Yields
    ------
    distributed.Client
        The client in use.

    Raises
    ------
    ImportError
        Without ``dask[distributed]`` (``pip install 'repgraph[dask]'``).
    TypeError
        If ``client`` is neither a client nor an address.

    Examples
    --------
    >>> from distributed import Client
    >>> from repgraph.distributed import active_client, parallel
    >>> client = Client(processes=False, n_workers=1, threads_per_worker=1, dashboard_address=None)
    >>> with parallel(client):
    ...     active_client() is client
    True
    >>> active_client() is None
    True
    >>> client.close()
    """
    distributed = require_distributed()
    owned = distributed.Client(client) if isinstance(client, str) else None
    token = _ACTIVE.set(_check_client(owned or client))
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
        If ``client`` is not a ``distributed.Client`` (an address goes to ``parallel``).

    Examples
    --------
    >>> from repgraph.distributed import active_client
    >>> active_client() is None
    True
    """
    return _ACTIVE.get() if client is None else _check_client(client)


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
