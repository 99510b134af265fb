"""Workflows: everything that needs a model *and* data — filter scores from any registered
criterion, per-layer filter reports, pruning experiments, CLP on a whole model, the
block-redundancy table of a model — and the recipes that the command line, the notebooks and the
benchmarks share: on digits (``repgraph.workflows.digits``), on MNIST-1D
(``repgraph.workflows.mnist1d``); ``repgraph.workflows.notebooks.small_settings`` is the switch CI
sets for the notebooks."""
from .block_redundancy import block_redundancy
from .checkpoints import modularity_curves
from .clp import clp_scores
from .criteria import (CriterionInputs, FilterCriterion, criteria_names, get_criterion, register_criterion,
                       unregister_criterion)
from .filter_report import layer_filter_report
from .filter_scores import criterion_importance, filter_scores
from .fsm import fsm_model_scores
from .layer_scores import LayerScores
from .prune_experiment import prune_experiment

__all__ = ["CriterionInputs", "FilterCriterion", "LayerScores", "block_redundancy", "clp_scores", "criteria_names",
           "criterion_importance", "filter_scores", "get_criterion", "layer_filter_report", "modularity_curves",
           "prune_experiment",
           "register_criterion", "unregister_criterion", "fsm_model_scores"]
