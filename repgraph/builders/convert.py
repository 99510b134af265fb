"""Conversions of adjacency matrices to networkx and igraph graphs."""
from __future__ import annotations

import igraph as ig
import networkx as nx
import numpy as np
import scipy.sparse as sp


def as_sparse(A) -> sp.csr_matrix:
    """``A`` (dense numpy/torch or scipy sparse) as a square float64 CSR matrix."""
    if sp.issparse(A):
        A = sp.csr_matrix(A, dtype=np.float64)
    else:
        if hasattr(A, "detach"):
            A = A.detach().cpu().numpy()
        A = sp.csr_matrix(np.asarray(A, dtype=np.float64))
    if A.ndim != 2 or A.shape[0] != A.shape[1]:
        raise ValueError(f"An adjacency matrix must be square, got shape {A.shape}.")
    return A


def is_symmetric(A: sp.csr_matrix, atol: float = 1e-12) -> bool:
    diff = abs(A - A.T)
    return diff.nnz == 0 or float(diff.max()) <= atol


def _check_labels(labels, n):
    if labels is not None and len(labels) != n:
        raise ValueError(f"labels has length {len(labels)} but the graph has {n} nodes.")


def to_networkx(A, labels=None) -> nx.Graph:
    """networkx Graph (DiGraph when ``A`` is not symmetric) with edge attribute ``weight`` and,
    when ``labels`` are given, node attribute ``label``."""
    A = as_sparse(A)
    _check_labels(labels, A.shape[0])
    G = nx.from_scipy_sparse_array(A, create_using=nx.Graph if is_symmetric(A) else nx.DiGraph)
    if labels is not None:
        nx.set_node_attributes(G, {i: lab for i, lab in enumerate(np.asarray(labels).tolist())}, "label")
    return G


def to_igraph(A, labels=None) -> ig.Graph:
    """igraph Graph (directed when ``A`` is not symmetric) with edge attribute ``weight`` and,
    when ``labels`` are given, vertex attribute ``label``."""
    A = as_sparse(A)
    _check_labels(labels, A.shape[0])
    directed = not is_symmetric(A)
    coo = (A if directed else sp.triu(A)).tocoo()
    G = ig.Graph(n=A.shape[0], edges=list(zip(coo.row.tolist(), coo.col.tolist())), directed=directed)
    G.es["weight"] = coo.data.tolist()
    if labels is not None:
        G.vs["label"] = np.asarray(labels).tolist()
    return G
