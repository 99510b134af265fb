"""repgraph's global settings (as scikit-learn's ``set_config``): the working-memory budget that
bounds every chunked computation."""
from __future__ import annotations

import contextlib
import threading

_DEFAULTS = {"working_memory": 256}  # MiB
_local = threading.local()


def _settings() -> dict:
    if not hasattr(_local, "settings"):
        _local.settings = dict(_DEFAULTS)
    return _local.settings


def get_config() -> dict:
    """The current settings of this thread: ``{"working_memory": MiB}`` (default 256).

    Returns
    -------
    dict
        A copy (changing it changes nothing): ``working_memory``, the budget in MiB for one chunk
        of a chunked computation (a block of a Gram matrix, a stack of masked Grams, a batch of
        feature maps).

    References
    ----------
    The convention of scikit-learn's ``sklearn.get_config`` (whose ``working_memory`` option
    plays the same role).

    Examples
    --------
    >>> import repgraph as rg
    >>> rg.get_config()["working_memory"]
    256
    """
    return dict(_settings())


def set_config(*, working_memory: int | None = None) -> None:
    """Change repgraph's settings for the current thread (other threads keep theirs).

    Parameters
    ----------
    working_memory : int, optional
        Budget in MiB for one chunk of any chunked computation (default 256). Larger chunks mean
        fewer, bigger matrix products; results do not depend on it beyond float rounding. None
        leaves the setting as it is.

    Returns
    -------
    None

    Raises
    ------
    ValueError
        If ``working_memory`` is not a positive integer (a bool is refused too).

    References
    ----------
    The convention of scikit-learn's ``sklearn.set_config`` (``working_memory`` in MiB).

    Examples
    --------
    >>> import repgraph as rg
    >>> rg.set_config(working_memory=512)
    >>> rg.get_config()["working_memory"]
    512
    >>> rg.set_config(working_memory=256)
    """
    if working_memory is not None:
        if isinstance(working_memory, bool) or not isinstance(working_memory, int) or working_memory < 1:
            raise ValueError(f"working_memory must be a positive number of MiB, got {working_memory!r}.")
        _settings()["working_memory"] = working_memory


@contextlib.contextmanager
def config_context(**settings):
    """Temporarily change settings inside a ``with`` block (see ``set_config``); the previous
    settings come back on exit, also when the block raises.

    Parameters
    ----------
    **settings
        Keyword arguments of ``set_config`` (``working_memory=MiB``).

    Yields
    ------
    None
        Nothing is bound by ``with ... as``.

    Raises
    ------
    ValueError
        For a bad value (as ``set_config``), on entering the block.
    TypeError
        For a setting that does not exist, on entering the block.

    References
    ----------
    The convention of scikit-learn's ``sklearn.config_context``.

    Examples
    --------
    >>> import repgraph as rg
    >>> with rg.config_context(working_memory=64):
    ...     rg.get_config()["working_memory"]
    64
    """
    old = get_config()
    set_config(**settings)
    try:
        yield
    finally:
        _settings().update(old)
