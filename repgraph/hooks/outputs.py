"""From what a module returns (or receives) to one batch-first tensor (N, ...).

``output=`` picks the tensor out of tuples, lists, dicts and Hugging Face ``ModelOutput``s;
``batch_axis=`` says where the samples are; ``module_input`` finds a module's input tensor.
"""
from __future__ import annotations

import fnmatch
from collections.abc import Mapping

import torch

from .._warnings import warn_user


def per_layer(option, layers: list[str], what: str, default):
    """``{layer: value}`` for an option given once for all layers or as a dict ``{name or glob
    pattern: value}`` (unnamed layers get ``default``); a dict key matching no layer raises."""
    if not isinstance(option, Mapping):
        return dict.fromkeys(layers, option)
    values = dict.fromkeys(layers, default)
    for pattern, value in option.items():
        hits = fnmatch.filter(layers, str(pattern))
        if not hits:
            raise ValueError(f"{what}= names {pattern!r}, which is not one of the captured layers {layers}.")
        for name in hits:
            values[name] = value
    return values


def _describe(value) -> str:
    if isinstance(value, torch.Tensor):
        return f"tensor{tuple(value.shape)}"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k!r}: {_describe(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (tuple, list)):
        return "(" + ", ".join(_describe(v) for v in value) + ")"
    return type(value).__name__


def select_output(value, output, layer: str) -> torch.Tensor:
    """The tensor to capture from a module's return value.

    A tensor is taken as it is. From a tuple or list, ``output=None`` takes the first tensor (the
    hidden states of transformer blocks) and an int indexes it; from a dict or ``ModelOutput``,
    None takes the first tensor value, a str is a key, an int indexes the values in order.
    """
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, Mapping):
        items = [(k, v) for k, v in value.items() if v is not None]
        if output is None:
            found = next((v for _, v in items if isinstance(v, torch.Tensor)), None)
        elif isinstance(output, str):
            found = dict(items).get(output)
            if found is None:
                raise ValueError(f"Layer {layer!r} returned {type(value).__name__} with keys "
                                 f"{[k for k, _ in items]}; output={output!r} is not one of them.")
        elif isinstance(output, int) and -len(items) <= output < len(items):
            found = items[output][1]
        else:
            raise ValueError(f"Layer {layer!r} returned {type(value).__name__} with {len(items)} entries "
                             f"{[k for k, _ in items]}; output={output!r} is not a key or index of it.")
    elif isinstance(value, (tuple, list)):
        if output is None:
            found = next((v for v in value if isinstance(v, torch.Tensor)), None)
        elif isinstance(output, int) and -len(value) <= output < len(value):
            found = value[output]
        else:
            raise ValueError(f"Layer {layer!r} returned a {type(value).__name__} of {len(value)} entries "
                             f"{_describe(value)}; output={output!r} is not an index of it.")
    else:
        found = None
    if not isinstance(found, torch.Tensor):
        raise TypeError(f"Layer {layer!r} returned {_describe(value)}; capture needs a tensor there: pass "
                        "output= (an index or key of the returned structure) or hook a submodule "
                        "that returns a tensor.")
    return found


def module_input(args: tuple, kwargs: dict, layer: str) -> torch.Tensor:
    """A module's input: its first positional tensor argument, else its ``hidden_states`` keyword."""
    found = next((a for a in args if isinstance(a, torch.Tensor)), None)
    if found is None:
        found = kwargs.get("hidden_states")
    if not isinstance(found, torch.Tensor):
        raise TypeError(f"Layer {layer!r} was called without a tensor argument (positional or "
                        f"hidden_states=): args {_describe(tuple(args))}, keywords {sorted(kwargs)}; "
                        "inputs=True cannot record its input.")
    return found


def declared_batch_first(module) -> bool | None:
    """The sample layout a module declares: its ``batch_first`` (RNNs, ``nn.MultiheadAttention``)
    or its attention's (``nn.TransformerEncoderLayer``/``DecoderLayer``), True for channel-first
    modules (convolutions, batch and instance norms: samples first), else None (unknown)."""
    flag = getattr(module, "batch_first", None)
    if flag is None:
        flag = getattr(getattr(module, "self_attn", None), "batch_first", None)
    if isinstance(flag, bool):
        return flag
    return True if hasattr(module, "in_channels") or hasattr(module, "num_features") else None


def batch_first(t: torch.Tensor, axis: int, n_samples: int | None, layer: str, *,
                declared: bool | None = None, confirmed: bool = False, warned: set | None = None) -> torch.Tensor:
    """``t`` with its sample axis ``axis`` moved to the front, checked against ``n_samples`` (the
    batch's sample count, when known).

    A 3-D output whose axes 0 and 1 both have ``n_samples`` entries (a (T, N, D) output with T = N)
    cannot show by its shape where the samples are. Then the default ``axis`` 0 is trusted only when
    ``confirmed`` (given per layer by the user) or when the module ``declared`` that it is batch
    first; a module declared ``batch_first=False`` raises ``ValueError``, and an undeclared one
    warns once per layer (``warned`` holds the layers already warned about).
    """
    if t.ndim == 0:
        raise ValueError(f"Layer {layer!r} produced a scalar (shape ()); a captured output needs a sample "
                         "axis: hook a module that returns one value per sample.")
    if not -t.ndim <= axis < t.ndim:
        raise ValueError(f"Layer {layer!r}: batch_axis={axis} but its output has shape {tuple(t.shape)}.")
    shape = tuple(t.shape)
    if axis not in (0, -t.ndim):
        t = t.movedim(axis, 0)
    if n_samples is not None and t.shape[0] != n_samples:
        raise ValueError(f"Layer {layer!r} output has shape {tuple(t.shape)} (sample axis {axis}) but the "
                         f"batch holds {n_samples} samples: its samples are not on axis {axis}. Pass "
                         f"batch_axis={{'{layer}': k}} (or batch_axis=k for every layer) with k the axis of "
                         "the samples, e.g. 1 for a (T, N, D) output of a batch_first=False transformer.")
    ambiguous = (n_samples is not None and axis in (0, -t.ndim) and len(shape) == 3 and shape[1] == n_samples
                 and not confirmed and declared is not True)
    if ambiguous and declared is False:
        raise ValueError(f"Layer {layer!r} is batch_first=False, so its output {shape} is (T, N, ...) with the "
                         f"samples on axis 1, but batch_axis=0; with T = N = {n_samples} the shape cannot show it. "
                         f"Pass batch_axis={{'{layer}': 1}} (or {{'{layer}': 0}} if this output really is "
                         "sample-first).")
    if ambiguous and (warned is None or layer not in warned):
        if warned is not None:
            warned.add(layer)
        warn_user(f"Layer {layer!r} output has shape {shape}: axes 0 and 1 both have the batch's {n_samples} "
                  "entries, so its shape cannot show where the samples are; axis 0 is taken. If it is a "
                  f"sequence-first (T, N, D) output, pass batch_axis={{'{layer}': 1}}; pass "
                  f"batch_axis={{'{layer}': 0}} to confirm axis 0 (or use a batch size other than the "
                  "sequence length).")
    return t
