"""Structured filter pruning from repgraph's scores through Torch-Pruning's DependencyGraph."""
from __future__ import annotations

import copy
from collections.abc import Mapping

import numpy as np
import torch
import torch_pruning as tp
from torch import nn

from ..analyzers.central_filters import CentralFilters


def _dependency_graph(model, example_input):
    # Built without ignored_layers: with the classifier ignored there, Torch-Pruning 1.6 routes the
    # residual group through the classifier's transposed weight and duplicates indices. Ignored
    # modules are excluded when the groups are chosen instead.
    try:
        return tp.DependencyGraph().build_dependency(model, example_inputs=example_input, verbose=False)
    except Exception as err:  # Torch-Pruning raises many types while tracing
        raise ValueError(f"Torch-Pruning could not trace {type(model).__name__}: {type(err).__name__}: "
                         f"{err}. Check that forward() runs on example_input and uses standard modules.") from err


def _coupled_convs(group, names) -> list[str]:
    """Names of the convs whose output channels this group prunes (residual coupling joins several)."""
    found = []
    for dep, _ in group:
        module = dep.target.module
        if isinstance(module, nn.Conv2d) and dep.handler == tp.prune_conv_out_channels and module in names:
            if names[module] not in found:
                found.append(names[module])
    return found


def _consumer_convs(group, names) -> list[nn.Conv2d]:
    return [dep.target.module for dep, _ in group
            if isinstance(dep.target.module, nn.Conv2d) and dep.handler == tp.prune_conv_in_channels]


def prune_filters(model: nn.Module, scores: Mapping, *, ratio: float | None = None,
                  ratio_dict: Mapping | None = None, example_input, ignored=()) -> nn.Module:
    """A pruned copy of ``model`` with the lowest-scored output filters of the scored convs removed.

    ``scores``: conv name -> (C_out,) importance (any repgraph criterion, e.g. ``l1_scores(model)``,
    ``hrank_scores(acts)``, or the user's own; higher = keep), or conv name -> ``CentralFilters``
    (its ``pruned`` filters go, and each delegate's input weights in the next conv are first added
    onto its central filter's). Channels coupled by residual additions form one Torch-Pruning group:
    their scores (each divided by its max |score|) are averaged and pruned together, so the model
    stays valid. ``ratio`` (or ``ratio_dict[name]``) is the fraction of a group's channels to remove
    (rounded down). The final classifier and the modules named in ``ignored`` are never pruned.
    The returned model really has fewer channels; ``model`` is untouched.
    """
    if ratio is None and ratio_dict is None and not any(isinstance(v, CentralFilters) for v in scores.values()):
        raise ValueError("Pass ratio= (a fraction in (0, 1)) or ratio_dict={conv name: fraction}.")
    for r in ([ratio] if ratio is not None else []) + list((ratio_dict or {}).values()):
        if not 0.0 <= r < 1.0:
            raise ValueError(f"Pruning ratios must lie in [0, 1); {r} would remove every channel.")
    pruned = copy.deepcopy(model)
    modules = dict(pruned.named_modules())
    unknown = [n for n in list(scores) + list(ratio_dict or {}) + list(ignored) if n not in modules]
    if unknown:
        raise ValueError(f"Unknown layer(s) {unknown}; scores and ratios are keyed by conv names "
                         "(see list_layers(model, x)).")
    names = {m: n for n, m in modules.items()}
    for name, value in scores.items():
        conv = modules[name]
        if not isinstance(conv, nn.Conv2d):
            raise ValueError(f"Layer {name!r} is a {type(conv).__name__}; scores are for Conv2d filters.")
        size = len(value.kept) + len(value.pruned) if isinstance(value, CentralFilters) else len(np.asarray(value))
        if size != conv.out_channels:
            raise ValueError(f"Scores for {name!r} have length {size} but it has {conv.out_channels} filters.")
    linears = [m for m in pruned.modules() if isinstance(m, nn.Linear)]
    ignored_modules = linears[-1:] + [modules[n] for n in ignored]
    graph = _dependency_graph(pruned, example_input)
    plans = []
    for group in graph.get_all_groups(ignored_layers=ignored_modules, root_module_types=[nn.Conv2d]):
        members = _coupled_convs(group, names)
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
                for consumer in _consumer_convs(group, names):
                    for keep, delegates in selection.delegates.items():
                        consumer.weight[:, keep] += consumer.weight[:, delegates].sum(dim=1)
            drop = list(selection.pruned)
        else:
            fraction = next((ratio_dict[m] for m in members if ratio_dict and m in ratio_dict), ratio)
            if fraction is None:
                continue
            n_drop = int(n_channels * fraction)
            if n_drop == 0:
                continue
            combined = np.mean([np.asarray(scores[m], dtype=np.float64) / max(np.abs(scores[m]).max(), 1e-300)
                                for m in scored], axis=0)
            drop = np.argsort(combined, kind="stable")[:n_drop].tolist()
        plans.append((modules[members[0]], drop))
    for conv, drop in plans:
        group = graph.get_pruning_group(conv, tp.prune_conv_out_channels, idxs=drop)
        if not graph.check_pruning_group(group):
            raise ValueError(f"Pruning {len(drop)} channels of {names[conv]!r} would leave a layer with "
                             "no channel; use a smaller ratio.")
        group.prune()
    return pruned
