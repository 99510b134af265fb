"""One table per layer with every filter criterion side by side, for notebooks."""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from torch import nn

from ..hooks import capture_activations
from ..hooks.trace import execution_order
from .central_filters import central_filters
from .closeness import closeness_centrality
from .criteria import chip_scores, clp_scores, hrank_scores, l1_scores
from .filter_similarity import filter_similarity
from .topology import birth_points, entropy_of_birth_points


def producing_conv(model: nn.Module, layer: str, example_input) -> str:
    """The last Conv2d executed before ``layer`` in a traced forward (the conv whose filters make
    the layer's channels, e.g. ``layer1.0.conv1`` for ``layer1.0.relu1``)."""
    order = execution_order(model, example_input)
    if layer not in order:
        raise ValueError(f"Layer {layer!r} did not run in the forward pass.")
    modules = dict(model.named_modules())
    before = order[:order.index(layer) + 1]
    convs = [n for n in before if isinstance(modules[n], nn.Conv2d)]
    if not convs:
        raise ValueError(f"No Conv2d runs before {layer!r}; pass conv= explicitly.")
    return convs[-1]


def _one_input(data) -> torch.Tensor:
    """One input sample (batch of 1) from any data form capture_activations accepts."""
    if isinstance(data, tuple):
        data = data[0]
    if isinstance(data, (torch.Tensor, np.ndarray)):
        return torch.as_tensor(np.asarray(data[:1]) if isinstance(data, np.ndarray) else data[:1])
    loader = data if isinstance(data, torch.utils.data.DataLoader) else torch.utils.data.DataLoader(data, batch_size=1)
    batch = next(iter(loader))
    return (batch[0] if isinstance(batch, (tuple, list)) else batch)[:1]


def layer_filter_report(model: nn.Module, data, layer: str, *, conv: str | None = None,
                        max_samples: int = 256, ratio: float = 0.5, progress: bool = False) -> pd.DataFrame:
    """Every criterion per filter of one layer: HRank, CHIP, L1 and CLP of the producing conv,
    Central-Filter closeness (``cf_local`` and shortest-path), the central-filter decision at
    ``ratio``, and feature entropy's ineffectiveness (mean over classes; square maps only).
    ``attrs["rank_correlation"]`` holds the Spearman correlations between the criteria."""
    acts = capture_activations(model, data, layers=[layer], reduce=None, max_samples=max_samples,
                               progress=progress)
    fmaps = acts[layer]
    if fmaps.ndim != 4:
        raise ValueError(f"Layer {layer!r} outputs shape {fmaps.shape[1:]}, not (C, H, W) maps.")
    n, c, h, w = fmaps.shape
    x0 = _one_input(data)
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
    try:
        clp = clp_scores(model, example_input=x0)
        if conv in clp:
            table["clp"] = clp[conv]
    except ValueError:
        pass  # no conv -> BN pairing in this model: CLP does not apply
    if h == w and h >= 3:
        points = birth_points(fmaps)
        labels = acts.labels if acts.labels is not None else np.zeros(n, dtype=int)
        per_class = [entropy_of_birth_points(points[labels == k])["ineffectiveness"].to_numpy()
                     for k in np.unique(labels)]
        table["ineffectiveness"] = np.mean(per_class, axis=0)
    numeric = table.drop(columns=["filter", "cf_pruned"])
    table.attrs.update({"layer": layer, "conv": conv, "n_images": n, "ratio": ratio,
                        "rank_correlation": numeric.corr(method="spearman")})
    return table
