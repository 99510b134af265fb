"""The structure of a model, read from its modules: residual blocks and a transformer's block stack."""
from __future__ import annotations

import re

from torch import nn

_BLOCK_NAME = re.compile(r"(Block|Bottleneck)$")


def is_residual_block(module: nn.Module) -> bool:
    """True for repgraph's ``BasicBlock`` (``is_residual_block = True``) and for modules whose class
    name ends in ``Block`` or ``Bottleneck`` (the torchvision/timm convention)."""
    return bool(getattr(module, "is_residual_block", False)) or bool(_BLOCK_NAME.search(type(module).__name__))


def block_stack(model: nn.Module) -> tuple[str, list[str]] | None:
    """The stack of repeated blocks of a transformer-style model, found generically.

    The stack is the longest ``nn.ModuleList`` whose entries all share one class, leaving out
    lists that sit inside an entry of another such list (e.g. the experts of a mixture-of-experts
    layer); among equally long lists the first registered wins. This finds BERT's
    ``bert.encoder.layer``, GPT-2's ``transformer.h`` and LLaMA's ``model.layers`` without a
    table of architectures.

    Parameters
    ----------
    model : nn.Module
        Any module.

    Returns
    -------
    (str, list of str) or None
        The list's name and its entries' names as ``named_modules()`` gives them
        (``("transformer.h", ["transformer.h.0", ...])``), or ``None`` when the model has no
        ``nn.ModuleList`` of same-class modules (e.g. repgraph's CNNs, built from ``nn.Sequential``).

    Examples
    --------
    >>> from torch import nn
    >>> class Tiny(nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.embed = nn.Embedding(10, 4)
    ...         self.layers = nn.ModuleList(nn.Linear(4, 4) for _ in range(3))
    ...         self.heads = nn.ModuleList([nn.Linear(4, 2), nn.Linear(4, 3)])
    >>> block_stack(Tiny())
    ('layers', ['layers.0', 'layers.1', 'layers.2'])
    """
    lists = [(name, m) for name, m in model.named_modules()
             if isinstance(m, nn.ModuleList) and len(m) > 0 and len({type(b) for b in m}) == 1]
    outer = [(name, m) for name, m in lists
             if not any(other != name and (other == "" or name.startswith(other + ".")) for other, _ in lists)]
    if not outer:
        return None
    name, stack = max(outer, key=lambda item: len(item[1]))
    prefix = f"{name}." if name else ""
    return name, [f"{prefix}{i}" for i in range(len(stack))]
