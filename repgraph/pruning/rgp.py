"""Regular graph pruning (RGP): one-shot connectivity masks from biregular (or, when the sparsity
leaves fractional degrees, almost-regular) bipartite graphs whose average shortest path length
(ASPL) is lowered by degree-preserving edge swaps."""
from __future__ import annotations

import math

import numpy as np
import torch
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components, shortest_path
from torch import nn

from .._arrays import check_count, check_ratio
from .lottery import PRUNABLE

DIRECTIONS = ("min", "max")


def _kept_edges(n_in: int, n_out: int, sparsity: float) -> int:
    """The input-output connections a layer keeps at ``sparsity``: the whole number nearest to
    ``(1 − s)·N``, ``N = n_in·n_out``, a tie kept on the sparser side: ``E = N − ⌊s·N + 1/2⌋``.

    ``s·N`` is rounded to 9 decimals first, so float error never breaks a tie (``0.7·45`` is
    31.499999999999996 in floats, taken as 31.5: 32 pruned). A tie (``s·N`` ending in .5) prunes
    the larger count, so the layer's sparsity then reaches ``s``, as ``ceil(s·N)`` does elsewhere
    in repgraph: ``_kept_edges(3, 3, 0.5)`` is 4, ``_kept_edges(16, 16, 0.8)`` 51 (51.2).
    """
    total = n_in * n_out
    return total - math.floor(round(sparsity * total, 9) + 0.5)


def _spread(total: int, count: int) -> np.ndarray:
    """``count`` whole numbers summing to ``total`` that differ by at most 1: the first
    ``total mod count`` are ``⌈total/count⌉``, the others ``⌊total/count⌋``."""
    base, extra = divmod(total, count)
    return base + (np.arange(count) < extra)


def _objective(adjacency: np.ndarray, n_in: int) -> tuple[int, float]:
    """(components, ASPL over the reachable ordered pairs) of the bipartite graph with biadjacency
    ``adjacency`` (n_out × n_in); for a connected graph the second is networkx's ASPL."""
    n_out = adjacency.shape[0]
    n = n_in + n_out
    rows, cols = np.nonzero(adjacency)
    graph = csr_matrix((np.ones(len(rows)), (rows + n_in, cols)), shape=(n, n))
    graph = graph + graph.T
    components = connected_components(graph, directed=False)[0]
    dist = shortest_path(graph, directed=False, unweighted=True)
    off = ~np.eye(n, dtype=bool)
    finite = np.isfinite(dist) & off
    aspl = float(dist[finite].mean()) if finite.any() else 0.0
    return int(components), aspl


def _better_or_equal(new: tuple[int, float], old: tuple[int, float], direction: str) -> bool:
    if new[0] != old[0]:
        return new[0] < old[0]  # fewer components first, whichever direction
    if direction == "min":
        return new[1] <= old[1] + 1e-12
    return new[1] >= old[1] - 1e-12


def _biadjacency(n_in: int, n_out: int, edges: int, swaps: int, seed, direction: str) -> np.ndarray:
    rng = np.random.default_rng(seed)
    adjacency = np.zeros((n_out, n_in), dtype=bool)
    # output i owns a run of d_i consecutive slots (d_i = ⌈E/n_out⌉ or ⌊E/n_out⌋, runs concatenated);
    # slot k joins input k mod n_in: a run of at most n_in slots has distinct inputs, and the inputs
    # get ⌊E/n_in⌋ or ⌈E/n_in⌉ slots each. With every d_i = d, output i keeps inputs i·d … i·d + d − 1.
    slots = np.arange(edges)
    adjacency[np.repeat(np.arange(n_out), _spread(edges, n_out)), slots % n_in] = True
    adjacency = adjacency[rng.permutation(n_out)][:, rng.permutation(n_in)]
    current = _objective(adjacency, n_in)
    for _ in range(swaps):
        o1, o2 = rng.choice(n_out, size=2, replace=False) if n_out > 1 else (0, 0)
        if o1 == o2:
            break
        only1 = np.flatnonzero(adjacency[o1] & ~adjacency[o2])  # i1: edge o1–i1, no o2–i1
        only2 = np.flatnonzero(adjacency[o2] & ~adjacency[o1])
        if len(only1) == 0 or len(only2) == 0:
            continue
        i1, i2 = rng.choice(only1), rng.choice(only2)
        # o1–i1, o2–i2  ->  o1–i2, o2–i1: every degree is unchanged
        adjacency[o1, i1] = adjacency[o2, i2] = False
        adjacency[o1, i2] = adjacency[o2, i1] = True
        proposed = _objective(adjacency, n_in)
        if _better_or_equal(proposed, current, direction):
            current = proposed
        else:
            adjacency[o1, i2] = adjacency[o2, i1] = False
            adjacency[o1, i1] = adjacency[o2, i2] = True
    return adjacency


