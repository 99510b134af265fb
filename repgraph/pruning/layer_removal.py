"""Which blocks can be removed, and removing them: a CNN residual block or a plain stack's conv
group (conv, BN, activation) becomes ``nn.Identity``, a transformer block is deleted from its stack."""
from __future__ import annotations

import copy

import pandas as pd
import torch
from torch import nn

from .._results import described
from ..hooks.conv_groups import CONV_TYPES, conv_groups, conv_shape_change
from ..hooks.layers import block_stack, is_residual_block
from ..hooks.trace import run_with_hooks
from .stack_removal import delete_blocks


def _traced_shapes(model: nn.Module, example_input, spans: dict[str, tuple[str, str]]) -> dict[str, tuple]:
    """``{key: (input shape, output shape)}`` from one traced forward, for ``spans`` = key -> (the
    module whose first input is the span's input, the module whose output is its output), in the
    order the spans finish; a span that does not run is absent."""
    modules = dict(model.named_modules())
    first_in, shapes = {}, {}

    def opened(key):
        def hook(_m, inputs, _output):
            if inputs and isinstance(inputs[0], torch.Tensor):
                first_in.setdefault(key, tuple(inputs[0].shape))
        return hook

    def closed(key):
        def hook(_m, _inputs, output):
            if key in first_in and isinstance(output, torch.Tensor) and key not in shapes:
                shapes[key] = (first_in[key], tuple(output.shape))
        return hook

    hooks = [(modules[start], opened(key)) for key, (start, _) in spans.items()]
    hooks += [(modules[stop], closed(key)) for key, (_, stop) in spans.items()]
    run_with_hooks(model, example_input, hooks)
    return shapes


def _identity_shortcut(module: nn.Module) -> bool:
    """A residual block whose shortcut is the identity (``shortcut`` is ``nn.Identity``, or
    ``downsample`` is None as in torchvision): it keeps the shape by construction."""
    return isinstance(getattr(module, "shortcut", None), nn.Identity) or (
        hasattr(module, "downsample") and module.downsample is None)


def _deletable_stack(model: nn.Module) -> tuple[str, list[str]] | None:
    """The model's block stack (``block_stack``) when its blocks are removed by deletion: every
    residual block of the model lies in the stack (GPT-2's ``GPT2Block``s are the stack; a CNN with
    residual blocks elsewhere and some unrelated ``nn.ModuleList`` keeps the Identity rule)."""
    stack = block_stack(model)
    if stack is None:
        return None
    blocks = stack[1]
    for name, m in model.named_modules():
        if name and is_residual_block(m) and not any(name == b or name.startswith(b + ".") for b in blocks):
            return None
    return stack


def _owner(name: str, units) -> str | None:
    """The unit (block or group name) that ``name`` lies inside, if any."""
    return next((u for u in units if name.startswith(u + ".")), None)


def _stack_plan(model, stack) -> dict[str, str | None]:
    entries = set(stack[1])
    return {n: None if n in entries else f"only whole blocks of the stack {stack[0]!r} can be deleted"
            for n, _ in model.named_modules() if n}


def _residual_plan(model, example_input) -> dict[str, str | None]:
    named = [(n, m) for n, m in model.named_modules() if n]
    blocks = [n for n, m in named if is_residual_block(m)]
    reasons = {}
    if example_input is not None:
        shapes = _traced_shapes(model, example_input, {b: (b, b) for b in blocks})
        for b, (shape_in, shape_out) in shapes.items():
            reasons[b] = None if shape_in == shape_out else f"changes the shape {shape_in} -> {shape_out}"
        reasons.update({b: "does not run in the forward of example_input" for b in blocks if b not in shapes})
    else:
        modules = dict(named)
        reasons.update({b: None if _identity_shortcut(modules[b]) else
                        "its shortcut is not the identity (pass example_input to check the shapes)" for b in blocks})
    for n, m in named:
        if n not in reasons:
            owner = _owner(n, blocks)
            reasons[n] = (f"part of the residual block {owner!r}; remove the whole block" if owner else
                          f"not a residual block ({type(m).__name__}): only residual blocks that keep the shape "
                          "can become nn.Identity")
    return reasons


