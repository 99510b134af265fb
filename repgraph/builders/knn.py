"""k-nearest-neighbour sample graphs (Lu et al., ECCV 2022, §3; Chen et al. 2021 for GBS)."""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

from .._arrays import as_features, power_of_two_scaled, row_chunk
from .similarity import NORM_FLOOR, gram

SYMMETRIZE = ("mean", "max", "mutual", None)
NEGATIVE = ("keep", "clip", "raise")


TIE_RTOL = 1e-12  # float64 similarities this close (relative) are the same value: a tie
CANDIDATES = 8  # float32 candidates kept beyond k for the float64 re-scoring of near-tied rows
# Near-tie band 4·(sqrt(D) + 8)·eps(float32)·scale: the largest float32-vs-float64 cosine error
# measured on D = 64 … 65536 was 0.63·sqrt(D)·eps, so the band keeps a margin of 6 or more.
ERROR_FACTOR = 4.0


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


def _exact_rows(X, rows, floor, k):
    """Float64 similarities of ``rows`` to every column (divided by the norms clamped at ``floor``
    unless ``floor`` is None: linear); the top-k indices (ties: lowest index) and values."""
    Xr, Xc = X[rows].double(), X.double()
    S = Xr @ Xc.T
    if floor is not None:
        S = S / (torch.linalg.vector_norm(Xr, dim=1).clamp_min(floor)[:, None]
                 * torch.linalg.vector_norm(Xc, dim=1).clamp_min(floor)[None, :])
    S[torch.arange(len(rows), device=S.device), rows] = -torch.inf
    pick = topk_lowest_index(S, k)
    return pick, S.gather(1, pick)


def _rescore_band(X, rows, values, cand, kth, band, k, floor):
    """Top-k of ``rows`` when only the candidates within ``band`` of the k-th float32 value are in
    doubt: candidates above the band are kept, those in it are re-scored in float64 and the best
    fill the remaining places (ties within ``TIE_RTOL``: lowest index)."""
    safe = values > (kth + band)[:, None]
    doubt = (values - kth[:, None]).abs() <= band[:, None]
    n_safe = safe.sum(dim=1)
    width = int(doubt.sum(dim=1).max())
    positions = (n_safe[:, None] + torch.arange(width, device=X.device)).clamp_max(values.shape[1] - 1)
    valid = torch.arange(width, device=X.device)[None, :] < doubt.sum(dim=1, keepdim=True)
    cols = cand.gather(1, positions)
    Xr = X[rows].double()
    Xc = X[cols].double()
    exact = torch.einsum("rd,rtd->rt", Xr, Xc)
    if floor is not None:
        exact = exact / (torch.linalg.vector_norm(Xr, dim=1).clamp_min(floor)[:, None]
                         * torch.linalg.vector_norm(Xc, dim=2).clamp_min(floor))
    scale = exact.abs().amax(dim=1, keepdim=True).clamp_min(1.0)
    key = torch.where(valid, torch.round(exact / (scale * TIE_RTOL)), torch.full_like(exact, -torch.inf))
    # order: descending exact value; a stable sort of the index-sorted columns keeps ties lowest-index first
    by_index = cols.masked_fill(~valid, X.shape[0]).argsort(dim=1)
    order = by_index.gather(1, key.gather(1, by_index).argsort(dim=1, descending=True, stable=True))
    picked_cols, picked_vals = cols.gather(1, order), exact.gather(1, order)
    place = torch.arange(k, device=X.device)[None, :]
    from_safe = place < n_safe[:, None]  # places before n_safe keep their float32 candidate
    fill = (place - n_safe[:, None]).clamp(0, width - 1)
    out_idx = torch.where(from_safe, cand[:, :k], picked_cols.gather(1, fill))
    out_val = torch.where(from_safe, values[:, :k].double(), picked_vals.gather(1, fill))
    return out_idx, out_val


