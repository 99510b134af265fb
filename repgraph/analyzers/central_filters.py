"""Central-Filter selection and next-layer compensation (Duan et al., arXiv 2112.05493, §3.2–3.3)."""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import torch
from scipy.sparse.csgraph import connected_components
from torch import nn

from .._arrays import as_square_matrix, prune_count
from ..builders.filter_graph import similarity_graph
from .closeness import closeness_centrality


@dataclass
class CentralFilters:
    """Result of ``central_filters``: ``kept`` and ``pruned`` filter indices (sorted), ``delegates``
    (central filter → the pruned filters it represents), the graph ``threshold`` and the ``scores``."""

    kept: list
    pruned: list
    delegates: dict
    threshold: float
    scores: np.ndarray = field(repr=False)
    requested: int = 0
    similarity: np.ndarray = field(default=None, repr=False)

    def plot(self, ax=None, **kwargs):
        """The filter graph with central filters and delegates (``plotting.plot_filter_graph``).
        A convenience, as pandas' ``.plot``: plotting is imported only when called."""
        from .. import plotting

        return plotting.plot_filter_graph(self.similarity, self, ax=ax, **kwargs)

    def _repr_html_(self):
        rows = "".join(f"<tr><td>{c}</td><td>{', '.join(map(str, d))}</td></tr>" for c, d in self.delegates.items())
        return (f"<p>CentralFilters: {len(self.kept)} kept, {len(self.pruned)} pruned "
                f"(requested {self.requested}), threshold {self.threshold:.4g}</p>"
                f"<table><tr><th>central filter</th><th>delegates (pruned)</th></tr>{rows}</table>")


def _deletable(S, t) -> int:
    """#nodes with an edge − #components among them = C − #components of the graph S > t."""
    n_comp, _ = connected_components(similarity_graph(S, t), directed=False)
    return len(S) - n_comp


def central_filters(S, ratio: float, *, kind: str = "cf_local") -> CentralFilters:
    """Choose central filters and the redundant filters they stand for (Duan et al.).

    1. Threshold graph: edge (i, j) when ``S[i, j] > t``; ``t`` is found by bisection over the
       distinct similarity values as the largest threshold whose graph has
       ``#nodes with an edge − #components among them ≥ ceil(C·ratio)`` (equality where the step
       function allows it; each component keeps one filter, the others are deletable).
    2. Scores: ``closeness_centrality(S, kind=kind, threshold=t)`` (``cf_local``: the reference's).
    3. Visit nodes by descending score (ties: lower index); a node with score > 0, undecided, whose
       component has no representative yet becomes a central filter, and each undecided neighbour
       (ascending index) is pruned and recorded as its delegate; stop after ``ceil(C·ratio)`` prunes.
    When the graph cannot supply that many prunes (NaN similarities, neighbours two hops from
    every central filter), fewer are pruned and a warning says how many.
    """
    S = as_square_matrix(S)
    similarity_graph(S)  # validates symmetry
    c = len(S)
    target = prune_count(c, ratio, allow_zero=False)
    off = S[~np.eye(c, dtype=bool)]
    values = np.unique(off[np.isfinite(off)])
    if values.size == 0:
        raise ValueError("S has no finite off-diagonal similarity: every pair is undefined.")
    candidates = np.concatenate([[values[0] - 1.0], values])  # edges S > t, t ascending
    lo, hi = 0, len(candidates) - 1  # deletable(candidates[i]) is non-increasing in i
    if _deletable(S, candidates[0]) < target:
        hi = 0
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if _deletable(S, candidates[mid]) >= target:
            lo = mid
        else:
            hi = mid - 1
    t = float(candidates[lo])
    edges = similarity_graph(S, t)
    scores = closeness_centrality(S, kind=kind, threshold=t)
    _, component = connected_components(edges, directed=False)
    state = np.zeros(c, dtype=np.int8)  # 0 undecided, 1 central, 2 pruned
    represented, delegates, n_pruned = set(), {}, 0
    for node in np.argsort(-scores, kind="stable"):
        if n_pruned >= target:
            break
        if scores[node] <= 0 or state[node] != 0 or component[node] in represented:
            continue
        state[node] = 1
        represented.add(component[node])
        delegates[int(node)] = []
        for nb in np.flatnonzero(edges[node]):
            if state[nb] == 0 and n_pruned < target:
                state[nb] = 2
                delegates[int(node)].append(int(nb))
                n_pruned += 1
    if n_pruned < target:
        warnings.warn(f"central_filters: the filter graph allows only {n_pruned} of the {target} "
                      f"requested prunes (ratio={ratio}).", stacklevel=2)
    delegates = {k: v for k, v in delegates.items() if v}
    return CentralFilters(kept=[int(i) for i in np.flatnonzero(state != 2)],
                          pruned=[int(i) for i in np.flatnonzero(state == 2)],
                          delegates=delegates, threshold=t, scores=scores, requested=target, similarity=S)


def compensate_next_layer(next_conv: nn.Conv2d, selection: CentralFilters) -> nn.Conv2d:
    """A new conv with the pruned input channels removed after adding each delegate's input
    weights onto its central filter's: ``W′[:, j] += Σ_{k ∈ delegates(j)} W′[:, k]`` (Duan et al.)."""
    if not isinstance(next_conv, nn.Conv2d) or next_conv.groups != 1:
        raise TypeError("compensate_next_layer needs an nn.Conv2d with groups=1 (the next conv).")
    n_in = len(selection.kept) + len(selection.pruned)
    if next_conv.in_channels != n_in:
        raise ValueError(f"next_conv has {next_conv.in_channels} input channels but the selection "
                         f"covers {n_in} filters; pass the conv that consumes the pruned layer.")
    W = next_conv.weight.detach().clone()
    for central, group in selection.delegates.items():
        W[:, central] += W[:, group].sum(dim=1)
    kept = torch.tensor(selection.kept, dtype=torch.long, device=W.device)
    new = nn.Conv2d(len(selection.kept), next_conv.out_channels, next_conv.kernel_size, next_conv.stride,
                    next_conv.padding, next_conv.dilation, 1, next_conv.bias is not None,
                    next_conv.padding_mode, device=W.device, dtype=W.dtype)
    with torch.no_grad():
        new.weight.copy_(W[:, kept])
        if next_conv.bias is not None:
            new.bias.copy_(next_conv.bias)
    return new
