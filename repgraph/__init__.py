"""repgraph: graph-theoretic analysis of neural-network representations, and pruning from it.

The public API is every name in ``repgraph.__all__`` (``import repgraph as rg; rg.<name>``). The
documentation site documents each one (the API reference, one page per subpackage), with the README
as user guide and the notebooks as examples: build it with ``make docs`` and open
``docs/_build/html/index.html``. Every analyzer's docstring states its formula and reference.
Names load lazily (``repgraph._lazy``): ``import repgraph`` is instant, and torch is imported by
the first analysis that needs it.
"""
__version__ = "0.1.0"

from ._lazy import lazy_exports
from .distributed import provider  # noqa: F401  (registers the Dask runner: client= finds it; imports no dask)

_WHERE = {
    **dict.fromkeys(["get_config", "set_config", "config_context"], "._config"),
    "parallel": ".execution",
    **dict.fromkeys(["ActivationRecorder", "Activations", "capture_activations", "list_layers"], ".hooks"),
    **dict.fromkeys(["filter_similarity", "knn_graph", "similarity_graph", "similarity_matrix", "to_igraph",
                     "to_networkx"], ".builders"),
    **dict.fromkeys(["CalibratedScore", "CentralFilters", "MinibatchCKA", "Neighbourhood", "SimilarityMeasure",
                     "angular_distance", "birth_points", "block_influence", "calibrate", "central_filters",
                     "chip_scores", "cka", "cka_matrix", "cknna", "class_feature_entropy",
                     "closeness_centrality", "communities", "compensate_next_layer", "damage_correlation",
                     "feature_entropy", "gbs", "gbs_matrix", "get_measure", "hrank_scores", "jaccard_knn",
                     "l1_scores", "layer_central_filters", "layer_correspondence", "layer_redundancy",
                     "layer_similarity", "measure_names", "modularity", "modularity_curve", "mutual_knn",
                     "neighbourhood", "oriented_rank_correlation", "persistence_entropy", "rank_similarity",
                     "register_measure", "relative_update_norm", "second_order_cosine", "unregister_measure",
                     "fsm_scores", "transformation_complexity"], ".analyzers"),
    **dict.fromkeys(["LMEvaluation", "ScoresImportance", "apply_masks", "block_removal_loss",
                     "block_taylor_scores", "blocks_to_remove", "colt_masks", "count_params_flops", "evaluate",
                     "evaluate_lm", "heal_lm", "layer_sensitivity", "load_pruned", "lottery_imp",
                     "magnitude_masks", "prune_filters", "redundant_by_similarity", "redundant_layers",
                     "removable_layers", "remove_layers", "save_pruned", "sensitivity_ratios", "sleb_removal",
                     "snf_ratios", "sparsity", "train", "uncoupled_convs", "EarlyBirdDetector", "early_bird",
                     "mask_distance", "rgp_graph", "rgp_masks", "spline_scores", "cap_complexity_weights",
                     "cap_mask_scores", "SelectiveShrinkage", "shrink_prune", "shrink_step", "AscpRegulariser",
                     "ascp_clusters", "ascp_merge", "ascp_schedule"],
                    ".pruning"),
    "lottery_jackpot": ".pruning",
    **dict.fromkeys(["block_redundancy", "clp_scores", "criterion_importance", "filter_scores", "layer_filter_report",
                     "modularity_curves", "prune_experiment", "register_criterion", "fsm_model_scores"], ".workflows"),
    "open_store": ".distributed",
    **dict.fromkeys(["interactive_curve", "interactive_heatmap", "interactive_redundancy"], ".plotting_interactive"),
}
__all__ = list(_WHERE)
__getattr__, __dir__ = lazy_exports(__name__, _WHERE)
