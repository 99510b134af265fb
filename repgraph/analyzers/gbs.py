"""Graph-based similarity (GBS) of layer representations (Chen et al., 2021)."""
from __future__ import annotations

import warnings
from collections.abc import Mapping

import numpy as np
import pandas as pd
import scipy.sparse as sp
from tqdm import tqdm

from .._arrays import as_features
from .._results import described
from ..builders.knn import knn_graph
from ..builders.similarity import gram, normalized_rows


def sample_graph(X, k: int | None = 5, *, metric: str = "cosine", name: str = "X", device=None) -> sp.csr_matrix:
    """The GBS sample graph of one layer: ``knn_graph(X, k)`` (cosine, (A + Aᵀ)/2), or for
    ``k=None`` the full cosine similarity matrix with a zero diagonal."""
    if k is not None:
        return knn_graph(X, k, metric=metric, name=name, device=device)
    Xt = as_features(X, name=name, device=device)
    S = normalized_rows(Xt, metric)
    S = gram(S).double()
    S.fill_diagonal_(0.0)
    return sp.csr_matrix(S.cpu().numpy())


def _row_normalised(A: sp.csr_matrix, name: str) -> sp.csr_matrix:
    norms = np.sqrt(np.asarray(A.multiply(A).sum(axis=1)).ravel())
    zero = norms == 0
    if zero.any():
        warnings.warn(f"{name}: {int(zero.sum())} sample(s) have an all-zero adjacency row; each "
                      "contributes 0 to GBS.", stacklevel=3)
    inv = np.where(zero, 0.0, 1.0 / np.where(zero, 1.0, norms))
    return sp.csr_matrix(sp.diags(inv) @ A)


def gbs(X, Y, *, k: int | None = 5, metric: str = "cosine", device=None) -> float:
    """GBS(X, Y) = (1/N) Σ_i cos(A_X[i, :], A_Y[i, :]): the mean over samples of the cosine between
    that sample's rows of the two layers' sample graphs (``sample_graph``, k = 5 by default). A row
    that is all zero contributes 0, with a warning. Chen et al., 2021."""
    nx_, ny_ = len(X), len(Y)
    if nx_ != ny_:
        raise ValueError(f"X has {nx_} samples but Y has {ny_}; GBS compares graphs on the same samples.")
    A = _row_normalised(sample_graph(X, k, metric=metric, name="X", device=device), "X")
    B = _row_normalised(sample_graph(Y, k, metric=metric, name="Y", device=device), "Y")
    return float(A.multiply(B).sum() / nx_)


def gbs_matrix(acts, acts2=None, *, k: int | None = 5, metric: str = "cosine", device=None,
               progress: bool = True) -> pd.DataFrame:
    """GBS between every layer of ``acts`` and every layer of ``acts2`` (default: ``acts``).

    Each layer's sample graph is built once (O(L) builds) and its rows L2-normalised; then
    ``GBS_ab = (1/N)·⟨Â_a, Â_b⟩`` for all pairs from one sparse product of the stacked, flattened
    graphs. Returns a DataFrame (rows: ``acts`` layers, columns: ``acts2`` layers) with ``attrs``.
    """
    if not isinstance(acts, Mapping) or len(acts) == 0:
        raise TypeError("acts must be a non-empty Activations or mapping layer -> array (N, ...).")
    other = acts if acts2 is None else acts2
    if not isinstance(other, Mapping) or len(other) == 0:
        raise TypeError("acts2 must be a non-empty Activations or mapping layer -> array (N, ...).")
    layers = [(l, acts[l], f"layer {l!r}") for l in acts]
    if acts2 is not None:
        layers += [(l, acts2[l], f"layer {l!r} (acts2)") for l in acts2]
    sizes = {name: len(X) for _, X, name in layers}
    if len(set(sizes.values())) > 1:
        raise ValueError(f"All layers must hold the same samples (same N); got {sizes}.")
    n = next(iter(sizes.values()))
    flat = []
    for _, X, name in tqdm(layers, desc="GBS graphs", disable=not progress, leave=False):
        A = _row_normalised(sample_graph(X, k, metric=metric, name=name, device=device), name)
        flat.append(A.reshape(1, n * n))
    M = sp.vstack(flat).tocsr()
    G = (M @ M.T).toarray() / n
    na = len(acts)
    values = G if acts2 is None else G[:na, na:]
    out = pd.DataFrame(values, index=pd.Index(list(acts), name="layer"),
                       columns=pd.Index(list(other), name="layer2"))
    return described(out, "GBS", "Chen et al. 2021, graph-based similarity", k=k, metric=metric,
                     symmetrize="mean")


