"""block_redundancy: stream a model's blocks once over the data and tabulate their redundancy
criteria (``repgraph.analyzers.layer_redundancy``) from per-batch accumulators."""
from __future__ import annotations

import pandas as pd
import torch
from torch import nn

from ..analyzers.block_accumulators import BlockAccumulator
from ..analyzers.criterion_agreement import damage_correlation
from ..analyzers.layer_redundancy import check_n_max, check_reductions, tabulate_blocks
from ..hooks.conv_groups import conv_groups, conv_shape_change
from ..hooks.layers import plain_stack_blocks, select_layers
from ..pruning.block_scores import block_removal_loss
from .streamed_blocks import stream_blocks

# Where Hugging Face decoders keep the norm applied after the last block (LLaMA/Mistral/Qwen
# ``model.norm``, GPT-2 ``transformer.ln_f``, OPT ``decoder.final_layer_norm``, Phi ``final_layernorm``).
FINAL_NORM_NAMES = ("norm", "ln_f", "final_layer_norm", "final_layernorm", "norm_f")
LAST_BLOCK_OUTPUTS = ("block", "final_norm")


def final_norm(model: nn.Module, last_block: str) -> nn.Module:
    """The norm a decoder applies to its last block's output: the first of ``FINAL_NORM_NAMES``
    among the children of the modules that hold the block stack, nearest first."""
    parts = last_block.split(".")
    for depth in range(len(parts) - 1, -1, -1):
        owner = model.get_submodule(".".join(parts[:depth])) if depth else model
        for name in FINAL_NORM_NAMES:
            child = getattr(owner, name, None)
            if isinstance(child, nn.Module):
                return child
    raise ValueError(f"last_block_output='final_norm': found no final norm ({', '.join(FINAL_NORM_NAMES)}) next to "
                     f"the block {last_block!r} of {type(model).__name__}; pass last_block_output='block'.")


class _NormedOutput:
    """An accumulator fed the block's output after ``norm`` (in the norm's dtype, as the model
    applies it), for the last block under ``last_block_output="final_norm"``."""

    def __init__(self, accumulator: BlockAccumulator, norm: nn.Module):
        self.accumulator, self.norm = accumulator, norm
        self.dtype = next((p.dtype for p in norm.parameters()), None)

    def update(self, x_in, x_out, mask=None):
        normed = self.norm(x_out if self.dtype is None else x_out.to(self.dtype))
        self.accumulator.update(x_in, normed.float(), mask)

    def __getattr__(self, name):
        return getattr(self.accumulator, name)


class _ChainCheck:
    """On the first batch, that each block's input is the output of the block before it (among
    ``blocks``, or all), compared as the blocks return: one batch of one block's output held.
    A break raises, or with ``record`` is kept in ``breaks`` (block -> why) for the table."""

    def __init__(self, blocks, record: bool = False):
        self.blocks, self.seen, self.previous = blocks, set(), None
        self.record, self.breaks = record, {}

    def see(self, key, x_in, x_out):
        if key in self.seen or (self.blocks is not None and key not in self.blocks):
            return
        self.seen.add(key)
        if self.previous is not None:
            name, out = self.previous
            if tuple(out.shape) != tuple(x_in.shape):
                what = f"its input {tuple(x_in.shape)} is not the output {tuple(out.shape)}"
                why = (f"its input {tuple(x_in.shape[1:])} per sample is not the output {tuple(out.shape[1:])} "
                       f"of {name!r}: layers that change the shape run between them")
            elif not torch.equal(out, x_in):
                what = "something runs between them"
                why = f"its input has the shape of the output of {name!r} but other values: {what}"
            else:
                what = None
            if what is not None and not self.record:
                raise ValueError(f"Layers {name!r} and {key!r} are not chained ({what}): the angular distance "
                                 "of a span compares one block's input with a later block's output. Choose "
                                 "consecutive blocks (list_layers(model, x) shows the order), or pass n_max=1.")
            if what is not None:
                self.breaks[key] = why
        self.previous = (key, x_out)


