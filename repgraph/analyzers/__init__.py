"""Analyzers: pure functions on arrays (numpy or torch, any device); they never run a model."""
from .block_criteria import angular_distance, block_influence, relative_update_norm
from .calibration import CalibratedScore, calibrate
from .central_filters import CentralFilters, central_filters, compensate_next_layer, layer_central_filters
from .cka import MinibatchCKA, cka, cka_matrix, hsic_matrix
from .closeness import closeness_centrality
from .communities import communities
from .correspondence import layer_correspondence
from .criterion_agreement import damage_correlation, oriented_rank_correlation
from .criteria import chip_scores, clp_outliers, clp_upper_bounds, hrank_scores, l1_scores
from .feature_shift import fsm_scores, relu_normal_mean
from .gbs import gbs, gbs_matrix, sample_graph
from .layer_redundancy import layer_redundancy
from .layer_similarity import layer_similarity
from .modularity import modularity, modularity_curve
from .neighbourhood import (Neighbourhood, cknna, jaccard_knn, mutual_knn, neighbourhood, rank_similarity,
                            second_order_cosine)
from .similarity_measures import (SimilarityMeasure, get_measure, measure_names, register_measure,
                                  unregister_measure)
from .topology import (birth_point_of_map, birth_points, class_feature_entropy, entropy_ranking_scores,
                       feature_entropy, persistence_entropy)
from .transformation_complexity import transformation_complexity

__all__ = ["CalibratedScore", "CentralFilters", "MinibatchCKA", "Neighbourhood", "SimilarityMeasure",
           "angular_distance", "birth_point_of_map", "birth_points", "block_influence", "calibrate",
           "central_filters", "chip_scores", "cka", "cka_matrix", "cknna", "class_feature_entropy",
           "closeness_centrality", "clp_outliers", "clp_upper_bounds", "communities", "compensate_next_layer",
           "damage_correlation", "entropy_ranking_scores", "feature_entropy", "gbs", "gbs_matrix",
           "get_measure", "hrank_scores", "hsic_matrix", "jaccard_knn", "l1_scores", "layer_central_filters",
           "layer_correspondence", "layer_redundancy", "layer_similarity", "measure_names", "modularity",
           "modularity_curve", "mutual_knn", "neighbourhood", "oriented_rank_correlation",
           "persistence_entropy", "rank_similarity", "register_measure", "relative_update_norm",
           "sample_graph", "second_order_cosine", "unregister_measure", "fsm_scores", "relu_normal_mean",
           "transformation_complexity"]
