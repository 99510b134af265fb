"""One table of block-redundancy evidence: ΔQ of modularity, Block Influence, the angular distance
of spans, the relative update norm, GBS and CKA between each block's input and output."""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from .._results import described
from .._warnings import warn_user
from .block_criteria import (REDUCTIONS, angles, block_influence, default_reductions, relative_update_norm,
                             sample_vectors)
from .cka import CKA_ESTIMATORS, cka
from .criterion_agreement import oriented_rank_correlation
from .gbs import gbs
from .modularity import modularity_curve

INPUT_SUFFIX = ":input"


def block_pairs(acts, blocks=None) -> list[tuple[str, object, object]]:
    """``[(name, input array, output array), ...]`` from a mapping that holds each block's output
    under ``name`` and its input under ``name + ":input"`` (what ``capture_activations(...,
    inputs=True)`` returns), in the mapping's order or the order of ``blocks``."""
    if not isinstance(acts, Mapping) or len(acts) == 0:
        raise TypeError("acts must be a non-empty Activations or mapping holding each block's output under "
                        "'name' and its input under 'name:input'.")
    keys = list(acts)
    if blocks is None:
        inputs = {k[:-len(INPUT_SUFFIX)] for k in keys if k.endswith(INPUT_SUFFIX)}
        outputs = [k for k in keys if not k.endswith(INPUT_SUFFIX)]
        no_input = [k for k in outputs if k not in inputs]
        no_output = sorted(inputs - set(outputs))
        if no_input or no_output:
            parts = []
            if no_input:
                parts.append(f"no input for {no_input}")
            if no_output:
                parts.append(f"no output for {[n + INPUT_SUFFIX for n in no_output]}")
            raise ValueError(f"Unpaired layers: {'; '.join(parts)}. Each block needs 'name' (output) and "
                             "'name:input' (capture with inputs=True), or pass blocks=[...] to choose the pairs.")
        blocks = outputs
    else:
        blocks = [blocks] if isinstance(blocks, str) else list(blocks)
        missing = [k for b in blocks for k in (b, b + INPUT_SUFFIX) if k not in acts]
        if missing:
            raise ValueError(f"acts lacks {missing}; each block in blocks needs its output 'name' and its input "
                             "'name:input' (capture with inputs=True).")
    if not blocks:
        raise ValueError("No block to analyse: acts holds no 'name' / 'name:input' pair.")
    return [(b, acts[b + INPUT_SUFFIX], acts[b]) for b in blocks]


def _span_column(n: int) -> str:
    return f"angular_distance_{n}"


@dataclass(frozen=True)
class BlockEvidence:
    """What the table needs of one block, however it was obtained (from whole arrays by
    ``layer_redundancy``, batch by batch by ``repgraph.analyzers.block_accumulators``).

    ``block_influence`` and ``relative_update_norm`` are NaN for a block that changes the shape
    (``shape_preserving`` False), whose ``angular_out`` is then None. ``angular_in`` /
    ``angular_out`` are the (N, D) sample vectors (``angular_reduce``) of the block's input and
    output that the spans compare; ``similarity_in`` / ``similarity_out`` those (``similarity_reduce``)
    of GBS, CKA and modularity."""
    name: str
    shape_preserving: bool
    block_influence: float
    relative_update_norm: float
    angular_reduce: str
    angular_in: torch.Tensor
    angular_out: torch.Tensor | None
    similarity_reduce: str
    similarity_in: torch.Tensor
    similarity_out: torch.Tensor


def check_n_max(n_max, n_blocks: int) -> int:
    """``n_max`` (None: min(4, ``n_blocks``)) checked to be an integer in 1 … ``n_blocks``."""
    if n_max is None:
        return min(4, n_blocks)
    if isinstance(n_max, bool) or not isinstance(n_max, (int, np.integer)) or not 1 <= n_max <= n_blocks:
        raise ValueError(f"n_max must be an integer in 1..{n_blocks} (the number of blocks), got {n_max!r}.")
    return int(n_max)


def check_reductions(angular_reduce, similarity_reduce) -> None:
    """Refuse an ``angular_reduce`` or ``similarity_reduce`` that is neither None (the default by
    the arrays' rank, ``default_reductions``) nor one of ``REDUCTIONS``, naming both."""
    if any(r is not None and r not in REDUCTIONS for r in (angular_reduce, similarity_reduce)):
        raise ValueError(f"angular_reduce and similarity_reduce must be one of {REDUCTIONS} (or None for the "
                         f"default); got angular_reduce={angular_reduce!r}, similarity_reduce={similarity_reduce!r}.")