class _Chained:
    """An accumulator whose batches go through ``_ChainCheck`` first."""

    def __init__(self, accumulator, key: str, chain: _ChainCheck):
        self.accumulator, self.key, self.chain = accumulator, key, chain

    def update(self, x_in, x_out, mask=None):
        self.chain.see(self.key, x_in, x_out)
        self.accumulator.update(x_in, x_out, mask)

    def __getattr__(self, name):
        return getattr(self.accumulator, name)


def _refuse_plain_stack(model: nn.Module) -> None:
    """The ``ValueError`` for ``layers="blocks"`` on a plain stack none of whose conv groups keeps
    the shape, naming each group and what it changes."""
    modules = dict(model.named_modules())
    changes = "; ".join(f"{g.name!r} {conv_shape_change(modules[g.members[0]])}" for g in conv_groups(model))
    raise ValueError(f"layers='blocks': {type(model).__name__} is a plain stack (no residual block, no block "
                     f"stack) whose every conv group changes the shape ({changes}), so no block can be removed "
                     "without changing a shape and there is no block to score. removable_layers(model, x, "
                     "explain=True) says why for every layer; to compare chosen layers anyway, pass their names "
                     "(layers=[...], see list_layers(model, x)) with n_max=1.")


def _add_damage(table: pd.DataFrame, model: nn.Module, tokens, batch_size: int, device, progress: bool) -> None:
    """The ``damage_loss`` and ``damage_perplexity`` columns (``block_removal_loss`` on ``tokens``)
    and ``attrs["damage_correlation"]``, in place."""
    removal = block_removal_loss(model, tokens, batch_size=batch_size, device=device, progress=progress)
    scored = set(removal["block"]) & set(table["block"])
    if not scored:
        raise ValueError(f"damage=: none of the table's blocks {table['block'].tolist()} is a removable block of "
                         f"{type(model).__name__} ({removal['block'].tolist()}); the damage is the loss without "
                         "each block of the model's block stack.")
    by_block = removal.set_index("block")
    table["damage_loss"] = table["block"].map(by_block["loss"]).astype(float)
    table["damage_perplexity"] = table["block"].map(by_block["perplexity"]).astype(float)
    redundant_when = table.attrs["redundant_when"]
    table.attrs["damage_correlation"] = damage_correlation(table, "damage_loss", redundant_when,
                                                           columns=list(redundant_when))
    table.attrs["damage"] = {"measure": "loss of the model without the block alone (block_removal_loss)",
                             "full_loss": removal.attrs["full_loss"],
                             "full_perplexity": removal.attrs["full_perplexity"],
                             "n_tokens": removal.attrs["n_tokens"]}


