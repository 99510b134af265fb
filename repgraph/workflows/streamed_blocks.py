"""stream_blocks: one pass of the data through a model in which each block's input and output
go, batch by batch, to an accumulator as soon as the block returns, and are then dropped."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from ..hooks.batches import input_dtype, iter_batches
from ..hooks.handles import TemporaryHooks
from ..hooks.in_process_capture import check_options, run_device
from ..hooks.modes import evaluating
from ..hooks.recorder import ActivationRecorder


def _batch_mask(mask, start: int, n: int, device):
    """Rows ``start:start+n`` of the user's ``mask`` on ``device``."""
    rows = mask[start:start + n]
    rows = torch.from_numpy(np.asarray(rows)) if not isinstance(rows, torch.Tensor) else rows
    return rows.to(device)


def stream_blocks(model: nn.Module, data, layers, accumulator, *, mask=None, max_samples: int | None = None,
                  batch_size: int = 64, device=None, progress: bool = True):
    """Run ``data`` through ``model`` once (eval mode, ``torch.no_grad()``, modes restored) and
    give every call of every block in ``layers`` to its accumulator.

    An ``ActivationRecorder`` (unreduced, float32 copies on the model's device, inputs too)
    records a block's input and output; a forward hook of repgraph's, registered after the
    recorder's on the module that gives the block's output (the block itself, or a flat conv
    group's last member: ``repgraph.hooks.layers.layer_ends``), passes them at once to
    ``accumulator(key).update(x_in, x_out, mask)`` and forgets them, so at most one block's batch
    of hidden states is held beside the model's own. ``key`` is the recorder's name of the call (``name``, ``name:1`` for a second call per
    forward). The batch's mask is the rows of ``mask`` when given, else the ``attention_mask``
    the model is called with (dict data), else None.

    Parameters
    ----------
    model : nn.Module
        The model.
    data : tensor, tuple (X, y), dict, Dataset, DataLoader or iterable of batches
        What ``capture_activations`` accepts.
    layers : str, list or callable
        The blocks, as ``capture_activations``' selection.
    accumulator : callable
        ``key -> object with update(x_in, x_out, mask)``, called once per block call on the
        first batch.
    mask : array (N, ...), optional
        1 for real tokens, 0 for padding, sliced per batch.
    max_samples : int, optional
        Stop after this many samples.
    batch_size : int, default 64
        Samples per forward pass (a DataLoader keeps its own batches).
    device : str or torch.device, optional
        Where the model runs (it must already be there); the accumulators get tensors there.
    progress : bool, default True
        Show a progress bar over the samples.

    Returns
    -------
    accumulators : dict
        Key -> its accumulator, in the order the blocks first returned.
    labels : numpy.ndarray or None
        The labels the batches carried.
    n_samples : int
        Samples run.

    Raises
    ------
    ValueError
        For a bad ``batch_size`` or ``max_samples``, a model on another device, an unknown layer,
        a layer that never fires or fires differently in a later batch, batches of which only
        some carry labels, empty data, and what the accumulators raise.
    """
    check_options(batch_size, max_samples)
    run = run_device(model, device)
    rec = ActivationRecorder(model, layers, reducer=None, device=None, inputs=True)
    batches, total = iter_batches(data, batch_size)
    if max_samples is not None and total is not None:
        total = min(total, max_samples)
    accumulators, label_parts, carried = {}, [], set()
    seen, batch_mask = 0, None
    fired = []

    def consume(_module, _args, _output):
        key = rec.fired[-1]  # the recorder's hook on this module, registered first, has just recorded it
        x_out, x_in = rec.outputs.pop(key)[0], rec.outputs.pop(key + ":input")[0]
        if seen == 0 and key not in accumulators:
            accumulators[key] = accumulator(key)
        elif key not in accumulators:
            raise ValueError(f"Block call {key!r} fired in a later batch but not in the first: the layers must "
                             "fire the same way for every batch.")
        accumulators[key].update(x_in, x_out, rec.attention_mask if batch_mask is None else batch_mask)
        fired.append(key)

    dtype = input_dtype(model)
    bar = tqdm(total=total, unit="sample", desc="block criteria", disable=not progress, leave=False)
    modules = dict(model.named_modules())
    with evaluating(model), rec, torch.no_grad():
        hooks = TemporaryHooks(model)
        try:
            for name in rec.layers:
                hooks.forward(modules[rec.ends[name][1]], consume)  # where the recorder takes the output
            for index, batch in enumerate(batches):
                if max_samples is not None and seen + batch.n > max_samples:
                    batch = batch.part(0, max_samples - seen)
                if batch.n == 0:
                    continue
                carried.add(batch.labels is not None)
                if len(carried) > 1:
                    raise ValueError("Some batches carry labels and others do not; give every batch its labels.")
                if batch.labels is not None:
                    label_parts.append(batch.labels)
                rec.n_samples = batch.n
                batch_mask = None if mask is None else _batch_mask(mask, seen, batch.n, run)
                fired.clear()
                batch.run(model, run, dtype, first=index == 0)
                _check_fired(rec.layers, fired, list(accumulators), index)
                seen += batch.n
                bar.update(batch.n)
                if max_samples is not None and seen >= max_samples:
                    break
        finally:
            hooks.remove()
            bar.close()
    if seen == 0:
        raise ValueError("data is empty: no batch to run through the model.")
    return accumulators, (np.concatenate(label_parts) if label_parts else None), seen


def _check_fired(layers: list[str], fired: list[str], keys: list[str], index: int) -> None:
    if index == 0:
        missing = [n for n in layers if n not in fired]
        if missing:
            raise ValueError(f"Layer(s) {missing} never fired during the forward pass: they are registered but "
                             "not used by forward(); choose layers that run (list_layers(model, x) shows calls "
                             "per forward).")
    elif sorted(fired) != sorted(keys):
        raise ValueError(f"Batch {index} ran the blocks {sorted(fired)} but the first batch ran {sorted(keys)}: "
                         "the layers must fire the same way for every batch.")
