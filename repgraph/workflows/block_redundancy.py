"""block_redundancy: capture every block's input and output in one pass and tabulate the
block-redundancy criteria (``repgraph.analyzers.layer_redundancy``)."""
from __future__ import annotations

from collections.abc import Mapping

import pandas as pd
from torch import nn

from ..analyzers.layer_redundancy import layer_redundancy
from ..hooks.capture import capture_activations


def block_redundancy(model: nn.Module, data, labels=None, *, layers="blocks", mask=None,
                     max_samples: int | None = None, batch_size: int = 64, device=None, progress: bool = True,
                     **criteria) -> pd.DataFrame:
    """The ``layer_redundancy`` table of a model's blocks on ``data``: ΔQ (with labels), Block
    Influence, the angular distance of spans, the relative update norm, GBS and CKA between each
    block's input and output.

    One pass of ``capture_activations(model, data, layers, inputs=True, reduce=None)`` records
    each block's input (``name:input``) and output (``name``) unreduced — (N, T, D) hidden states
    of a transformer, (N, C, H, W) maps of a CNN — so that BI can compare token by token; then
    ``layer_redundancy`` computes every criterion from those arrays. Memory: 2 arrays of N·T·D
    (or N·C·H·W) floats per block; pass ``max_samples`` to bound it.

    Parameters
    ----------
    model : nn.Module
        A transformer (its block stack, e.g. GPT-2's ``transformer.h.*``) or a CNN with residual
        blocks; run in eval mode under ``no_grad``, modes restored.
    data : tensor, tuple (X, y), dict, Dataset or DataLoader
        What ``capture_activations`` accepts: token ids (N, T), images, ``(X, y)`` with labels, or a
        dict ``{"input_ids": ..., "attention_mask": ...}`` passed to the model as keyword arguments.
    labels : array (N,), optional
        Labels for ΔQ; default the labels the data carry (none: no ΔQ). For a language model,
        e.g. the byte or token that follows each window (``repgraph.datasets.text``).
    layers : str, list or callable, default "blocks"
        The blocks (``capture_activations``' selection), consecutive in depth order.
    mask : array (N, T), optional
        1 for real tokens, 0 for padding; default ``data["attention_mask"]`` when ``data`` is a dict
        that has one.
    max_samples : int, optional
        Use only the first ``max_samples`` samples.
    batch_size : int, default 64
        Samples per forward pass.
    device : str or torch.device, optional
        Where the model runs and the criteria are computed.
    progress : bool, default True
        Show progress bars.
    **criteria
        Passed to ``layer_redundancy``: ``blocks``, ``n_max``, ``feature_axis``, ``angular_reduce``,
        ``similarity_reduce``, ``gbs_k``, ``cka_debiased``, ``modularity_k``,
        ``modularity_batch_size``, ``modularity_n_batches``.

    Returns
    -------
    pandas.DataFrame
        The ``layer_redundancy`` table, one row per block.

    Raises
    ------
    ValueError
        From the capture (unknown layers, blocks that never fire) and from ``layer_redundancy``.

    References
    ----------
    Men et al. 2024 (ShortGPT); Gromov et al. 2024; Chen et al. 2021 (GBS); Kornblith et al. 2019
    (CKA); Lu et al., ECCV 2022 (modularity).

    Examples
    --------
    >>> import torch
    >>> from repgraph.models.byte_gpt import byte_gpt
    >>> model = byte_gpt(n_layer=3, n_embd=16, n_head=2, n_positions=16)
    >>> table = block_redundancy(model, torch.randint(0, 256, (8, 16)), n_max=2, progress=False)
    >>> table["block"].tolist()
    ['transformer.h.0', 'transformer.h.1', 'transformer.h.2']
    """
    acts = capture_activations(model, data, layers, inputs=True, reduce=None, max_samples=max_samples,
                               device=device, progress=progress, batch_size=batch_size)
    if mask is None and isinstance(data, Mapping) and data.get("attention_mask") is not None:
        mask = data["attention_mask"][:acts.n_samples]
    if labels is not None:
        labels = labels[:acts.n_samples]
    return layer_redundancy(acts, labels, mask=mask, device=device, progress=progress, **criteria)
