"""A toy language model whose loss is known in closed form, for hand-worked examples of the
block criteria: each block adds a fixed shift to the logits of a two-token vocabulary."""
from __future__ import annotations

import torch
from torch import nn


class Shift(nn.Module):
    """One block: ``h + w`` with the learnable shift ``w = (a, 0)``."""

    def __init__(self, a: float):
        super().__init__()
        self.weight = nn.Parameter(torch.tensor([float(a), 0.0]))

    def forward(self, h):
        return h + self.weight


class AdditiveLM(nn.Module):
    """Logits ``(A, 0)`` with ``A = Σ a`` over the blocks in ``layers`` (an ``nn.ModuleList`` of
    ``Shift``), whatever the tokens: on text of token 0 the next-token loss is ``log(1 + e^(−A))``,
    and removing a block of shift ``a`` gives ``log(1 + e^(−(A − a)))``.

    Examples
    --------
    >>> import torch
    >>> from repgraph.models import AdditiveLM
    >>> AdditiveLM([1.0, 2.0])(torch.zeros(1, 3, dtype=torch.long))[0, 0].tolist()
    [3.0, 0.0]
    """

    def __init__(self, shifts):
        super().__init__()
        self.layers = nn.ModuleList(Shift(a) for a in shifts)

    def forward(self, ids):
        h = torch.zeros(*ids.shape, 2)
        for block in self.layers:
            h = block(h)
        return h
