"""Central-Filter selection and next-layer compensation (Duan et al., arXiv 2112.05493, §3.2–3.3)."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from scipy.sparse.csgraph import connected_components
from torch import nn

from .._arrays import as_square_matrix, check_feature_map_shape, prune_count
from .._warnings import warn_user
from ..builders.filter_graph import similarity_graph, source_similarities
from ..execution.runner import planning
from ..execution.sources import layer_sources
from .closeness import closeness_centrality


@dataclass
class CentralFilters:
    """The Central-Filter selection of one layer, as ``central_filters`` returns it.

    ``prune_filters`` takes it as a layer's "scores": it prunes exactly ``pruned`` and adds each
    pruned filter's input weights in the next conv onto its central filter's,
    ``W′[:, j] += Σ_{k ∈ delegates(j)} W′[:, k]``. ``.plot()`` draws the filter graph.

    Parameters
    ----------
    kept : list of int
        Filters that stay (sorted): the central filters and every filter not pruned.
    pruned : list of int
        Filters to remove (sorted).
    delegates : dict of int to list of int
        Central filter → the pruned filters of its component, which it stands for.
    threshold : float
        The graph's threshold t (edges ``S[i, j] > t``).
    scores : ndarray (C,)
        The closeness scores that ordered the visit.
    requested : int
        ``ceil(C·ratio)``, the number of prunes asked for (``len(pruned)`` is smaller only when
        the graph could not supply them, with a warning).
    similarity : ndarray (C, C), optional
        The symmetrised filter similarity the selection was made on (used by ``plot``).
    central : list of int
        The central filters (sorted), one per component that has one.

    References
    ----------
    Duan et al., "Network Compression via Central Filter", arXiv 2112.05493, §3.2–3.3;
    github.com/8ubpshLR23/Central-Filter ``rank.py``.

    Examples
    --------
    Filters 0 and 1 are similar (0.9), filter 2 is not; pruning ``ceil(3·0.3) = 1`` filter keeps
    filter 0 as the central filter of {0, 1} (lower index of the tied scores) and prunes 1:

    >>> import numpy as np
    >>> from repgraph import central_filters
    >>> S = np.array([[1.0, 0.9, 0.1], [0.9, 1.0, 0.1], [0.1, 0.1, 1.0]])
    >>> sel = central_filters(S, 0.3)
    >>> sel.kept, sel.pruned, sel.central, sel.delegates, sel.requested, round(sel.threshold, 4)
    ([0, 2], [1], [0], {0: [1]}, 1, 0.55)
    """

    kept: list
    pruned: list
    delegates: dict
    threshold: float
    scores: np.ndarray = field(repr=False)
    requested: int = 0
    similarity: np.ndarray = field(default=None, repr=False)
    central: list = field(default_factory=list)

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


BISECTION_STEP = 1e-7  # rank.py's get_threshold moves its bounds by this past each midpoint


def _deletable(S, t) -> int:
    """#nodes with an edge − #components among them = C − #components of the graph S > t (``S``
    already checked and symmetric; NaN is never an edge)."""
    with np.errstate(invalid="ignore"):
        edges = S > t
    np.fill_diagonal(edges, False)
    n_comp, _ = connected_components(edges, directed=False)
    return len(S) - n_comp


def selection_threshold(S, target: int) -> float:
    """The threshold ``t`` of the Central-Filter graph (edges ``S[i, j] > t``): rank.py's
    ``get_threshold`` bisection.

    ``lo, hi = min S − 1e-7, max S + 1e-7`` (over the finite entries, diagonal included); while
    ``lo < hi``: ``m = (lo + hi)/2`` and ``d(m) = #nodes with an edge − #components among them``;
    ``d(m) = target`` returns ``m``; ``d(m) < target`` sets ``hi = m − 1e-7``; ``d(m) > target``
    remembers the current ``lo`` and sets ``lo = m + 1e-7``. Without an exact hit the remembered
    ``lo`` (before its last raise; ``d ≥ target``) is returned, or, if no midpoint ever
    over-shot, the lowest bound ``min S − 1e-7`` (rank.py: ``max S + 1e-7``, an empty graph that
    prunes nothing).
    """
    finite = S[np.isfinite(S)]
    lowest = float(finite.min()) - BISECTION_STEP
    lo, hi = lowest, float(finite.max()) + BISECTION_STEP
    overshoot = None
    while lo < hi:
        mid = (lo + hi) / 2
        count = _deletable(S, mid)
        if count == target:
            return mid
        if count < target:
            hi = mid - BISECTION_STEP
        else:
            overshoot = lo
            lo = mid + BISECTION_STEP
    return lowest if overshoot is None else overshoot


UNDECIDED, CENTRAL, PRUNED = 0, 1, 2


def central_filters(S, ratio: float, *, kind: str = "cf_local") -> CentralFilters:
    """Choose central filters and the redundant filters they stand for (Duan et al.), as the
    authors' ``rank.py`` does.

    1. Threshold graph: edge (i, j) when ``S[i, j] > t``, with ``t`` from ``selection_threshold``:
       rank.py's bisection for ``#nodes with an edge − #components among them = ceil(C·ratio)``
       (each component keeps one filter; the others are deletable).
    2. Scores: ``closeness_centrality(S, kind=kind, threshold=t)`` (``cf_local``: the reference's
       ``deg_i / Σ_{j∈N(i)} (1024 − S_ij)``).
    3. Selection (rank.py's ``del_filter``): visit the nodes by descending score (ties: lower index
       first), skipping scores ≤ 0. A visited node that is undecided and whose component has no
       central filter yet becomes that component's central filter. Then **every** visited node —
       central, pruned or undecided — prunes its undecided neighbours (ascending index), so pruning
       spreads through the component. Stop after ``ceil(C·ratio)`` prunes.
    4. Delegates: each pruned filter is represented by the central filter of its component.

    Parameters
    ----------
    S : array or tensor (C, C)
        Filter similarities (``filter_similarity``), symmetric up to rounding; NaN = undefined,
        never an edge.
    ratio : float
        Fraction of filters to prune, in (0, 1): ``ceil(C·ratio)`` filters (``prune_count``).
    kind : {"cf_local", "shortest_path"}
        The score that orders the visit (``closeness_centrality``); ``cf_local`` is the reference's.

    Returns
    -------
    CentralFilters
        ``kept``, ``pruned`` (sorted), ``central`` (the central filters, sorted), ``delegates``
        (central filter → the pruned filters of its component), ``threshold``, ``scores``,
        ``requested`` (``ceil(C·ratio)``) and ``similarity`` (the symmetrised ``S``).

    Raises
    ------
    ValueError
        For a ratio outside (0, 1) or one that would prune every filter, a non-square ``S``,
        an ``S`` asymmetric beyond rounding (the message names the largest ``|S − Sᵀ|``), or an
        ``S`` with no finite off-diagonal entry.

    Warns
    -----
    UserWarning
        When the graph cannot supply ``ceil(C·ratio)`` prunes (e.g. many NaN similarities); the
        message says how many were pruned.

    Notes
    -----
    Where this differs from rank.py (github.com/8ubpshLR23/Central-Filter, commit 8bc0411):

    - Ties in the score go to the lower index. rank.py's order comes from ``np.argsort``, which
      for numpy < 1.25 (the authors' environment) visits tied nodes higher index first on up to
      16 filters and in an implementation-defined order beyond. On the authors' own ResNet-56
      matrices at the paper's 77.6 % rates, this rule keeps the same filters as the authors' masks
      in 16 of the 27 pruned layers (the legacy order: 27 of 27); both prune exactly
      ``ceil(C·ratio)`` in every layer.
    - Delegates: rank.py files some pruned filters under an already-pruned neighbour, which loses
      their compensation; here each one's delegate is its component's central filter.
    - NaN similarities are never edges and do not enter the bisection bounds (in rank.py a single
      NaN makes the threshold NaN and the layer prunes nothing).
    - Without an exact bisection hit and with no over-shooting midpoint, the lowest bound is used
      (rank.py uses an empty graph and prunes nothing).
    - The count is ``ceil(C·ratio)`` of the product rounded to 9 decimals (``prune_count``), so
      10 × 0.3 prunes 3 (rank.py's ``math.ceil(10 * 0.3)`` is 4).
    - ``S`` symmetric up to rounding (rank.py's saved matrices, ``np.corrcoef``) is symmetrised.

    References
    ----------
    Duan et al., "Network Compression via Central Filter", arXiv 2112.05493, §3.2–3.3;
    github.com/8ubpshLR23/Central-Filter ``rank.py`` (``get_threshold``, ``get_closeness_2``,
    ``del_filter``).

    Examples
    --------
    A chain 0 – 1 – 2 – 3 with similarities 0.9, 0.8, 0.7 (all other pairs 0.1), half pruned:
    the bisection stops at t = 0.7750001 (edges 0–1 and 1–2: 3 nodes − 1 component = 2); node 0
    (highest score) becomes central and prunes 1; the already-pruned 1 then prunes 2.

    >>> import numpy as np
    >>> from repgraph import central_filters
    >>> S = np.full((4, 4), 0.1)
    >>> np.fill_diagonal(S, 1.0)
    >>> S[0, 1] = S[1, 0] = 0.9; S[1, 2] = S[2, 1] = 0.8; S[2, 3] = S[3, 2] = 0.7
    >>> sel = central_filters(S, 0.5)
    >>> sel.kept, sel.pruned, sel.delegates, round(sel.threshold, 7)
    ([0, 3], [1, 2], {0: [1, 2]}, 0.7750001)
    """
    S = as_square_matrix(S, symmetric=True)
    c = len(S)
    target = prune_count(c, ratio, allow_zero=False)
    off = S[~np.eye(c, dtype=bool)]
    if not np.isfinite(off).any():
        raise ValueError("S has no finite off-diagonal similarity: every pair is undefined.")
    t = selection_threshold(S, target)
    edges = similarity_graph(S, t)
    scores = closeness_centrality(S, kind=kind, threshold=t)
    _, component = connected_components(edges, directed=False)
    state = np.full(c, UNDECIDED, dtype=np.int8)
    central_of = {}  # component -> its central filter
    n_pruned, done = 0, False
    for node in np.argsort(-scores, kind="stable"):
        if done or not scores[node] > 0:
            break  # descending order: every later score is <= 0 too
        if state[node] == UNDECIDED and component[node] not in central_of:
            state[node] = CENTRAL
            central_of[component[node]] = int(node)
        for nb in np.flatnonzero(edges[node]):
            if state[nb] == UNDECIDED:
                if n_pruned == target:  # as rank.py: stop at the first prune beyond the count
                    done = True
                    break
                state[nb] = PRUNED
                n_pruned += 1
    if n_pruned < target:
        warn_user(f"central_filters: the filter graph allows only {n_pruned} of the {target} "
                  f"requested prunes (ratio={ratio}).")
    pruned = [int(i) for i in np.flatnonzero(state == PRUNED)]
    delegates = {}
    for filt in pruned:  # a pruned filter was pruned from inside its component, which has a central filter
        delegates.setdefault(central_of[component[filt]], []).append(filt)
    return CentralFilters(kept=[int(i) for i in np.flatnonzero(state != PRUNED)], pruned=pruned,
                          delegates=dict(sorted(delegates.items())), threshold=float(t), scores=scores,
                          requested=target, similarity=S, central=sorted(central_of.values()))


def compensate_next_layer(next_conv: nn.Module, selection: CentralFilters) -> nn.Module:
    """A new conv with the pruned input channels removed after adding each delegate's input
    weights onto its central filter's: ``W′[:, j] += Σ_{k ∈ delegates(j)} W′[:, k]`` (Duan et al.).

    Parameters
    ----------
    next_conv : nn.Conv1d, nn.Conv2d or nn.Conv3d with groups=1
        The conv that consumes the pruned layer's channels.
    selection : CentralFilters
        The selection of the pruned layer (``central_filters``).

    Returns
    -------
    A conv of the same type with ``len(selection.kept)`` input channels; ``next_conv`` is untouched.

    Raises
    ------
    TypeError
        If ``next_conv`` is not a convolution with groups=1.
    ValueError
        If its input channels do not match the selection's filters.

    References
    ----------
    Duan et al., "Network Compression via Central Filter", arXiv 2112.05493, §3.3.

    Examples
    --------
    >>> import numpy as np
    >>> from torch import nn
    >>> from repgraph import central_filters, compensate_next_layer
    >>> S = np.array([[1.0, 0.9, 0.1], [0.9, 1.0, 0.1], [0.1, 0.1, 1.0]])
    >>> sel = central_filters(S, 0.3)    # filter 1 is pruned, filter 0 stands for it
    >>> compensate_next_layer(nn.Conv1d(3, 4, 3), sel)
    Conv1d(2, 4, kernel_size=(3,), stride=(1,))
    """
    if not isinstance(next_conv, nn.modules.conv._ConvNd) or isinstance(
            next_conv, nn.modules.conv._ConvTransposeNd) or next_conv.groups != 1:
        raise TypeError("compensate_next_layer needs an nn.Conv1d/2d/3d with groups=1 (the next conv), "
                        f"got {type(next_conv).__name__}.")
    n_in = len(selection.kept) + len(selection.pruned)
    if next_conv.in_channels != n_in:
        raise ValueError(f"next_conv has {next_conv.in_channels} input channels but the selection "
                         f"covers {n_in} filters; pass the conv that consumes the pruned layer.")
    W = next_conv.weight.detach().clone()
    for central, group in selection.delegates.items():
        W[:, central] += W[:, group].sum(dim=1)
    kept = torch.tensor(selection.kept, dtype=torch.long, device=W.device)
    new = type(next_conv)(len(selection.kept), next_conv.out_channels, next_conv.kernel_size, next_conv.stride,
                          next_conv.padding, next_conv.dilation, 1, next_conv.bias is not None,
                          next_conv.padding_mode, device=W.device, dtype=W.dtype)
    with torch.no_grad():
        new.weight.copy_(W[:, kept])
        if next_conv.bias is not None:
            new.bias.copy_(next_conv.bias)
    return new


def _select(S, ratio, kind):
    return central_filters(S, ratio, kind=kind)


def layer_central_filters(acts, ratio: float, *, kind: str = "cf_local", progress: bool = True,
                          client=None) -> dict:
    """Central-Filter selection of every layer: ``central_filters(filter_similarity(maps), ratio)``.

    The filter similarity of each layer is computed by tasks over chunks of images
    (``filter_similarity``), then one task per layer selects the central filters (Duan et al.:
    threshold graph by bisection to ``ceil(C·ratio)`` deletable filters, closeness scores, greedy
    selection). Equal to the in-process selection on the in-process similarity.

    Parameters
    ----------
    acts : Activations, mapping layer -> (N, C, H, W) or (N, C, L), StoreArrays or store path
    ratio : float
        Fraction of each layer's filters to prune, in (0, 1).
    kind : str
        Closeness score, as in ``repgraph.central_filters``.
    progress : bool
        Show a progress bar.
    client : distributed.Client, optional
        Default: the client of the enclosing ``repgraph.parallel`` block; else in this process.

    Returns
    -------
    dict
        layer -> ``CentralFilters``.

    Raises
    ------
    ValueError
        For a ratio outside (0, 1) or one that would prune a whole layer, and as ``filter_similarity``.

    References
    ----------
    Duan et al., "Network Compression via Central Filter", arXiv 2112.05493;
    github.com/8ubpshLR23/Central-Filter ``rank.py``.

    Examples
    --------
    >>> import numpy as np
    >>> from repgraph import layer_central_filters
    >>> maps = np.random.default_rng(0).random((6, 8, 4, 4))
    >>> picked = layer_central_filters({"conv": maps}, 0.25, progress=False)
    >>> len(picked["conv"].pruned)
    2
    """
    with planning(client) as runner:
        sources, _ = layer_sources(acts, runner, what="acts")
        for source in sources:
            check_feature_map_shape(tuple(source.shape), name=source.name, min_channels=2, one_d=True)
            prune_count(source.shape[1], ratio, allow_zero=False)
        similarities = source_similarities(runner, sources, progress=progress)
        selections = runner.results([runner.submit(_select, S, ratio, kind) for S in similarities],
                                    desc="central filters", progress=progress)
    return {s.layer: selection for s, selection in zip(sources, selections)}
