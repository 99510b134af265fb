"""Per-block scores of a language model's blocks from its calibration loss: the loss without each
block (Shortened LLaMA's PPL criterion, SLEB's first step) and the Taylor and magnitude scores of
each block's weights (Shortened LLaMA)."""
from __future__ import annotations

import math

import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from .._arrays import resolve_device
from .._results import described
from ..hooks.modes import evaluating
from .language_model import evaluate_lm, next_token_nll, token_batches
from .layer_removal import removable_layers, remove_layers

# Shortened LLaMA's "+" rule (block_prune.py): the first four and the last two blocks stay.
PLUS_FIRST, PLUS_LAST = 4, 2


def model_blocks(model: nn.Module, where: str) -> list[str]:
    """The removable blocks of ``model`` (``removable_layers``), refusing a model without any."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"{where}: model must be an nn.Module (a causal LM), got {type(model).__name__}.")
    blocks = removable_layers(model)
    if not blocks:
        raise ValueError(f"{where}: {type(model).__name__} has no removable blocks (no nn.ModuleList of "
                         "same-class blocks); pass a transformer language model.")
    return blocks


def _plus_removable(n_blocks: int, plus: bool) -> list[bool]:
    """Which blocks may be removed: all, or with ``plus`` all but the first four and the last two."""
    if not isinstance(plus, bool):
        raise TypeError(f"plus must be True or False, got {plus!r}.")
    if not plus:
        return [True] * n_blocks
    return [PLUS_FIRST <= i < n_blocks - PLUS_LAST for i in range(n_blocks)]


def block_removal_loss(model: nn.Module, tokens, *, plus: bool = False, batch_size: int = 8, device=None,
                       progress: bool = True) -> pd.DataFrame:
    """The calibration loss of the model without each block alone: the damage of removing it.

    For each removable block ℓ (``removable_layers``), ``M∖ℓ = remove_layers(model, [ℓ])`` and
    ``loss_ℓ = (1/n) Σ −log p_{M∖ℓ}(x_t | x_<t)`` over the n predicted tokens of ``tokens``, with
    ``perplexity_ℓ = exp(loss_ℓ)`` and ``delta_loss_ℓ = loss_ℓ − loss(M)``: exactly
    ``evaluate_lm(remove_layers(model, [ℓ]), tokens)``. Low = redundant: Shortened LLaMA's PPL
    criterion removes the blocks of lowest perplexity, and SLEB's first step removes the block of
    lowest loss.

    Parameters
    ----------
    model : nn.Module
        A causal LM whose blocks sit in an ``nn.ModuleList`` (Hugging Face GPT-2, LLaMA, ...);
        not modified (each removal works on a copy).
    tokens : LongTensor (N, T), dict, Dataset or iterable of batches
        Calibration token ids, in any form ``evaluate_lm`` accepts.
    plus : bool, default False
        Shortened LLaMA's "+" rule: the first four and the last two blocks get
        ``removable = False`` (they are still scored); ``blocks_to_remove`` skips them.
    batch_size : int, default 8
        Sequences per forward.
    device : str or torch.device, optional
        Where batches go; default the model's device.
    progress : bool, default True
        Show a tqdm bar over the blocks.

    Returns
    -------
    pandas.DataFrame
        Columns ``block``, ``depth``, ``loss``, ``perplexity``, ``delta_loss``, ``removable``, one
        row per block in depth order. ``attrs``: ``full_loss``, ``full_perplexity``, ``n_tokens``,
        ``redundant_when`` (``"low"`` for the three scores) and ``plus``.

    Raises
    ------
    TypeError
        For a model that is not an ``nn.Module`` and for token data ``evaluate_lm`` refuses.
    ValueError
        For a model without a block stack, and for token data ``evaluate_lm`` refuses.

    Notes
    -----
    Shortened LLaMA (``src/anal_block_sensitivity_ppl.py``) builds the model without block ℓ and
    takes ``exp`` of the mean token NLL over its calibration samples, run one at a time without a
    mask — ``evaluate_lm`` on an (N, T) tensor computes the same mean. Its ``block_prune.py`` applies
    the "+" rule to every criterion unless ``--no_plus_heuristic``; here it is opt-in, as the paper
    reports PPL without it. Every removal deep-copies the model (``remove_layers``): peak memory is
    twice the model's.

    References
    ----------
    Kim et al., "Shortened LLaMA: Depth Pruning for Large Language Models with Comparison of
    Retraining Methods", 2024 (PPL criterion; github.com/Nota-NetsPresso/shortened-llm); Song et al.,
    "SLEB: Streamlining LLMs through Redundancy Verification and Elimination of Transformer
    Blocks", ICML 2024.

    Examples
    --------
    Blocks that add ``(a, 0)`` to the logits of two tokens, and text of token 0 only: the logits are
    ``(A, 0)`` with ``A = Σ a``, so the loss is ``log(1 + e^(−A))``; without the block of ``a = 1``
    it is ``log(1 + e^(−5))`` = 0.006715.

    >>> import torch
    >>> from repgraph.models import AdditiveLM as Additive
    >>> table = block_removal_loss(Additive([1.0, 2.0, 3.0]), torch.zeros(4, 8, dtype=torch.long),
    ...                            progress=False)
    >>> table[["block", "loss"]].round(6)
          block      loss
    0  layers.0  0.006715
    1  layers.1  0.018150
    2  layers.2  0.048587
    >>> round(table.attrs["full_loss"], 6)
    0.002476
    """
    blocks = model_blocks(model, "block_removal_loss")
    removable = _plus_removable(len(blocks), plus)
    full = evaluate_lm(model, tokens, batch_size=batch_size, device=device, progress=False)
    rows = []
    for depth, block in enumerate(tqdm(blocks, desc="block removal loss", disable=not progress, leave=False)):
        result = evaluate_lm(remove_layers(model, [block]), tokens, batch_size=batch_size, device=device,
                             progress=False)
        rows.append({"block": block, "depth": depth, "loss": result.nll, "perplexity": result.perplexity,
                     "delta_loss": result.nll - full.nll, "removable": removable[depth]})
    return described(pd.DataFrame(rows), "calibration loss of the model without each block alone",
                     "Kim et al. 2024 (Shortened LLaMA, PPL criterion); Song et al., ICML 2024 (SLEB)",
                     full_loss=full.nll, full_perplexity=full.perplexity, n_tokens=full.n_tokens,
                     redundant_when={"loss": "low", "perplexity": "low", "delta_loss": "low"}, plus=plus)


def _block_weights(model: nn.Module, blocks: list[str]) -> list[list[nn.Parameter]]:
    """Each block's weight parameters: those whose own name contains ``weight`` (no biases)."""
    return [[p for name, p in model.get_submodule(block).named_parameters()
             if "weight" in name.rsplit(".", 1)[-1]] for block in blocks]