def _check_direction(direction) -> str:
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}.")
    return direction


def _graph_edges(n_in: int, n_out: int, degree, edges) -> int:
    """The edge count of ``rgp_graph``'s graph, checked: ``n_out·degree`` for a biregular graph,
    else ``edges`` for an almost-regular one."""
    if (degree is None) == (edges is None):
        raise ValueError("rgp_graph takes exactly one of degree (every output keeps degree inputs, biregular) "
                         f"and edges (that many edges, degrees within 1); got degree={degree!r}, edges={edges!r}.")
    if degree is not None:
        degree = check_count(degree, "degree")
        if degree > n_in:
            raise ValueError(f"degree={degree} exceeds n_in={n_in}: an output keeps at most all {n_in} inputs; "
                             f"pass degree <= {n_in}.")
        if (n_out * degree) % n_in:
            raise ValueError(f"n_out·degree = {n_out}·{degree} = {n_out * degree} is not a multiple of n_in={n_in}, "
                             "so the inputs cannot all have the same degree; pass a degree with n_out·degree "
                             f"divisible by n_in (multiples of {n_in // math.gcd(n_in, n_out)}), or "
                             f"edges={n_out * degree} for an almost-regular graph (input degrees within 1).")
        return n_out * degree
    edges = check_count(edges, "edges")
    if edges < n_out:
        raise ValueError(f"edges={edges} is fewer than n_out={n_out}: every output keeps at least one input; "
                         f"pass edges >= {n_out}.")
    if edges > n_in * n_out:
        raise ValueError(f"edges={edges} exceeds n_in·n_out = {n_in}·{n_out} = {n_in * n_out}, the complete "
                         f"bipartite graph; pass edges <= {n_in * n_out}.")
    return edges


