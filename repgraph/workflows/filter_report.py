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
    data : optional
        Any data form ``capture_activations`` accepts (labels, when present, group the images
        into classes for feature entropy).
    layer : str
        The layer whose (N, C, H, W) or (N, C, L) maps are scored, typically a post-ReLU module.
    conv : str, optional
        The conv that makes the layer's channels; default: the last conv run before ``layer``.
    max_samples : int
        Images whose maps are read.
    ratio : float
        Central-Filter pruning ratio (``ceil(C·ratio)`` filters).
    progress : bool
        Show a progress bar while capturing.

    Returns
    -------
    DataFrame
        One row per filter; ``attrs["rank_correlation"]`` holds the Spearman correlations
        between the criteria.

    Raises
    ------
    ValueError
        If the layer's output is not channel maps, or ``conv`` has another number of filters.

    Examples
    --------
    >>> import repgraph as rg
    >>> from repgraph.datasets import digits
    >>> from repgraph.models import resnet20
    >>> table = rg.layer_filter_report(resnet20(in_channels=1), digits("test"), "layer1.0.relu1",
    ...                                max_samples=16, progress=False)
    >>> list(table.columns)[:4], len(table)
    (['filter', 'hrank', 'chip', 'l1'], 16)
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