def block_taylor_scores(model: nn.Module, tokens, *, plus: bool = False, batch_size: int = 8, device=None,
                        progress: bool = True) -> pd.DataFrame:
    """Shortened LLaMA's Taylor and magnitude importance of each block's weights.

    For block ℓ with weight matrices and vectors W ∈ 𝒲_ℓ (every parameter of the block whose name
    contains ``weight``: the linear projections and the norms' scales; no biases):

    - ``taylor_ℓ = Σ_{W∈𝒲_ℓ} Σ_ij |W_ij · ∂L/∂W_ij|``, the first-order estimate of the change of
      the calibration loss ``L = (1/n) Σ −log p(x_t | x_<t)`` (mean over the n predicted tokens of
      ``tokens``, the loss ``evaluate_lm`` reports) when W is set to zero;
    - ``magnitude_ℓ = Σ_{W∈𝒲_ℓ} Σ_ij |W_ij|``.

    Low = unimportant: Shortened LLaMA removes the blocks of lowest score. The gradient is taken in
    eval mode (no dropout) with ``torch.autograd.grad``: the model's weights, ``.grad`` and
    ``requires_grad`` flags and modes are as they were afterwards.

    Parameters
    ----------
    model : nn.Module
        A causal LM whose blocks sit in an ``nn.ModuleList``; not modified.
    tokens : LongTensor (N, T), dict, Dataset or iterable of batches
        Calibration token ids, in any form ``evaluate_lm`` accepts.
    plus : bool, default False
        The "+" rule (Taylor+, Magnitude+): the first four and the last two blocks get
        ``removable = False`` (they are still scored); ``blocks_to_remove`` skips them.
    batch_size : int, default 8
        Sequences per forward and backward (the scores do not depend on it).
    device : str or torch.device, optional
        Where batches go; default the model's device.
    progress : bool, default True
        Show a tqdm bar over the batches.

    Returns
    -------
    pandas.DataFrame
        Columns ``block``, ``depth``, ``taylor``, ``magnitude``, ``removable``, one row per block in
        depth order. ``attrs``: ``loss`` (L), ``perplexity`` (exp L), ``n_tokens``,
        ``redundant_when`` (``"low"`` for both scores) and ``plus``.

    Raises
    ------
    TypeError
        For a model that is not an ``nn.Module`` or does not return logits, and for token data
        that is not integer ids.
    ValueError
        For a model without a block stack or whose blocks have no weights, token ids outside the
        vocabulary, or data without a predicted token.

    Notes
    -----
    The reference, ``src/anal_block_sensitivity_taylor.py`` (and ``..._magnitude.py``) of
    Nota-NetsPresso/shortened-llm with its defaults (``norm_power=1``, ``weight_reduction`` and
    ``block_reduction`` ``"sum"``, 10 calibration samples in one batch), accumulates
    ``Σ_batches W ⊙ ∂L_b/∂W`` over the parameters with ``requires_grad`` and ``weight`` in their
    name, except ``embed_tokens``, then sums ``|·|`` over each matrix (row sums, then their sum) or
    norm vector and over the block's weights; ``model.norm`` and ``lm_head`` are dropped from the
    ranking. Deviations:

    - L is the mean over all calibration tokens; the reference sums the gradients of each batch's
      mean loss ``L_b``, which is the number of batches times this when the batches are equal
      (the same ranking), and identical with its default single batch.
    - Every block weight is scored, whatever its ``requires_grad`` (it is enabled for the gradient
      and restored); the reference silently skips frozen parameters.
    - Weights are chosen by the parameter's own name (``weight`` in its last name segment), so any
      architecture works; the reference's branches on ``proj``/``norm`` are LLaMA-specific (a
      GPT-2 ``c_attn`` weight would reuse the previous weight's score). With the sum reductions the
      score is the same sum over all entries.
    - ``W ⊙ ∂L/∂W`` is formed in float32; the reference multiplies in the parameter's dtype before
      casting. Only the defaults are offered (no L2 norm, mean/max/prod reductions).
    - The reference's ``block_prune.py`` applies the "+" rule by default; here ``plus`` opts in.

    References
    ----------
    Kim et al., "Shortened LLaMA: Depth Pruning for Large Language Models with Comparison of
    Retraining Methods", 2024 (Taylor+, Magnitude+; github.com/Nota-NetsPresso/shortened-llm);
    Molchanov et al., "Importance Estimation for Neural Network Pruning", CVPR 2019 (Taylor).

    Examples
    --------
    Blocks that add ``w = (a, 0)`` to the logits ``(A, 0)`` of two tokens, on text of token 0 only:
    ``∂L/∂w = (−σ(−A), σ(−A))`` for every block, so ``taylor = |a| σ(−A)`` and ``magnitude = |a|``.

    >>> import torch
    >>> from repgraph.models import AdditiveLM as Additive
    >>> table = block_taylor_scores(Additive([1.0, -2.0, 3.0]), torch.zeros(4, 8, dtype=torch.long),
    ...                             progress=False)
    >>> table[["block", "taylor", "magnitude"]].round(6)
          block    taylor  magnitude
    0  layers.0  0.119203        1.0
    1  layers.1  0.238406        2.0
    2  layers.2  0.357609        3.0
    """
    blocks = model_blocks(model, "block_taylor_scores")
    removable = _plus_removable(len(blocks), plus)
    weights = _block_weights(model, blocks)
    params = [p for group in weights for p in group]
    if not params:
        raise ValueError(f"block_taylor_scores: the blocks of {type(model).__name__} have no weight parameters.")
    device = resolve_device(device, like=model)
    sums = [torch.zeros_like(p, dtype=torch.float32) for p in params]
    total_nll, count = 0.0, 0
    with evaluating(model), torch.enable_grad():
        for p in params:
            p.requires_grad_(True)
        for ids, mask in tqdm(token_batches(tokens, batch_size), desc="taylor", disable=not progress, leave=False):
            nll = next_token_nll(model, ids.to(device), None if mask is None else mask.to(device))
            if nll.numel() == 0:
                continue
            grads = torch.autograd.grad(nll.sum(), params, allow_unused=True)
            for acc, g in zip(sums, grads):
                if g is not None:
                    acc += g.float()
            total_nll += float(nll.detach().double().sum())
            count += nll.numel()
    if count == 0:
        raise ValueError("block_taylor_scores: tokens have no predicted token (every sequence needs at least 2 "
                         "real tokens); pass longer sequences.")
    rows, i = [], 0
    for depth, (block, group) in enumerate(zip(blocks, weights)):
        taylor = magnitude = 0.0
        for p in group:
            w = p.detach().float()
            taylor += float((w * (sums[i] / count)).abs().sum(dtype=torch.float64))
            magnitude += float(w.abs().sum(dtype=torch.float64))
            i += 1
        rows.append({"block": block, "depth": depth, "taylor": taylor, "magnitude": magnitude,
                     "removable": removable[depth]})
    loss = total_nll / count
    return described(pd.DataFrame(rows), "block importance: sum of |W * dL/dW| (taylor) and of |W| (magnitude) "
                     "over the block's weights",
                     "Kim et al. 2024 (Shortened LLaMA, Taylor+ and Magnitude+)", loss=loss,
                     perplexity=math.exp(loss), n_tokens=count,
                     redundant_when={"taylor": "low", "magnitude": "low"}, plus=plus)
