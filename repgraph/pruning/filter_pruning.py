"""Structured filter pruning from repgraph's scores through Torch-Pruning's DependencyGraph."""
from __future__ import annotations

import copy
from collections.abc import Mapping

import numpy as np
import torch
import torch_pruning as tp
from torch import nn

from .._arrays import check_ratio, prune_count
from .._warnings import warn_user
from ..analyzers.central_filters import CentralFilters
from .groups import CONV, combine_scores, consumer_convs, coupled_convs, dependency_graph


def prune_filters(model: nn.Module, scores: Mapping, *, ratio: float | None = None,
                  ratio_dict: Mapping | None = None, example_input, ignored=()) -> nn.Module:
    """A pruned copy of ``model`` with the lowest-scored output filters of the scored convs removed.

    Channels coupled by residual additions form one Torch-Pruning group: their scores (each
    divided by its max ``|score|``) are averaged and pruned together, so the model stays valid.
    ``ratio`` (or ``ratio_dict[name]``) is the fraction of a group's channels to remove:
    ``ceil(C·ratio)`` of them, the rule of every ratio in repgraph. A ``CentralFilters`` selection
    prunes exactly its ``pruned`` filters after adding each one's input weights in the next conv(s)
    onto its central filter's (``W′[:, j] += Σ_{k ∈ delegates(j)} W′[:, k]``). Works for Conv1d,
    Conv2d and Conv3d models. The final classifier and the modules named in ``ignored`` are never
    pruned. The returned model really has fewer channels; ``model`` is untouched.

    Parameters
    ----------
    model : nn.Module
        The network; not modified.
    scores : mapping
        conv name -> (C_out,) importance (any repgraph criterion, e.g. ``l1_scores(model)``,
        ``hrank_scores(acts)``, or the user's own; higher = keep), or conv name ->
        ``CentralFilters``.
    ratio : float, optional
        Fraction in [0, 1) of each scored group's channels to remove; the lowest combined scores
        go first (ties: the lower channel index).
    ratio_dict : mapping, optional
        conv name -> its own fraction, taking precedence over ``ratio`` for its group.
    example_input : tensor, array, dict or any data form of ``capture_activations``
        One input batch, to trace the model's dependencies.
    ignored : iterable of str
        Module names never to prune.

    Returns
    -------
    nn.Module
        The pruned copy.

    Warns
    -----
    FutureWarning
        For ``filter_scores``' scores of a criterion that selects (central_filter, their
        ``.selections`` not empty): until the next release the selections are pruned, as when
        ``filter_scores`` returned them; pass ``scores.for_pruning()`` (the selections) or
        ``dict(scores)`` (the 1/0 scores).

    Raises
    ------
    ValueError
        Without a ratio, for unknown layer names, scores of the wrong length or with NaN/Inf,
        coupled convs of different widths, a Central-Filter selection on a coupled conv, a ratio
        that would empty a layer, or a model Torch-Pruning cannot trace.

    References
    ----------
    Fang et al., "DepGraph: Towards Any Structural Pruning", CVPR 2023 (Torch-Pruning's
    ``DependencyGraph``), github.com/VainF/Torch-Pruning; Li et al., "Pruning Filters for
    Efficient ConvNets", ICLR 2017 (removing the lowest-scored filters); Duan et al., "Network
    Compression via Central Filter", arXiv 2112.05493, §3.3 (the compensation).

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> import repgraph as rg
    >>> model = nn.Sequential(nn.Conv1d(1, 8, 3), nn.ReLU(), nn.Conv1d(8, 4, 3), nn.Flatten(), nn.Linear(4 * 6, 2))
    >>> x = torch.zeros(1, 1, 10)
    >>> rg.prune_filters(model, rg.l1_scores(model), ratio=0.25, example_input=x)[0]
    Conv1d(1, 6, kernel_size=(3,), stride=(1,))
    """
    selections = getattr(scores, "selections", None)  # filter_scores' LayerScores of a selecting criterion
    if selections:
        warn_user("These scores come with Central-Filter selections (filter_scores(..., 'central_filter') now "
                  "returns scores, the selections in .selections): prune_filters prunes the selections, with "
                  "their compensation, as before, until the next release, which will prune by the scores. Pass "
                  "scores.for_pruning() to keep pruning the selections, or dict(scores) to prune by the scores.",
                  FutureWarning)
        scores = {**scores, **selections}
    if ratio is None and ratio_dict is None and not any(isinstance(v, CentralFilters) for v in scores.values()):
        raise ValueError("Pass ratio= (a fraction in [0, 1)) or ratio_dict={conv name: fraction}.")
    for key, r in ([("ratio", ratio)] if ratio is not None else []) + [
            (f"ratio_dict[{k!r}]", v) for k, v in (ratio_dict or {}).items()]:
        check_ratio(r, name=key)
    pruned = copy.deepcopy(model)
    modules = dict(pruned.named_modules())
    unknown = [n for n in list(scores) + list(ratio_dict or {}) + list(ignored) if n not in modules]
    if unknown:
        raise ValueError(f"Unknown layer(s) {unknown}; scores and ratios are keyed by conv names "
                         "(see list_layers(model, x)).")
    names = {m: n for n, m in modules.items()}
    for name, value in scores.items():
        conv = modules[name]
        if not isinstance(conv, CONV):
            raise ValueError(f"Layer {name!r} is a {type(conv).__name__}; scores are for convolution filters.")
        size = len(value.kept) + len(value.pruned) if isinstance(value, CentralFilters) else len(np.asarray(value))
        if not isinstance(value, CentralFilters) and not np.isfinite(np.asarray(value, dtype=np.float64)).all():
            raise ValueError(f"Scores for {name!r} contain NaN or Inf; a criterion must score every filter.")
        if size != conv.out_channels:
            raise ValueError(f"Scores for {name!r} have length {size} but it has {conv.out_channels} filters.")
    linears = [m for m in pruned.modules() if isinstance(m, nn.Linear)]
    ignored_modules = linears[-1:] + [modules[n] for n in ignored]
    graph = dependency_graph(pruned, example_input)
    plans = []
    for group in graph.get_all_groups(ignored_layers=ignored_modules, root_module_types=[CONV]):
        members = coupled_convs(group, names)
        scored = [m for m in members if m in scores]
        if not scored:
            continue
        sizes = {m: modules[m].out_channels for m in members}
        if len(set(sizes.values())) > 1:
            raise ValueError(f"Torch-Pruning couples convs of different widths {sizes} (a zero-padding "
                             "shortcut, e.g. ResNet option A); their channels cannot be pruned together. "
                             "Use shortcut='B' or score only uncoupled convs (uncoupled_convs(model, x)).")
        n_channels = modules[scored[0]].out_channels
        central = [m for m in scored if isinstance(scores[m], CentralFilters)]
        if central:
            if len(members) > 1:
                raise ValueError(f"Central-Filter selection for {central[0]!r}: its channels are coupled "
                                 f"with {members} by a residual addition, where compensation is undefined.")
            selection = scores[central[0]]
            with torch.no_grad():
                for consumer in consumer_convs(group):
                    for keep, delegates in selection.delegates.items():
                        consumer.weight[:, keep] += consumer.weight[:, delegates].sum(dim=1)
            drop = list(selection.pruned)
        else:
            fraction = next((ratio_dict[m] for m in members if ratio_dict and m in ratio_dict), ratio)
            if fraction is None:
                continue
            n_drop = prune_count(n_channels, fraction, name=f"the ratio for {members[0]!r}")
            if n_drop == 0:
                continue
            combined = combine_scores([scores[m] for m in scored])
            drop = np.argsort(combined, kind="stable")[:n_drop].tolist()
        plans.append((modules[members[0]], drop))
    for conv, drop in plans:
        group = graph.get_pruning_group(conv, tp.prune_conv_out_channels, idxs=drop)
        if not graph.check_pruning_group(group):
            raise ValueError(f"Pruning {len(drop)} channels of {names[conv]!r} would leave a layer with "
                             "no channel; use a smaller ratio.")
        group.prune()
    return pruned
