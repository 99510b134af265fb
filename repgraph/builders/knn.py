"""k-nearest-neighbour sample graphs (Lu et al., ECCV 2022, §3; Chen et al. 2021 for GBS)."""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

from .._arrays import as_features, non_finite_error, power_of_two_scaled, row_chunk
from .similarity import NORM_FLOOR, gram

SYMMETRIZE = ("mean", "max", "mutual", None)
NEGATIVE = ("keep", "clip", "raise")


TIE_RTOL = 1e-12  # float64 similarities this close (relative) are the same value: a tie
CANDIDATES = 8  # float32 candidates kept beyond k for the float64 re-scoring of near-tied rows
# Near-tie band 4·(sqrt(D) + 8)·eps(float32)·scale: the largest float32-vs-float64 cosine error
# measured on D = 64 … 65536 was 0.63·sqrt(D)·eps, so the band keeps a margin of 6 or more.
ERROR_FACTOR = 4.0
# Rows with a norm above 2^32 are checked for values whose float32 products would overflow (norms
# at most 2^32 mean every value is, and power_of_two_scaled would leave X as it is).
SCALE_LIMIT = 2.0 ** 32


def topk_lowest_index(S: torch.Tensor, k: int, rtol: float = TIE_RTOL) -> torch.Tensor:
    """Column indices of the ``k`` largest entries of each row of ``S``; among tied values (within
    ``rtol·max(1, |v_k|)`` of the k-th largest value ``v_k``) the lowest indices win.
    Returned per row in ascending index order, shape (rows, k)."""
    kth = torch.topk(S, k, dim=1).values[:, -1:]
    tol = rtol * kth.abs().clamp_min(1.0)
    greater = S > kth + tol
    tied = (S - kth).abs() <= tol
    need = k - greater.sum(dim=1, keepdim=True)
    take = greater | (tied & (torch.cumsum(tied, dim=1) <= need))
    return take.nonzero()[:, 1].view(-1, k)


def _exact_rows(X, batch, rows, floor, k):
    """Float64 similarities of the rows ``X[batch, rows]`` to every row of their own batch of ``X``
    (B, n, D) (divided by the norms clamped at ``floor`` unless ``floor`` is None: linear); the top-k
    indices (ties: lowest index) and values."""
    idx = torch.empty(len(rows), k, dtype=torch.long, device=X.device)
    val = torch.empty(len(rows), k, dtype=torch.float64, device=X.device)
    for b in batch.unique().tolist():  # rows whose whole batch is in doubt are rare
        sel = (batch == b).nonzero().flatten()
        Xc = X[b].double()
        Xr = Xc[rows[sel]]
        S = Xr @ Xc.T
        if floor is not None:
            S = S / (torch.linalg.vector_norm(Xr, dim=1).clamp_min(floor)[:, None]
                     * torch.linalg.vector_norm(Xc, dim=1).clamp_min(floor)[None, :])
        S[torch.arange(len(sel), device=S.device), rows[sel]] = -torch.inf
        pick = topk_lowest_index(S, k)
        idx[sel], val[sel] = pick, S.gather(1, pick)
    return idx, val


def _rescore_band(X, batch, rows, values, cand, kth, band, k, floor):
    """Top-k of the rows ``X[batch, rows]`` of ``X`` (B, n, D) when only the candidates within
    ``band`` of the k-th float32 value are in doubt: candidates above the band are kept, those in it
    are re-scored in float64 and the best fill the remaining places (ties within ``TIE_RTOL``:
    lowest index)."""
    safe = values > (kth + band)[:, None]
    doubt = (values - kth[:, None]).abs() <= band[:, None]
    n_safe = safe.sum(dim=1)
    width = int(doubt.sum(dim=1).max())
    positions = (n_safe[:, None] + torch.arange(width, device=X.device)).clamp_max(values.shape[1] - 1)
    valid = torch.arange(width, device=X.device)[None, :] < doubt.sum(dim=1, keepdim=True)
    cols = cand.gather(1, positions)
    Xr = X[batch, rows].double()
    Xc = X[batch[:, None], cols].double()
    exact = torch.einsum("rd,rtd->rt", Xr, Xc)
    if floor is not None:
        exact = exact / (torch.linalg.vector_norm(Xr, dim=1).clamp_min(floor)[:, None]
                         * torch.linalg.vector_norm(Xc, dim=2).clamp_min(floor))
    scale = exact.abs().amax(dim=1, keepdim=True).clamp_min(1.0)
    key = torch.where(valid, torch.round(exact / (scale * TIE_RTOL)), torch.full_like(exact, -torch.inf))
    # order: descending exact value; a stable sort of the index-sorted columns keeps ties lowest-index first
    by_index = cols.masked_fill(~valid, X.shape[1]).argsort(dim=1)
    order = by_index.gather(1, key.gather(1, by_index).argsort(dim=1, descending=True, stable=True))
    picked_cols, picked_vals = cols.gather(1, order), exact.gather(1, order)
    place = torch.arange(k, device=X.device)[None, :]
    from_safe = place < n_safe[:, None]  # places before n_safe keep their float32 candidate
    fill = (place - n_safe[:, None]).clamp(0, width - 1)
    out_idx = torch.where(from_safe, cand[:, :k], picked_cols.gather(1, fill))
    out_val = torch.where(from_safe, values[:, :k].double(), picked_vals.gather(1, fill))
    return out_idx, out_val


