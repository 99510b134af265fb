"""Which residual blocks can be removed, and removing them (a block becomes ``nn.Identity``)."""
from __future__ import annotations

import copy

import torch
from torch import nn

from ..hooks.layers import is_residual_block
from ..hooks.trace import run_with_hooks


def _shape_preserving_blocks(model: nn.Module, example_input) -> list[str]:
    shapes = {}

    def hook(_m, inputs, output, name):
        if inputs and isinstance(inputs[0], torch.Tensor) and isinstance(output, torch.Tensor):
            shapes[name] = tuple(inputs[0].shape) == tuple(output.shape)

    run_with_hooks(model, example_input, [(m, lambda m_, i, o, name=n: hook(m_, i, o, name))
                                          for n, m in model.named_modules() if n and is_residual_block(m)])
    return [name for name, ok in shapes.items() if ok]


def removable_layers(model: nn.Module, example_input) -> list[str]:
    """Residual blocks whose output has the input's shape (no stride, no channel change), in
    execution order: replacing one by ``nn.Identity`` keeps the network valid."""
    return _shape_preserving_blocks(model, example_input)


def _identity_shortcut_blocks(model: nn.Module) -> list[str]:
    """Residual blocks whose shortcut is the identity (``shortcut`` is ``nn.Identity``, or
    ``downsample`` is None as in torchvision): they keep the shape by construction."""
    found = []
    for name, m in model.named_modules():
        if name and is_residual_block(m):
            if isinstance(getattr(m, "shortcut", None), nn.Identity) or (
                    hasattr(m, "downsample") and m.downsample is None):
                found.append(name)
    return found


def remove_layers(model: nn.Module, names, *, example_input=None) -> nn.Module:
    """A deep copy of ``model`` with each named block replaced by ``nn.Identity``; ``model`` itself
    is untouched and the remaining weights are inherited. A name that is not a shape-preserving
    residual block raises ``ValueError``: checked by a traced forward when ``example_input`` is
    given (``removable_layers``), else from the block's identity shortcut."""
    names = [names] if isinstance(names, str) else list(names)
    allowed = set(removable_layers(model, example_input) if example_input is not None
                  else _identity_shortcut_blocks(model))
    modules = dict(model.named_modules())
    for name in names:
        if name not in modules:
            raise ValueError(f"Unknown layer {name!r}; removable blocks are {sorted(allowed)}.")
        if name not in allowed:
            raise ValueError(f"Layer {name!r} cannot be removed: only residual blocks that keep the "
                             f"shape can become nn.Identity. Removable: {sorted(allowed)}.")
    pruned = copy.deepcopy(model)
    for name in names:
        parent_name, _, child = name.rpartition(".")
        parent = pruned.get_submodule(parent_name) if parent_name else pruned
        setattr(parent, child, nn.Identity())
    return pruned
