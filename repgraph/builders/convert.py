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
    """The graph of the adjacency matrix ``A`` as a networkx ``Graph`` (a ``DiGraph`` when ``A`` is
    not symmetric): node i for row i, an edge (i, j) of ``weight`` ``A[i, j]`` for every non-zero
    entry (a diagonal entry is a self-loop) and, when ``labels`` are given, node attribute
    ``label``.

    Parameters
    ----------
    A : array, tensor or scipy.sparse matrix (N, N)
        A weighted adjacency matrix (e.g. ``knn_graph``'s), read as float64; symmetric up to
        1e-12 (absolute) gives an undirected graph.
    labels : sequence of length N, optional
        One label per node (e.g. the samples' classes), stored as plain Python values.

    Returns
    -------
    networkx.Graph or networkx.DiGraph

    Raises
    ------
    ValueError
        If ``A`` is not square, or ``labels`` has another length than N.

    References
    ----------
    ``networkx.from_scipy_sparse_array`` (networkx documentation), which this wraps.

    Examples
    --------
    >>> import numpy as np
    >>> from repgraph import to_networkx
    >>> A = np.array([[0.0, 1.0, 0.5], [1.0, 0.0, 0.0], [0.5, 0.0, 0.0]])
    >>> G = to_networkx(A, labels=["a", "b", "a"])
    >>> type(G).__name__, sorted(G.edges(data="weight")), G.nodes[2]["label"]
    ('Graph', [(0, 1, 1.0), (0, 2, 0.5)], 'a')
    >>> type(to_networkx(np.array([[0.0, 1.0], [0.0, 0.0]]))).__name__
    'DiGraph'
    """
    A = as_sparse(A)
    _check_labels(labels, A.shape[0])
    G = nx.from_scipy_sparse_array(A, create_using=nx.Graph if is_symmetric(A) else nx.DiGraph)
    if labels is not None:
        nx.set_node_attributes(G, {i: lab for i, lab in enumerate(np.asarray(labels).tolist())}, "label")
    return G


def to_igraph(A, labels=None) -> ig.Graph:
    """The graph of the adjacency matrix ``A`` as an igraph ``Graph`` (directed when ``A`` is not
    symmetric): vertex i for row i, one edge (i, j) of ``weight`` ``A[i, j]`` per non-zero entry
    (for a symmetric ``A`` per entry of its upper triangle, diagonal = self-loops) and, when
    ``labels`` are given, vertex attribute ``label``.

    Parameters
    ----------
    A : array, tensor or scipy.sparse matrix (N, N)
        A weighted adjacency matrix, read as float64; symmetric up to 1e-12 (absolute) gives an
        undirected graph.
    labels : sequence of length N, optional
        One label per vertex, stored as plain Python values.

    Returns
    -------
    igraph.Graph

    Raises
    ------
    ValueError
        If ``A`` is not square, or ``labels`` has another length than N.

    References
    ----------
    python-igraph's ``Graph`` with the ``weight`` edge attribute that its community methods
    (``community_leiden``, ``community_multilevel``) take as ``weights`` (igraph documentation).

    Examples
    --------
    >>> import numpy as np
    >>> from repgraph import to_igraph
    >>> A = np.array([[0.0, 1.0, 0.5], [1.0, 0.0, 0.0], [0.5, 0.0, 0.0]])
    >>> G = to_igraph(A, labels=["a", "b", "a"])
    >>> G.is_directed(), G.get_edgelist(), G.es["weight"], G.vs["label"]
    (False, [(0, 1), (0, 2)], [1.0, 0.5], ['a', 'b', 'a'])
    """
    A = as_sparse(A)
    _check_labels(labels, A.shape[0])
    directed = not is_symmetric(A)
    coo = (A if directed else sp.triu(A)).tocoo()
    G = ig.Graph(n=A.shape[0], edges=list(zip(coo.row.tolist(), coo.col.tolist())), directed=directed)
    G.es["weight"] = coo.data.tolist()
    if labels is not None:
        G.vs["label"] = np.asarray(labels).tolist()
    return G