def _one_or_all(names) -> str | list[str]:
    used = sorted(set(names))
    return used[0] if len(used) == 1 else used


def tabulate_blocks(evidence: list[BlockEvidence], labels=None, *, n_max: int | None = None, gbs_k: int | None = None,
                    cka_debiased: bool = True, modularity_k: int = 3, modularity_batch_size: int = 500,
                    modularity_n_batches: int | None = None, feature_axis=None, masked: bool = False, device=None,
                    progress: bool = True, token_vectors: str = "every_token",
                    chain_breaks: Mapping[str, str] | None = None) -> pd.DataFrame:
    """The ``layer_redundancy`` table from each block's ``BlockEvidence``, in depth order.

    The spans' angular distances (from ``angular_in`` of the first block and ``angular_out`` of
    the last), GBS and CKA (from ``similarity_in`` and ``similarity_out``), with ``labels`` the
    modularity and ΔQ, the rank correlations and the best spans; ``feature_axis`` and ``masked``
    are recorded in ``attrs``. Parameters and the table: see ``layer_redundancy``.

    Parameters
    ----------
    evidence : list of BlockEvidence
        One per block, consecutive in depth order, all of the same N samples.
    labels : array (N,), optional
        Class labels for ΔQ (none: no ΔQ columns).
    n_max, gbs_k, cka_debiased, modularity_k, modularity_batch_size, modularity_n_batches
        As in ``layer_redundancy``.
    feature_axis : int, optional
        Recorded in ``attrs``.
    masked : bool, default False
        Recorded in ``attrs``: whether padding was left out.
    device : str or torch.device, optional
        Where GBS, CKA and modularity are computed.
    progress : bool, default True
        Show a tqdm bar over the blocks.
    token_vectors : str, default "every_token"
        What BI and the update norm compared, for ``attrs["reductions"]``: each real token's
        vector, or what the arrays were reduced to before (e.g. ``"last_token (at capture)"``).
    chain_breaks : mapping of str to str, optional
        None (default): the blocks form one chain, each block's input the previous block's
        output. Else each block whose input is not the previous block's output -> why (a plain
        stack's conv groups with a pool or a shape-changing conv between them); a span of n ≥ 2
        blocks ``ℓ … ℓ+n−1`` is scored only when none of ``ℓ+1 … ℓ+n−1`` is such a block (NaN
        otherwise), since its angle compares block ℓ's input with block ℓ+n−1's output of one
        chain. The table then has a ``chain_break`` column (the reason, ``""`` for a block that
        takes the previous block's output and for the first block) and ``attrs["chain_breaks"]``.

    Returns
    -------
    pandas.DataFrame
        The table of ``layer_redundancy`` (with ``chain_break`` after ``shape_preserving`` when
        ``chain_breaks`` is given); ``attrs["reductions"]`` names, per criterion column, what it
        compares: ``token_vectors`` for BI and the update norm, else the per-sample reduction.

    Raises
    ------
    ValueError
        For no block or ``n_max`` outside 1 … L.
    """
    if not evidence:
        raise ValueError("No block to analyse: evidence is empty.")
    n_blocks = len(evidence)
    n_max = check_n_max(n_max, n_blocks)
    breaks = {} if chain_breaks is None else dict(chain_breaks)
    rows, sims = [], {}
    for depth, block in enumerate(tqdm(evidence, desc="block redundancy", disable=not progress, leave=False)):
        sx, sy = block.similarity_in, block.similarity_out
        rows.append({"block": block.name, "depth": depth, "shape_preserving": block.shape_preserving,
                     "block_influence": block.block_influence, "relative_update_norm": block.relative_update_norm,
                     "gbs_in_out": gbs(sx, sy, k=gbs_k, device=device),
                     "cka_in_out": cka(sx, sy, debiased=cka_debiased, device=device)})
        if labels is not None:
            sims[block.name + INPUT_SUFFIX], sims[block.name] = sx, sy

    for n in range(1, n_max + 1):
        for start in range(n_blocks):
            stop = start + n - 1
            defined = (stop < n_blocks and all(b.shape_preserving for b in evidence[start:stop + 1])
                       and not any(b.name in breaks for b in evidence[start + 1:stop + 1]))
            rows[start][_span_column(n)] = (
                float(angles(evidence[start].angular_in, evidence[stop].angular_out).mean() / math.pi)
                if defined else math.nan)

    angular = _one_or_all(b.angular_reduce for b in evidence)
    similarity = _one_or_all(b.similarity_reduce for b in evidence)
    criteria = ["block_influence"] + [_span_column(n) for n in range(1, n_max + 1)] + [
        "relative_update_norm", "gbs_in_out", "cka_in_out"]
    redundant_when = {c: "high" if c in ("gbs_in_out", "cka_in_out") else "low" for c in criteria}
    reductions = {c: token_vectors if c in ("block_influence", "relative_update_norm")
                  else similarity if c in ("gbs_in_out", "cka_in_out") else angular for c in criteria}
    columns = ["block", "depth", "shape_preserving"]
    if chain_breaks is not None:
        for row in rows:
            row["chain_break"] = breaks.get(row["block"], "")
        columns.append("chain_break")
    if labels is not None:
        curve = modularity_curve(sims, labels, k=modularity_k, batch_size=modularity_batch_size,
                                 n_batches=modularity_n_batches, device=device, progress=False)
        q = dict(zip(curve["layer"], curve["modularity"]))
        for row in rows:
            row["modularity"] = q[row["block"]]
            row["delta_q"] = q[row["block"]] - q[row["block"] + INPUT_SUFFIX]
        columns += ["modularity", "delta_q"]
        criteria = ["delta_q"] + criteria
        redundant_when = {"delta_q": "low", **redundant_when}
        reductions = {"modularity": similarity, "delta_q": similarity, **reductions}
    table = pd.DataFrame(rows, columns=columns + [c for c in criteria if c != "delta_q"])
    rho = oriented_rank_correlation(table, redundant_when, columns=criteria)
    best = {}
    for n in range(1, n_max + 1):
        column = table[_span_column(n)]
        if column.notna().any():
            start = int(column.idxmin())  # the first of equal minima
            best[n] = {"start": table["block"][start], "blocks": table["block"][start:start + n].tolist(),
                       "angular_distance": float(column[start])}
    return described(table, "block redundancy: ΔQ, Block Influence, angular distance, update norm, GBS, CKA",
                     "Lu et al. ECCV 2022; Men et al. 2024 (ShortGPT); Gromov et al. 2024; Chen et al. 2021; "
                     "Kornblith et al. 2019", rank_correlation=rho.to_dict(), redundant_when=redundant_when,
                     best_spans=best, n_max=n_max, angular_reduce=sorted({b.angular_reduce for b in evidence}),
                     similarity_reduce=similarity, reductions=reductions, gbs_k=gbs_k, cka_debiased=cka_debiased,
                     cka_estimator=CKA_ESTIMATORS[bool(cka_debiased)],
                     modularity_k=modularity_k if labels is not None else None, feature_axis=feature_axis,
                     masked=masked, **({} if chain_breaks is None else {"chain_breaks": breaks}))


