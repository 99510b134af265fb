"""Modularity of the class partition of sample graphs, layer by layer (Lu et al., ECCV 2022)."""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
import scipy.sparse as sp
from tqdm import tqdm

from .._arrays import as_features, as_label_codes
from .._results import described
from ..builders.convert import as_sparse, is_symmetric
from ..builders.knn import knn_edges


def _adjacency(A) -> sp.csr_matrix:
    M = as_sparse(A)
    if not np.isfinite(M.data).all():
        raise ValueError("A contains NaN or Inf weights; check the similarity it was built from.")
    if not is_symmetric(M, atol=1e-12 * max(1.0, float(abs(M).max()) if M.nnz else 1.0)):
        raise ValueError("A is not symmetric; modularity here is for undirected graphs: pass "
                         "(A + A.T) / 2 or build it with knn_graph(..., symmetrize='mean').")
    return M


def modularity(A, labels, *, resolution: float = 1.0) -> float:
    """Weighted Newman modularity of the partition given by ``labels`` on the undirected graph ``A``.

    ``Q = tr(YᵀAY)/(2m) − γ‖Yᵀk‖²/(2m)²`` with Y the one-hot labels, ``k = A·1`` the weighted
    degrees, ``2m = Σk`` and γ = ``resolution``. A diagonal entry ``A[i,i]`` is a self-loop of that
    weight, counted twice in the degree and once per edge, as networkx does, so the result equals
    ``networkx.community.modularity``. Negative weights are kept. Computed in float64.
    """
    M = _adjacency(A)
    codes = as_label_codes(labels, M.shape[0])
    M = (M + sp.diags(M.diagonal())).tocoo()  # networkx convention: a self-loop adds 2w to the degree
    return edge_modularity(M.row, M.col, M.data, codes, resolution=resolution)


def edge_modularity(rows, cols, weights, codes, *, resolution: float = 1.0) -> float:
    """Modularity (as ``modularity``) of the partition ``codes`` (integers 0…C−1) on the graph
    ``(E + Eᵀ)/2``, where ``E`` has the entries ``weights`` at (``rows``, ``cols``), duplicates summed.

    Degrees are ``k = (E·1 + Eᵀ·1)/2``, ``2m = ΣE``, and ``tr(YᵀAY) = Σ_{codes[i]=codes[j]} E_ij``, so
    a directed kNN edge list gives the modularity of its ``(A + Aᵀ)/2`` graph without building it.
    """
    codes_r, codes_c = codes[rows], codes[cols]
    two_m = float(np.sum(weights))
    if two_m == 0:
        raise ValueError("The graph's total edge weight is 0; modularity is undefined. "
                         "Check that the sample graph has edges (and positive weights).")
    intra = float(np.sum(weights[codes_r == codes_c]))
    n_codes = int(codes.max()) + 1
    community_degree = (np.bincount(codes_r, weights=weights, minlength=n_codes)
                        + np.bincount(codes_c, weights=weights, minlength=n_codes)) / 2
    return intra / two_m - resolution * float(np.dot(community_degree, community_degree)) / two_m**2


def _batch_bounds(n: int, batch_size: int, n_batches: int | None) -> list[tuple[int, int]]:
    if n < batch_size:
        return [(0, n)]
    bounds = [(s, s + batch_size) for s in range(0, n - batch_size + 1, batch_size)]
    return bounds if n_batches is None else bounds[:n_batches]


def modularity_curve(acts, labels=None, *, k: int = 3, batch_size: int = 500,
                     n_batches: int | None = None, device=None, progress: bool = True) -> pd.DataFrame:
    """Layer-wise modularity of the ground-truth class partition (Lu et al., ECCV 2022, §3).

    For every layer and every consecutive batch of ``batch_size`` samples (the reference protocol:
    the first 5 batches of 500 unshuffled test samples, ``n_batches=5``; ``None`` uses every full
    batch, or one batch of all N when N < ``batch_size``): flatten to (N, D), cosine kNN graph with
    ``k`` neighbours, ``A = (A + Aᵀ)/2``, then ``modularity(A, labels)``. ``modularity`` is the mean
    over batches, ``std`` their population standard deviation.

    ``acts``: ``Activations`` or a mapping layer -> array; ``labels`` default to ``acts.labels``.
    Returns a DataFrame (layer, depth, modularity, std, n_samples); ``attrs`` record the parameters.
    """
    if not isinstance(acts, Mapping) or len(acts) == 0:
        raise TypeError("acts must be a non-empty Activations or mapping layer -> array (N, ...).")
    if labels is None:
        labels = getattr(acts, "labels", None)
        if labels is None:
            raise ValueError("No labels: pass labels=... or capture activations from data with labels.")
    if not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}.")
    if batch_size < 2:
        raise ValueError(f"batch_size must be >= 2, got {batch_size}.")
    rows = []
    layers = list(acts)
    for depth, layer in enumerate(tqdm(layers, desc="modularity", disable=not progress, leave=False)):
        X = acts[layer]
        codes = as_label_codes(labels, X.shape[0], name=f"labels (for layer {layer!r})")
        values = []
        bounds = _batch_bounds(X.shape[0], batch_size, n_batches)
        for start, stop in bounds:
            name = f"layer {layer!r} (samples {start}:{stop})"
            Xb = as_features(X[start:stop], name=name, device=device, check_finite=False)
            n = Xb.shape[0]
            if n <= k:
                raise ValueError(f"{name} has N={n} samples but k={k}: a kNN graph needs N > k.")
            r, c, w = knn_edges(Xb, k, "cosine", name=name)
            values.append(edge_modularity(r, c, w, codes[start:stop]))  # of (A + Aᵀ)/2
        rows.append({"layer": layer, "depth": depth, "modularity": float(np.mean(values)),
                     "std": float(np.std(values)), "n_samples": sum(b - a for a, b in bounds)})
    curve = pd.DataFrame(rows, columns=["layer", "depth", "modularity", "std", "n_samples"])
    return described(curve, "modularity of the label partition on a cosine kNN graph", "Lu et al., ECCV 2022",
                     k=k, batch_size=batch_size, n_batches=n_batches, symmetrize="mean", metric="cosine")
