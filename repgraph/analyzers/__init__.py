"""Analyzers: pure functions on arrays (numpy or torch, any device)."""
from .central_filters import CentralFilters, central_filters, compensate_next_layer
from .cka import MinibatchCKA, cka, cka_matrix, hsic_matrix
from .closeness import closeness_centrality
from .criteria import chip_scores, clp_scores, conv_bn_pairs, hrank_scores, l1_scores
from .filter_report import layer_filter_report
from .filter_similarity import filter_similarity
from .topology import (birth_point_of_map, birth_points, entropy_ranking_scores, feature_entropy,
                       persistence_entropy)
from .communities import communities
from .correspondence import layer_correspondence
from .gbs import gbs, gbs_matrix, sample_graph
from .modularity import modularity, modularity_curve

__all__ = ["CentralFilters", "central_filters", "compensate_next_layer", "closeness_centrality",
           "chip_scores", "clp_scores", "conv_bn_pairs", "hrank_scores", "l1_scores",
           "layer_filter_report", "filter_similarity", "birth_point_of_map", "birth_points",
           "entropy_ranking_scores", "feature_entropy", "persistence_entropy", "MinibatchCKA", "cka", "cka_matrix", "communities", "gbs", "gbs_matrix", "hsic_matrix",
           "layer_correspondence", "modularity", "modularity_curve", "sample_graph"]