def block_redundancy(model: nn.Module, data, labels=None, *, layers="blocks", mask=None,
                     max_samples: int | None = None, batch_size: int = 64, device=None, progress: bool = True,
                     blocks=None, n_max: int | None = None, feature_axis=None, angular_reduce: str | None = None,
                     similarity_reduce: str | None = None, gbs_k: int | None = None, cka_debiased: bool = True,
                     modularity_k: int = 3, modularity_batch_size: int = 500,
                     modularity_n_batches: int | None = None, last_block_output: str = "block", damage=None,
                     damage_batch_size: int = 8) -> pd.DataFrame:
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
        A transformer (its block stack, e.g. GPT-2's ``transformer.h.*``), a CNN with residual
        blocks, or a plain (VGG-style) stack, whose blocks are its shape-keeping conv groups
        (see Notes); run in eval mode under ``no_grad``, modes restored. Its dtype may be bfloat16 or
        float16: the hidden states are copied as float32 and the sums are float64.
    data : tensor, tuple (X, y), dict, Dataset or DataLoader
        What ``capture_activations`` accepts: token ids (N, T), images, ``(X, y)`` with labels, or a
        dict ``{"input_ids": ..., "attention_mask": ...}`` passed to the model as keyword arguments.
    labels : array (N,), optional
        Labels for ΔQ; default the labels the data carry (none: no ΔQ). For a language model,
        e.g. the byte or token that follows each window (``repgraph.datasets.text``).
    layers : str, list or callable, default "blocks"
        The blocks (``capture_activations``' selection), consecutive in depth order (but for the
        ``"blocks"`` of a plain stack, see Notes).
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
    angular_reduce : {"last_token", "first_token", "token_mean", "flatten"}, optional
        The sample vectors of the angular distance (default: see above).
    similarity_reduce : {"token_mean", "first_token", "last_token", "flatten"}, optional
        The sample vectors of GBS, CKA and modularity (default: see above). ``"first_token"`` is
        each sequence's first real token: BERT's [CLS], position 0 of a right-padded batch (with a
        left-padded mask, the first unpadded position, as ``capture_activations(reduce="first_token")``).
    gbs_k : int, optional
        Neighbours of the GBS sample graphs; None (default) the full cosine graph.
    cka_debiased : bool, default True
        The unbiased HSIC estimator (needs N ≥ 4) or the biased one. Unlike ``cka_matrix`` and
        ``layer_similarity(measure="cka")``, which default to the biased CKA: ``cka_in_out`` is
        ``cka_matrix(..., debiased=True)``'s value of the pair. ``attrs["cka_estimator"]`` says
        which (``"debiased (unbiased HSIC)"`` or ``"biased"``).
    modularity_k, modularity_batch_size, modularity_n_batches : int
        ``modularity_curve``'s ``k``, ``batch_size`` and ``n_batches`` (only with labels).
    last_block_output : {"block", "final_norm"}, default "block"
        What counts as the last block's output, for every criterion of its row (and the spans
        that end there): the block's own output (repgraph's convention: every row compares a
        block's input with its output), or that output after the decoder's final norm
        (``model.norm``, ``ln_f``, ...), which is what ShortGPT's reference compares, since
        Hugging Face's ``hidden_states[-1]`` is taken after that norm.
    damage : token ids, optional
        Evaluation tokens (any form ``evaluate_lm`` accepts); for a language model only (a plain
        stack is refused). Adds ``damage_loss`` and
        ``damage_perplexity``: the loss and perplexity on them of the model without each block
        alone (``block_removal_loss``; NaN for a row that is not a removable block), and
        ``attrs["damage_correlation"]``: for every criterion, the Spearman correlation with the
        damage signed so that +1 means it ranks the blocks as their damage does
        (``damage_correlation``); ``attrs["damage"]`` holds the intact model's loss. Costs one
        evaluation per block.
    damage_batch_size : int, default 8
        Sequences per forward of the damage's evaluations.

    Returns
    -------
    pandas.DataFrame
        The ``layer_redundancy`` table, one row per block, with its ``attrs``.

    Raises
    ------
    ValueError
        For an unknown reduction or ``last_block_output``, ``n_max`` outside 1 … L, blocks that are
        not chained (one's input is not the previous one's output) when ``n_max`` ≥ 2, ``blocks``
        naming a block that did not run, no final norm found for ``"final_norm"``, ``damage`` for a
        model none of whose tabulated blocks is removable or for a plain stack, ``layers="blocks"``
        for a plain stack none of whose conv groups keeps the shape (naming what each changes);
        from the pass (unknown layers, blocks that never fire, NaN/Inf, a bad mask) and from
        the table.

    Notes
    -----
    A plain stack (``repgraph.hooks.layers.plain_stack_blocks``: conv groups, no residual block,
    no transformer block stack) gives under ``layers="blocks"`` one row per conv group that keeps
    the shape, named as ``removable_layers`` names it, so that ``remove_layers(model,
    blocks_to_remove(table, n))`` removes the chosen rows. A group of VGG's flat ``features``
    (conv, BN, ReLU among the pools and the channel-changing convs) is no module of its own: its
    input is the conv's input and its output its last member's output
    (``repgraph.hooks.layers.layer_ends``), so every criterion compares the group as a unit:
    ``block_influence = 1 − mean_t cos(x_in,t, x_out,t)`` over every spatial position of every
    sample, and so on. These groups are not chained: a pool or a conv that changes the channels
    runs between two of them. Instead of refusing the spans, the table then has a
    ``chain_break`` column — why a row's input is not the previous row's output (``""`` where it
    is, and for the first row) — and ``attrs["chain_breaks"]``; a span of n ≥ 2 rows
    ``ℓ … ℓ+n−1`` is scored only when none of rows ``ℓ+1 … ℓ+n−1`` has a break, and is NaN
    otherwise (on ``vgg11``, only ``features.22`` then ``features.25`` form a span of 2). Chosen
    layers (``layers=[...]``) that are not chained are still refused when ``n_max`` ≥ 2.

    References
    ----------
    Men et al. 2024 (ShortGPT); Gromov et al. 2024; Chen et al. 2021 (GBS); Kornblith et al. 2019
    (CKA); Lu et al., ECCV 2022 (modularity; their ``cvgg19_*`` configurations remove VGG convs).

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
    if last_block_output not in LAST_BLOCK_OUTPUTS:
        raise ValueError(f"last_block_output must be one of {LAST_BLOCK_OUTPUTS}, got {last_block_output!r}.")
    chosen = None if blocks is None else [blocks] if isinstance(blocks, str) else list(blocks)
    plain = plain_stack_blocks(model) if isinstance(layers, str) and layers == "blocks" else None
    if plain == {}:
        _refuse_plain_stack(model)
    if plain and damage is not None:
        raise ValueError(f"damage=: the damage is a language model's loss without each block of its block stack "
                         f"(block_removal_loss on token ids); {type(model).__name__} is a plain CNN. Measure its "
                         "groups' damage with repgraph.evaluate(remove_layers(model, [block]), (X, y)) for each "
                         "row's block, and pass damage=None.")
    selected = select_layers(model, layers)
    spans = check_n_max(n_max, len(selected) if chosen is None else len(chosen)) >= 2
    last = (chosen or selected)[-1]
    norm = final_norm(model, last) if last_block_output == "final_norm" else None
    # spans compare one block's input with a later one's output: the blocks must be chained; a plain
    # stack's conv groups have the layers that change the shape between them, so there the breaks are
    # recorded (the spans across them are NaN) instead of refused
    chain = _ChainCheck(chosen, record=True) if plain else _ChainCheck(chosen) if spans else None

    def accumulator(key):
        block = BlockAccumulator(key, angular_reduce=angular_reduce, similarity_reduce=similarity_reduce,
                                 feature_axis=feature_axis)
        block = block if norm is None or key != last else _NormedOutput(block, norm)
        return block if chain is None else _Chained(block, key, chain)

    accumulators, carried, n = stream_blocks(model, data, layers, accumulator, mask=mask, max_samples=max_samples,
                                             batch_size=batch_size, device=device, progress=progress)
    if chosen is None:
        chosen = list(accumulators)
    missing = [b for b in chosen if b not in accumulators]
    if missing or not chosen:
        raise ValueError(f"blocks={chosen!r}: {missing or 'no block'} did not run; choose among the blocks that "
                         f"ran, {list(accumulators)}.")
    labels = carried if labels is None else labels[:n]
    table = tabulate_blocks([accumulators[b].compute() for b in chosen], labels, n_max=n_max, gbs_k=gbs_k,
                           cka_debiased=cka_debiased, modularity_k=modularity_k,
                           modularity_batch_size=modularity_batch_size, modularity_n_batches=modularity_n_batches,
                           feature_axis=feature_axis, masked=any(a.masked for a in accumulators.values()), device=device,
                           progress=progress, chain_breaks=chain.breaks if plain else None)
    table.attrs["last_block_output"] = last_block_output
    if damage is not None:
        _add_damage(table, model, damage, damage_batch_size, device, progress)
    return table