def _plain_plan(model, example_input) -> dict[str, str | None]:
    """The conv groups of a plain stack (``conv_groups``): removable when they keep the shape."""
    named = [(n, m) for n, m in model.named_modules() if n]
    modules = dict(named)
    groups = conv_groups(model)
    reasons = {}
    if example_input is not None:
        shapes = _traced_shapes(model, example_input, {g.name: (g.members[0], g.members[-1]) for g in groups})
        for name, (shape_in, shape_out) in shapes.items():
            group = next(g for g in groups if g.name == name)
            reasons[name] = None if shape_in == shape_out else (
                conv_shape_change(modules[group.members[0]]) or f"changes the shape {shape_in} -> {shape_out}")
        reasons.update({g.name: "does not run in the forward of example_input" for g in groups
                        if g.name not in shapes})
    else:
        reasons.update({g.name: conv_shape_change(modules[g.members[0]]) for g in groups})
    for n, m in named:
        if n in reasons:
            continue
        group = next((g for g in groups if n in g.members or n.startswith(g.name + ".")), None)
        if group is not None:
            reasons[n] = f"part of the conv group {group.name!r}; remove the group by that name"
        elif isinstance(m, CONV_TYPES):
            reasons[n] = ("not a conv group: a conv group is a conv, optionally its BatchNorm and activation, "
                          "consecutive in an nn.Sequential (the order of a custom forward is not known)")
        else:
            reasons[n] = f"not a conv group ({type(m).__name__})"
    return reasons


def _removal_plan(model: nn.Module, example_input) -> tuple[tuple[str, list[str]] | None, dict[str, str | None]]:
    """``(stack, reasons)``: the deletable block stack (or None for a CNN) and, for every module
    name, None when it can be removed, else why not; removable names come first, in execution
    order when ``example_input`` is given."""
    stack = _deletable_stack(model)
    if stack is not None:
        return stack, _stack_plan(model, stack)
    if any(is_residual_block(m) for m in model.modules()):
        return None, _residual_plan(model, example_input)
    return None, _plain_plan(model, example_input)


def _removable(reasons: dict[str, str | None]) -> list[str]:
    return [n for n, reason in reasons.items() if reason is None]


def _block_names(names) -> list[str]:
    """``names`` (one string or an iterable of strings) as a list, else a ``TypeError``."""
    if isinstance(names, str):
        return [names]
    if not isinstance(names, (bytes, bytearray)):
        try:
            names = list(names)
        except TypeError:
            pass
        else:
            if all(isinstance(name, str) for name in names):
                return names
    raise TypeError(f"names must be a block name or a list of block names (str), as removable_layers gives "
                    f"them, e.g. ['layer1.1']; got {names!r}.")


