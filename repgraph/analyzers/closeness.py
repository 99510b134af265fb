"""Closeness of filters in a filter-similarity graph (Duan et al., arXiv 2112.05493, §3.2)."""
from __future__ import annotations

import numpy as np
from scipy.sparse.csgraph import shortest_path

from .._arrays import as_square_matrix
from ..builders.filter_graph import CF_OFFSET, similarity_graph

KINDS = ("shortest_path", "cf_local")


def closeness_centrality(S, *, kind: str = "shortest_path", threshold: float | None = None) -> np.ndarray:
    """Closeness of every node of the filter graph (edges: finite ``S[i, j]``, i ≠ j, above
    ``threshold`` when given).

    - ``shortest_path``: closeness on path lengths with edge length ``1 − S[i, j]`` (Dijkstra),
      ``(r − 1)/Σ_j d(i, j)·(r − 1)/(C − 1)`` over the r nodes reachable from i (Wasserman–Faust
      scaling for disconnected graphs); 0 for an isolated node. Equals
      ``networkx.closeness_centrality(G, distance=...)``.
    - ``cf_local``: the Central-Filter reference score ``deg_i / Σ_{j∈N(i)} (1024 − S[i, j])``, which
      only looks at direct neighbours; 0 for an isolated node. A different measure: the degree
      cancels, the score is ``1/(1024 − m_i)`` with ``m_i`` the mean similarity of i to its
      neighbours, so it ranks the connected nodes by ``m_i`` alone (for similarities in (0, 1]
      every score lies in (1/1024, 1/1023], the scores differing by under 0.1 %) and the isolated
      ones last. Each node's lengths are summed in sorted order, so two
      nodes with the same multiset of neighbour similarities tie exactly.

    Parameters
    ----------
    S : array or tensor (C, C)
        Filter similarities (``filter_similarity``), symmetric up to rounding; NaN = no edge.
    kind : {"shortest_path", "cf_local"}
        Which closeness.
    threshold : float, optional
        Only pairs with ``S[i, j] > threshold`` are edges.

    Returns
    -------
    ndarray (C,) of float64 closeness values.

    Raises
    ------
    ValueError
        For an unknown ``kind``, a non-square or asymmetric ``S``, or (``shortest_path``) an edge
        with ``S > 1``, whose length would be negative.

    References
    ----------
    Duan et al., "Network Compression via Central Filter", arXiv 2112.05493, §3.2 and the authors'
    ``rank.py`` (``get_closeness_2``).

    Examples
    --------
    >>> import numpy as np
    >>> from repgraph import closeness_centrality
    >>> S = np.array([[1.0, 0.5, 0.2], [0.5, 1.0, np.nan], [0.2, np.nan, 1.0]])
    >>> closeness_centrality(S).round(4)    # node 0: 2 / (0.5 + 0.8); node 1: 2 / (0.5 + 1.3)
    array([1.5385, 1.1111, 0.9524])
    >>> 1 / closeness_centrality(S, kind="cf_local")    # the mean of 1024 − S over the neighbours
    array([1023.65, 1023.5 , 1023.8 ])
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}.")
    S = as_square_matrix(S, symmetric=True)
    edges = similarity_graph(S, threshold)
    c = len(S)
    if kind == "cf_local":
        degree = edges.sum(axis=1)
        lengths = np.sort(np.where(edges, CF_OFFSET - np.where(edges, S, 0.0), 0.0), axis=1).sum(axis=1)
        return np.where(degree > 0, degree / np.where(degree > 0, lengths, 1.0), 0.0)
    length = np.where(edges, 1.0 - np.where(edges, S, 0.0), 0.0)
    if (length < 0).any():
        raise ValueError("Some similarities exceed 1, so 1 − S is a negative length; closeness on "
                         "1 − S needs S <= 1 (Pearson similarities are).")
    # csgraph reads 0 as "no edge": give zero-length edges the smallest positive length instead;
    # it vanishes in every sum with a positive term and is treated as 0 below.
    tiny = np.finfo(np.float64).tiny
    dist = shortest_path(np.where(edges, np.maximum(length, tiny), 0.0), method="D", directed=False)
    reachable = np.isfinite(dist)
    r = reachable.sum(axis=1)  # includes the node itself
    total = np.where(reachable, dist, 0.0).sum(axis=1)
    total = np.where(total < 1e-300, 0.0, total)
    with np.errstate(divide="ignore", invalid="ignore"):
        closeness = np.where(total > 0, (r - 1) / total * (r - 1) / (c - 1), 0.0)
    return closeness
