"""Pruning: redundant layers and block removal (CNN blocks and transformer stacks), structured
filter pruning (Torch-Pruning), saving and loading pruned models with their architecture, params/FLOPs, training, language-model perplexity and healing,
loss-based block scores (removal loss, Taylor, magnitude), SLEB's greedy removal, and the
source papers' other methods: SBPF's layer sensitivity, SNF's budget search, lottery tickets
(IMP with rewinding, COLT) and lottery jackpots (a mask search with the weights frozen), regular graph pruning (RGP), the spline criterion and early-bird
detection."""
from .ascp import AscpRegulariser, ascp_clusters, ascp_merge, ascp_schedule
from .block_scores import block_removal_loss, block_taylor_scores
from .cap import cap_complexity_weights, cap_mask_scores
from .filter_pruning import prune_filters
from .flops import count_params_flops
from .groups import uncoupled_convs
from .healing import heal_lm
from .importance import ScoresImportance
from .language_model import LMEvaluation, evaluate_lm
from .layer_removal import removable_layers, remove_layers
from .lottery import apply_masks, colt_masks, lottery_imp, magnitude_masks, sparsity
from .lottery_jackpot import lottery_jackpot
from .pruned_io import load_pruned, save_pruned
from .rgp import rgp_graph, rgp_masks
from .redundant import blocks_to_remove, redundant_by_similarity, redundant_layers
from .sensitivity import layer_sensitivity, sensitivity_ratios
from .shrinkage import SelectiveShrinkage, shrink_prune, shrink_step
from .sleb import sleb_removal
from .snf import snf_ratios
from .spline import EarlyBirdDetector, early_bird, mask_distance, spline_scores
from .training import evaluate, train

__all__ = ["LMEvaluation", "ScoresImportance", "apply_masks", "block_removal_loss", "block_taylor_scores",
           "blocks_to_remove", "colt_masks", "count_params_flops", "evaluate", "evaluate_lm", "heal_lm",
           "layer_sensitivity", "load_pruned", "lottery_imp", "magnitude_masks", "prune_filters", "redundant_by_similarity",
           "redundant_layers", "removable_layers", "remove_layers", "save_pruned", "sensitivity_ratios", "sleb_removal",
           "snf_ratios", "sparsity", "train", "uncoupled_convs",
           "rgp_graph", "rgp_masks", "EarlyBirdDetector", "early_bird", "mask_distance", "spline_scores",
           "cap_complexity_weights", "cap_mask_scores", "SelectiveShrinkage", "shrink_prune", "shrink_step",
           "AscpRegulariser", "ascp_clusters", "ascp_merge", "ascp_schedule",
           "lottery_jackpot"]
