"""One traced forward: run a model once in eval mode under no_grad with temporary forward hooks."""
from __future__ import annotations

import torch
from torch import nn

from .modes import evaluating


def run_with_hooks(model: nn.Module, example_input, hooks) -> object:
    """Run ``model(example_input)`` once (eval mode, no_grad, modes restored) with each
    ``(module, hook)`` of ``hooks`` registered as a forward hook; every hook is removed afterwards,
    also when the forward raises. Returns the model's output."""
    handles = []
    try:
        for module, hook in hooks:
            handles.append(module.register_forward_hook(hook))
        with evaluating(model), torch.no_grad():
            return model(example_input)
    finally:
        for handle in handles:
            handle.remove()


def execution_order(model: nn.Module, example_input) -> list[str]:
    """Names of the submodules in the order their forward calls finish (for leaf modules, the
    order they run), from one traced forward."""
    order = []
    run_with_hooks(model, example_input, [(m, lambda _m, _i, _o, name=n: order.append(name))
                                          for n, m in model.named_modules() if n])
    return order
