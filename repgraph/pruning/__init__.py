"""Pruning: redundant layers and block removal, structured filter pruning (Torch-Pruning),
params/FLOPs, training."""
from .filter_pruning import prune_filters
from .flops import count_params_flops
from .groups import uncoupled_convs
from .importance import ScoresImportance
from .layer_removal import removable_layers, remove_layers
from .redundant import redundant_by_similarity, redundant_layers
from .training import evaluate, train

__all__ = ["ScoresImportance", "count_params_flops", "evaluate", "prune_filters", "redundant_by_similarity",
           "redundant_layers", "removable_layers", "remove_layers", "train", "uncoupled_convs"]
