"""Torch-Pruning dependency groups seen by convolution: which convs a group couples (residual
additions join several), which convs consume it, and how their scores combine."""
from __future__ import annotations

import numpy as np
import torch_pruning as tp
from torch import nn

CONV = nn.modules.conv._ConvNd


def dependency_graph(model: nn.Module, example_input) -> tp.DependencyGraph:
    """Torch-Pruning's dependency graph of ``model`` traced on ``example_input``, with a clear error
    when tracing fails."""
    # Built without ignored_layers: with the classifier ignored there, Torch-Pruning 1.6 routes the
    # residual group through the classifier's transposed weight and duplicates indices. Ignored
    # modules are excluded when the groups are chosen instead.
    try:
        return tp.DependencyGraph().build_dependency(model, example_inputs=example_input, verbose=False)
    except Exception as err:  # Torch-Pruning raises many types while tracing
        raise ValueError(f"Torch-Pruning could not trace {type(model).__name__}: {type(err).__name__}: "
                         f"{err}. Check that forward() runs on example_input and uses standard modules.") from err


def coupled_convs(group, names: dict) -> list[str]:
    """Names of the convs whose output channels ``group`` prunes (a residual coupling joins several),
    in the group's order; ``names`` maps module -> name."""
    found = []
    for dep, _ in group:
        module = dep.target.module
        if isinstance(module, CONV) and dep.handler == tp.prune_conv_out_channels and module in names:
            if names[module] not in found:
                found.append(names[module])
    return found


def consumer_convs(group) -> list:
    """The convs whose input channels ``group`` prunes (the next layers)."""
    return [dep.target.module for dep, _ in group
            if isinstance(dep.target.module, CONV) and dep.handler == tp.prune_conv_in_channels]


def uncoupled_convs(model: nn.Module, example_input) -> list[str]:
    """Convs whose output channels are not tied to another conv's by a residual addition (for a
    ResNet, the first conv of each block; for a VGG, every conv), in registration order: pruning
    them needs no group compromise, and their post-ReLU maps belong to them alone."""
    names = {m: n for n, m in model.named_modules()}
    graph = dependency_graph(model, example_input)
    found = []
    for group in graph.get_all_groups(root_module_types=[CONV]):
        convs = coupled_convs(group, names)
        if len(convs) == 1:
            found.extend(convs)
    order = list(names.values())
    return sorted(found, key=order.index)


def combine_scores(scores: list) -> np.ndarray:
    """One score per channel for coupled convs: the mean of each conv's scores divided by its
    max |score| (so no conv dominates by scale alone)."""
    return np.mean([np.asarray(s, dtype=np.float64) / max(np.abs(s).max(), 1e-300) for s in scores], axis=0)
