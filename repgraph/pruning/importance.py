"""repgraph scores as a Torch-Pruning importance, so Torch-Pruning's own pruners can use them."""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
import torch_pruning as tp
from torch import nn

from ..analyzers.central_filters import CentralFilters
from .groups import combine_scores, coupled_convs


class ScoresImportance(tp.importance.Importance):
    """A Torch-Pruning ``Importance`` from precomputed per-filter scores (conv name -> (C_out,)
    array, higher = keep; any repgraph criterion, e.g. ``filter_scores``, or the user's own).

    For a dependency group, the scores of every scored conv whose output channels the group prunes
    are combined as ``prune_filters`` does (each divided by its max |score|, then averaged) and
    returned for the group's channels; a group with no scored conv returns None, which
    Torch-Pruning's pruners skip. Scores are for the model as it was scored: a conv whose width
    has changed since (iterative pruning) raises ``ValueError``.

    Parameters
    ----------
    model : nn.Module
        The model the pruner will prune (the names in ``scores`` are its module names).
    scores : mapping
        conv name -> (C_out,) scores.

    Attributes
    ----------
    scores : dict of str to ndarray
        The scores as float64 arrays.

    Raises
    ------
    TypeError
        On construction, when a value is a ``CentralFilters`` selection (a selection, not a
        ranking: prune it with ``prune_filters``).
    ValueError
        On construction, for a name that is not a module of ``model`` or scores with NaN/Inf;
        when called, for a scored conv whose width no longer matches its scores.

    Notes
    -----
    Calling it on a group returns a float32 tensor of one score per channel of the group's root
    indices (``group[0].root_idxs``), or None.

    References
    ----------
    Fang et al., "DepGraph: Towards Any Structural Pruning", CVPR 2023; Torch-Pruning's
    importance plug-ins (``torch_pruning.importance.Importance``), github.com/VainF/Torch-Pruning.

    Examples
    --------
    >>> import torch, torch_pruning as tp
    >>> import repgraph as rg
    >>> from repgraph.models import vgg11
    >>> model, x = vgg11(), torch.zeros(1, 3, 32, 32)
    >>> imp = rg.ScoresImportance(model, rg.l1_scores(model))
    >>> pruner = tp.pruner.MetaPruner(model, x, importance=imp, pruning_ratio=0.25,
    ...                               ignored_layers=[model.classifier])
    >>> pruner.step()
    >>> model.features[0].out_channels
    48
    """

    def __init__(self, model: nn.Module, scores: Mapping):
        modules = dict(model.named_modules())
        self.scores = {}
        for name, value in scores.items():
            if isinstance(value, CentralFilters):
                raise TypeError(f"Scores for {name!r} are a Central-Filter selection, not a ranking; prune "
                                "it with repgraph.prune_filters, which also compensates the next layer.")
            if name not in modules:
                raise ValueError(f"Unknown layer {name!r} in scores; keys are module names of model.")
            values = np.asarray(value, dtype=np.float64)
            if not np.isfinite(values).all():
                raise ValueError(f"Scores for {name!r} contain NaN or Inf.")
            self.scores[name] = values
        self.names = {m: n for n, m in modules.items()}

    def __call__(self, group, **kwargs):
        members = [m for m in coupled_convs(group, self.names) if m in self.scores]
        if not members:
            return None
        modules = {n: m for m, n in self.names.items()}
        for name in members:
            if modules[name].out_channels != len(self.scores[name]):
                raise ValueError(f"Scores for {name!r} cover {len(self.scores[name])} filters but it now has "
                                 f"{modules[name].out_channels}; recompute them after each pruning step.")
        combined = combine_scores([self.scores[m] for m in members])
        return torch.as_tensor(combined[list(group[0].root_idxs)], dtype=torch.float32)
