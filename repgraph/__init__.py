"""repgraph: graph-theoretic analysis of neural-network representations, and pruning from it.

See DESIGN §3 for the public API; every analyzer's docstring states its formula and reference.
"""
__version__ = "0.1.0"

from .analyzers import (MinibatchCKA, cka, cka_matrix, communities, gbs, gbs_matrix, layer_correspondence,
                        modularity, modularity_curve)
from .builders import knn_graph, similarity_matrix, to_igraph, to_networkx
from .hooks import ActivationRecorder, Activations, capture_activations, list_layers
from .pruning import evaluate, redundant_layers, removable_layers, remove_layers, train

__all__ = [
    "ActivationRecorder", "Activations", "capture_activations", "list_layers",
    "knn_graph", "similarity_matrix", "to_igraph", "to_networkx",
    "communities", "modularity", "modularity_curve",
    "cka", "cka_matrix", "MinibatchCKA", "gbs", "gbs_matrix", "layer_correspondence",
    "evaluate", "redundant_layers", "removable_layers", "remove_layers", "train",
]
