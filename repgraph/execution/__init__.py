"""How analyses execute (README: *Scaling out*): the runner protocol and the in-process runner, the active
client (``parallel``, ``client=``) and the registry through which a cluster runner is provided,
and the layer sources every kernel reads its rows from (an in-memory array, a store's file).

This floor imports only ``repgraph._arrays``, ``_config``, ``_warnings`` and ``repgraph.storage``.
"""
from .._lazy import lazy_exports

_WHERE = {
    **dict.fromkeys(["RunnerProvider", "active_client", "parallel", "register_runner", "without_client"],
                    ".context"),
    **dict.fromkeys(["InProcessRunner", "planning", "runner_for", "task_rows", "tree_sum"], ".runner"),
    **dict.fromkeys(["LayerSource", "compared_sources", "layer_sources"], ".sources"),
}
__all__ = list(_WHERE)
__getattr__, __dir__ = lazy_exports(__name__, _WHERE)