def _nearest(S, X, batch, rows, band, k, floor):
    """The k neighbours of the float64 definition for each row of ``S`` (r, n): the float32
    similarities of the rows ``X[batch, rows]`` to the n rows of their batch of ``X`` (B, n, D), self
    set to −inf. ``band`` (r,) is each row's float32 error band. Returns indices (r, k) within the
    batch and float64 weights (r, k). ``floor``: the cosine's norm floor, None for linear.

    Rows whose k-th and (k+1)-th float32 values lie within ``band`` have the candidates inside the
    band re-scored in float64 (``_rescore_band``), or the whole row (``_exact_rows``) when the band
    reaches past the k + ``CANDIDATES`` float32 candidates.
    """
    n, d = X.shape[1], X.shape[2]
    first = min(k + 1, n - 1)  # the (k+1)-th value tells whether the k-th place is in doubt
    top_vals, top = torch.topk(S, first, dim=1)  # descending float32 values
    idx, w = top[:, :k].clone(), top_vals[:, :k].double()
    if first == k:
        return idx, w
    kth = top_vals[:, k - 1]
    near = (kth - top_vals[:, first - 1] <= band).nonzero().flatten()
    if len(near):  # only rows in doubt pay for the wider candidate list
        m = min(k + CANDIDATES, n - 1)
        cand_vals, cand = torch.topk(S[near], m, dim=1)
        whole = kth[near] - cand_vals[:, m - 1] <= band[near]
        for r in (~whole).nonzero().flatten().split(row_chunk(len(near), 8 * m * d)):  # float64 candidates
            if len(r):
                g = near[r]
                idx[g], w[g] = _rescore_band(X, batch[g], rows[g], cand_vals[r], cand[r], kth[g], band[g],
                                             k, floor)
        for g in near[whole].split(row_chunk(len(near), 8 * n)):  # float64 rows
            if len(g):
                idx[g], w[g] = _exact_rows(X, batch[g], rows[g], floor, k)
    return idx, w


def _prepared(X, metric: str, name: str):
    """``(X, scale, floor, band, exponent)``: ``X`` (B, n, D) as the metric sees it — scaled by
    ``2^-exponent`` when its float32 products would overflow (exact: cosines unchanged, linear
    weights scaled back by the caller), row-centred for correlation —, the per-row scale of the
    cosine and its norm floor (the 1e-8 floor of the unscaled rows; both None for linear), and the
    per-row float32 error band ``ERROR_FACTOR·(sqrt(D) + 8)·eps(float32)·scale`` (scale 1 for
    cosine and correlation, ``‖x_i‖·max_j ‖x_j‖`` over the batch for linear). NaN/Inf raises
    ``ValueError`` naming the batch."""
    if metric not in ("cosine", "correlation", "linear"):
        raise ValueError(f"metric must be 'cosine', 'correlation' or 'linear', got {metric!r}.")
    n_batches, n, d = X.shape
    norms = torch.linalg.vector_norm(X, dim=2)
    exponent = 0
    if not bool(torch.isfinite(norms).all()) or float(norms.max()) > SCALE_LIMIT:  # rare: look closer
        finite = torch.isfinite(X).all(dim=2)
        if not bool(finite.all()):
            b = int((~finite).any(dim=1).nonzero()[0])
            where = name if n_batches == 1 else f"{name} (batch {b})"
            raise non_finite_error(where, int((~finite[b]).sum()), n)
        X, exponent = power_of_two_scaled(X, name=name, shrink_only=True)
        norms = torch.linalg.vector_norm(X, dim=2)
    if metric == "correlation":
        X = X - X.mean(dim=2, keepdim=True)
        norms = torch.linalg.vector_norm(X, dim=2)
    if metric == "linear":
        scale = floor = None
        band_scale = norms * norms.amax(dim=1, keepdim=True)
    else:
        floor = NORM_FLOOR * 2.0 ** -exponent
        scale = (1.0 / norms.double().clamp_min(floor)).clamp_max(torch.finfo(torch.float32).max).float()
        band_scale = torch.ones_like(norms)
    band = ERROR_FACTOR * (d ** 0.5 + 8.0) * torch.finfo(torch.float32).eps * band_scale
    return X, scale, floor, band, exponent


