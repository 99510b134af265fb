"""Community detection on sample graphs (igraph's Leiden and Louvain, modularity objective)."""
from __future__ import annotations

import random

import igraph as ig
import numpy as np

from ..builders.convert import to_igraph

METHODS = ("leiden", "louvain")


def communities(A, method: str = "leiden", *, seed: int = 0, resolution: float = 1.0) -> np.ndarray:
    """Community label per node of the undirected weighted graph ``A``, maximising modularity.

    ``leiden`` runs igraph's Leiden with ``objective_function="modularity"`` (igraph's default objective is
    CPM, which optimises a different quality function) until convergence; ``louvain`` runs igraph's
    multilevel algorithm. Both are seeded through igraph's random generator, so the same inputs and
    ``seed`` give the same labels. Negative weights are rejected (neither method defines them).

    Parameters
    ----------
    A : array, tensor or scipy.sparse matrix (N, N)
        A symmetric adjacency matrix with non-negative weights (e.g. ``knn_graph(X,
        negative="clip")``).
    method : {"leiden", "louvain"}
        The algorithm.
    seed : int
        Seed of igraph's random generator for this call (igraph's generator is reset to Python's
        ``random`` module afterwards).
    resolution : float
        γ of the modularity being maximised (as in ``modularity``).

    Returns
    -------
    ndarray (N,) of int64
        The community of each node, numbered from 0.

    Raises
    ------
    ValueError
        For an unknown ``method``, or an ``A`` that is not square, not symmetric, or has negative
        weights.

    References
    ----------
    Traag, Waltman & van Eck, "From Louvain to Leiden: guaranteeing well-connected
    communities", Scientific Reports 9, 5233 (2019); Blondel et al., "Fast unfolding of
    communities in large networks", J. Stat. Mech. P10008 (2008); python-igraph's
    ``Graph.community_leiden`` and ``Graph.community_multilevel``.

    Examples
    --------
    Two triangles joined by one edge (2–3) split into the two triangles:

    >>> import numpy as np
    >>> from repgraph import communities
    >>> A = np.zeros((6, 6))
    >>> for i, j in [(0, 1), (1, 2), (0, 2), (2, 3), (3, 4), (4, 5), (3, 5)]:
    ...     A[i, j] = A[j, i] = 1.0
    >>> communities(A), communities(A, "louvain")
    (array([0, 0, 0, 1, 1, 1]), array([0, 0, 0, 1, 1, 1]))
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}.")
    G = to_igraph(A)
    if G.is_directed():
        raise ValueError("A is not symmetric; pass (A + A.T) / 2 or a knn_graph(..., symmetrize='mean').")
    weights = G.es["weight"] if G.ecount() else None
    if weights and min(weights) < 0:
        raise ValueError("A has negative weights; Leiden/Louvain need non-negative weights: build the "
                         "graph with knn_graph(..., negative='clip').")
    ig.set_random_number_generator(random.Random(seed))
    try:
        if method == "leiden":
            part = G.community_leiden(objective_function="modularity", weights=weights, resolution=resolution,
                                      n_iterations=-1)
        else:
            part = G.community_multilevel(weights=weights, resolution=resolution)
    finally:
        ig.set_random_number_generator(random)
    return np.asarray(part.membership, dtype=np.int64)
