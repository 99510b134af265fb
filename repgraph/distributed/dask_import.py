"""dask.distributed, imported on demand: it is an optional extra."""


def require_distributed():
    """The ``distributed`` module, or an ``ImportError`` naming the extra that installs it."""
    try:
        import distributed
    except ImportError as err:
        raise ImportError("Running repgraph on a Dask cluster needs dask.distributed: "
                          "pip install 'repgraph[dask]'.") from err
    return distributed
