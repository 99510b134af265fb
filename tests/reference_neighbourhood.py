"""Reference ports of the kNN-neighbourhood measures, for tests/test_neighbourhood_measures.py.

ReSi (github.com/mklabunde/resi, repsim/measures/nearest_neighbor.py, MIT): ported loop for loop,
with its scikit-learn kNN (k + 1 neighbours, the first dropped), its scikit-learn cosine
distances and scipy's cosine. The platonic-representation code (github.com/minyoungg/platonic-rep,
metrics.py) has no licence: these are re-implementations of what its ``mutual_knn`` and
``cknna`` compute (dense N×N masks and matrices, torch ``topk``/``argsort`` kNN), written from
reading it, in float64 where its masks default to float32. Deliberately naive: dense matrices,
Python loops, nothing shared with repgraph.analyzers.neighbourhood.
"""
from __future__ import annotations

import numpy as np
import scipy.spatial.distance
import sklearn.metrics
import sklearn.neighbors
import torch


# --- ReSi ----------------------------------------------------------------------------------------
def resi_knn(R: np.ndarray, k: int) -> np.ndarray:
    """ReSi's top_k_neighbors: k + 1 cosine neighbours of every row among all rows (itself
    included), the first column dropped."""
    nn = sklearn.neighbors.NearestNeighbors(n_neighbors=k + 1, metric="cosine", n_jobs=1)
    nn.fit(R)
    _, idx = nn.kneighbors(R)
    return idx[:, 1:]


def resi_jaccard(R, Rp, k):
    a, b = resi_knn(R, k), resi_knn(Rp, k)
    values = []
    for row_a, row_b in zip(a, b):
        sa, sb = set(row_a), set(row_b)
        values.append(len(sa & sb) / len(sa | sb))
    return float(np.mean(values))


def resi_second_order_cosine(R, Rp, k):
    a, b = resi_knn(R, k), resi_knn(Rp, k)
    union = [list(set(ra) | set(rb)) for ra, rb in zip(a, b)]
    dist_a = sklearn.metrics.pairwise_distances(R, metric="cosine", n_jobs=1)
    dist_b = sklearn.metrics.pairwise_distances(Rp, metric="cosine", n_jobs=1)
    return float(np.mean([1 - scipy.spatial.distance.cosine(dist_a[i, u], dist_b[i, u])
                          for i, u in enumerate(union)]))


def _resi_rank_i(joint, row_a, row_b):
    if not joint:
        return 0
    normalisation = sum(1 / t for t in range(1, len(joint) + 1))
    score = 0
    for j in joint:
        ra = np.argwhere(row_a == j)[0][0] + 1
        rb = np.argwhere(row_b == j)[0][0] + 1
        score += 2 / ((1 + abs(ra - rb)) * (ra + rb))
    return score / normalisation


def resi_rank_similarity(R, Rp, k):
    a, b = resi_knn(R, k), resi_knn(Rp, k)
    scores = np.zeros(R.shape[0])
    for i in range(R.shape[0]):
        scores[i] = _resi_rank_i(list(set(a[i]) & set(b[i])), a[i], b[i])
    return float(np.mean(scores))


# --- platonic-rep ----------------------------------------------------------------------------------
def unit_rows(X) -> torch.Tensor:
    return torch.nn.functional.normalize(torch.as_tensor(np.asarray(X, dtype=np.float64)), dim=-1)


def platonic_knn(feats: torch.Tensor, k: int) -> torch.Tensor:
    """Its compute_nearest_neighbors: the inner products with the diagonal set to -1e8, sorted
    descending, the first k columns."""
    scores = (feats @ feats.T).fill_diagonal_(-1e8)
    return scores.argsort(dim=1, descending=True)[:, :k]


def platonic_mutual_knn(X, Y, k):
    fa, fb = unit_rows(X), unit_rows(Y)
    ka, kb = platonic_knn(fa, k), platonic_knn(fb, k)
    n = ka.shape[0]
    rows = torch.arange(n)[:, None]
    ma = torch.zeros(n, n, dtype=torch.float64)
    mb = torch.zeros(n, n, dtype=torch.float64)
    ma[rows, ka] = 1.0
    mb[rows, kb] = 1.0
    return ((ma * mb).sum(dim=1) / k).mean().item()


def hsic_unbiased_dense(K: torch.Tensor, L: torch.Tensor) -> torch.Tensor:
    """Song et al. (2012) eq. 5 on dense matrices, the diagonals zeroed, ``sum(K ∘ Lᵀ)`` as the
    first term (the masked matrices are not symmetric)."""
    m = K.shape[0]
    Kt = K.clone().fill_diagonal_(0)
    Lt = L.clone().fill_diagonal_(0)
    value = (Kt * Lt.T).sum() + Kt.sum() * Lt.sum() / ((m - 1) * (m - 2)) - 2 * (Kt @ Lt).sum() / (m - 2)
    return value / (m * (m - 3))


def platonic_cknna(X, Y, k, eps=1e-6):
    """CKNNA with unbiased HSIC (its default): kNN masks from torch.topk of the kernels with the
    diagonal at -inf; ``eps`` is the 1e-6 the reference adds to the denominator."""
    fa, fb = unit_rows(X), unit_rows(Y)
    n = fa.shape[0]
    K, L = fa @ fa.T, fb @ fb.T

    def mask(G):
        top = torch.topk(G.clone().fill_diagonal_(float("-inf")), k, dim=1).indices
        return torch.zeros(n, n, dtype=torch.float64).scatter_(1, top, 1.0)

    mk, ml = mask(K), mask(L)
    joint = mk * ml
    kl = hsic_unbiased_dense(joint * K, joint * L)
    kk = hsic_unbiased_dense(mk * K, mk * K)
    ll = hsic_unbiased_dense(ml * L, ml * L)
    return kl.item() / (torch.sqrt(kk * ll) + eps).item(), torch.sqrt(kk * ll).item()
