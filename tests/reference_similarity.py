"""Test oracles for the layer-similarity references, re-written with numpy from reading them:

- GBS (github.com/implicitDeclaration/similarity ``metric/GBS.py``, commit 20f9b9e8): per layer the
  FULL cosine graph (rows divided by max(‖x‖, 1e-8), product in the features' float dtype, diagonal
  0, negative weights kept; its ``--topk`` only feeds the motif code), then ``LSim`` = the mean over
  nodes of the cosine between the two graphs' rows, a zero row giving 0.
- Lu et al.'s kNN graph (github.com/yaolu-zjut/Dynamic-Graphs-Construction
  ``utils/calculate_similarity.py``, commit 060e0626): ``heapq.nlargest(k)`` over each row of the
  zero-diagonal cosine matrix — the diagonal is a candidate, so a node with fewer than k positive
  similarities picks itself with weight 0 — then ``(A + Aᵀ)/2``.
- Minibatch CKA (Nguyen et al., google-research ``efficient_CKA.py``, commit 30adf0ec): per batch
  the unbiased-centred Grams of every layer (Székely–Rizzo), ``acc += G Gᵀ`` of their flattened
  stack with no per-batch 1/(n(n−3)), normalised once at the end.
"""
import heapq

import numpy as np


def cosine_graph(X, eps=1e-8):
    X = np.asarray(X).reshape(len(X), -1)
    if X.dtype not in (np.float32, np.float64):
        X = X.astype(np.float32)
    Xn = X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), X.dtype.type(eps))
    S = (Xn @ Xn.T).astype(np.float64)
    np.fill_diagonal(S, 0.0)
    return S


def lsim(A, B):
    total = 0.0
    for a, b in zip(A, B):
        na, nb = np.linalg.norm(a), np.linalg.norm(b)
        total += (a @ b) / (na * nb) if na > 0 and nb > 0 else 0.0
    return total / len(A)


def gbs(X, Y):
    return lsim(cosine_graph(X), cosine_graph(Y))


def lu_knn_graph(X, k):
    S = cosine_graph(np.asarray(X, dtype=np.float32))
    A = np.zeros_like(S)
    for i in range(len(S)):
        for j in heapq.nlargest(k, range(len(S)), S[i].take):
            A[i, j] = S[i, j]
    return (A + A.T) / 2


def unbiased_centred_gram(x):
    g = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    g = g @ g.T
    n = len(g)
    np.fill_diagonal(g, 0.0)
    means = g.sum(axis=0) / (n - 2)
    means -= means.sum() / (2 * (n - 1))
    g = g - means[:, None] - means[None, :]
    np.fill_diagonal(g, 0.0)
    return g


def nguyen_minibatch_cka(batches):
    """batches: a list of batches, each a list of one (n_b, ...) array per layer."""
    acc = 0.0
    for layers in batches:
        G = np.stack([unbiased_centred_gram(x).ravel() for x in layers])
        acc = acc + G @ G.T
    d = np.sqrt(np.diag(acc))
    return acc / d[:, None] / d[None, :]