def rgp_graph(n_in: int, n_out: int, degree: int | None = None, *, edges: int | None = None, swaps: int = 200,
              seed: int = 0, direction: str = "min"):
    """A bipartite graph between ``n_in`` input and ``n_out`` output channels with (almost) equal
    degrees, its edges swapped to lower (or raise) its average shortest path length.

    Biregular (``degree=d``): every output has degree ``d`` and every input ``n_out·d / n_in``.
    Almost-regular (``edges=E``): the outputs have degree ``⌊E/n_out⌋`` or ``⌈E/n_out⌉`` and the
    inputs ``⌊E/n_in⌋`` or ``⌈E/n_in⌉``, the nearest to regular that ``E`` edges allow;
    ``edges=n_out·d`` with ``n_in`` dividing ``n_out·d`` gives the same graph as ``degree=d``.

    Start: output i gets a run of ``d_i`` consecutive slots (the first ``E mod n_out`` outputs
    ``⌈E/n_out⌉``, the others ``⌊E/n_out⌋``; runs concatenated, ``E`` slots in all) and slot k
    joins input ``k mod n_in``. A run of at most ``n_in`` slots meets distinct inputs, and input j
    gets every ``n_in``-th slot, so ``⌊E/n_in⌋`` or ``⌈E/n_in⌉`` of them; with every ``d_i = d``,
    output i keeps inputs ``i·d, …, i·d + d − 1 (mod n_in)``. Inputs and outputs are relabelled by
    a seeded permutation. Then ``swaps`` attempts: pick outputs o₁ ≠ o₂ and inputs
    i₁ ∈ N(o₁) \\ N(o₂), i₂ ∈ N(o₂) \\ N(o₁) at random, rewire ``o₁–i₁, o₂–i₂ → o₁–i₂, o₂–i₁``
    (every degree unchanged, no multi-edge) and keep the swap only if it does not make the graph
    worse: fewer connected components first, then ``ASPL = Σ_{s≠t} d(s, t) / (n(n − 1))`` over
    the ``n = n_in + n_out`` nodes (over the reachable pairs while the graph is still
    disconnected) no larger (``direction="min"``, RGP) or no smaller (``"max"``, the paper's
    control). So the ASPL never increases under ``"min"`` once the graph is connected, and the
    degrees never change.

    Parameters
    ----------
    n_in : int
        Input channels (nodes ``0 … n_in − 1``, attribute ``bipartite=0``).
    n_out : int
        Output channels (nodes ``n_in … n_in + n_out − 1``, attribute ``bipartite=1``).
    degree : int, optional
        Inputs kept per output channel, in [1, n_in], with ``n_out·degree`` a multiple of ``n_in``
        (a biregular graph). Pass exactly one of ``degree`` and ``edges``.
    edges : int, optional
        Edges of an almost-regular graph, in [n_out, n_in·n_out] (every output keeps an input).
    swaps : int
        Swap attempts (0: the relabelled start graph).
    seed : int
        Seeds the relabelling and the swaps; the same seed gives the same graph.
    direction : {"min", "max"}
        Lower the ASPL (RGP) or raise it (to build badly connected graphs for comparison).

    Returns
    -------
    networkx.Graph
        The bipartite graph.

    Raises
    ------
    ValueError
        For both or neither of ``degree`` and ``edges``, a degree outside [1, n_in] or one that
        cannot be made biregular, ``edges`` outside [n_out, n_in·n_out], negative ``swaps`` or an
        unknown ``direction``.
    TypeError
        For non-integer sizes.

    References
    ----------
    Chen, Xiang, Lu, Xuan, Wang, Chen & Yang, "RGP: Neural Network Pruning Through Regular Graph
    With Edges Swapping", IEEE TNNLS 35(10), 14671–14683, 2024 (arXiv:2110.15192): a regular
    graph whose degree meets the pruning ratio, edges swapped to lower the ASPL, mapped to the
    network. Their code (github.com/Holidays1999/Neural-Network-Pruning-through-its-RegularGraph-Structure)
    builds one d-regular graph on n nodes, shared by every layer with channels grouped into n
    blocks, and accepts a swap when the ASPL does not grow and the graph stays connected; repgraph
    builds a biregular bipartite graph per layer instead (any ``n_in ≠ n_out``, no grouping), and
    an almost-regular one where the sparsity leaves fractional degrees.

    Examples
    --------
    Four inputs, four outputs, two inputs per output: an 8-cycle, whose ASPL is 16/7:

    >>> import networkx as nx
    >>> from repgraph.pruning import rgp_graph
    >>> g = rgp_graph(4, 4, 2, swaps=50)
    >>> sorted(set(dict(g.degree).values())), round(nx.average_shortest_path_length(g), 4)
    ([2], 2.2857)

    Seven edges between three inputs and four outputs: output degrees 2, 2, 2, 1 and input
    degrees 3, 2, 2 in some order:

    >>> g = rgp_graph(3, 4, edges=7, swaps=10)
    >>> sorted(d for n, d in g.degree if n >= 3), sorted(d for n, d in g.degree if n < 3)
    ([1, 2, 2, 2], [2, 2, 3])
    """
    import networkx as nx

    n_in, n_out = check_count(n_in, "n_in"), check_count(n_out, "n_out")
    n_edges = _graph_edges(n_in, n_out, degree, edges)
    swaps = check_count(swaps, "swaps", minimum=0)
    adjacency = _biadjacency(n_in, n_out, n_edges, swaps, seed, _check_direction(direction))
    graph = nx.Graph()
    graph.add_nodes_from(range(n_in), bipartite=0)
    graph.add_nodes_from(range(n_in, n_in + n_out), bipartite=1)
    outs, ins = np.nonzero(adjacency)
    graph.add_edges_from(zip(ins.tolist(), (outs + n_in).tolist()))
    return graph


def _default_layers(model: nn.Module) -> dict:
    prunable = [(n, m) for n, m in model.named_modules() if isinstance(m, PRUNABLE)]
    return dict(prunable[1:-1])