def knn_edges(X: torch.Tensor, k: int, metric: str = "cosine", *, name: str = "X"):
    """Directed kNN edges of the rows of ``X`` (N, D) under ``metric`` (self excluded): numpy
    arrays (rows, cols, weights). The neighbours are those of the float64 definition.

    Cosine is ``(X Xᵀ)_ij / (max(‖x_i‖,1e-8)·max(‖x_j‖,1e-8))``: the float32 Gram product of the
    raw rows, rescaled afterwards (no normalised copy of X), in row chunks bounded by a memory
    budget. Rows whose k-th and (k+1)-th float32 similarities lie within the float32 error band
    ``4·(sqrt(D) + 8)·eps·scale`` have the candidates inside that band re-scored in float64 (the
    whole row when the band reaches past the k+8 candidates), so float32 rounding never decides a
    neighbour or a tie.
    Values whose float32 products would overflow (e.g. ≈1e30) are first scaled down by a power of
    two, the norm floor with them (exact: cosines unchanged, linear weights scaled back in
    float64). NaN/Inf in X raises ``ValueError`` naming ``name``.
    """
    if metric not in ("cosine", "correlation", "linear"):
        raise ValueError(f"metric must be 'cosine', 'correlation' or 'linear', got {metric!r}.")
    X, exponent = power_of_two_scaled(X, name=name, shrink_only=True)
    if metric == "correlation":
        X = X - X.mean(dim=1, keepdim=True)
    n, d = X.shape
    norms = torch.linalg.vector_norm(X, dim=1)
    if metric == "linear":
        scale, band_scale = None, norms * norms.max()
    else:
        floor = NORM_FLOOR * 2.0 ** -exponent  # the 1e-8 floor of the unscaled rows
        scale = (1.0 / norms.double().clamp_min(floor)).clamp_max(torch.finfo(torch.float32).max).float()
        band_scale = torch.ones_like(norms)
    band = ERROR_FACTOR * (d ** 0.5 + 8.0) * torch.finfo(torch.float32).eps * band_scale
    first = min(k + 1, n - 1)  # the (k+1)-th value tells whether the k-th place is in doubt
    m = min(k + CANDIDATES, n - 1)
    rows, cols, vals = [], [], []
    step = row_chunk(n, 4 * n)  # float32 similarity rows
    for start in range(0, n, step):
        stop = min(n, start + step)
        S = gram(X) if stop - start == n else X[start:stop] @ X.T
        if scale is not None:
            S *= scale[start:stop, None]
            S *= scale[None, :]
        local = torch.arange(stop - start, device=S.device)
        S[local, local + start] = -torch.inf
        top_vals, top = torch.topk(S, first, dim=1)  # descending float32 values
        idx, w = top[:, :k].clone(), top_vals[:, :k].double()
        b = band[start:stop]
        kth = top_vals[:, k - 1]
        near = (kth - top_vals[:, first - 1] <= b).nonzero().flatten() if first > k else local[:0]
        if len(near):  # only rows in doubt pay for the wider candidate list
            cand_vals, cand = torch.topk(S[near], m, dim=1)
            whole = kth[near] - cand_vals[:, m - 1] <= b[near]
            for r in (~whole).nonzero().flatten().split(row_chunk(n, 8 * m * d)):  # float64 candidates
                if len(r):
                    g = near[r]
                    idx[g], w[g] = _rescore_band(X, g + start, cand_vals[r], cand[r], kth[g], b[g], k,
                                                 None if scale is None else floor)
            for g in near[whole].split(row_chunk(n, 8 * n)):  # float64 rows
                if len(g):
                    idx[g], w[g] = _exact_rows(X, g + start, None if scale is None else floor, k)
        rows.append(np.repeat(np.arange(start, stop), k))
        cols.append(idx.reshape(-1).cpu().numpy())
        vals.append(w.reshape(-1).cpu().numpy())
    weights = np.concatenate(vals)
    if metric == "linear" and exponent:
        weights *= 4.0 ** exponent  # undo the power-of-two scaling of X (exact in float64)
    return np.concatenate(rows), np.concatenate(cols), weights


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
    symmetrize : {"mean", "max", "mutual", None}
    negative : {"keep", "clip", "raise"}
    device : str or torch.device, optional
    name : str
        Name used in error messages.

    Returns
    -------
    scipy.sparse.csr_matrix (N, N) of float64 weights.

    Raises
    ------
    ValueError
        For N ≤ k, a bad option, NaN/Inf in ``X``, or negative weights with ``negative="raise"``.

    Notes
    -----
    Lu et al.'s code (github.com/yaolu-zjut/Dynamic-Graphs-Construction) ranks each row of the
    similarity matrix with its zeroed diagonal still in it, so a node with fewer than k positive
    similarities "picks itself" with weight 0 (no edge) instead of its next, negative-similarity
    neighbour. Here, as DESIGN §4.1 says, the k neighbours are always other nodes; the two differ
    only in that case (pre-ReLU layers, dead rows).

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
    rows, cols, vals = knn_edges(Xt, int(k), metric, name=name)
    if negative != "keep" and (vals < 0).any():
        if negative == "raise":
            raise ValueError(f"{name}: {(vals < 0).sum()} kNN edges have negative similarity "
                             "(a pre-ReLU layer?); pass negative='keep' or 'clip'.")
        vals = np.maximum(vals, 0.0)
    return symmetrized(rows, cols, vals, n, symmetrize)
