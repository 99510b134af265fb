"""The in-process capture: stream data through a model batch by batch and keep the selected layers'
outputs in memory, or stream them into a store (resumable; ``repgraph.hooks.stored``)."""
from __future__ import annotations

import itertools
import numbers
import os
from pathlib import Path

import torch
from torch import nn

from .._arrays import resolve_device
from .activations import Activations
from .batches import iter_batches
from .forward import forward_all
from .in_memory import GrowingArrays
from .recorder import ActivationRecorder
from .stored import capture_config, capture_to_store


def check_options(batch_size, max_samples, store=None):
    """Refuse a ``batch_size``, ``max_samples`` or ``store`` of the wrong kind, naming it."""
    if store is not None and not isinstance(store, (str, os.PathLike)):
        raise TypeError(f"store must be a folder path (str or pathlib.Path) or None, got {type(store).__name__}.")
    if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer (samples per forward pass), got {batch_size!r}.")
    if max_samples is not None and (isinstance(max_samples, bool) or not isinstance(max_samples, numbers.Integral)
                                    or max_samples < 1):
        raise ValueError(f"max_samples must be a positive integer or None, got {max_samples!r}.")


def check_materialised(model: nn.Module) -> list[torch.Tensor]:
    """The model's parameters and buffers, after checking that they hold values (none on the meta
    device)."""
    tensors = list(itertools.chain(model.parameters(), model.buffers()))
    if any(t.is_meta for t in tensors):
        raise ValueError(f"{type(model).__name__} has parameters on the meta device (they hold no values); "
                         "materialise it before capturing, e.g. model.to_empty(device='cpu') then "
                         "load_state_dict(...), or build it without the meta device.")
    return tensors


def run_device(model: nn.Module, device) -> torch.device:
    """Where the forward runs: ``device`` (checked) or the model's; the model must hold real weights
    there."""
    tensors = check_materialised(model)
    run = resolve_device(device, like=model)
    if run.type == "cuda" and run.index is None:
        run = torch.device("cuda", torch.cuda.current_device())
    where = {t.device for t in tensors}
    if len(where) == 1 and where != {run}:
        raise ValueError(f"device={str(device)!r} but the model's weights are on {where.pop()}; move the "
                         "model there first (model.to(device)) or pass device=None.")
    return run


def capture_in_process(model: nn.Module, data, layers="blocks", *, reduce="auto", output=None,
                        batch_axis=0, inputs: bool = False, label_key="auto", max_samples: int | None = None,
                        device=None, store=None, progress: bool = True, batch_size: int = 256,
                        client=None) -> Activations:
    """``capture_activations`` in this process (its parameters but ``client``): the batches run
    through the model one after another; each layer's rows go to growing in-memory arrays, or
    stream into ``store`` (``capture_to_store``: resumable, reused when complete)."""
    check_options(batch_size, max_samples, store)
    device = run_device(model, device)
    rec = ActivationRecorder(model, layers, reducer=reduce, inputs=inputs, output=output, batch_axis=batch_axis)
    _, total = iter_batches(data, batch_size, label_key)  # checks the data form before anything runs
    if max_samples is not None and total is not None:
        total = min(total, max_samples)
    meta = {"model": type(model).__name__, "reduce": rec.reducer.name, "max_samples": max_samples,
            "inputs": rec.inputs}
    if store is not None:
        config = capture_config(model, rec, output, batch_axis, label_key, max_samples)
        return capture_to_store(model, data, rec, Path(store), config=config, device=device, total=total,
                                 batch_size=batch_size, label_key=label_key, max_samples=max_samples,
                                 progress=progress, meta=meta)
    target = GrowingArrays(total)
    labels, n = forward_all(model, rec, iter_batches(data, batch_size, label_key)[0], target, device,
                             total=total, max_samples=max_samples, progress=progress)
    return Activations(target.result(n), labels, meta=meta)