def removable_layers(model: nn.Module, example_input=None, *, explain: bool = False):
    """The blocks ``remove_layers`` accepts, in order — or, with ``explain=True``, every module
    with whether it can be removed and why (not).

    Three kinds of model, tried in this order:

    - **Transformer block stacks** (repeated blocks in an ``nn.ModuleList``: BERT, GPT-2,
      LLaMA-style; see ``repgraph.hooks.block_stack``): every block of the stack; it is deleted
      and the rest renumbered.
    - **Residual CNNs** (any ``is_residual_block`` module): the residual blocks whose output has
      the input's shape (no stride, no channel change); each becomes ``nn.Identity``.
    - **Plain stacks** (VGG-style, no residual block): the conv groups of
      ``repgraph.hooks.conv_groups`` — a conv, optionally its BatchNorm, optionally its
      activation, consecutive inside an ``nn.Sequential`` — whose output has the input's shape.
      A group is named by the ``nn.Sequential`` that is exactly the group
      (``nn.Sequential(conv, bn, relu)``), else by its conv (``"features.0"`` for VGG's flat
      ``features``); each of its modules becomes ``nn.Identity``, which is the network without
      the group since an identity map passes the group's input on unchanged.

    The blocks are listed in execution order with ``example_input``, in registration order
    without it.

    Parameters
    ----------
    model : nn.Module
        The network.
    example_input : tensor, array, dict or any data form of ``capture_activations``, optional
        One batch for a traced forward (eval mode, no_grad, modes restored) that checks the
        shapes of a CNN's residual blocks and conv groups. Without it a residual block counts
        when its shortcut is the identity (``shortcut`` is ``nn.Identity``, or ``downsample`` is
        None), and a conv group when its conv keeps the shape by its settings
        (``in_channels == out_channels``, stride 1, ``2·padding = dilation·(kernel − 1)``). Not
        needed for a block stack.
    explain : bool, default False
        Return a table of every module instead of the list.

    Returns
    -------
    list of str, or DataFrame (layer, removable, reason)
        Module names as ``named_modules()`` gives them (``"layer1.0"``, ``"transformer.h.3"``,
        ``"features.4"``). With ``explain=True``: one row per module, the removable blocks first
        (in the order above), then the others in registration order; ``reason`` says what the
        block is (``"conv group Conv2d+BatchNorm2d+ReLU keeps the shape"``) or why it cannot go
        (``"changes channels 64->128"``, ``"changes the spatial size (stride 2)"``, ``"not a conv
        group (MaxPool2d)"``, ``"part of the conv group 'features.0'; ..."``).

    Raises
    ------
    Exception
        Nothing of its own: whatever the traced ``model(example_input)`` raises propagates
        unchanged (the hooks are removed and the modes restored first).

    References
    ----------
    Lu et al., ECCV 2022 (residual blocks and VGG convs on a modularity plateau; their
    ``cvgg19_*`` configurations drop the deepest 512-channel convs); Men et al. 2024, ShortGPT
    and Gromov et al. 2024 (deleting transformer blocks).

    Examples
    --------
    >>> import torch
    >>> from repgraph.models import resnet20, vgg11
    >>> removable_layers(resnet20(), torch.zeros(1, 3, 32, 32))[:3]
    ['layer1.0', 'layer1.1', 'layer1.2']
    >>> removable_layers(vgg11(), torch.zeros(1, 3, 32, 32))
    ['features.11', 'features.18', 'features.22', 'features.25']
    >>> table = removable_layers(vgg11(), torch.zeros(1, 3, 32, 32), explain=True).set_index("layer")
    >>> table.loc["features.4", "reason"]
    'changes channels 64->128'
    """
    stack, reasons = _removal_plan(model, example_input)
    if not explain:
        return _removable(reasons)
    modules = dict(model.named_modules())
    groups = {g.name: g for g in conv_groups(model)} if stack is None else {}

    def why(name):
        if reasons[name] is not None:
            return reasons[name]
        if stack is not None:
            return f"a block of the stack {stack[0]!r}: deleted, the rest renumbered"
        if name in groups:
            kinds = "+".join(type(modules[m]).__name__ for m in groups[name].members)
            return f"conv group {kinds} keeps the shape: becomes nn.Identity"
        return "residual block keeps the shape: becomes nn.Identity"

    order = _removable(reasons) + [n for n in reasons if reasons[n] is not None]
    table = pd.DataFrame({"layer": order, "removable": [reasons[n] is None for n in order],
                          "reason": [why(n) for n in order]})
    return described(table, "removable layers and why (not)", "Lu et al., ECCV 2022",
                     model=type(model).__name__)


