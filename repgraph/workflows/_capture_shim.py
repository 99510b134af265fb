"""TEMPORARY SHIM — delete when the capture branch (``capture_activations(..., inputs=True)``) lands.

A stand-in with the agreed call ``capture_activations(model, data, layers, inputs=True, reduce=None,
...)`` for what ``block_redundancy`` needs: each selected block's input (first positional argument
or ``hidden_states``) under ``"name:input"`` and its output (first tensor of a tuple) under
``name``, for a tensor (N, ...), a tuple ``(X, y)`` or a dict of tensors (``input_ids``,
``attention_mask``, passed as keyword arguments)."""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

from ..hooks.activations import Activations
from ..hooks.layers import select_layers
from ..hooks.modes import evaluating


def _first_tensor(value):
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, (tuple, list)) and value and isinstance(value[0], torch.Tensor):
        return value[0]
    first = getattr(value, "last_hidden_state", None)
    if isinstance(first, torch.Tensor):
        return first
    raise TypeError(f"block output of type {type(value).__name__} has no first tensor")


def capture_activations(model, data, layers="blocks", *, inputs=False, reduce=None, max_samples=None,
                        device=None, progress=True, batch_size=64):
    if not inputs or reduce is not None:
        raise NotImplementedError("the shim only captures raw block inputs and outputs")
    names = select_layers(model, layers)
    labels = None
    if isinstance(data, tuple):
        data, labels = data
    if isinstance(data, Mapping):
        n = len(data["input_ids"])
        batches = ({k: v[i:i + batch_size] for k, v in data.items()} for i in range(0, n, batch_size))
    else:
        n = len(data)
        batches = (data[i:i + batch_size] for i in range(0, n, batch_size))
    n = n if max_samples is None else min(n, max_samples)
    store = {f"{name}{suffix}": [] for name in names for suffix in ("", ":input")}
    handles = []
    for name in names:
        module = model.get_submodule(name)

        def pre(_m, args, kwargs, name=name):
            x = args[0] if args else kwargs["hidden_states"]
            store[f"{name}:input"].append(x.detach().float().cpu().numpy())

        def post(_m, _args, out, name=name):
            store[name].append(_first_tensor(out).detach().float().cpu().numpy())

        handles.append(module.register_forward_pre_hook(pre, with_kwargs=True))
        handles.append(module.register_forward_hook(post))
    try:
        with evaluating(model), torch.no_grad():
            seen = 0
            for batch in batches:
                if seen >= n:
                    break
                if isinstance(batch, Mapping):
                    model(**{k: v[:n - seen] for k, v in batch.items()})
                    seen += len(batch["input_ids"][:n - seen])
                else:
                    model(batch[:n - seen])
                    seen += len(batch[:n - seen])
    finally:
        for h in handles:
            h.remove()
    arrays = {k: np.concatenate(v) for k, v in store.items()}
    return Activations(arrays, None if labels is None else np.asarray(labels)[:n])
