"""repgraph on Dask (``dask.distributed``; ``pip install 'repgraph[dask]'``): stores opened as
chunked arrays, the analyses as tasks that read their own chunks on the workers, capture with
workers writing their shards of a store. Every function takes the arguments of its in-process
counterpart plus ``client=`` (default: the client of the enclosing ``repgraph.parallel`` block;
with none, the same tasks run in this process)."""
from .._lazy import lazy_exports

_WHERE = {
    **dict.fromkeys(["active_client", "parallel"], ".context"),
    **dict.fromkeys(["LayerFile", "StoreArrays", "open_store", "read_statistics"], ".store_arrays"),
    "modularity_curve": ".modularity",
    "capture_activations": ".capture",
    "modularity_curves": ".checkpoints",
    "cka_matrix": ".cka",
    "gbs_matrix": ".gbs",
    **dict.fromkeys(["birth_points", "chip_scores", "feature_entropy", "filter_similarity", "hrank_scores",
                     "layer_central_filters"], ".filters"),
}
__all__ = list(_WHERE)
__getattr__, __dir__ = lazy_exports(__name__, _WHERE)
