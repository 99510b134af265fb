"""Which blocks can be removed, and removing them: a CNN residual block becomes ``nn.Identity``, a
transformer block is deleted from its stack."""
from __future__ import annotations

import copy

import torch
from torch import nn

from ..hooks.layers import block_stack, is_residual_block
from ..hooks.trace import run_with_hooks
from .stack_removal import delete_blocks


def _shape_preserving_blocks(model: nn.Module, example_input) -> list[str]:
    shapes = {}

    def hook(_m, inputs, output, name):
        if inputs and isinstance(inputs[0], torch.Tensor) and isinstance(output, torch.Tensor):
            shapes[name] = tuple(inputs[0].shape) == tuple(output.shape)

    run_with_hooks(model, example_input, [(m, lambda m_, i, o, name=n: hook(m_, i, o, name))
                                          for n, m in model.named_modules() if n and is_residual_block(m)])
    return [name for name, ok in shapes.items() if ok]


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


def _removal_plan(model: nn.Module, example_input) -> tuple[tuple[str, list[str]] | None, list[str]]:
    """``(stack, removable)``: the deletable block stack (or None for a CNN) and the removable names."""
    stack = _deletable_stack(model)
    if stack is not None:
        return stack, list(stack[1])
    if example_input is not None:
        return None, _shape_preserving_blocks(model, example_input)
    return None, _identity_shortcut_blocks(model)


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


def removable_layers(model: nn.Module, example_input=None) -> list[str]:
    """The blocks ``remove_layers`` accepts, in order.

    For a model whose repeated blocks sit in an ``nn.ModuleList`` (BERT, GPT-2, LLaMA-style
    transformers; see ``repgraph.hooks.block_stack``) every block of that stack: it is deleted and
    the rest renumbered. Otherwise the residual blocks whose output has the input's shape (no
    stride, no channel change): replacing one by ``nn.Identity`` keeps the network valid. They are
    listed in execution order with ``example_input``, in registration order without it.

    Parameters
    ----------
    model : nn.Module
        The network.
    example_input : tensor, array, dict or any data form of ``capture_activations``, optional
        One batch for a traced forward (eval mode, no_grad, modes restored) that checks the shapes
        of a CNN's residual blocks. Without it a residual block counts when its shortcut is the
        identity (``shortcut`` is ``nn.Identity``, or ``downsample`` is None). Not needed for a
        block stack.

    Returns
    -------
    list of str
        Module names as ``named_modules()`` gives them (``"layer1.0"``, ``"transformer.h.3"``).

    Raises
    ------
    Exception
        Nothing of its own: whatever the traced ``model(example_input)`` raises propagates
        unchanged (the hooks are removed and the modes restored first).

    References
    ----------
    Lu et al., ECCV 2022 (residual blocks on a modularity plateau); Men et al. 2024, ShortGPT and
    Gromov et al. 2024 (deleting transformer blocks).

    Examples
    --------
    >>> import torch
    >>> from repgraph.models import resnet20
    >>> removable_layers(resnet20(), torch.zeros(1, 3, 32, 32))[:3]
    ['layer1.0', 'layer1.1', 'layer1.2']
    """
    return _removal_plan(model, example_input)[1]


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
    - **CNNs**: each named shape-preserving residual block is replaced by ``nn.Identity``.

    Parameters
    ----------
    model : nn.Module
        The network; not modified.
    names : str or list of str
        Blocks to remove, as ``named_modules()`` names them (see ``removable_layers``).
    example_input : tensor, array, dict or any data form of ``capture_activations``, optional
        For a CNN: one batch with which ``removable_layers`` checks by a traced forward that each
        block keeps the shape; without it the block's identity shortcut is the check.

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
        (a transformer sub-layer, a CNN block that changes the shape); for removing every block
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
    stack, allowed = _removal_plan(model, example_input)
    modules = dict(model.named_modules())
    for name in names:
        if name not in modules:
            raise ValueError(f"Unknown layer {name!r}; removable blocks are {allowed}.")
        if name not in allowed:
            kind = (f"only whole blocks of the stack {stack[0]!r} can be deleted" if stack is not None else
                    "only residual blocks that keep the shape can become nn.Identity")
            raise ValueError(f"Layer {name!r} cannot be removed: {kind}. Removable: {allowed}.")
    if stack is not None:
        return delete_blocks(model, stack, names)
    pruned = copy.deepcopy(model)
    for name in names:
        parent_name, _, child = name.rpartition(".")
        parent = pruned.get_submodule(parent_name) if parent_name else pruned
        setattr(parent, child, nn.Identity())
    return pruned
