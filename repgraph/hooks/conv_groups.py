"""Conv groups of plain (VGG-style) stacks: a convolution, optionally its BatchNorm, optionally its
activation, consecutive inside an ``nn.Sequential`` — the unit a plain CNN loses when a layer is
removed (Lu et al., ECCV 2022, prune VGG convs this way)."""
from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from .structure import block_stack, is_residual_block

CONV_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
NORM_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)
ACTIVATION_TYPES = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.ELU, nn.SELU, nn.GELU, nn.SiLU, nn.Mish,
                    nn.Hardswish, nn.Tanh, nn.Sigmoid)


@dataclass(frozen=True)
class ConvGroup:
    """One conv group.

    Attributes
    ----------
    name : str
        The group's name: the ``nn.Sequential`` that holds exactly the group (``"features.0"`` for
        ``features = nn.Sequential(nn.Sequential(conv, bn, relu), ...)``), else the conv's own name
        (``"features.0"`` for the flat ``features = nn.Sequential(conv, bn, relu, pool, ...)``).
    members : tuple of str
        The modules of the group in order: the conv, then its norm and activation when present.
    is_module : bool
        Whether ``name`` is a module that is exactly the group (it can be hooked as one block).
    """

    name: str
    members: tuple[str, ...]
    is_module: bool


def _inside(name: str, parents) -> bool:
    return any(name.startswith(p + ".") for p in parents)


def conv_groups(model: nn.Module) -> list[ConvGroup]:
    """The conv groups of a plain stack, in registration order.

    A group is a run of consecutive children of an ``nn.Sequential``: a convolution
    (``Conv1d/2d/3d``), then optionally a BatchNorm, then optionally an activation module (ReLU,
    GELU, SiLU, ...). Only ``nn.Sequential`` containers count, since their order of registration
    is their order of execution; the layers of a custom ``forward`` (``self.conv1``, ``self.bn1``)
    form no group. Groups inside residual blocks (``is_residual_block``) or inside the entries of
    a transformer stack (``block_stack``) are left out: a residual block is removed whole.

    Parameters
    ----------
    model : nn.Module
        Any module.

    Returns
    -------
    list of ConvGroup
        Empty for a model without such groups.

    Examples
    --------
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
    ...                     nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.ReLU()))
    >>> [(g.name, g.members, g.is_module) for g in conv_groups(net)]
    [('0', ('0', '1', '2'), False), ('4', ('4.0', '4.1'), True)]
    """
    named = [(n, m) for n, m in model.named_modules() if n]
    excluded = [n for n, m in named if is_residual_block(m)]
    stack = block_stack(model)
    excluded += stack[1] if stack is not None else []
    groups = []
    for name, container in model.named_modules():
        if not isinstance(container, nn.Sequential) or name in excluded or _inside(name, excluded):
            continue
        prefix = f"{name}." if name else ""
        children = list(container.named_children())
        i = 0
        while i < len(children):
            if not isinstance(children[i][1], CONV_TYPES):
                i += 1
                continue
            members = [children[i][0]]
            for kinds in (NORM_TYPES, ACTIVATION_TYPES):
                if i + len(members) < len(children) and isinstance(children[i + len(members)][1], kinds):
                    members.append(children[i + len(members)][0])
            whole = len(members) == len(children) and bool(name)
            full = tuple(prefix + m for m in members)
            groups.append(ConvGroup(name if whole else full[0], full, whole))
            i += len(members)
    return groups


def conv_shape_change(conv: nn.Module) -> str | None:
    """Why ``conv`` changes the shape of its input, read from its settings, or None when it keeps
    it: the output has the input's channels and spatial size exactly when ``in_channels ==
    out_channels``, every stride is 1 and, per spatial axis, ``2·padding = dilation·(kernel − 1)``
    (output size ``L + 2p − d(k − 1)`` at stride 1; PyTorch's ``Conv2d`` shape formula), or the
    padding is ``"same"``."""
    if conv.in_channels != conv.out_channels:
        return f"changes channels {conv.in_channels}->{conv.out_channels}"
    if any(s != 1 for s in conv.stride):
        return f"changes the spatial size (stride {_axes(conv.stride)})"
    if conv.padding == "same":
        return None
    if conv.padding == "valid":
        padding = (0,) * len(conv.kernel_size)
    else:
        padding = conv.padding
    if any(2 * p != d * (k - 1) for p, d, k in zip(padding, conv.dilation, conv.kernel_size)):
        return (f"changes the spatial size (kernel {_axes(conv.kernel_size)} with padding {_axes(padding)}"
                + (f", dilation {_axes(conv.dilation)}" if any(d != 1 for d in conv.dilation) else "") + ")")
    return None


def _axes(values) -> str:
    """``(2, 2)`` as ``"2"``, ``(1, 2)`` as ``"1x2"``."""
    values = tuple(values)
    return str(values[0]) if len(set(values)) == 1 else "x".join(str(v) for v in values)


def shape_preserving_groups(model: nn.Module) -> list[ConvGroup]:
    """The conv groups (``conv_groups``) that keep the shape by their conv's settings
    (``conv_shape_change`` None), modules of their own or not: the blocks a plain stack offers to
    ``"blocks"``, each taken from its first member's input to its last member's output.

    Parameters
    ----------
    model : nn.Module
        Any module.

    Returns
    -------
    list of ConvGroup
        In registration order; empty when no conv group keeps the shape.

    References
    ----------
    Lu et al., ECCV 2022 (VGG convs removed on a modularity plateau).

    Examples
    --------
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU())
    >>> [(g.name, g.members) for g in shape_preserving_groups(net)]
    [('2', ('2', '3'))]
    """
    modules = dict(model.named_modules())
    return [g for g in conv_groups(model) if conv_shape_change(modules[g.members[0]]) is None]
