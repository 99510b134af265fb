"""Parameter and multiply-accumulate counts from a traced forward."""
from __future__ import annotations

import torch
from torch import nn

from ..hooks.trace import run_with_hooks


def count_params_flops(model: nn.Module, example_input) -> tuple[int, int]:
    """``(params, flops)``: all parameters, and the multiply-accumulates of the conv and linear
    layers that run for one example (``example_input``'s batch size is divided out):
    conv ``C_out·H_out·W_out·(C_in/groups)·k_h·k_w``, linear ``out_features·in_features`` per row."""
    macs = [0]

    def conv_hook(m, inputs, output):
        per_output = (m.in_channels // m.groups) * int(torch.tensor(m.kernel_size).prod())
        macs[0] += output.numel() * per_output

    def linear_hook(m, inputs, output):
        macs[0] += output.numel() * m.in_features

    hooks = [(m, conv_hook) for m in model.modules() if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d))]
    hooks += [(m, linear_hook) for m in model.modules() if isinstance(m, nn.Linear)]
    run_with_hooks(model, example_input, hooks)
    batch = example_input.shape[0] if isinstance(example_input, torch.Tensor) and example_input.ndim > 0 else 1
    return sum(p.numel() for p in model.parameters()), macs[0] // batch
