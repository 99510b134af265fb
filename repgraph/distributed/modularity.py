"""Layer-wise modularity on a Dask cluster: tasks per (layer, run of consecutive batches), each
reading its own rows and running the in-process kernel on them."""
from __future__ import annotations

import math

import pandas as pd

from .._arrays import as_label_codes
from .._config import get_config
from ..analyzers.modularity import _batch_plan, _batch_values, _check_curve_options, _curve_table, _stacks_batches
from ..builders.knn import _batch_steps
from .runner import runner_for
from .sources import layer_sources


def _batches_per_task(sources, batches, runner, stack: bool) -> int:
    """Consecutive batches of one layer per task: at most the working memory's worth of rows
    read, and few enough per task that every slot of the cluster still gets about four tasks
    (a task costs the scheduler milliseconds; a 500×256 batch is ~9 ms of work). Batches stacked
    into one ``knn_edges_batched`` call go in whole multiples of its groups of batches, so each
    group is the one the in-process call forms (the same products, to the bit)."""
    rows = max(b.stop - b.start for b in batches)
    batch_bytes = 4 * rows * max(math.prod(s.shape[1:]) for s in sources)
    in_budget = get_config()["working_memory"] * 2**20 // batch_bytes
    step = max(1, min(in_budget, math.ceil(len(sources) * len(batches) / (4 * runner.slots))))
    group = _batch_steps(len(batches), rows)[0] if stack else 1
    return max(1, step // group) * group


def _merged(parts) -> tuple[list, int]:
    """One layer's ``(values, constant)`` from those of its tasks, in batch order."""
    return [v for values, _ in parts for v in values], sum(constant for _, constant in parts)


def modularity_curve(acts, labels=None, *, k: int = 3, batch_size: int = 500, n_batches: int | None = None,
                     shuffle: int | None = None, device=None, batched: bool | None = None, progress: bool = True,
                     client=None) -> pd.DataFrame:
    """``repgraph.modularity_curve`` with tasks per (layer, run of batches).

    For every layer and batch of ``batch_size`` samples (full batches only, the same for every
    layer; ``shuffle=<seed>`` assigns the samples to batches at random): cosine kNN graph with
    ``k`` neighbours, ``A = (A + Aᵀ)/2``, ``Q = tr(YᵀAY)/(2m) − ‖Yᵀk‖²/(2m)²`` of the label
    partition (Lu et al., ECCV 2022); per layer the mean and sample std (ddof = 1) over batches.
    The batch plan, its warnings and the table are the in-process ones; each task reads its
    batches itself (from the store's file on the worker, or from an array sent once) and runs the
    in-process kernel on them, so the values equal the in-process ones exactly. A task takes one
    batch, or when batches are small a run of consecutive batches of one layer: at most the
    working memory's worth of rows, leaving about four tasks per worker thread (with
    ``batched``, whole groups of the in-process batched product).

    Parameters
    ----------
    acts : Activations, mapping layer -> array, StoreArrays or path of a store
    labels : array-like, optional
        One per sample; default ``acts.labels``.
    k, batch_size, n_batches, shuffle, device, batched, progress
        As in ``repgraph.modularity_curve``.
    client : distributed.Client, optional
        Default: the client of the enclosing ``repgraph.parallel`` block; with none, the same
        tasks run in this process.

    Returns
    -------
    pandas.DataFrame
        (layer, depth, modularity, std, n_samples) with the parameters, ``n_batches_used`` and
        ``n_samples`` in ``attrs``, as in process.

    Raises
    ------
    TypeError
        If ``acts`` is not a non-empty mapping or store.
    ValueError
        Without labels, for ``k`` < 1, ``batch_size`` < 2, ``n_batches`` < 1, a batch with N ≤ k,
        NaN/Inf in a batch.

    Warns
    -----
    UserWarning
        As ``repgraph.modularity_curve``: samples left out, batches missing classes, continuous
        labels, constant layers.

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
    _check_curve_options(k, batch_size, n_batches)  # before any data is sent
    runner = runner_for(client)
    sources, stored_labels = layer_sources(acts, runner)
    labels = stored_labels if labels is None else labels
    batches = _batch_plan(labels, sources[0].n, sources[0].layer, batch_size, n_batches, shuffle)
    codes = [as_label_codes(labels, s.n, name=f"labels (for layer {s.layer!r})") for s in sources]
    # the sources are numpy on the workers: on CUDA only when device says so
    stack = _stacks_batches(batched, device is not None and str(device).startswith("cuda"), len(batches))
    step = _batches_per_task(sources, batches, runner, stack)
    starts = range(0, len(batches), step)
    tasks = []
    for source, layer_codes in zip(sources, codes):
        for i in starts:
            group = batches[i:i + step]
            name = source.name if len(group) == len(batches) else f"{source.name} (batches {i}:{i + len(group)})"
            tasks.append(runner.submit(_batch_values, source.data, group, [layer_codes[b.rows] for b in group],
                                       int(k), source.layer, device, stack, name))
    parts = runner.results(tasks, desc="modularity", progress=progress)
    results = [_merged(parts[j:j + len(starts)]) for j in range(0, len(parts), len(starts))]
    return _curve_table([s.layer for s in sources], results, batches, k=k, batch_size=batch_size,
                        n_batches=n_batches, shuffle=shuffle)
