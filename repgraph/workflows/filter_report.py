"""One table per layer with every filter criterion side by side, for notebooks."""
from __future__ import annotations

import numpy as np
import pandas as pd
from torch import nn

from .._results import described
from ..analyzers import (birth_points, central_filters, chip_scores, class_feature_entropy, closeness_centrality,
                         hrank_scores, l1_scores)
from ..builders import filter_similarity
from ..hooks import capture_activations
from ..hooks.batches import first_input
from ..hooks.trace import conv_bn_pairs, producing_conv
from .clp import clp_scores


def layer_filter_report(model: nn.Module, data, layer: str, *, conv: str | None = None,
                        max_samples: int = 256, ratio: float = 0.5, progress: bool = True) -> pd.DataFrame:
    """Every filter criterion of one layer's filters, side by side.

    Columns: ``hrank``, ``chip`` (of the layer's maps), ``l1`` and ``clp`` (of the producing conv;
    CLP only when a BatchNorm follows it), Central-Filter closeness ``cf_local`` and
    ``closeness`` (shortest-path) at the selection threshold, ``cf_pruned`` (the Central-Filter
    decision at ``ratio``) and feature entropy's ``ineffectiveness`` (mean over classes; square
    2-D maps of at least 3×3 only). Works on 1-D models too (Conv1d, (N, C, L) maps): there each
    map's HRank is 0 or 1, so ``hrank`` is the fraction of images in which the filter responds,
    and feature entropy, which needs square 2-D maps, is left out.

    Parameters
    ----------
    model : nn.Module
        The network.
    data : tensor, array, (X, y), dict, Dataset, DataLoader or iterable
        Any data form ``capture_activations`` accepts with positional inputs (its first sample
        traces the model); labels, when present, group the images into classes for feature
        entropy.
    layer : str
        The layer whose (N, C, H, W) or (N, C, L) maps are scored, typically a post-ReLU module.
    conv : str, optional
        The conv that makes the layer's channels; default: the last conv run before ``layer``.
    max_samples : int
        Images whose maps are read (the first ones of ``data``).
    ratio : float
        Central-Filter pruning ratio (``ceil(C·ratio)`` filters).
    progress : bool
        Show a progress bar while capturing.

    Returns
    -------
    DataFrame
        One row per filter: ``filter``, ``hrank``, ``chip``, ``l1``, ``cf_local``, ``closeness``,
        ``cf_pruned``, then ``clp`` and ``ineffectiveness`` where they apply;
        ``attrs["rank_correlation"]`` holds the Spearman correlations between the numeric
        criteria.

    Raises
    ------
    ValueError
        If ``layer`` is unknown or its output is not channel maps, ``conv`` is not a convolution or
        has another number of filters, ``data`` is empty, or a criterion refuses the maps (e.g. NaN/Inf, one channel).
    TypeError
        For data of dict (keyword-input) batches, which cannot trace the model positionally.

    References
    ----------
    Lin et al., "HRank: Filter Pruning using High-Rank Feature Map", CVPR 2020; Sui et al.,
    "CHIP: CHannel Independence-based Pruning for Compact Neural Networks", NeurIPS 2021; Li et
    al., "Pruning Filters for Efficient ConvNets", ICLR 2017 (L1); Zheng et al., "Data-free
    Backdoor Removal based on Channel Lipschitzness", ECCV 2022 (CLP); Duan et al., "Network
    Compression via Central Filter", arXiv 2112.05493; Zhao & Zhang, arXiv 2103.09716 / ICLR 2022
    (feature entropy).

    Examples
    --------
    The ReLU "2" after conv "0" and its BatchNorm: every criterion applies, CLP included.

    >>> import torch
    >>> from torch import nn
    >>> import repgraph as rg
    >>> _ = torch.manual_seed(0)
    >>> model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
    ...                       nn.Linear(4 * 6 * 6, 2))
    >>> X, y = torch.randn(16, 1, 8, 8), torch.arange(16) % 2
    >>> table = rg.layer_filter_report(model, (X, y), "2", progress=False)
    >>> list(table.columns), len(table), table.attrs["conv"]
    (['filter', 'hrank', 'chip', 'l1', 'cf_local', 'closeness', 'cf_pruned', 'clp', 'ineffectiveness'], 4, '0')
    """
    acts = capture_activations(model, data, layers=[layer], reduce=None, max_samples=max_samples,
                               progress=progress)
    fmaps = acts[layer]
    if fmaps.ndim < 3:
        raise ValueError(f"Layer {layer!r} outputs shape {fmaps.shape[1:]}, not (C, ...) channel maps; "
                         "choose a conv layer or the ReLU after it.")
    n, c = fmaps.shape[:2]
    x0 = first_input(data)
    conv = conv or producing_conv(model, layer, x0)
    modules = dict(model.named_modules())
    if not isinstance(modules.get(conv), nn.modules.conv._ConvNd):
        convs = [n for n, m in modules.items() if isinstance(m, nn.modules.conv._ConvNd)]
        raise ValueError(f"conv={conv!r} is not a convolution of {type(model).__name__}; its convs are {convs}.")
    if modules[conv].out_channels != c:
        raise ValueError(f"conv {conv!r} has {modules[conv].out_channels} filters but {layer!r} has {c} channels.")
    S = filter_similarity(fmaps)
    selection = central_filters(S, ratio)
    table = pd.DataFrame({
        "filter": np.arange(c),
        "hrank": hrank_scores(fmaps),
        "chip": chip_scores(fmaps),
        "l1": l1_scores(model)[conv],
        "cf_local": closeness_centrality(S, kind="cf_local", threshold=selection.threshold),
        "closeness": closeness_centrality(S, kind="shortest_path", threshold=selection.threshold),
        "cf_pruned": np.isin(np.arange(c), selection.pruned),
    })
    if conv in dict(conv_bn_pairs(model, x0)):
        table["clp"] = clp_scores(model, example_input=x0)[conv]
    if fmaps.ndim == 4 and fmaps.shape[2] == fmaps.shape[3] >= 3:
        table["ineffectiveness"] = class_feature_entropy(birth_points(fmaps), acts.labels)["ineffectiveness"]
    numeric = table.drop(columns=["filter", "cf_pruned"])
    return described(table, "filter criteria of one layer", "see each criterion's function", layer=layer,
                     conv=conv, n_images=n, ratio=ratio, rank_correlation=numeric.corr(method="spearman"))
