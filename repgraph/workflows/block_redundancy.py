"""block_redundancy: stream a model's blocks once over the data and tabulate their redundancy
criteria (``repgraph.analyzers.layer_redundancy``) from per-batch accumulators."""
from __future__ import annotations

import pandas as pd
from torch import nn

from ..analyzers.block_accumulators import BlockAccumulator
from ..analyzers.layer_redundancy import check_n_max, check_reductions, tabulate_blocks
from ..hooks.layers import select_layers
from .streamed_blocks import stream_blocks


def block_redundancy(model: nn.Module, data, labels=None, *, layers="blocks", mask=None,
                     max_samples: int | None = None, batch_size: int = 64, device=None, progress: bool = True,
                     blocks=None, n_max: int | None = None, feature_axis=None, angular_reduce: str | None = None,
                     similarity_reduce: str | None = None, gbs_k: int | None = None, cka_debiased: bool = True,
                     modularity_k: int = 3, modularity_batch_size: int = 500,
                     modularity_n_batches: int | None = None) -> pd.DataFrame:
    """The ``layer_redundancy`` table of a model's blocks on ``data``: ΔQ (with labels), Block
    Influence, the angular distance of spans, the relative update norm, GBS and CKA between each
    block's input and output — computed in one streamed pass.

    Each batch runs through the model once; as each block returns, its input and output of that
    batch go to the block's ``BlockAccumulator`` (``repgraph.analyzers.block_accumulators``) and
    are dropped. What is kept, per column (``attrs["reductions"]``):

    - ``block_influence`` and ``relative_update_norm``: float64 running sums over every real token
      (``"every_token"``: Σ cos, Σ ‖x_out − x_in‖, Σ ‖x_in‖ and the token count; padding, where
      the mask is 0, left out) — the numbers of the unreduced arrays, as ShortGPT accumulates them;
    - ``angular_distance_n``: one vector per sample (``angular_reduce``; default the last real
      token of (N, T, D) hidden states, as Gromov et al., the spatial mean of feature maps);
    - ``gbs_in_out``, ``cka_in_out``, ``modularity`` and ``delta_q``: one vector per sample
      (``similarity_reduce``; default ``"token_mean"``, the mean over the real tokens, for (N, T, D)
      hidden states, and ``"flatten"`` for feature maps and (N, D) outputs).

    Memory: the model, one batch of one block's input and output (float32 copies on the model's
    device, and their float64 cosines and norms) and, per block, the (N, D) sample vectors of its
    input and output for each of the two reductions (one copy when they are the same) — whatever
    the number of tokens T. ``similarity_reduce="flatten"`` (or ``angular_reduce="flatten"``) on
    hidden states keeps (N, T·D) per block instead.

    Changed in issue 20: the default ``similarity_reduce`` was ``"flatten"`` for every model,
    which held each block's (N, T, D) hidden states; for transformers it is now the token mean
    (GBS, CKA and ΔQ of a transformer change; pass ``similarity_reduce="flatten"`` for the former
    numbers), for CNN feature maps it stays the flattened map. No warning is raised:
    ``attrs["similarity_reduce"]`` and ``attrs["reductions"]`` record what was used. The mask
    also comes now from each batch's ``attention_mask`` (a DataLoader of dict batches), not only
    from a dict of arrays.

    Parameters
    ----------
    model : nn.Module
        A transformer (its block stack, e.g. GPT-2's ``transformer.h.*``) or a CNN with residual
        blocks; run in eval mode under ``no_grad``, modes restored. Its dtype may be bfloat16 or
        float16: the hidden states are copied as float32 and the sums are float64.
    data : tensor, tuple (X, y), dict, Dataset or DataLoader
        What ``capture_activations`` accepts: token ids (N, T), images, ``(X, y)`` with labels, or a
        dict ``{"input_ids": ..., "attention_mask": ...}`` passed to the model as keyword arguments.
    labels : array (N,), optional
        Labels for ΔQ; default the labels the data carry (none: no ΔQ). For a language model,
        e.g. the byte or token that follows each window (``repgraph.datasets.text``).
    layers : str, list or callable, default "blocks"
        The blocks (``capture_activations``' selection), consecutive in depth order.
    mask : array (N, T), optional
        1 for real tokens, 0 for padding (the shape of the blocks' outputs without the feature
        axis); default each batch's ``attention_mask`` when the model is called with one.
    max_samples : int, optional
        Use only the first ``max_samples`` samples.
    batch_size : int, default 64
        Samples per forward pass (a DataLoader keeps its own batches); with the model it sets
        the peak memory.
    device : str or torch.device, optional
        Where the model runs (it must already be there) and the criteria are computed.
    progress : bool, default True
        Show progress bars.
    blocks : list of str, optional
        The rows, in depth order, among the blocks that ran (default all, in the order they ran).
    n_max : int, optional
        Longest span of the angular distance; default min(4, L).
    feature_axis : int, optional
        The hidden-feature axis of the blocks' outputs; default −1 for 3-D outputs, 1 otherwise.
    angular_reduce : {"last_token", "token_mean", "flatten"}, optional
        The sample vectors of the angular distance (default: see above).
    similarity_reduce : {"token_mean", "last_token", "flatten"}, optional
        The sample vectors of GBS, CKA and modularity (default: see above).
    gbs_k : int, optional
        Neighbours of the GBS sample graphs; None (default) the full cosine graph.
    cka_debiased : bool, default True
        The unbiased HSIC estimator (needs N ≥ 4) or the biased one.
    modularity_k, modularity_batch_size, modularity_n_batches : int
        ``modularity_curve``'s ``k``, ``batch_size`` and ``n_batches`` (only with labels).

    Returns
    -------
    pandas.DataFrame
        The ``layer_redundancy`` table, one row per block, with its ``attrs``.

    Raises
    ------
    ValueError
        For an unknown reduction, ``n_max`` outside 1 … L, ``blocks`` naming a block that did not
        run; from the pass (unknown layers, blocks that never fire, NaN/Inf, a bad mask) and from
        the table.

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
    >>> table.attrs["reductions"]["gbs_in_out"], table.attrs["reductions"]["angular_distance_2"]
    ('token_mean', 'last_token')
    """
    check_reductions(angular_reduce, similarity_reduce)
    chosen = None if blocks is None else [blocks] if isinstance(blocks, str) else list(blocks)
    check_n_max(n_max, len(select_layers(model, layers)) if chosen is None else len(chosen))
    accumulators, carried, n = stream_blocks(
        model, data, layers, lambda key: BlockAccumulator(key, angular_reduce=angular_reduce,
                                                          similarity_reduce=similarity_reduce,
                                                          feature_axis=feature_axis),
        mask=mask, max_samples=max_samples, batch_size=batch_size, device=device, progress=progress)
    if chosen is None:
        chosen = list(accumulators)
    missing = [b for b in chosen if b not in accumulators]
    if missing or not chosen:
        raise ValueError(f"blocks={chosen!r}: {missing or 'no block'} did not run; choose among the blocks that "
                         f"ran, {list(accumulators)}.")
    labels = carried if labels is None else labels[:n]
    return tabulate_blocks([accumulators[b].compute() for b in chosen], labels, n_max=n_max, gbs_k=gbs_k,
                           cka_debiased=cka_debiased, modularity_k=modularity_k,
                           modularity_batch_size=modularity_batch_size, modularity_n_batches=modularity_n_batches,
                           feature_axis=feature_axis, masked=any(a.masked for a in accumulators.values()), device=device,
                           progress=progress)
