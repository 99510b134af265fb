"""Whether chosen layers are chained: each one's input is the previous one's output, as the spans
of ``layer_redundancy`` (the angle between block ℓ's input and block ℓ+n−1's output) assume."""
from __future__ import annotations

import pandas as pd
import torch
from torch import nn

from .._results import described
from .batches import example_batch
from .recorder import ActivationRecorder
from .trace import run_with_hooks

INPUT_SUFFIX = ":input"


def _first_samples(example_input, n: int):
    """The first ``n`` samples of ``example_input`` (any data form) as one tensor or a dict of
    keyword inputs, for ``run_with_hooks``."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"max_samples must be an integer >= 1, got {n!r}.")
    batch = example_batch(example_input).part(0, n)
    if len(batch.args) > 1:
        raise TypeError(f"example_input holds {len(batch.args)} positional inputs; pass one input, or a dict of "
                        "the model's keyword inputs.")
    return batch.args[0] if batch.args else batch.kwargs


def layer_chain(model: nn.Module, example_input, layers, *, max_samples: int = 2) -> pd.DataFrame:
    """For each chosen layer after the first, whether its input is the previous layer's output.

    One traced forward of the first ``max_samples`` samples of ``example_input`` (eval mode, no_grad, modes restored) records every
    layer's input and output as ``ActivationRecorder(..., inputs=True)`` takes them — the first
    positional tensor (else the ``hidden_states`` keyword) and the first tensor of the output —
    which is what ``block_redundancy``'s streamed pass compares. Layer ``b`` following ``a`` (in
    the order they return) is chained when ``input(b)`` has the shape of ``output(a)`` and equal
    values (``torch.equal``): nothing runs between them.

    Parameters
    ----------
    model : nn.Module
        The model.
    example_input : tensor, array, dict or any data form of ``capture_activations``
        The data, in any form ``capture_activations`` takes (a DataLoader gives its first
        batch); only its first ``max_samples`` samples run, so the whole data may be passed.
    layers : str, list of str or callable
        The layers, as ``capture_activations``' selection (``"blocks"``, names, patterns).
    max_samples : int, default 2
        Samples traced.

    Returns
    -------
    DataFrame (previous, layer, chained, reason)
        One row per consecutive pair in execution order; ``reason`` is empty for a chained pair,
        else says what differs (``"input (1, 16, 4, 4) is not the output (1, 8, 8, 8) of
        'features.1'"``, or an input of that shape with other values: something runs between).

    Raises
    ------
    ValueError
        For an unknown layer or a selection that matches nothing (``select_layers``), empty data
        or ``max_samples`` < 1.
    TypeError
        For data of several positional inputs.
    Exception
        Whatever the traced forward raises.

    References
    ----------
    Gromov et al. 2024, The Unreasonable Ineffectiveness of the Deeper Layers (the angular
    distance between the input of block ℓ and the output of block ℓ+n−1 of one residual stream).

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 4), nn.Tanh(), nn.Linear(4, 4))
    >>> layer_chain(net, torch.randn(2, 4), ["0", "1", "3"])["chained"].tolist()
    [True, False]
    """
    with ActivationRecorder(model, layers, reducer=None, device=None, inputs=True) as rec:
        run_with_hooks(model, _first_samples(example_input, max_samples), [])
    outputs = [k for k in rec.outputs if not k.endswith(INPUT_SUFFIX)]
    rows = []
    for previous, layer in zip(outputs, outputs[1:]):
        out, inp = rec.outputs[previous][0], rec.outputs[layer + INPUT_SUFFIX][0]
        if tuple(inp.shape) != tuple(out.shape):
            reason = f"input {tuple(inp.shape)} is not the output {tuple(out.shape)} of {previous!r}"
        elif not torch.equal(inp, out):
            reason = f"input has the shape of the output of {previous!r} but other values: something runs between them"
        else:
            reason = ""
        rows.append({"previous": previous, "layer": layer, "chained": not reason, "reason": reason})
    table = pd.DataFrame(rows, columns=["previous", "layer", "chained", "reason"])
    return described(table, "layer chain: is each layer's input the previous layer's output", None)


def check_chained(model: nn.Module, example_input, layers, *, max_samples: int = 2) -> None:
    """Raise a ``ValueError`` naming the first two chosen layers that are not chained
    (``layer_chain``); return None when every layer's input is the previous layer's output.

    Parameters
    ----------
    model : nn.Module
        The model.
    example_input : tensor, array, dict or any data form of ``capture_activations``
        The data, in any form ``capture_activations`` takes; only its first ``max_samples``
        samples run.
    layers : str, list of str or callable
        The layers, as ``capture_activations``' selection.
    max_samples : int, default 2
        Samples traced.

    Returns
    -------
    None

    Raises
    ------
    ValueError
        ``"Layers 'a' and 'b' are not chained: ..."`` with what differs and the fix: choose
        consecutive layers (``list_layers(model, x)``), or compare each layer with itself only
        (``n_max=1``: block influence, ΔQ, GBS and CKA need no chain).

    References
    ----------
    Gromov et al. 2024 (the spans of blocks of one residual stream); Men et al. 2024, ShortGPT.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 4))
    >>> check_chained(net, torch.randn(2, 4), ["0", "1"]) is None
    True
    """
    table = layer_chain(model, example_input, layers, max_samples=max_samples)
    broken = table[~table["chained"]]
    if len(broken):
        row = broken.iloc[0]
        raise ValueError(f"Layers {row['previous']!r} and {row['layer']!r} are not chained: {row['layer']!r}'s "
                         f"{row['reason']}. Spans of blocks (angular_distance_n, n >= 2) compare one block's input "
                         "with a later block's output, so each chosen block must take the previous one's output: "
                         "choose consecutive blocks (list_layers(model, x) shows them), or pass n_max=1.")
