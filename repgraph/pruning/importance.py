"""repgraph scores as a Torch-Pruning importance, so Torch-Pruning's own pruners can use them."""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
import torch_pruning as tp
from torch import nn

from .._warnings import warn_user
from ..analyzers.central_filters import CentralFilters
from .groups import combine_scores, coupled_convs


class ScoresImportance(tp.importance.Importance):
    """A Torch-Pruning ``Importance`` from precomputed per-filter scores (conv name -> (C_out,)
    array, higher = keep; any repgraph criterion, e.g. ``filter_scores``, or the user's own).

    For a dependency group, the scores of every scored conv whose output channels the group prunes
    are combined as ``prune_filters`` does (each divided by its max ``|score|``, then averaged) and
    returned for the group's channels; a group with no scored conv returns None, which
    Torch-Pruning's pruners skip. Scores are for the model as it was scored: a conv whose width
    has changed since (iterative pruning) raises ``ValueError``.

    Parameters
    ----------
    scores : mapping
        conv name -> (C_out,) scores.
    model : nn.Module, optional
        The model the pruner will prune (the names in ``scores`` are its module names): the names
        are checked now. Without it they are checked against the model of the first group the
        pruner passes in (its ``DependencyGraph``'s model), which the importance then keeps to.

    Attributes
    ----------
    scores : dict of str to ndarray
        The scores as float64 arrays.
    model : nn.Module or None
        The model the names were checked against (None until the first call without ``model``).

    Raises
    ------
    TypeError
        On construction, when a value is a ``CentralFilters`` selection (a selection, not a
        ranking: prune it with ``prune_filters``); when called without ``model`` on a group that
        belongs to no ``DependencyGraph``, or on a group of another model than the first.
    ValueError
        On construction (at the first call without ``model``), for a name that is not a module of
        the model or scores with NaN/Inf; when called, for a scored conv whose width no longer
        matches its scores.

    Warns
    -----
    DeprecationWarning
        For the model-first order ``ScoresImportance(model, scores)`` of earlier releases (still
        taken, until the next release): pass ``ScoresImportance(scores, model=model)``.

    Notes
    -----
    Calling it on a group returns a float32 tensor of one score per channel of the group's root
    indices (``group[0].root_idxs``), or None. Without ``model``, the model is read from the
    group's dependency graph (Torch-Pruning's ``Group._DG``, set on every group a
    ``DependencyGraph`` returns).

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
    >>> imp = rg.ScoresImportance(rg.l1_scores(model))
    >>> pruner = tp.pruner.MetaPruner(model, x, importance=imp, pruning_ratio=0.25,
    ...                               ignored_layers=[model.classifier])
    >>> pruner.step()
    >>> model.features[0].out_channels
    48
    """

    def __init__(self, scores: Mapping, model: nn.Module | None = None):
        if isinstance(scores, nn.Module):  # the model-first order of earlier releases
            warn_user("ScoresImportance(model, scores) is deprecated and will be refused in the next release; "
                      "pass ScoresImportance(scores, model=model) (or ScoresImportance(scores)).",
                      DeprecationWarning)
            scores, model = model, scores
        if not isinstance(scores, Mapping):
            raise TypeError(f"scores must be a mapping conv name -> (C_out,) scores, got {type(scores).__name__}.")
        self.scores = {}
        for name, value in scores.items():
            if isinstance(value, CentralFilters):
                raise TypeError(f"Scores for {name!r} are a Central-Filter selection, not a ranking; prune "
                                "it with repgraph.prune_filters, which also compensates the next layer.")
            values = np.asarray(value, dtype=np.float64)
            if not np.isfinite(values).all():
                raise ValueError(f"Scores for {name!r} contain NaN or Inf.")
            self.scores[name] = values
        self.model = None
        if model is not None:
            self._bind(model)

    def _bind(self, model: nn.Module) -> None:
        """Check the scored names against ``model``'s modules and keep its module -> name map."""
        modules = dict(model.named_modules())
        unknown = [name for name in self.scores if name not in modules]
        if unknown:
            raise ValueError(f"Unknown layer {unknown[0]!r} in scores; keys are module names of the pruned model "
                             "(see list_layers(model, x)).")
        self.model = model
        self.names = {m: n for n, m in modules.items()}

    def __call__(self, group, **kwargs):
        pruned = getattr(getattr(group, "_DG", None), "model", None)
        if self.model is None:
            if pruned is None:
                raise TypeError("This group belongs to no DependencyGraph, so its model is unknown; build the "
                                "importance as ScoresImportance(scores, model=model).")
            self._bind(pruned)
        elif pruned is not None and pruned is not self.model:
            raise TypeError("The group is of another model than the one this importance scores; build one "
                            "ScoresImportance per model.")
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
