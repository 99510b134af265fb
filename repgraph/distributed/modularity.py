"""Layer-wise modularity on a Dask cluster: tasks per (layer, run of consecutive batches), each
reading its own rows."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .._arrays import as_features, as_label_codes
from .._config import get_config
from .._results import described
from ..analyzers.modularity import _batch_bounds, edge_modularity
from ..builders.knn import knn_edges
from .runner import runner_for
from .sources import layer_sources


def _batch_modularity(rows, start: int, stop: int, codes, k: int, name: str, device=None) -> float:
    """Modularity of the label partition ``codes`` on the cosine kNN graph ``(A + Aᵀ)/2`` of rows
    ``start:stop`` of ``rows`` (a ``LayerFile`` or an array): the in-process kernels
    (``knn_edges``, ``edge_modularity``) on one batch."""
    X = as_features(rows[start:stop], name=name, device=device, check_finite=False)
    if X.shape[0] <= k:
        raise ValueError(f"{name} has N={X.shape[0]} samples but k={k}: a kNN graph needs N > k.")
    r, c, w = knn_edges(X, k, "cosine", name=name)
    return edge_modularity(r, c, w, codes)


def _batches_modularity(rows, bounds, codes, k: int, layer_name: str, device=None) -> list[float]:
    """``_batch_modularity`` of consecutive batches ``bounds`` of one layer (one task)."""
    return [_batch_modularity(rows, a, b, codes[i], k, f"{layer_name} (samples {a}:{b})", device)
            for i, (a, b) in enumerate(bounds)]


def _batches_per_task(sources, bounds, runner) -> int:
    """Consecutive batches of one layer per task: at most the working memory's worth of rows
    read, and few enough per task that every slot of the cluster still gets about four tasks
    (a task costs the scheduler milliseconds; a 500×256 batch is ~9 ms of work)."""
    batch_bytes = 4 * max(b - a for per_layer in bounds for a, b in per_layer) * \
        max(math.prod(s.shape[1:]) for s in sources)
    in_budget = get_config()["working_memory"] * 2**20 // batch_bytes
    total = sum(len(per_layer) for per_layer in bounds)
    return max(1, min(in_budget, math.ceil(total / (4 * runner.slots))))


def modularity_curve(acts, labels=None, *, k: int = 3, batch_size: int = 500, n_batches: int | None = None,
                     device=None, progress: bool = True, client=None) -> pd.DataFrame:
    """``repgraph.modularity_curve`` with tasks per (layer, batch).

    For every layer and consecutive batch of ``batch_size`` samples: cosine kNN graph with ``k``
    neighbours, ``A = (A + Aᵀ)/2``, ``Q = tr(YᵀAY)/(2m) − ‖Yᵀk‖²/(2m)²`` of the label partition
    (Lu et al., ECCV 2022); per layer the mean and population std over batches. Each task reads
    its batches itself (from the store's file on the worker, or from an array sent once) and runs
    the in-process kernels on each, so the values equal the in-process ones exactly. A task takes
    one batch, or when batches are small a run of consecutive batches of one layer: at most the
    working memory's worth of rows, leaving about four tasks per worker thread.

    Parameters
    ----------
    acts : Activations, mapping layer -> array, StoreArrays or path of a store
    labels : array-like, optional
        One per sample; default ``acts.labels``.
    k, batch_size, n_batches, device, progress
        As in ``repgraph.modularity_curve``.
    client : distributed.Client, optional
        Default: the client of the enclosing ``repgraph.parallel`` block; with none, the same
        tasks run in this process.

    Returns
    -------
    pandas.DataFrame
        (layer, depth, modularity, std, n_samples) with the parameters in ``attrs``.

    Raises
    ------
    TypeError
        If ``acts`` is not a non-empty mapping or store.
    ValueError
        Without labels, for ``k`` < 1, ``batch_size`` < 2, a batch with N ≤ k, NaN/Inf in a batch.

    References
    ----------
    Lu et al., "Understanding the Dynamics of DNNs Using Graph Modularity", ECCV 2022.

    Examples
    --------
    >>> import numpy as np
    >>> from repgraph.distributed import modularity_curve
    >>> X = np.repeat(np.eye(2, dtype=np.float32), 8, axis=0) + 0.01 * np.arange(16)[:, None]
    >>> curve = modularity_curve({"x": X}, np.repeat([0, 1], 8), k=3, batch_size=16, progress=False)
    >>> round(float(curve["modularity"][0]), 3)
    0.5
    """
    runner = runner_for(client)
    sources, stored_labels = layer_sources(acts, runner)
    labels = stored_labels if labels is None else labels
    if labels is None:
        raise ValueError("No labels: pass labels=... or capture activations from data with labels.")
    if not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}.")
    if batch_size < 2:
        raise ValueError(f"batch_size must be >= 2, got {batch_size}.")
    codes = [as_label_codes(labels, s.n, name=f"labels (for layer {s.layer!r})") for s in sources]
    bounds = [_batch_bounds(s.n, batch_size, n_batches) for s in sources]
    step = _batches_per_task(sources, bounds, runner)
    tasks, plan = [], []
    for source, layer_codes, layer_bounds in zip(sources, codes, bounds):
        plan.append((source.layer, layer_bounds))
        for i in range(0, len(layer_bounds), step):
            group = layer_bounds[i:i + step]
            tasks.append(runner.submit(_batches_modularity, source.data, group,
                                       [layer_codes[a:b] for a, b in group], int(k), source.name, device))
    values = [v for part in runner.results(tasks, desc="modularity", progress=progress) for v in part]
    first = 0
    rows = []
    for depth, (layer, layer_bounds) in enumerate(plan):
        batch_values = values[first:first + len(layer_bounds)]
        first += len(layer_bounds)
        rows.append({"layer": layer, "depth": depth, "modularity": float(np.mean(batch_values)),
                     "std": float(np.std(batch_values)), "n_samples": sum(b - a for a, b in layer_bounds)})
    curve = pd.DataFrame(rows, columns=["layer", "depth", "modularity", "std", "n_samples"])
    return described(curve, "modularity of the label partition on a cosine kNN graph", "Lu et al., ECCV 2022",
                     k=k, batch_size=batch_size, n_batches=n_batches, symmetrize="mean", metric="cosine")