def remove_layers(model: nn.Module, names, *, example_input=None) -> nn.Module:
    """A copy of ``model`` without the named blocks; ``model`` itself is untouched and the
    remaining weights are inherited (the same values, not shared tensors).

    Two kinds of model:

    - **Transformer block stacks** (repeated blocks in an ``nn.ModuleList``: BERT
      ``bert.encoder.layer.N``, GPT-2 ``transformer.h.N``, LLaMA ``model.layers.N``): the entries are
      deleted — not replaced by ``nn.Identity``, since a block takes and returns more than one
      tensor — and everything that counts layers follows: the config's ``num_hidden_layers``
      (GPT-2's ``n_layer`` through its alias), per-layer lists (``layer_types``,
      ``mlp_layer_types``, ``no_rope_layers``) and MoE placement (Qwen-MoE's ``decoder_sparse_step``
      becomes the explicit ``mlp_only_layers``; DeepSeek's ``first_k_dense_replace`` counts the kept
      dense blocks), and each kept block's ``layer_idx`` / ``layer_id`` (the KV cache's layer
      index) becomes its new position 0..L'−1. The copy runs forward and, for causal LMs, cached
      ``generate``; ``save_pretrained`` then ``from_pretrained`` gives it back unless a warning
      says otherwise (see Warns).
    - **CNNs**: each named shape-preserving residual block is replaced by ``nn.Identity``; in a
      plain stack (no residual block) each named shape-preserving conv group
      (``removable_layers``): the ``nn.Sequential`` that is the group, or each of the group's
      modules (conv, BN, activation) when it lies in a longer ``nn.Sequential``.

    Parameters
    ----------
    model : nn.Module
        The network; not modified.
    names : str or list of str
        Blocks to remove, as ``named_modules()`` names them (see ``removable_layers``).
    example_input : tensor, array, dict or any data form of ``capture_activations``, optional
        For a CNN: one batch with which ``removable_layers`` checks by a traced forward that each
        block or conv group keeps the shape; without it the block's identity shortcut (the conv
        group's conv settings) is the check.

    Returns
    -------
    nn.Module
        The pruned deep copy.

    Raises
    ------
    TypeError
        For ``names`` that is neither a string nor an iterable of strings.
    ValueError
        For a name that is not a module of ``model``; for a module that is not a removable block
        (a transformer sub-layer, a CNN block or conv group that changes the shape, a ReLU that is
        part of a conv group), with the reason ``removable_layers(..., explain=True)`` gives; for removing every block
        of a stack; for a Hugging Face config whose layer count does not match the stack (shared
        layers) or that cannot be renumbered (per-layer overrides, computed ``layer_types``).

    Warns
    -----
    UserWarning
        For a Hugging Face model that ``from_pretrained`` would rebuild otherwise than the pruned
        copy (a model built from the copy's config is compared with it, module by module): now,
        naming the differences and the config setting behind them, and again at each
        ``save_pretrained`` of the copy. GPT-2 with ``scale_attn_by_inverse_layer_idx=True`` is
        one: its blocks keep the attention scale 1/(i + 1) of their original index i in memory,
        but a reload sets it from the new index, so the reloaded outputs differ; save the whole
        module with ``torch.save`` instead.

    References
    ----------
    Lu et al., ECCV 2022 (residual blocks); Men et al. 2024, ShortGPT: Layers in Large Language
    Models are More Redundant Than You Expect; Gromov et al. 2024, The Unreasonable Ineffectiveness
    of the Deeper Layers.

    Examples
    --------
    >>> import torch
    >>> from repgraph.models import resnet20
    >>> smaller = remove_layers(resnet20(), ["layer1.1", "layer3.2"])
    >>> type(smaller.layer3[2]).__name__
    'Identity'
    >>> smaller(torch.zeros(1, 3, 32, 32)).shape
    torch.Size([1, 10])
    """
    names = _block_names(names)
    stack, reasons = _removal_plan(model, example_input)
    allowed = _removable(reasons)
    for name in names:
        if name not in reasons:
            raise ValueError(f"Unknown layer {name!r}; removable blocks are {allowed}.")
        if reasons[name] is not None:
            raise ValueError(f"Layer {name!r} cannot be removed: {reasons[name]}. Removable: {allowed} "
                             "(removable_layers(model, x, explain=True) says why for every layer).")
    if stack is not None:
        return delete_blocks(model, stack, names)
    members = {g.name: g.members for g in conv_groups(model) if not g.is_module}
    pruned = copy.deepcopy(model)
    for name in names:
        for member in members.get(name, (name,)):  # a flat conv group: each of its modules
            parent_name, _, child = member.rpartition(".")
            parent = pruned.get_submodule(parent_name) if parent_name else pruned
            setattr(parent, child, nn.Identity())
    return pruned
