"""The activation store on disk: its format (one ``.npy`` per layer, a manifest with CRC-32
checksums), how it is written and published, and lazy per-layer readers (``LayerFile``).

This floor lies below capture (``repgraph.hooks`` writes stores) and execution
(``repgraph.execution`` reads a store's rows wherever a task runs); it imports neither.
"""
from .._lazy import lazy_exports

_WHERE = {
    **dict.fromkeys(["LayerFile", "read_statistics", "store_files"], ".layer_file"),
    "DamagedStoreError": ".store",
}
__all__ = list(_WHERE)
__getattr__, __dir__ = lazy_exports(__name__, _WHERE)
