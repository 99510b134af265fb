"""Analyzers: pure functions on arrays (numpy or torch, any device)."""
from .cka import MinibatchCKA, cka, cka_matrix, hsic_matrix
from .communities import communities
from .correspondence import layer_correspondence
from .gbs import gbs, gbs_matrix, sample_graph
from .modularity import modularity, modularity_curve

__all__ = ["MinibatchCKA", "cka", "cka_matrix", "communities", "gbs", "gbs_matrix", "hsic_matrix",
           "layer_correspondence", "modularity", "modularity_curve", "sample_graph"]