def _similarities(X, scale, b0: int, b1: int, r0: int, r1: int) -> torch.Tensor:
    """Float32 similarities (b1−b0, r1−r0, n) of the rows r0:r1 of the batches b0:b1 of ``X``
    (B, n, D) to all rows of their batch, self set to −inf: one batched product (one ``gram``, the
    block-triangular product on CPU, for a whole single batch)."""
    n = X.shape[1]
    if b1 - b0 == 1:
        S = (gram(X[b0]) if r1 - r0 == n else X[b0, r0:r1] @ X[b0].T)[None]
    else:
        S = torch.bmm(X[b0:b1, r0:r1], X[b0:b1].transpose(1, 2))
    if scale is not None:
        S *= scale[b0:b1, r0:r1, None]
        S *= scale[b0:b1, None, :]
    local = torch.arange(r1 - r0, device=S.device)
    S[:, local, local + r0] = -torch.inf
    return S


def batch_steps(n_batches: int, n: int) -> tuple[int, int]:
    """How ``knn_edges_batched`` cuts B = ``n_batches`` batches of ``n`` rows: ``(batches, rows)``
    per product, within the working-memory budget (float32 similarity rows; several batches at
    once only when a whole batch's n×n block fits)."""
    rows_step = row_chunk(n, 4 * n)
    return (row_chunk(n_batches, 4 * n * n) if rows_step == n else 1), rows_step


def knn_edges_batched(X: torch.Tensor, k: int, metric: str = "cosine", *, name: str = "X"):
    """Directed kNN edges (self excluded) of the rows of each of the B batches of ``X`` (B, n, D),
    all batches at once: one batched Gram product and one batched top-k per group of batches.

    For each batch: the neighbours of ``knn_edges`` on it, those of the float64 definition (ties →
    lowest index), and weights ``s_ij`` (cosine by default) equal to its weights up to the float32
    rounding of the product (the float64 re-scored ones to ~1e-16). The float32 product
    ``S = X Xᵀ`` (rescaled for cosine) is computed for as many batches at a time as fit the
    working-memory budget (``repgraph.get_config()``; a batch whose n×n block alone does not fit is
    split into row chunks); rows whose k-th and (k+1)-th float32 similarities lie within the
    float32 error band ``4·(sqrt(D) + 8)·eps·scale`` have the candidates inside that band re-scored
    in float64 (the whole row when the band reaches past the k+8 candidates), so float32 rounding
    never decides a neighbour or a tie. On a GPU that is one set of kernel launches per group of
    batches instead of one per batch. Values whose float32 products would overflow (e.g. ≈1e30)
    are first scaled down by a power of two, the norm floor with them (exact: cosines unchanged,
    linear weights scaled back in float64).

    Parameters
    ----------
    X : torch.Tensor
        (B, n, D) features, float32, on any device.
    k : int
        Neighbours per node, 1 <= k < n.
    metric : {"cosine", "correlation", "linear"}
        Cosine is ``x_i·x_j / (max(‖x_i‖,1e-8)·max(‖x_j‖,1e-8))``; correlation is the cosine of the
        row-centred rows; linear is ``x_i·x_j``.
    name : str
        Name of ``X`` in error messages.

    Returns
    -------
    list of (rows, cols, weights)
        One triple of numpy arrays per batch, n·k edges each: ``rows`` and ``cols`` (int64, within
        the batch), ``weights`` (float64; float32-exact where no near-tie was re-scored).

    Raises
    ------
    ValueError
        If ``X`` is not 3-D, ``k`` is not in [1, n), ``metric`` is unknown or ``X`` holds NaN/Inf
        (the message names the batch).

    References
    ----------
    Lu et al., "Understanding the Dynamics of DNNs Using Graph Modularity", ECCV 2022, §3.

    Examples
    --------
    >>> import torch
    >>> X = torch.tensor([[[1., 0.], [1., .1], [0., 1.]], [[0., 1.], [1., 0.], [.1, 1.]]])
    >>> [cols.tolist() for _, cols, _ in knn_edges_batched(X, 1)]
    [[1, 0, 1], [2, 2, 0]]
    """
    if X.ndim != 3:
        raise ValueError(f"{name} must be batches of features (B, n, D), got shape {tuple(X.shape)}.")
    n_batches, n, _ = X.shape
    if not 1 <= k < n:
        raise ValueError(f"k={k} but {name} has n={n} samples per batch: a kNN graph needs 1 <= k < n; "
                         "use a smaller k or larger batches.")
    X, scale, floor, band, exponent = _prepared(X, metric, name)
    batch_step, rows_step = batch_steps(n_batches, n)
    edges = []
    for b0 in range(0, n_batches, batch_step):
        b1 = min(n_batches, b0 + batch_step)
        idx, w = [], []
        for r0 in range(0, n, rows_step):
            r1 = min(n, r0 + rows_step)
            S = _similarities(X, scale, b0, b1, r0, r1).view(-1, n)
            batch = torch.arange(b0, b1, device=X.device).repeat_interleave(r1 - r0)
            rows = torch.arange(r0, r1, device=X.device).repeat(b1 - b0)
            i, v = _nearest(S, X, batch, rows, band[b0:b1, r0:r1].reshape(-1), k, floor)
            idx.append(i.view(b1 - b0, r1 - r0, k))
            w.append(v.view(b1 - b0, r1 - r0, k))
        idx, w = torch.cat(idx, dim=1).cpu().numpy(), torch.cat(w, dim=1).cpu().numpy()
        if metric == "linear" and exponent:
            w *= 4.0 ** exponent  # undo the power-of-two scaling of X (exact in float64)
        edges += [(np.repeat(np.arange(n), k), idx[j].reshape(-1), w[j].reshape(-1)) for j in range(b1 - b0)]
    return edges


