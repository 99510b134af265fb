"""Pruning: redundant layers and block removal, structured filter pruning, params/FLOPs, training,
language-model perplexity and healing."""
from .experiment import prune_experiment
from .filter_criteria import CRITERIA, filter_scores, following_relu, uncoupled_convs
from .filter_pruning import prune_filters
from .flops import count_params_flops
from .healing import heal_lm
from .language_model import LMEvaluation, evaluate_lm
from .layer_removal import removable_layers, remove_layers
from .redundant import redundant_by_similarity, redundant_layers
from .training import evaluate, train

__all__ = ["CRITERIA", "filter_scores", "following_relu", "uncoupled_convs", "count_params_flops", "evaluate",
           "evaluate_lm", "heal_lm", "LMEvaluation", "prune_experiment", "prune_filters", "redundant_by_similarity",
           "redundant_layers", "removable_layers", "remove_layers", "train"]
