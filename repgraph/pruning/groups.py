"""Torch-Pruning dependency groups seen by convolution: which convs a group couples (residual
additions join several), which convs consume it, and how their scores combine."""
from __future__ import annotations

import numpy as np
import torch_pruning as tp
from torch import nn

from ..hooks.handles import reserve_hook_ids
from ..hooks.modes import evaluating
from ..hooks.trace import traced_input

CONV = nn.modules.conv._ConvNd


def dependency_graph(model: nn.Module, example_input) -> tp.DependencyGraph:
    """Torch-Pruning's dependency graph of ``model`` traced on ``example_input``, with a clear error
    when tracing fails. The model is left as it was: Torch-Pruning's tracer puts it in eval mode
    (each submodule's flag is restored) and adds forward hooks (given ids none of the model's own
    hooks holds, so those stay and run). ``example_input`` is any data form of
    ``capture_activations`` (``traced_input``)."""
    # Built without ignored_layers: with the classifier ignored there, Torch-Pruning 1.6 routes the
    # residual group through the classifier's transposed weight and duplicates indices. Ignored
    # modules are excluded when the groups are chosen instead.
    x = traced_input(model, example_input)
    try:
        with evaluating(model):
            reserve_hook_ids(model)
            return tp.DependencyGraph().build_dependency(model, example_inputs=x, verbose=False)
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
    them needs no group compromise, and their post-ReLU maps belong to them alone.

    A conv is uncoupled when its Torch-Pruning dependency group (rooted at a conv, pruning output
    channels) prunes the output channels of no other conv.

    Parameters
    ----------
    model : nn.Module
        The network.
    example_input : tensor, array, dict or any data form of ``capture_activations``
        One input batch, to trace the model's dependencies.

    Returns
    -------
    list of str
        Conv names as ``named_modules()`` gives them.

    Raises
    ------
    ValueError
        When Torch-Pruning cannot trace the model on ``example_input``.

    References
    ----------
    Fang et al., "DepGraph: Towards Any Structural Pruning", CVPR 2023 (dependency groups);
    github.com/VainF/Torch-Pruning.

    Examples
    --------
    In a 1-D ResNet-8 the stem conv is tied to the first stage's identity shortcuts, and each
    block's second conv to its shortcut; the first conv of each block is free:

    >>> import torch
    >>> from repgraph import uncoupled_convs
    >>> from repgraph.models import ResNet1d
    >>> uncoupled_convs(ResNet1d(1, in_channels=2), torch.zeros(1, 2, 16))
    ['layer1.0.conv1', 'layer2.0.conv1', 'layer3.0.conv1']
    """
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