def knn_edges(X: torch.Tensor, k: int, metric: str = "cosine", *, name: str = "X"):
    """Directed kNN edges of the rows of ``X`` (N, D) under ``metric`` (self excluded): numpy
    arrays (rows, cols, weights). The neighbours are those of the float64 definition.

    Cosine is ``(X Xᵀ)_ij / (max(‖x_i‖,1e-8)·max(‖x_j‖,1e-8))``: the float32 Gram product of the
    raw rows (on CPU the block-triangular ``gram``), rescaled afterwards (no normalised copy of X),
    in row chunks bounded by a memory budget. Rows whose k-th and (k+1)-th float32 similarities lie
    within the float32 error band ``4·(sqrt(D) + 8)·eps·scale`` have the candidates inside that band
    re-scored in float64 (the whole row when the band reaches past the k+8 candidates), so float32
    rounding never decides a neighbour or a tie. Values whose float32 products would overflow
    (e.g. ≈1e30) are first scaled down by a power of two (exact). ``knn_edges_batched`` with one
    batch. NaN/Inf in X raises ``ValueError`` naming ``name``.
    """
    return knn_edges_batched(X[None], k, metric, name=name)[0]


def symmetrized(rows, cols, vals, n: int, symmetrize) -> sp.csr_matrix:
    """Sparse adjacency from directed edges (i → j, weight s_ij = s_ji).

    ``mean``: ``(A + Aᵀ)/2`` (mutual pair keeps s_ij, a one-sided edge gets s_ij/2);
    ``max``: union of the edges, weight s_ij; ``mutual``: only pairs chosen both ways; None: directed A.
    """
    D = sp.csr_matrix((vals, (rows, cols)), shape=(n, n))
    if symmetrize is None:
        out = D
    elif symmetrize == "mean":
        out = (D + D.T) * 0.5
    else:
        B = sp.csr_matrix((np.ones_like(vals), (rows, cols)), shape=(n, n))
        both = B.multiply(B.T)
        mutual_weights = sp.csr_matrix(D.multiply(both))
        out = mutual_weights if symmetrize == "mutual" else D + D.T - mutual_weights
    out = sp.csr_matrix(out)
    out.eliminate_zeros()
    out.sort_indices()
    return out


