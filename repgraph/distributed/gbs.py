"""GBS between every pair of layers on a Dask cluster: each layer's graph built once on a worker,
kept there, then one task per pair of layers."""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from ..analyzers.gbs import _gbs_frame, _normalised_graph
from .runner import runner_for
from .sources import layer_sources


def _layer_graph(rows, k, metric: str, name: str, device=None):
    """One layer's GBS sample graph with L2-normalised rows, by the in-process builder: a sparse
    kNN graph, or (``k=None``) the dense full graph, kept in the worker's memory."""
    graph = _normalised_graph(rows[0:len(rows)], k, metric, name, device)
    return graph.cpu() if isinstance(graph, torch.Tensor) else graph


def _graph_inner(A, B) -> float:
    """``⟨A, B⟩ = Σ_ij A_ij B_ij`` of two row-normalised sample graphs (dense tensors or sparse)."""
    if isinstance(A, torch.Tensor):
        return float(A.reshape(-1) @ B.reshape(-1))
    return float(A.multiply(B).sum())


def gbs_matrix(acts, acts2=None, *, k: int | None = None, metric: str = "cosine", device=None,
               progress: bool = True, client=None) -> pd.DataFrame:
    """``repgraph.gbs_matrix`` on a cluster: ``GBS_ab = (1/N)·⟨Â_a, Â_b⟩``.

    Â is a layer's sample graph (``k=None``, the default: the full cosine graph, zero diagonal;
    an integer ``k``: ``k`` nearest neighbours, (A + Aᵀ)/2) with L2-normalised rows, so
    ``GBS_ab`` is the mean over samples of the cosine between the two graphs' rows (Chen et al.
    2021). One task per layer reads the layer and builds Â with the in-process builder; Â stays
    on that worker; one task per pair of layers (a ≤ b, or every (a, b) of ``acts`` × ``acts2``)
    takes the inner product, Dask moving each graph at most once to each worker that needs it. A
    kNN graph holds N·k entries; the full graph (``k=None``) N² float64, which must fit a worker.
    Equal to the in-process values up to the order of float64 sums (~1e-16 relative).

    Parameters
    ----------
    acts, acts2 : Activations, mapping layer -> array, StoreArrays or path of a store
    k, metric, device, progress
        As in ``repgraph.gbs_matrix``.
    client : distributed.Client, optional
        Default: the client of the enclosing ``repgraph.parallel`` block; with none, the same
        tasks run in this process.

    Returns
    -------
    pandas.DataFrame
        Rows: layers of ``acts``; columns: layers of ``acts2`` (default ``acts``); ``attrs`` as in
        process (``k`` is ``"full"`` for the full graph).

    Raises
    ------
    TypeError
        If ``acts`` or ``acts2`` is not a non-empty mapping or store.
    ValueError
        For mismatched N, N ≤ k, NaN/Inf (raised by the task that meets it).

    References
    ----------
    Chen et al., "Graph-Based Similarity of Neural Network Representations", 2021.

    Examples
    --------
    >>> import numpy as np
    >>> from repgraph.distributed import gbs_matrix
    >>> X = np.random.default_rng(0).normal(size=(20, 4))
    >>> out = gbs_matrix({"x": X, "2x": 2 * X}, k=3, progress=False)
    >>> np.round(out.to_numpy(), 6).tolist()
    [[1.0, 1.0], [1.0, 1.0]]
    """
    runner = runner_for(client)
    xs, _ = layer_sources(acts, runner)
    ys = [] if acts2 is None else layer_sources(acts2, runner, what="acts2", suffix=" (acts2)")[0]
    sources = xs + ys
    sizes = {s.name: s.n for s in sources}
    if len(set(sizes.values())) > 1:
        raise ValueError(f"All layers must hold the same samples (same N); got {sizes}.")
    n = sources[0].n
    graphs = [runner.submit(_layer_graph, s.data, k, metric, s.name, device) for s in sources]
    if acts2 is None:
        pairs = [(a, b) for a in range(len(xs)) for b in range(a, len(xs))]
    else:
        pairs = [(a, len(xs) + b) for a in range(len(xs)) for b in range(len(ys))]
    inner = runner.results([runner.submit(_graph_inner, graphs[a], graphs[b]) for a, b in pairs],
                           desc="GBS pairs", progress=progress)
    runner.emit_warnings(graphs)
    values = np.zeros((len(xs), len(ys) or len(xs)))
    for (a, b), value in zip(pairs, inner):
        if acts2 is None:
            values[a, b] = values[b, a] = value / n
        else:
            values[a, b - len(xs)] = value / n
    return _gbs_frame(values, [s.layer for s in xs], [s.layer for s in (ys or xs)], k, metric)
