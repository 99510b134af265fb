"""The Central-Filter filter graph (Duan et al., arXiv 2112.05493, §3.1–3.2): the similarity of a
conv layer's filters and its threshold graph."""
from __future__ import annotations

import numpy as np
import torch

from .._arrays import as_feature_maps, as_square_matrix


def filter_similarity(fmaps, *, device=None, chunk: int = 16):
    """S[i, j] = mean over images of the Pearson correlation of maps i and j (flattened H·W).

    Per image, in this order: both maps constant (including both all-zero) → +1; exactly one map
    all-zero → −1; one map constant non-zero and the other varying → undefined (NaN, which
    propagates into the mean, so S[i, j] is NaN and never becomes an edge); otherwise Pearson.
    ``S[i, i] = 1``. One standardised (C × C) product per image, ``chunk`` images at a time, float64
    sums. Returns a numpy array (torch tensor for torch input). Duan et al., arXiv 2112.05493.
    """
    A = as_feature_maps(fmaps, device=device, min_channels=2, dtype=torch.float64)
    n, c = A.shape[:2]
    A = A.reshape(n, c, -1)
    total = torch.zeros(c, c, dtype=torch.float64, device=A.device)
    eye = torch.eye(c, dtype=torch.bool, device=A.device)
    for start in range(0, n, chunk):
        a = A[start:start + chunk].double()
        centred = a - a.mean(dim=2, keepdim=True)
        std = centred.norm(dim=2, keepdim=True)
        constant = (a.amax(dim=2) == a.amin(dim=2))
        zero = (a == 0).all(dim=2)
        z = centred / torch.where(constant[..., None], torch.ones_like(std), std)
        r = z @ z.transpose(1, 2)
        both_constant = constant[:, :, None] & constant[:, None, :]
        one_zero = zero[:, :, None] | zero[:, None, :]
        one_constant = constant[:, :, None] | constant[:, None, :]
        r = torch.where(one_constant, torch.full_like(r, torch.nan), r)
        r = torch.where(one_zero, torch.full_like(r, -1.0), r)
        r = torch.where(both_constant, torch.ones_like(r), r)
        total += r.sum(dim=0)
    S = total / n
    S = (S + S.T) / 2  # the batched product is not bit-symmetric; NaN stays NaN
    S[eye] = 1.0
    return S if isinstance(fmaps, torch.Tensor) else S.cpu().numpy()


def similarity_graph(S, threshold: float | None = None) -> np.ndarray:
    """Boolean adjacency of the filter graph: i ≠ j, ``S[i, j]`` finite and, if given, > ``threshold``."""
    S = as_square_matrix(S)
    with np.errstate(invalid="ignore"):
        edges = np.isfinite(S) & ~np.eye(len(S), dtype=bool)
        if threshold is not None:
            edges &= S > threshold
    if not (edges == edges.T).all():
        raise ValueError("S is not symmetric; a filter-similarity matrix must be.")
    return edges