def knn_graph(X, k: int = 3, *, metric: str = "cosine", symmetrize="mean", negative: str = "keep",
              device=None, name: str = "X") -> sp.csr_matrix:
    """kNN sample graph of the rows of ``X`` (N, ...; flattened to (N, D)).

    Each node keeps its ``k`` most similar *other* nodes (ties → lowest index) with directed weight
    ``s_ij`` (cosine by default: rows divided by ``max(‖x‖, 1e-8)``); ``symmetrize`` then gives
    ``A = (A + Aᵀ)/2`` by default (see ``symmetrized``). ``negative``: ``keep`` negative weights (as
    networkx does), ``clip`` them to 0 (drop the edge) or ``raise``. Returns a float64 CSR matrix;
    zero-weight edges are not stored.

    Parameters
    ----------
    X : array or tensor (N, ...)
        Features, flattened to (N, D).
    k : int
        Neighbours per node (Lu et al.: 3).
    metric : {"cosine", "correlation", "linear"}
        Sample similarity: cosine; cosine of the row-centred rows; or the plain dot product.
    symmetrize : {"mean", "max", "mutual", None}
        ``"mean"``: ``(A + Aᵀ)/2`` (a mutual pair keeps ``s_ij``, a one-sided edge gets
        ``s_ij/2``); ``"max"``: the union of the edges, weight ``s_ij``; ``"mutual"``: only pairs
        chosen both ways; None: the directed graph.
    negative : {"keep", "clip", "raise"}
        What to do with negative weights (e.g. pre-ReLU layers).
    device : str or torch.device, optional
        Where the similarities and top-k run (default: where ``X`` is; CPU for numpy). Rows are
        processed in chunks within the working-memory budget (``repgraph.set_config``).
    name : str
        Name used in error messages.

    Returns
    -------
    scipy.sparse.csr_matrix (N, N) of float64 weights.

    Raises
    ------
    ValueError
        For N ≤ k, a bad option, NaN/Inf in ``X``, or negative weights with ``negative="raise"``.
    TypeError
        If ``X`` is neither an array of numbers nor a tensor.

    Notes
    -----
    Lu et al.'s code (github.com/yaolu-zjut/Dynamic-Graphs-Construction) ranks each row of the
    similarity matrix with its zeroed diagonal still in it, so a node with fewer than k positive
    similarities "picks itself" with weight 0 (no edge) instead of its next, negative-similarity
    neighbour. Here (the README's *Sample graph*) the k neighbours are always other nodes; the two differ
    only in that case (pre-ReLU layers, dead rows).

    References
    ----------
    Lu et al., "Understanding the Dynamics of DNNs Using Graph Modularity", ECCV 2022, §3;
    github.com/yaolu-zjut/Dynamic-Graphs-Construction.

    Examples
    --------
    >>> import numpy as np
    >>> from repgraph import knn_graph
    >>> X = np.array([[1.0, 0.0], [1.0, 0.1], [0.0, 1.0]])
    >>> knn_graph(X, k=1).toarray().round(3)    # 0 and 1 choose each other; 2 chooses 1 (one-sided: s/2)
    array([[0.   , 0.995, 0.   ],
           [0.995, 0.   , 0.05 ],
           [0.   , 0.05 , 0.   ]])
    """
    if symmetrize not in SYMMETRIZE:
        raise ValueError(f"symmetrize must be one of {SYMMETRIZE}, got {symmetrize!r}.")
    if negative not in NEGATIVE:
        raise ValueError(f"negative must be one of {NEGATIVE}, got {negative!r}.")
    if not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}.")
    Xt = as_features(X, name=name, device=device, check_finite=False)
    n = Xt.shape[0]
    if n <= k:
        raise ValueError(f"{name} has N={n} samples but k={k}: a kNN graph needs N > k; "
                         "use more samples or a smaller k.")
    rows, cols, vals = negative_edges(*knn_edges(Xt, int(k), metric, name=name), negative, name=name)
    return symmetrized(rows, cols, vals, n, symmetrize)


def negative_edges(rows, cols, vals, negative: str, *, name: str = "X"):
    """The edges ``(rows, cols, vals)`` with their negative weights kept (``negative="keep"``),
    dropped (``"clip"``: a weight clipped to 0 is no edge) or refused (``"raise"``: a
    ``ValueError`` naming ``name`` and the count)."""
    if negative not in NEGATIVE:
        raise ValueError(f"negative must be one of {NEGATIVE}, got {negative!r}.")
    below = vals < 0
    if negative == "keep" or not below.any():
        return rows, cols, vals
    if negative == "raise":
        raise ValueError(f"{name}: {int(below.sum())} of {len(vals)} kNN edges have negative similarity "
                         "(a pre-ReLU layer?); pass negative='keep' or 'clip'.")
    return rows[~below], cols[~below], vals[~below]
