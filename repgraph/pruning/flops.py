"""Parameter and multiply-accumulate counts from a traced forward."""
from __future__ import annotations

import torch
from torch import nn

from ..hooks.trace import run_with_hooks, traced_input


def count_params_flops(model: nn.Module, example_input) -> tuple[int, int]:
    """``(params, flops)``: all parameters, and the multiply-accumulates of the conv and linear
    layers that run for one example (``example_input``'s batch size is divided out):
    conv ``C_out·H_out·W_out·(C_in/groups)·k_h·k_w``, linear ``out_features·in_features`` per row.

    The model runs once on ``example_input`` (eval mode, no_grad, modes restored); a layer that
    runs twice counts twice, one that never runs counts 0.

    Parameters
    ----------
    model : nn.Module
        Any model.
    example_input : tensor, array, DataFrame, tuple, dict, Dataset, DataLoader or iterable
        An input batch, in any data form of ``capture_activations`` (``traced_input``); a dict is
        passed as keyword arguments. The batch size — the input's first axis, or that of a dict's
        first tensor (e.g. ``input_ids``) — is divided out.

    Returns
    -------
    params : int
        Number of parameter values (``sum(p.numel())``), whether they run or not.
    flops : int
        Multiply-accumulates of the Conv1d/2d/3d and Linear layers for one example.

    Raises
    ------
    ValueError, TypeError
        For a data form ``capture_activations`` refuses, or several positional inputs.
    Exception
        Whatever ``model(example_input)`` raises propagates (the hooks are removed and the modes
        restored first).

    Notes
    -----
    "FLOPs" here are multiply-accumulates (MACs) of convolutions and linear layers only: biases,
    normalisation, activations, pooling and attention's matrix products are not counted, so the
    numbers are lower than those of Torch-Pruning's ``tp.utils.count_ops_and_params``, which
    counts those modules too.

    Examples
    --------
    A 3×3 conv 1 → 4 on 8×8 inputs gives 4·6·6 outputs of 1·9 MACs each (1296); the linear layer
    144 → 10 adds 1440; the parameters are 4·9 + 4 and 144·10 + 10:

    >>> import torch
    >>> from torch import nn
    >>> from repgraph import count_params_flops
    >>> model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 10))
    >>> count_params_flops(model, torch.zeros(2, 1, 8, 8))
    (1490, 2736)
    """
    macs = [0]

    def conv_hook(m, inputs, output):
        per_output = (m.in_channels // m.groups) * int(torch.tensor(m.kernel_size).prod())
        macs[0] += output.numel() * per_output

    def linear_hook(m, inputs, output):
        macs[0] += output.numel() * m.in_features

    hooks = [(m, conv_hook) for m in model.modules() if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d))]
    hooks += [(m, linear_hook) for m in model.modules() if isinstance(m, nn.Linear)]
    x = traced_input(model, example_input)
    run_with_hooks(model, x, hooks)
    first = x if not isinstance(x, dict) else next((v for v in x.values() if isinstance(v, torch.Tensor)), None)
    batch = first.shape[0] if isinstance(first, torch.Tensor) and first.ndim > 0 else 1
    return sum(p.numel() for p in model.parameters()), macs[0] // batch
