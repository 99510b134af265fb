"""Run a model in eval mode and give every module back its own train/eval flag afterwards."""
from __future__ import annotations

import contextlib

from torch import nn


@contextlib.contextmanager
def evaluating(model: nn.Module):
    """``model.eval()`` inside the block; each submodule's ``training`` flag and each parameter's
    ``requires_grad`` are restored on exit, also when the block raises."""
    modes = {m: m.training for m in model.modules()}
    grads = {p: p.requires_grad for p in model.parameters()}
    try:
        model.eval()
        yield model
    finally:
        for m, mode in modes.items():
            m.training = mode
        for p, flag in grads.items():
            p.requires_grad_(flag)
