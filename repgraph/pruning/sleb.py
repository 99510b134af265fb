"""SLEB's greedy block elimination: remove the block whose removal hurts the calibration loss
least, re-score the remaining blocks, repeat (Song et al., ICML 2024)."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
from torch import nn
from tqdm.auto import tqdm

from .._results import described
from .block_scores import model_blocks
from .language_model import evaluate_lm
from .layer_removal import remove_layers


def _count(value, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}.")
    return int(value)


def sleb_removal(model: nn.Module, tokens, n: int, *, keep_first: int = 1, keep_last: int = 1,
                 batch_size: int = 8, device=None, progress: bool = True) -> pd.DataFrame:
    """SLEB's order of block removal: n greedy steps, each removing the block without which the
    calibration loss is lowest.

    With R the blocks removed so far (R₀ = ∅) and B the blocks of the stack, step k removes

        ``b_k = argmin_{b ∈ B∖R, searchable} loss(remove_layers(model, R ∪ {b}))``

    where ``loss = (1/n) Σ −log p(x_t | x_<t)`` over the predicted tokens of ``tokens``
    (``evaluate_lm``), the same calibration set at every step; ties go to the earlier block. The
    first ``keep_first`` and the last ``keep_last`` blocks are never searched (SLEB's early and
    latter barriers).

    Parameters
    ----------
    model : nn.Module
        A causal LM whose blocks sit in an ``nn.ModuleList``; not modified (every candidate is
        evaluated on a copy).
    tokens : LongTensor (N, T), dict, Dataset or iterable of batches
        Calibration token ids, in any form ``evaluate_lm`` accepts (SLEB: 128 sequences of 2048
        tokens of WikiText-2 or C4 training text).
    n : int
        How many blocks to remove (1 ≤ n ≤ L − keep_first − keep_last).
    keep_first, keep_last : int, default 1
        How many blocks at the start and at the end are never removed (SLEB's ``early_barrier``
        and ``latter_barrier``).
    batch_size : int, default 8
        Sequences per forward.
    device : str or torch.device, optional
        Where batches go; default the model's device.
    progress : bool, default True
        Show a tqdm bar over the n steps.

    Returns
    -------
    pandas.DataFrame
        One row per step in removal order: ``step`` (1 … n), ``block``, ``depth`` (its index in the
        original stack), ``loss`` and ``perplexity`` of the model without the blocks of steps 1 …
        step. ``attrs``: ``order`` (the blocks in removal order), ``full_loss``,
        ``full_perplexity``, ``n_tokens``, ``keep_first``, ``keep_last``.

    Raises
    ------
    TypeError
        For a model that is not an ``nn.Module`` and for token data ``evaluate_lm`` refuses.
    ValueError
        For a model without a block stack, n or a barrier out of range, token data
        ``evaluate_lm`` refuses, or a step where every candidate's loss is NaN.

    Notes
    -----
    The reference, ``sleb.py`` of jiwonsong-dev/SLEB, switches the j-th alive block off for j in
    ``early_barrier … alive − latter_barrier − 1``, computes ``get_loss``, the sum over the
    calibration sequences of ``seqlen`` × their mean token NLL (one sequence per forward), keeps
    the first j with a strictly smaller loss, and removes that block for good; the calibration set
    (the first 128 documents of the shuffled training split, concatenated and cut into sequences
    of 2048 tokens) is fixed. Since the barriers never move, the searched blocks are those of the
    original stack between the first ``keep_first`` and the last ``keep_last``. Deviations:

    - The criterion is the mean NLL over all predicted tokens. For equal-length sequences without
      a mask it is the reference's loss divided by a constant (same choices); with padding, each
      token counts once where the reference weights each sequence's mean alike.
    - A candidate whose loss is NaN is never chosen, as in the reference (``nan < min`` is
      false); where all are NaN this raises instead of removing the last alive block.
    - A switched-off block is deleted (``remove_layers``) instead of bypassed: the same function.
      Each candidate copies the model: peak memory is twice the model's.

    References
    ----------
    Song et al., "SLEB: Streamlining LLMs through Redundancy Verification and Elimination of
    Transformer Blocks", ICML 2024 (Algorithm 1; github.com/jiwonsong-dev/SLEB).

    Examples
    --------
    Blocks that add ``(a, 0)`` to the logits of two tokens, on text of token 0 only: the loss
    ``log(1 + e^(−Σa))`` grows least when the smallest ``a`` goes, so the inner blocks leave in
    increasing ``a`` (the first and the last are barriers).

    >>> import torch
    >>> from repgraph.models import AdditiveLM as Additive
    >>> steps = sleb_removal(Additive([0.5, 3.0, 1.0, 2.0, 0.1]), torch.zeros(4, 8, dtype=torch.long), 2,
    ...                      progress=False)
    >>> steps[["step", "block", "loss"]].round(6)
       step     block      loss
    0     1  layers.2  0.003691
    1     2  layers.3  0.026957
    """
    blocks = model_blocks(model, "sleb_removal")
    keep_first = _count(keep_first, "keep_first", 0)
    keep_last = _count(keep_last, "keep_last", 0)
    searchable = blocks[keep_first:len(blocks) - keep_last]
    n = _count(n, "n", 1)
    if n > len(searchable):
        raise ValueError(f"n={n} exceeds the {len(searchable)} blocks between the first keep_first={keep_first} "
                         f"and the last keep_last={keep_last} of {len(blocks)}; lower n or the barriers.")
    full = evaluate_lm(model, tokens, batch_size=batch_size, device=device, progress=False)
    removed, rows = [], []
    for step in tqdm(range(1, n + 1), desc="SLEB", disable=not progress, leave=False):
        best = None
        for block in searchable:
            if block in removed:
                continue
            result = evaluate_lm(remove_layers(model, removed + [block]), tokens, batch_size=batch_size,
                                 device=device, progress=False)
            if not math.isnan(result.nll) and (best is None or result.nll < best[1].nll):
                best = (block, result)
        if best is None:
            raise ValueError(f"sleb_removal: at step {step} the loss without every candidate block is NaN; "
                             "check the model and the calibration tokens.")
        removed.append(best[0])
        rows.append({"step": step, "block": best[0], "depth": blocks.index(best[0]), "loss": best[1].nll,
                     "perplexity": best[1].perplexity})
    return described(pd.DataFrame(rows), "SLEB greedy block removal: each step removes the block whose removal "
                     "gives the lowest calibration loss", "Song et al., ICML 2024 (SLEB)", order=list(removed),
                     full_loss=full.nll, full_perplexity=full.perplexity, n_tokens=full.n_tokens,
                     keep_first=keep_first, keep_last=keep_last)
