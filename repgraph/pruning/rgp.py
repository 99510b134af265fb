"""Regular graph pruning (RGP): one-shot connectivity masks from biregular bipartite graphs whose
average shortest path length (ASPL) is lowered by degree-preserving edge swaps."""
from __future__ import annotations

import numbers

import numpy as np
import torch
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components, shortest_path
from torch import nn

from .._arrays import check_count, check_ratio
from .lottery import PRUNABLE

DIRECTIONS = ("min", "max")


def _whole(value: float) -> int | None:
    """``value`` as an int when it is whole (to 1e-9), else None."""
    nearest = round(value)
    return int(nearest) if abs(value - nearest) < 1e-9 else None


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


def _biadjacency(n_in: int, n_out: int, degree: int, swaps: int, seed, direction: str) -> np.ndarray:
    rng = np.random.default_rng(seed)
    adjacency = np.zeros((n_out, n_in), dtype=bool)
    slots = np.arange(n_out * degree)
    adjacency[slots // degree, slots % n_in] = True  # output i keeps inputs i·d, …, i·d + d − 1 (mod n_in)
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


def _check_graph_args(n_in, n_out, degree, swaps, direction) -> tuple[int, int, int, int]:
    n_in = check_count(n_in, "n_in")
    n_out = check_count(n_out, "n_out")
    degree = check_count(degree, "degree")
    swaps = check_count(swaps, "swaps", minimum=0)
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}.")
    if degree > n_in:
        raise ValueError(f"degree={degree} exceeds n_in={n_in}: an output keeps at most all {n_in} inputs; "
                         f"pass degree <= {n_in}.")
    if (n_out * degree) % n_in:
        raise ValueError(f"n_out·degree = {n_out}·{degree} = {n_out * degree} is not a multiple of n_in={n_in}, "
                         "so the inputs cannot all have the same degree; pass a degree with n_out·degree "
                         f"divisible by n_in (multiples of {n_in // np.gcd(n_in, n_out)}).")
    return n_in, n_out, degree, swaps


def rgp_graph(n_in: int, n_out: int, degree: int, *, swaps: int = 200, seed: int = 0, direction: str = "min"):
    """A biregular bipartite graph between ``n_in`` input and ``n_out`` output channels, every
    output of degree ``d`` and every input of degree ``n_out·d / n_in``, with edges swapped to lower
    (or raise) its average shortest path length.

    Start: output i is joined to inputs ``i·d, …, i·d + d − 1 (mod n_in)`` (each input then gets
    exactly ``n_out·d/n_in`` edges), inputs and outputs relabelled by a seeded permutation. Then
    ``swaps`` attempts: pick outputs o₁ ≠ o₂ and inputs i₁ ∈ N(o₁) \\ N(o₂), i₂ ∈ N(o₂) \\ N(o₁) at
    random, rewire ``o₁–i₁, o₂–i₂ → o₁–i₂, o₂–i₁`` (every degree unchanged, no multi-edge) and keep
    the swap only if it does not make the graph worse: fewer connected components first, then
    ``ASPL = Σ_{s≠t} d(s, t) / (n(n − 1))`` over the ``n = n_in + n_out`` nodes (over the reachable
    pairs while the graph is still disconnected) no larger (``direction="min"``, RGP) or no
    smaller (``"max"``, the paper's control). So the ASPL never increases under ``"min"`` once the
    graph is connected, and the degrees never change.

    Parameters
    ----------
    n_in : int
        Input channels (nodes ``0 … n_in − 1``, attribute ``bipartite=0``).
    n_out : int
        Output channels (nodes ``n_in … n_in + n_out − 1``, attribute ``bipartite=1``).
    degree : int
        Inputs kept per output channel, in [1, n_in], with ``n_out·degree`` a multiple of ``n_in``.
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
        For a degree outside [1, n_in], a degree that cannot be made biregular, negative
        ``swaps`` or an unknown ``direction``.
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
    builds a biregular bipartite graph per layer instead (any ``n_in ≠ n_out``, no grouping).

    Examples
    --------
    Four inputs, four outputs, two inputs per output: an 8-cycle, whose ASPL is 16/7:

    >>> import networkx as nx
    >>> from repgraph.pruning import rgp_graph
    >>> g = rgp_graph(4, 4, 2, swaps=50)
    >>> sorted(set(dict(g.degree).values())), round(nx.average_shortest_path_length(g), 4)
    ([2], 2.2857)
    """
    import networkx as nx

    n_in, n_out, degree, swaps = _check_graph_args(n_in, n_out, degree, swaps, direction)
    adjacency = _biadjacency(n_in, n_out, degree, swaps, seed, direction)
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
    its weight, so that a fraction ``sparsity`` of every chosen layer's weights is pruned.

    A layer with weight ``(n_out, n_in, *kernel)`` gets ``rgp_graph(n_in, n_out, d)`` with
    ``d = (1 − sparsity)·n_in`` inputs per output; an edge between input j and output i keeps the
    whole kernel ``W[i, j, …]``, a missing edge prunes it: ``M[i, j, …] = [(j, i) ∈ E]``. Every
    output then keeps ``d`` input channels and every input feeds ``(1 − sparsity)·n_out`` outputs,
    so each layer's sparsity is exactly ``sparsity``. The masks do not depend on the weights
    (RGP needs no data or training before it prunes). Layer k (in ``layers`` order) is seeded
    with ``(seed, k)``.

    Parameters
    ----------
    model : nn.Module
        Read only: only the layers' shapes are used.
    sparsity : float
        The fraction of each chosen layer's weights pruned, in [0, 1); ``(1 − sparsity)·n_in`` and
        ``(1 − sparsity)·n_out`` must be whole for every chosen layer (e.g. 0.5 or 0.75 for
        16, 32 and 64 channels).
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
        For a sparsity outside [0, 1) or one that leaves a fractional number of channels, an
        unknown layer, a grouped convolution, or no layer to prune.

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
    """
    sparsity = check_ratio(sparsity, name="sparsity")
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}.")
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
        kept_in, kept_out = _whole((1 - sparsity) * n_in), _whole((1 - sparsity) * n_out)
        if not kept_in or not kept_out:
            raise ValueError(f"sparsity={sparsity} keeps (1 − {sparsity})·{n_in} = {(1 - sparsity) * n_in:g} inputs "
                             f"per output and (1 − {sparsity})·{n_out} = {(1 - sparsity) * n_out:g} outputs per "
                             f"input of layer {name!r} ({n_in} -> {n_out}); RGP needs whole, nonzero numbers: "
                             "pass a sparsity s with (1 − s)·n_in and (1 − s)·n_out whole for every layer "
                             "(e.g. 0.5 or 0.75 for 16, 32, 64 channels), or leave the layer out of layers.")
        adjacency = _biadjacency(n_in, n_out, kept_in, check_count(swaps, "swaps", minimum=0), (seed, k), direction)
        mask = torch.from_numpy(adjacency)
        masks[name] = mask.reshape(n_out, n_in, *([1] * (module.weight.dim() - 2))).expand(
            module.weight.shape).clone()
    return masks