def layer_redundancy(acts, labels=None, *, blocks=None, n_max: int | None = None, feature_axis=None, mask=None,
                     angular_reduce: str | None = None, similarity_reduce: str = "flatten", gbs_k: int | None = None,
                     cka_debiased: bool = True, modularity_k: int = 3, modularity_batch_size: int = 500,
                     modularity_n_batches: int | None = None, device=None, progress: bool = True) -> pd.DataFrame:
    """Every block-redundancy criterion side by side, one row per block.

    For blocks ℓ = 0 … L−1 with input ``x_ℓ`` and output ``y_ℓ`` (taken in order as consecutive
    blocks of one stack, so that ``y_ℓ`` feeds block ℓ+1):

    - ``block_influence`` ``= 1 − mean_t cos(x_ℓ,t, y_ℓ,t)`` over every (real) token of every sample
      (Men et al. 2024, ShortGPT; low = redundant); see ``block_influence``.
    - ``angular_distance_n`` (n = 1 … ``n_max``) ``= mean_samples arccos(cos(x_ℓ, y_{ℓ+n−1}))/π``
      for the span of n blocks starting at ℓ, on the last token by default (Gromov et al. 2024; low
      = redundant); NaN where the span runs past the last block. ``attrs["best_spans"]`` holds,
      for each n, the start ℓ* with the smallest distance and its blocks.
    - ``relative_update_norm`` ``= Σ_t ‖y_ℓ,t − x_ℓ,t‖ / Σ_t ‖x_ℓ,t‖`` (low = redundant).
    - ``gbs_in_out`` and ``cka_in_out``: GBS (Chen et al. 2021; full cosine graph by default) and
      linear CKA (debiased by default: the biased estimator is inflated when features ≫ samples)
      between ``x_ℓ`` and ``y_ℓ`` — the block's output against the previous block's output in a
      chained stack, and also defined for the first block (against the embedding or stem output)
      and for blocks that change the shape (high = redundant).
    - with labels, ``modularity`` (Q of ``y_ℓ``) and ``delta_q = Q(y_ℓ) − Q(x_ℓ)`` (Lu et al.,
      ECCV 2022; ``modularity_curve`` with the ``modularity_*`` settings; low = redundant).

    BI and the update norm are ShortGPT's token-level numbers only on unreduced hidden states
    (``capture_activations(..., reduce=None)``, or ``block_redundancy``, which streams them): on
    arrays captured with a reduction (``acts.meta["reduce"]`` other than None, e.g.
    ``"last_token"``) they compare one vector per sample, so a warning says so and
    ``attrs["reductions"]`` records it.

    BI, the angular distance and the update norm compare vectors token by token, so they need a
    block that keeps the shape; for a block that does not (a downsampling residual block)
    they are NaN, ``shape_preserving`` is False, and no span containing it is scored. Array forms
    per criterion (see ``repgraph.analyzers.block_criteria``): (N, T, D) hidden states, tokens on
    axis 1; (N, C, H, W) feature maps, each position's C-vector a token; (N, D) one vector per
    sample. The angular distance uses the last token (``angular_reduce="last_token"``, the
    default for (N, T, D)) or the token mean (``"token_mean"``: encoders; the default for feature
    maps, where it is the spatial mean). GBS, CKA and modularity compare samples through one
    vector each (``similarity_reduce``): the flattened representation by default, as in
    the README's definitions (``None``: ``block_redundancy``'s default, the token mean of (N, T, D)
    hidden states and the flattened map otherwise; ``repgraph.analyzers.block_criteria.default_reductions``).

    ``attrs``: ``rank_correlation`` (Spearman ρ between every two criterion columns over the
    blocks where both are defined, NaN with fewer than 3 such blocks, *oriented* by
    ``redundant_when`` so that +1 means the two name the same blocks redundant —
    ``oriented_rank_correlation``; changed in issue 20: it was the plain ρ, which reads −1 for
    Block Influence against CKA when they agree), ``redundant_when``
    (``"low"`` or ``"high"`` for each criterion column), ``best_spans``, ``reductions`` (per
    criterion column what it compares: ``"every_token"`` for BI and the update norm, else the
    per-sample reduction), ``cka_estimator`` (``"debiased (unbiased HSIC)"`` by default,
    ``"biased"`` with ``cka_debiased=False``: the estimator of ``cka_in_out``, which is not
    ``cka_matrix``'s biased default), and the parameters (``angular_reduce``: the sorted reductions used;
    ``similarity_reduce``: the one used, a sorted list if blocks of different ranks used several).

    Parameters
    ----------
    acts : Activations or mapping
        Each block's output under ``name`` and its input under ``name:input``, as
        ``capture_activations(model, data, inputs=True, reduce=None)`` returns them.
    labels : array (N,), optional
        Class labels for ΔQ; default ``acts.labels`` when present. Without labels there is no ΔQ.
    blocks : list of str, optional
        The blocks, in depth order; default every paired name of ``acts`` in its order.
    n_max : int, optional
        Longest span of the angular distance; default min(4, L).
    feature_axis : int, optional
        The hidden-feature axis of every array; default −1 for 3-D arrays, 1 otherwise.
    mask : array, optional
        1 for real tokens, 0 for padding, shaped like the arrays without the feature axis
        ((N, T) for hidden states); applies to every block.
    angular_reduce : {"last_token", "first_token", "token_mean", "flatten"}, optional
        Which vector per sample the angular distance compares (see above); ``"first_token"`` is
        the first real token (BERT's [CLS]: position 0 of a right-padded batch).
    similarity_reduce : {"flatten", "last_token", "first_token", "token_mean"} or None, default "flatten"
        Which vector per sample GBS, CKA and modularity use (None: by rank, see above).
    gbs_k : int, optional
        Neighbours of the GBS sample graphs; None (default) the full cosine graph.
    cka_debiased : bool, default True
        The unbiased HSIC estimator (needs N ≥ 4) or the biased one. Unlike ``cka_matrix`` and
        ``layer_similarity(measure="cka")``, which default to the biased CKA: ``cka_in_out`` is
        ``cka_matrix(..., debiased=True)``'s value of the pair. ``attrs["cka_estimator"]`` says
        which (``"debiased (unbiased HSIC)"`` or ``"biased"``).
    modularity_k, modularity_batch_size, modularity_n_batches : int
        ``modularity_curve``'s ``k``, ``batch_size`` and ``n_batches`` (only with labels).
    device : str or torch.device, optional
        Where to compute.
    progress : bool, default True
        Show a tqdm bar over the blocks.

    Returns
    -------
    pandas.DataFrame
        Columns ``block``, ``depth``, ``shape_preserving``, [``modularity``, ``delta_q``],
        ``block_influence``, ``angular_distance_1`` … ``angular_distance_{n_max}``,
        ``relative_update_norm``, ``gbs_in_out``, ``cka_in_out``.

    Raises
    ------
    ValueError
        For unpaired names (an output without its ``:input`` or the reverse), ``n_max`` outside
        1 … L, an unknown reduction, samples that differ between arrays, NaN/Inf, a bad mask.

    References
    ----------
    Men et al. 2024 (ShortGPT, Block Influence); Gromov et al. 2024 (angular distance); Chen et
    al. 2021 (GBS); Kornblith et al. 2019 and Nguyen et al. 2021 (CKA); Lu et al., ECCV 2022
    (modularity).

    Examples
    --------
    Three blocks on 16 sequences of 6 tokens: the first keeps its input, the second negates it,
    the third negates it back — so the span of the last two changes nothing.

    >>> import numpy as np
    >>> x = np.random.default_rng(0).normal(size=(16, 6, 8))
    >>> acts = {"b0:input": x, "b0": x, "b1:input": x, "b1": -x, "b2:input": -x, "b2": x}
    >>> table = layer_redundancy(acts, progress=False)
    >>> table[["block", "block_influence", "angular_distance_1", "relative_update_norm"]].round(6)
      block  block_influence  angular_distance_1  relative_update_norm
    0    b0              0.0                 0.0                   0.0
    1    b1              2.0                 1.0                   2.0
    2    b2              2.0                 1.0                   2.0
    >>> table.attrs["best_spans"][2]["blocks"]
    ['b1', 'b2']
    """
    pairs = block_pairs(acts, blocks)
    n_max = check_n_max(n_max, len(pairs))
    check_reductions(angular_reduce, similarity_reduce)
    if labels is None:
        labels = getattr(acts, "labels", None)
    captured = (getattr(acts, "meta", None) or {}).get("reduce")
    token_vectors = "every_token"
    if captured not in (None, "None"):
        token_vectors = f"{captured} (at capture)"
        warn_user(f"layer_redundancy: acts were captured with reduce={captured!r}, so block_influence and "
                  "relative_update_norm compare one vector per sample, not every token as ShortGPT's Block "
                  "Influence does; capture with reduce=None (inputs=True) or call block_redundancy(model, data) "
                  "for the token-level numbers.")
    sizes = {name: len(a) for b, x, y in pairs for name, a in ((b + INPUT_SUFFIX, x), (b, y))}
    if len(set(sizes.values())) > 1:
        raise ValueError(f"All arrays must hold the same samples (same N); got {sizes}.")

    evidence = []
    for name, x, y in pairs:
        keeps = tuple(np.shape(x)) == tuple(np.shape(y))
        opts = {"feature_axis": feature_axis, "mask": mask, "device": device}
        reduce, similarity = (r or default for r, default in zip((angular_reduce, similarity_reduce),
                                                                  default_reductions(np.ndim(x))))
        evidence.append(BlockEvidence(
            name=name, shape_preserving=keeps,
            block_influence=block_influence(x, y, **opts) if keeps else math.nan,
            relative_update_norm=relative_update_norm(x, y, **opts) if keeps else math.nan,
            angular_reduce=reduce, angular_in=sample_vectors(x, reduce, name=f"{name}:input", **opts),
            angular_out=sample_vectors(y, reduce, name=name, **opts) if keeps else None,
            similarity_reduce=similarity,
            similarity_in=sample_vectors(x, similarity, name=f"{name}:input", **opts),
            similarity_out=sample_vectors(y, similarity, name=name, **opts)))
    return tabulate_blocks(evidence, labels, n_max=n_max, gbs_k=gbs_k, cka_debiased=cka_debiased,
                           modularity_k=modularity_k, modularity_batch_size=modularity_batch_size,
                           modularity_n_batches=modularity_n_batches, feature_axis=feature_axis,
                           masked=mask is not None, device=device, progress=progress, token_vectors=token_vectors)