def rgp_masks(model: nn.Module, sparsity: float, *, layers=None, swaps: int = 200, seed: int = 0,
              direction: str = "min") -> dict:
    """Regular graph pruning: one-shot connectivity masks, one ``rgp_graph`` per layer mapped onto
    its weight, so that the fraction ``sparsity`` of every chosen layer's weights, to the nearest
    whole kernel, is pruned.

    A layer with weight ``(n_out, n_in, *kernel)`` keeps ``E`` of its ``N = n_in·n_out``
    input-output connections, the whole number nearest to ``(1 − sparsity)·N``:
    ``E = N − ⌊sparsity·N + 1/2⌋`` (``sparsity·N`` rounded to 9 decimals first; a tie, ``sparsity·N``
    ending in .5, prunes the larger count). It gets ``rgp_graph(n_in, n_out, edges=E)``: every
    output keeps ``⌊E/n_out⌋`` or ``⌈E/n_out⌉`` input channels and every input feeds ``⌊E/n_in⌋`` or
    ``⌈E/n_in⌉`` outputs. When ``(1 − sparsity)·n_in`` and ``(1 − sparsity)·n_out`` are whole, that
    is the biregular graph ``rgp_graph(n_in, n_out, (1 − sparsity)·n_in)`` and the layer's sparsity
    is exactly ``sparsity``; otherwise it is off by at most half a kernel's weights
    (``|(N − E)·K − sparsity·N·K| ≤ K/2`` with ``K`` the kernel size). An edge between input j
    and output i keeps the whole kernel ``W[i, j, …]``, a missing edge prunes it:
    ``M[i, j, …] = [(j, i) ∈ E]``. The masks do not depend on the weights (RGP needs no data or
    training before it prunes). Layer k (in ``layers`` order) is seeded with ``(seed, k)``.

    Parameters
    ----------
    model : nn.Module
        Read only: only the layers' shapes are used.
    sparsity : float
        The fraction of each chosen layer's weights pruned, in [0, 1), with
        ``(1 − sparsity)·n_in ≥ 1`` for every chosen layer so that every output keeps an input
        (for 16 channels up to 15/16 = 0.9375).
    layers : list of str, optional
        The Conv/Linear layers pruned; default every Conv1d/2d/3d and Linear but the first and
        the last (the paper keeps them dense).
    swaps : int
        Swap attempts per layer (``rgp_graph``).
    seed : int
        Base seed.
    direction : {"min", "max"}
        Lower the ASPL (RGP) or raise it.

    Returns
    -------
    dict
        layer name -> bool tensor shaped like its weight (True = kept), on the CPU, as
        ``magnitude_masks``; pass it to ``apply_masks``.

    Raises
    ------
    ValueError
        For a sparsity outside [0, 1) or one that leaves a layer fewer connections than outputs,
        an unknown layer, a grouped convolution, or no layer to prune.

    References
    ----------
    Chen, Xiang, Lu, Xuan, Wang, Chen & Yang, "RGP: Neural Network Pruning Through Regular Graph
    With Edges Swapping", IEEE TNNLS 35(10), 14671–14683, 2024 (arXiv:2110.15192); see
    ``rgp_graph`` for how repgraph's per-layer bipartite graphs differ from the authors' code.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from repgraph import apply_masks, sparsity
    >>> from repgraph.pruning import rgp_masks
    >>> model = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2))
    >>> masks = rgp_masks(model, 0.5)
    >>> list(masks), masks["2"].sum(dim=1).tolist(), masks["2"].sum(dim=0).tolist()
    (['2'], [2, 2, 2, 2], [2, 2, 2, 2])
    >>> sparsity(apply_masks(model, masks), ["2"])
    0.5

    At 60 % the layer keeps round(0.4·16) = 6 of 16 connections (6.4): two outputs keep two inputs,
    two keep one:

    >>> masks = rgp_masks(model, 0.6)
    >>> sorted(masks["2"].sum(dim=1).tolist()), sparsity(apply_masks(model, masks), ["2"])
    ([1, 1, 2, 2], 0.625)
    """
    sparsity = check_ratio(sparsity, name="sparsity")
    direction = _check_direction(direction)
    swaps = check_count(swaps, "swaps", minimum=0)
    if layers is None:
        chosen = _default_layers(model)
        if not chosen:
            raise ValueError("rgp_masks: the model has fewer than three Conv/Linear layers, and the first and "
                             "last stay dense; pass layers=[...] to name the layers to prune.")
    else:
        modules = dict(model.named_modules())
        names = [layers] if isinstance(layers, str) else list(layers)
        bad = [n for n in names if not isinstance(modules.get(n), PRUNABLE)]
        if bad:
            raise ValueError(f"layers {bad} are not Conv1d/2d/3d or Linear modules of the model; pass names "
                             "from model.named_modules().")
        chosen = {n: modules[n] for n in names}
    masks = {}
    for k, (name, module) in enumerate(chosen.items()):
        if getattr(module, "groups", 1) != 1:
            raise ValueError(f"layer {name!r} is a grouped convolution (groups={module.groups}); RGP maps a "
                             "graph onto full input-output connectivity; leave it out of layers.")
        n_out, n_in = module.weight.shape[:2]
        edges = _kept_edges(n_in, n_out, sparsity)
        if edges < n_out:
            raise ValueError(f"sparsity={sparsity} keeps {edges} of the {n_in}·{n_out} = {n_in * n_out} connections "
                             f"of layer {name!r} ({n_in} -> {n_out}), fewer than its {n_out} outputs, and RGP keeps "
                             f"at least one input per output; pass a sparsity s <= 1 − 1/{n_in} (so that "
                             f"(1 − s)·{n_in} >= 1), or leave the layer out of layers.")
        adjacency = _biadjacency(n_in, n_out, edges, swaps, (seed, k), direction)
        mask = torch.from_numpy(adjacency)
        masks[name] = mask.reshape(n_out, n_in, *([1] * (module.weight.dim() - 2))).expand(
            module.weight.shape).clone()
    return masks
