"""repgraph on Dask (``dask.distributed``; ``pip install 'repgraph[dask]'``): the Dask runner
(``ClusterRunner``, registered with ``repgraph.execution`` so that every analysis and capture
takes ``client=`` or runs inside ``repgraph.parallel(client)``), models and other objects shipped
to the workers once (``Shipped``), and stores opened as chunked dask arrays (``open_store``).
The analyses themselves are written once, in their own modules; this package only runs them."""
from .._lazy import lazy_exports

_WHERE = {
    **dict.fromkeys(["active_client", "parallel"], "..execution.context"),
    **dict.fromkeys(["StoreArrays", "open_store"], ".store_arrays"),
    **dict.fromkeys(["ClusterRunner", "Shipped"], ".runner"),
}
__all__ = list(_WHERE)
__getattr__, __dir__ = lazy_exports(__name__, _WHERE)
