"""repgraph: graph-theoretic analysis of neural-network representations, and pruning from it.

See DESIGN §3 for the public API; every analyzer's docstring states its formula and reference.
"""
__version__ = "0.1.0"

from .analyzers import (CentralFilters, MinibatchCKA, birth_points, central_filters, chip_scores, cka,
                        cka_matrix, closeness_centrality, clp_scores, communities, compensate_next_layer,
                        feature_entropy, filter_similarity, gbs, gbs_matrix, hrank_scores, l1_scores,
                        layer_correspondence, layer_filter_report, modularity, modularity_curve,
                        persistence_entropy)
from .builders import knn_graph, similarity_matrix, to_igraph, to_networkx
from .hooks import ActivationRecorder, Activations, capture_activations, list_layers
from .pruning import (count_params_flops, evaluate, prune_experiment, prune_filters, redundant_by_similarity,
                      redundant_layers, removable_layers, remove_layers, train)

__all__ = [
    "ActivationRecorder", "Activations", "capture_activations", "list_layers",
    "knn_graph", "similarity_matrix", "to_igraph", "to_networkx",
    "communities", "modularity", "modularity_curve",
    "cka", "cka_matrix", "MinibatchCKA", "gbs", "gbs_matrix", "layer_correspondence",
    "filter_similarity", "closeness_centrality", "central_filters", "CentralFilters",
    "compensate_next_layer", "birth_points", "feature_entropy", "persistence_entropy",
    "hrank_scores", "chip_scores", "clp_scores", "l1_scores", "layer_filter_report",
    "evaluate", "redundant_layers", "removable_layers", "remove_layers", "train",
    "count_params_flops", "prune_filters", "prune_experiment", "redundant_by_similarity",
]
