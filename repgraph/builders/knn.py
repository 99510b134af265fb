"""k-nearest-neighbour sample graphs (Lu et al., ECCV 2022, §3; Chen et al. 2021 for GBS)."""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

from .._arrays import as_features
from .similarity import normalized_rows, row_chunk

SYMMETRIZE = ("mean", "max", "mutual", None)
NEGATIVE = ("keep", "clip", "raise")


TIE_RTOL = 1e-6  # similarities this close (relative) count as tied: float32 rounding splits exact ties


def topk_lowest_index(S: torch.Tensor, k: int) -> torch.Tensor:
    """Column indices of the ``k`` largest entries of each row of ``S``; among tied values the
    lowest indices win. Values within ``TIE_RTOL·max(1, |v_k|)`` of the k-th largest value ``v_k``
    are tied, so a tie that float32 rounding splits still goes to the lowest index.
    Returned per row in ascending index order, shape (rows, k)."""
    kth = torch.topk(S, k, dim=1).values[:, -1:]
    tol = TIE_RTOL * kth.abs().clamp_min(1.0)
    greater = S > kth + tol
    tied = (S - kth).abs() <= tol
    need = k - greater.sum(dim=1, keepdim=True)
    take = greater | (tied & (torch.cumsum(tied, dim=1) <= need))
    return take.nonzero()[:, 1].view(-1, k)


def knn_edges(R: torch.Tensor, k: int):
    """Directed kNN edges of the rows of ``R`` under the similarity ``R Rᵀ`` (self excluded):
    numpy arrays (rows, cols, weights), computed in row chunks bounded by a memory budget."""
    n = R.shape[0]
    rows, cols, vals = [], [], []
    step = row_chunk(n, n)
    for start in range(0, n, step):
        stop = min(n, start + step)
        S = R[start:stop] @ R.T
        local = torch.arange(stop - start, device=S.device)
        S[local, local + start] = -torch.inf
        idx = topk_lowest_index(S, k)
        rows.append(np.repeat(np.arange(start, stop), k))
        cols.append(idx.reshape(-1).cpu().numpy())
        vals.append(S.gather(1, idx).reshape(-1).double().cpu().numpy())
    return np.concatenate(rows), np.concatenate(cols), np.concatenate(vals)


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
    """
    if symmetrize not in SYMMETRIZE:
        raise ValueError(f"symmetrize must be one of {SYMMETRIZE}, got {symmetrize!r}.")
    if negative not in NEGATIVE:
        raise ValueError(f"negative must be one of {NEGATIVE}, got {negative!r}.")
    if not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}.")
    Xt = as_features(X, name=name, device=device)
    n = Xt.shape[0]
    if n <= k:
        raise ValueError(f"{name} has N={n} samples but k={k}: a kNN graph needs N > k; "
                         "use more samples or a smaller k.")
    rows, cols, vals = knn_edges(normalized_rows(Xt, metric), int(k))
    if negative != "keep" and (vals < 0).any():
        if negative == "raise":
            raise ValueError(f"{name}: {(vals < 0).sum()} kNN edges have negative similarity "
                             "(a pre-ReLU layer?); pass negative='keep' or 'clip'.")
        vals = np.maximum(vals, 0.0)
    return symmetrized(rows, cols, vals, n, symmetrize)
