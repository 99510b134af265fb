"""Modularity curves of many checkpoints (the "dynamics" of training), one task per checkpoint."""
from __future__ import annotations

from collections.abc import Mapping

import pandas as pd
from torch import nn

from .._results import described
from ..analyzers.modularity import modularity_curve
from ..execution.runner import planning
from ..hooks.capture import capture_activations


def _checkpoint_curve(checkpoint, data, layers, reduce, max_samples, device, options: dict):
    """Capture one checkpoint's activations of ``data`` (in memory) and return its modularity curve.
    ``checkpoint`` is a model or a function of no arguments that builds or loads one."""
    model = checkpoint if isinstance(checkpoint, nn.Module) else checkpoint()
    if not isinstance(model, nn.Module):
        raise TypeError(f"a checkpoint must be an nn.Module or a function returning one; it gave "
                        f"{type(model).__name__}.")
    acts = capture_activations(model, data, layers, reduce=reduce, max_samples=max_samples, device=device, progress=False)
    return modularity_curve(acts, device=device, progress=False, **options)


def modularity_curves(checkpoints, data, layers="modularity", *, k: int = 3, batch_size: int = 500,
                      n_batches: int | None = None, shuffle: int | None = None, batched: bool | None = None,
                      reduce="flatten", max_samples: int | None = None, device=None, progress: bool = True,
                      client=None) -> pd.DataFrame:
    """Layer-wise modularity curves of many checkpoints, one long table.

    For each checkpoint one task captures the activations of ``data`` at ``layers``
    (``repgraph.capture_activations``, in the worker's memory) and computes
    ``repgraph.modularity_curve`` on them (Lu et al., ECCV 2022: per layer, the modularity of the
    label partition on cosine kNN graphs of batches of ``batch_size`` samples). ``data`` is sent to
    the cluster once; a checkpoint given as a function (e.g. ``functools.partial(load, path)``)
    loads its model on the worker, so no weights pass through the client.

    Parameters
    ----------
    checkpoints : mapping name -> model or function, or a sequence of them (named 0, 1, …)
        The checkpoints, in the order of the result.
    data
        Labelled data, any form ``repgraph.capture_activations`` accepts.
    layers, reduce, max_samples, device
        As in ``repgraph.capture_activations``.
    k, batch_size, n_batches, shuffle, batched
        As in ``repgraph.modularity_curve`` (the same batches for every checkpoint).
    progress : bool
        Show a bar over the checkpoints.
    client : distributed.Client, optional
        Default: the client of the enclosing ``repgraph.parallel`` block; with none, the
        checkpoints run one after another in this process.

    Returns
    -------
    pandas.DataFrame
        (checkpoint, layer, depth, modularity, std, n_samples), checkpoints in the given order.

    Raises
    ------
    ValueError
        For no checkpoints, data without labels, and as capture and ``modularity_curve``.
    TypeError
        For a checkpoint that is neither a model nor a function returning one.

    References
    ----------
    Lu et al., "Understanding the Dynamics of DNNs Using Graph Modularity", ECCV 2022.

    Examples
    --------
    >>> import torch
    >>> from repgraph import modularity_curves
    >>> _ = torch.manual_seed(0)
    >>> x, y = torch.randn(40, 6), torch.arange(40) % 2
    >>> nets = {epoch: torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.ReLU()) for epoch in (0, 1)}
    >>> table = modularity_curves(nets, (x, y), layers=["0", "1"], batch_size=40, progress=False)
    >>> table[["checkpoint", "layer"]].values.tolist()
    [[0, '0'], [0, '1'], [1, '0'], [1, '1']]
    """
    items = list(checkpoints.items()) if isinstance(checkpoints, Mapping) else list(enumerate(checkpoints))
    if not items:
        raise ValueError("checkpoints is empty: pass a mapping name -> model (or loader function).")
    options = {"k": k, "batch_size": batch_size, "n_batches": n_batches, "shuffle": shuffle, "batched": batched}
    with planning(client) as runner:
        shared = runner.share(data)
        tasks = [runner.submit(_checkpoint_curve, runner.share(c) if isinstance(c, nn.Module) else c, shared, layers,
                               reduce, max_samples, device, options) for _, c in items]
        curves = runner.results(tasks, desc="checkpoints", progress=progress)
    table = pd.concat([curve.assign(checkpoint=name) for (name, _), curve in zip(items, curves)], ignore_index=True)
    table = table[["checkpoint", "layer", "depth", "modularity", "std", "n_samples"]]
    used = {key: curves[0].attrs[key] for key in ("n_batches_used", "n_samples")}  # the same data every time
    return described(table, "modularity of the label partition on a cosine kNN graph, per checkpoint",
                     "Lu et al., ECCV 2022", **options, **used, layers=layers, reduce=str(reduce),
                     max_samples=max_samples, symmetrize="mean", metric="cosine")
