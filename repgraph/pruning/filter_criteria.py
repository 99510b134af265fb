"""Filter scores for pruning from any criterion, computed on the maps each conv produces."""
from __future__ import annotations

import numpy as np
import torch_pruning as tp
from torch import nn

from ..analyzers import (central_filters, chip_scores, clp_scores, filter_similarity, hrank_scores,
                         l1_scores)
from ..analyzers.topology import birth_points, entropy_of_birth_points, entropy_ranking_scores
from ..hooks import capture_activations
from ..hooks.trace import execution_order

CRITERIA = ("l1", "clp", "hrank", "chip", "entropy", "central_filter", "random")


def uncoupled_convs(model: nn.Module, example_input) -> list[str]:
    """Convs whose output channels are not tied to another conv's by a residual addition (for a
    ResNet, the first conv of each block; for a VGG, every conv): pruning them needs no group
    compromise, and their post-ReLU maps belong to them alone."""
    names = {m: n for n, m in model.named_modules()}
    graph = tp.DependencyGraph().build_dependency(model, example_inputs=example_input, verbose=False)
    found = []
    for group in graph.get_all_groups(root_module_types=[nn.Conv2d]):
        convs = {names[d.target.module] for d, _ in group
                 if isinstance(d.target.module, nn.Conv2d) and d.handler == tp.prune_conv_out_channels}
        if len(convs) == 1:
            found.extend(convs)
    order = list(names.values())
    return sorted(found, key=order.index)


def following_relu(model: nn.Module, conv: str, example_input) -> str:
    """The first ReLU module that runs after ``conv`` in a traced forward."""
    order = execution_order(model, example_input)
    modules = dict(model.named_modules())
    after = order[order.index(conv) + 1:]
    relu = next((n for n in after if isinstance(modules[n], nn.ReLU)), None)
    if relu is None:
        raise ValueError(f"No ReLU module runs after {conv!r}; map-based criteria need one.")
    return relu


def filter_scores(model: nn.Module, criterion: str, *, convs, data=None, example_input, ratio: float = 0.4,
                  max_samples: int = 256, seed: int = 0) -> dict:
    """conv name -> scores for ``prune_filters`` (higher = keep), or -> ``CentralFilters`` for
    ``central_filter`` (which then also fixes what is pruned, at ``ratio``). Map-based criteria
    (hrank, chip, entropy, central_filter) use the post-ReLU maps of ``max_samples`` samples of
    ``data``; entropy averages ineffectiveness over classes (Zhao & Zhang)."""
    if criterion not in CRITERIA:
        raise ValueError(f"criterion must be one of {CRITERIA}, got {criterion!r}.")
    modules = dict(model.named_modules())
    if criterion == "l1":
        return {c: s for c, s in l1_scores(model).items() if c in convs}
    if criterion == "clp":
        return {c: s for c, s in clp_scores(model, example_input=example_input).items() if c in convs}
    if criterion == "random":
        rng = np.random.default_rng(seed)
        return {c: rng.random(modules[c].out_channels) for c in convs}
    if data is None:
        raise ValueError(f"criterion {criterion!r} needs data to compute feature maps.")
    relus = {c: following_relu(model, c, example_input) for c in convs}
    acts = capture_activations(model, data, layers=sorted(set(relus.values())), reduce=None,
                               max_samples=max_samples, progress=False)
    out = {}
    for conv, relu in relus.items():
        maps = acts[relu]
        if criterion == "hrank":
            out[conv] = hrank_scores(maps)
        elif criterion == "chip":
            out[conv] = chip_scores(maps)
        elif criterion == "central_filter":
            out[conv] = central_filters(filter_similarity(maps), ratio)
        else:
            points = birth_points(maps)
            labels = acts.labels if acts.labels is not None else np.zeros(len(points), dtype=int)
            ineff = np.mean([entropy_of_birth_points(points[labels == k])["ineffectiveness"].to_numpy()
                             for k in np.unique(labels)], axis=0)
            out[conv] = entropy_ranking_scores({"ineffectiveness": ineff})
    return out
