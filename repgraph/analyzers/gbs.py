"""Graph-based similarity (GBS) of layer representations (Chen et al., 2021)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

from .._arrays import as_features, is_constant_rows, power_of_two_scaled, row_chunk
from .._results import described
from .._warnings import warn_user
from ..builders.knn import knn_graph
from ..builders.similarity import NORM_FLOOR, gram
from ..execution.runner import planning
from ..execution.sources import compared_sources

REFERENCE = "Chen et al. 2021, graph-based similarity"


def _full_graph(X, metric: str, name: str, device) -> torch.Tensor:
    """The full sample graph of one layer as a dense float64 (N, N) tensor, diagonal 0: the float32
    Gram of the rows (row-centred for ``correlation``), divided in float64 by
    ``max(‖x_i‖, 1e-8)·max(‖x_j‖, 1e-8)`` for cosine and correlation. The rows are first scaled by
    a power of two when their magnitude would overflow or underflow float32 products (exact, and
    the norm floor is scaled with them, so the result is the unscaled definition's)."""
    if metric not in ("cosine", "correlation", "linear"):
        raise ValueError(f"metric must be 'cosine', 'correlation' or 'linear', got {metric!r}.")
    Xt = as_features(X, name=name, device=device, check_finite=False)
    Xt, exponent = power_of_two_scaled(Xt, name=name)
    if metric == "correlation":
        Xt = Xt - Xt.mean(dim=1, keepdim=True)
    S = gram(Xt).double()
    if metric != "linear":
        norms = torch.linalg.vector_norm(Xt, dim=1).double().clamp_min(NORM_FLOOR * 2.0 ** -exponent)
        S /= norms[:, None]
        S /= norms[None, :]
    S.fill_diagonal_(0.0)
    return S


def sample_graph(X, k: int | None = None, *, metric: str = "cosine", name: str = "X", device=None) -> sp.csr_matrix:
    """The GBS sample graph of one layer: for ``k=None`` (default, as the authors' code) the full
    similarity matrix with a zero diagonal (every pair an edge, negative weights kept); for an
    integer ``k`` the kNN graph ``knn_graph(X, k)`` ((A + Aᵀ)/2, as modularity's).

    Parameters
    ----------
    X : array or tensor (N, ...)
        One layer's features, flattened to (N, D).
    k : int, optional
        Neighbours per sample; None = the full graph.
    metric : {"cosine", "correlation", "linear"}
        Sample similarity (cosine: rows divided by max(‖x‖, 1e-8)).
    name : str
        Name used in error messages.
    device : str or torch.device, optional
        Where to compute.

    Returns
    -------
    scipy.sparse.csr_matrix (N, N) of float64 weights.

    Raises
    ------
    ValueError
        For NaN/Inf features, too few samples, or N ≤ k.

    Examples
    --------
    >>> import numpy as np
    >>> from repgraph.analyzers import sample_graph
    >>> X = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    >>> sample_graph(X).toarray().round(4)
    array([[0.    , 0.    , 0.7071],
           [0.    , 0.    , 0.7071],
           [0.7071, 0.7071, 0.    ]])
    """
    if k is not None:
        return knn_graph(X, k, metric=metric, name=name, device=device)
    return sp.csr_matrix(_full_graph(X, metric, name, device).cpu().numpy())


def _warn_zero_rows(n_zero: int, name: str):
    if n_zero:
        warn_user(f"{name}: {n_zero} sample(s) have an all-zero adjacency row; each contributes 0 "
                  "to GBS.")


def _row_normalised(A, name: str):
    """Rows of a dense tensor or a CSR matrix divided by their L2 norms; all-zero rows stay zero
    (with a warning)."""
    if isinstance(A, torch.Tensor):
        norms = torch.linalg.vector_norm(A, dim=1, keepdim=True)
        _warn_zero_rows(int((norms == 0).sum()), name)
        return A / torch.where(norms == 0, torch.ones_like(norms), norms)
    norms = np.sqrt(np.asarray(A.multiply(A).sum(axis=1)).ravel())
    zero = norms == 0
    _warn_zero_rows(int(zero.sum()), name)
    inv = np.where(zero, 0.0, 1.0 / np.where(zero, 1.0, norms))
    return sp.csr_matrix(sp.diags(inv) @ A)


def _normalised_graph(X, k, metric, name, device):
    """The row-normalised sample graph of one layer, with a warning naming ``name`` when the
    layer is constant (every sample alike: a graph in which every pair is the same)."""
    Xt = as_features(X, name=name, device=device, check_finite=False)
    graph = _full_graph(Xt, metric, name, device) if k is None else sample_graph(
        Xt, k, metric=metric, name=name, device=device)  # refuses NaN/Inf first
    if is_constant_rows(Xt):
        warn_user(f"GBS: {name} is constant (every sample has the same features): its sample graph gives "
                  "every pair the same weight (or none), so its GBS reflects no representation; leave the "
                  "layer out.")
    return _row_normalised(graph, name)


def gbs(X, Y, *, k: int | None = None, metric: str = "cosine", device=None) -> float:
    """GBS(X, Y) = (1/N) Σ_i cos(A_X[i, :], A_Y[i, :]): the mean over samples of the cosine between
    that sample's rows of the two layers' sample graphs (``sample_graph``).

    By default the graphs are the full cosine graphs (every pair, diagonal 0, negative weights
    kept), as in the authors' code (whose ``--topk`` only feeds its motif analysis); ``k=`` uses
    kNN graphs instead, as for modularity. A row that is all zero contributes 0, with a warning.
    GBS(X, X) = 1; symmetric; invariant to orthogonal transforms and to isotropic (even per-sample
    positive) scaling of X.

    Parameters
    ----------
    X, Y : array or tensor (N, ...)
        Two layers' features on the same N samples (flattened).
    k : int, optional
        Neighbours per sample in a kNN graph; None (default) = the full graph.
    metric : {"cosine", "correlation", "linear"}
        Sample similarity.
    device : str or torch.device, optional
        Where to compute.

    Returns
    -------
    float

    Raises
    ------
    ValueError
        For different N, NaN/Inf features, or N ≤ k.

    Warns
    -----
    UserWarning
        When some sample's adjacency row is all zero (e.g. an all-zero sample); when ``X`` or
        ``Y`` is constant (every sample alike).

    References
    ----------
    Chen et al., "Graph-Based Similarity of Neural Network Representations", arXiv 2111.11165
    (2021); github.com/implicitDeclaration/similarity ``metric/GBS.py``.

    Examples
    --------
    >>> import numpy as np
    >>> from repgraph import gbs
    >>> X = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    >>> round(gbs(X, X), 6), round(gbs(X, 3 * X @ np.array([[0.0, 1.0], [-1.0, 0.0]])), 6)    # rotated, scaled
    (1.0, 1.0)
    >>> round(gbs(X, np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]])), 6)    # every row negated
    -1.0
    """
    nx_, ny_ = len(X), len(Y)
    if nx_ != ny_:
        raise ValueError(f"X has {nx_} samples but Y has {ny_}; GBS compares graphs on the same samples.")
    A = _normalised_graph(X, k, metric, "X", device)
    B = _normalised_graph(Y, k, metric, "Y", device)
    if k is None:
        return float((A * B).sum() / nx_)
    return float(A.multiply(B).sum() / nx_)


class PreparedGraph:
    """One layer's GBS sample graph with L2-normalised rows (what ``gbs`` builds of X alone), kept
    so that comparing it with many layers, or with many permutations of another layer, repeats
    only the inner product. ``permuted(perm)`` is the graph of ``X[perm]`` by re-indexing
    ``Â[perm][:, perm]`` (the graph and its row norms commute with a permutation of the samples;
    kNN ties aside, which break towards the lower index).

    Parameters
    ----------
    X : array or tensor (N, ...)
        One layer's features (flattened).
    k : int, optional
        Neighbours per sample in a kNN graph; None = the full graph.
    metric : {"cosine", "correlation", "linear"}
    device : str or torch.device, optional
    name : str
        Name used in error and warning messages.

    Examples
    --------
    >>> import numpy as np
    >>> from repgraph.analyzers.gbs import PreparedGraph, prepared_gbs
    >>> X = np.random.default_rng(0).normal(size=(10, 3))
    >>> round(prepared_gbs(PreparedGraph(X), PreparedGraph(3 * X)), 6)
    1.0
    """

    def __init__(self, X, k: int | None = None, metric: str = "cosine", device=None, name: str = "X"):
        if X is None:  # ``permuted``'s empty shell
            return
        self.k, self.metric, self.name = k, metric, name
        self.graph = _normalised_graph(X, k, metric, name, device)
        self.n = self.graph.shape[0]

    def permuted(self, perm) -> "PreparedGraph":
        """The prepared graph of ``X[perm]``, re-indexed from this one (nothing recomputed)."""
        perm = np.asarray(perm)
        if perm.shape != (self.n,):
            raise ValueError(f"perm must be a permutation of the {self.n} samples of {self.name}, got shape "
                             f"{perm.shape}.")
        out = PreparedGraph(None)
        out.k, out.metric, out.name, out.n = self.k, self.metric, self.name, self.n
        if isinstance(self.graph, torch.Tensor):
            index = torch.as_tensor(perm, dtype=torch.long, device=self.graph.device)
            out.graph = self.graph[index][:, index]
        else:
            out.graph = self.graph[perm][:, perm]
        return out


def prepared_gbs(a: PreparedGraph, b: PreparedGraph) -> float:
    """``gbs(X, Y)`` of two prepared layers: ``(1/N)·⟨Â_X, Â_Y⟩`` of their row-normalised sample
    graphs (equal to ``gbs`` up to the order of float64 sums).

    Parameters
    ----------
    a, b : PreparedGraph

    Returns
    -------
    float

    Raises
    ------
    ValueError
        For layers of different N.

    Examples
    --------
    >>> import numpy as np
    >>> from repgraph.analyzers.gbs import PreparedGraph, gbs, prepared_gbs
    >>> rng = np.random.default_rng(0)
    >>> X, Y = rng.normal(size=(12, 3)), rng.normal(size=(12, 5))
    >>> abs(prepared_gbs(PreparedGraph(X, k=3), PreparedGraph(Y, k=3)) - gbs(X, Y, k=3)) < 1e-12
    True
    """
    if a.n != b.n:
        raise ValueError(f"{a.name} has {a.n} samples but {b.name} has {b.n}; GBS compares graphs on the same "
                         "samples.")
    if (a.k, a.metric) != (b.k, b.metric):
        raise ValueError(f"{a.name} and {b.name} were prepared with different graphs (k={a.k!r}, "
                         f"metric={a.metric!r} vs k={b.k!r}, metric={b.metric!r}).")
    return _graph_inner(a.graph, b.graph) / a.n


def _gbs_frame(values, rows, cols, k, metric: str) -> pd.DataFrame:
    """The GBS matrix as a table (rows: layers of ``acts``, columns: of ``acts2``) with its ``attrs``."""
    out = pd.DataFrame(values, index=pd.Index(rows, name="layer"), columns=pd.Index(cols, name="layer2"))
    return described(out, "GBS", REFERENCE, k="full" if k is None else k, metric=metric,
                     graph="full cosine graph" if k is None else "kNN graph, (A + Aᵀ)/2")


def _layer_graph(rows, k, metric: str, name: str, device=None, to_cpu: bool = False):
    """One layer's GBS sample graph with L2-normalised rows (``_normalised_graph``): a sparse kNN
    graph, or (``k=None``) the dense full graph; on the CPU when ``to_cpu`` (to leave a worker)."""
    graph = _normalised_graph(rows[0:len(rows)], k, metric, name, device)
    return graph.cpu() if to_cpu and isinstance(graph, torch.Tensor) else graph


def _graph_inner(A, B) -> float:
    """``⟨A, B⟩ = Σ_ij A_ij B_ij`` of two row-normalised sample graphs (dense tensors or sparse)."""
    if isinstance(A, torch.Tensor):
        return float(A.reshape(-1) @ B.reshape(-1))
    return float(A.multiply(B).sum())


def _graph_gram(graphs, n: int) -> np.ndarray:
    """``G_ab = ⟨Â_a, Â_b⟩`` of every pair of the (N, N) row-normalised graphs, from one stacked
    product of the flattened graphs (dense float64 in blocks of rows within the working-memory
    budget, or sparse)."""
    if isinstance(graphs[0], torch.Tensor):
        G = torch.zeros(len(graphs), len(graphs), dtype=torch.float64, device=graphs[0].device)
        step = row_chunk(n, 8 * n * len(graphs))  # the stacked float64 block stays within the budget
        for start in range(0, n, step):
            M = torch.stack([A[start:start + step].reshape(-1) for A in graphs])
            G += M @ M.T
        return G.cpu().numpy()
    M = sp.vstack([A.reshape(1, n * n) for A in graphs]).tocsr()
    return (M @ M.T).toarray()


def gbs_matrix(acts, acts2=None, *, k: int | None = None, metric: str = "cosine", device=None,
               progress: bool = True, client=None) -> pd.DataFrame:
    """GBS between every layer of ``acts`` and every layer of ``acts2`` (default: ``acts``).

    Each layer's sample graph (``sample_graph``: the full cosine graph by default, a kNN graph
    with ``k=``) is built once (O(L) builds) and its rows L2-normalised; then
    ``GBS_ab = (1/N)·⟨Â_a, Â_b⟩`` for all pairs from one stacked product of the flattened graphs
    (dense float64, in blocks of rows, for full graphs: they take L·N²·8 bytes; sparse for kNN).

    Parameters
    ----------
    acts : Activations, mapping layer -> array (N, ...), ``open_store(path)`` or a store's path
    acts2 : Activations, mapping or store, optional
        A second network's layers on the same samples (cross matrix); default ``acts``.
    k : int, optional
        Neighbours per sample; None (default) = the full graph, as the authors' code.
    metric : {"cosine", "correlation", "linear"}
    device : str or torch.device, optional
    progress : bool
        Show a progress bar over the layers.
    client : distributed.Client, optional
        Compute on this Dask cluster; default: an enclosing ``repgraph.parallel`` block's, else here.
        One task per layer builds its graph; in process one task then takes every pair from one
        stacked product; on a cluster one task per pair (a ≤ b, or every pair of ``acts`` ×
        ``acts2``), the graphs staying on their workers, so no worker holds more than two graphs
        (a kNN graph is N·k entries; the full one N² float64, which must fit a worker). Equal to
        the in-process values up to the order of float64 sums (~1e-16 relative).

    Returns
    -------
    DataFrame (rows: ``acts`` layers, columns: ``acts2`` layers); ``attrs`` record the measure,
    reference, ``k`` ("full" for None) and ``metric``.

    Raises
    ------
    TypeError
        If ``acts`` or ``acts2`` is not a non-empty mapping.
    ValueError
        For layers with different N, NaN/Inf features, or N ≤ k.

    Warns
    -----
    UserWarning
        When a layer is constant (every sample alike; naming it), and when some sample's
        adjacency row is all zero.

    References
    ----------
    Chen et al., "Graph-Based Similarity of Neural Network Representations", arXiv 2111.11165.

    Examples
    --------
    >>> import numpy as np
    >>> from repgraph import gbs_matrix
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(30, 8))
    >>> M = gbs_matrix({"a": X, "b": 2 * X, "c": rng.normal(size=(30, 8))}, progress=False)
    >>> M.round(2).loc["a", "b"], M.attrs["k"]
    (np.float64(1.0), 'full')
    """
    with planning(client) as runner:
        xs, ys, n = compared_sources(acts, acts2, runner)
        sources = xs + ys
        graphs = [runner.submit(_layer_graph, s.data, k, metric, s.name, device, not runner.in_process)
                  for s in sources]
        values = np.zeros((len(xs), len(ys) or len(xs)))
        if runner.in_process:  # every pair from one stacked product of the flattened graphs
            G = runner.results([runner.submit(_graph_gram, graphs, n)], desc="GBS", progress=progress)[0] / n
            values[:] = G if acts2 is None else G[:len(xs), len(xs):]
        else:  # one task per pair: no worker holds more than the two graphs it multiplies
            if acts2 is None:
                pairs = [(a, b) for a in range(len(xs)) for b in range(a, len(xs))]
            else:
                pairs = [(a, len(xs) + b) for a in range(len(xs)) for b in range(len(ys))]
            inner = runner.results([runner.submit(_graph_inner, graphs[a], graphs[b]) for a, b in pairs],
                                   desc="GBS pairs", progress=progress)
            runner.emit_warnings(graphs)
            for (a, b), value in zip(pairs, inner):
                if acts2 is None:
                    values[a, b] = values[b, a] = value / n
                else:
                    values[a, b - len(xs)] = value / n
    return _gbs_frame(values, [s.layer for s in xs], [s.layer for s in (ys or xs)], k, metric)
