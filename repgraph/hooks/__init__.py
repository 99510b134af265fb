"""Capture: layer selection, ActivationRecorder, capture_activations, the Activations store.

Exports load lazily (``repgraph._lazy``): ``repgraph.hooks.presets`` is importable without torch.
"""
from .._lazy import lazy_exports

_WHERE = {"Activations": ".activations", "ActivationRecorder": ".recorder",
          "capture_activations": ".capture", "list_layers": ".layers", "select_layers": ".layers",
          "is_residual_block": ".layers", "block_stack": ".layers", "conv_groups": ".conv_groups",
          "layer_chain": ".chaining", "check_chained": ".chaining",
          "DamagedStoreError": "..storage.store"}
__all__ = list(_WHERE)
__getattr__, __dir__ = lazy_exports(__name__, _WHERE)
