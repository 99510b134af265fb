"""Deleting blocks from a transformer's block stack, with the config and per-layer indices renumbered."""
from __future__ import annotations

import copy

from torch import nn

# Attributes through which a block knows its own position; the KV cache is indexed by them
# (``layer_idx`` in GPT-2, BERT, LLaMA and most of transformers; ``layer_id`` in GPT-Neo).
INDEX_ATTRIBUTES = ("layer_idx", "layer_id")
# Config lists with one entry per block; transformers checks both against ``num_hidden_layers``,
# and the KV cache is built from ``layer_types`` (full / sliding-window attention, ...).
PER_LAYER_CONFIG_LISTS = ("layer_types", "mlp_layer_types")


def _owner_config(model: nn.Module, list_name: str):
    """The config of the nearest module above the stack that has one (a Hugging Face model's
    ``config``), or None for a plain PyTorch model."""
    parts = list_name.split(".") if list_name else []
    for depth in range(len(parts) - 1, -1, -1):
        config = getattr(model.get_submodule(".".join(parts[:depth])), "config", None)
        if config is not None and hasattr(config, "num_hidden_layers"):
            return config
    return None


def _update_config(config, list_name: str, n_blocks: int, kept: list[int]) -> None:
    if config.num_hidden_layers != n_blocks:
        raise ValueError(f"config.num_hidden_layers is {config.num_hidden_layers} but {list_name!r} holds "
                         f"{n_blocks} blocks (shared or grouped layers?); remove_layers can only delete "
                         "blocks from a stack with one entry per layer.")
    if getattr(config, "is_heterogeneous", False):
        raise ValueError(f"{type(config).__name__} has per-layer overrides (per_layer_config); remove_layers "
                         "does not renumber them. Remove the blocks from a homogeneous config.")
    before = {attr: getattr(config, attr, None) for attr in PER_LAYER_CONFIG_LISTS}
    config.num_hidden_layers = len(kept)  # through attribute_map also GPT-2's n_layer, GPT-Neo's num_layers
    for attr, old in before.items():
        if old is None:
            continue
        if len(old) != n_blocks:
            raise ValueError(f"config.{attr} has {len(old)} entries for {n_blocks} blocks; fix the config first.")
        new = [old[i] for i in kept]
        if attr in vars(config):  # a stored list; a read-only property recomputes itself
            setattr(config, attr, new)
        if list(getattr(config, attr)) != new:
            raise ValueError(f"config.{attr} of {type(config).__name__} is computed from other settings and "
                             f"cannot follow the removal (it gives {list(getattr(config, attr))}, the kept "
                             f"blocks need {new}).")


def delete_blocks(model: nn.Module, stack: tuple[str, list[str]], names: list[str]) -> nn.Module:
    """A deep copy of ``model`` without the blocks ``names`` of ``stack`` (from ``block_stack``):
    the ``nn.ModuleList`` entries are deleted, the owning config's ``num_hidden_layers`` and
    per-layer lists (``PER_LAYER_CONFIG_LISTS``) follow, and every kept block's position attributes
    (``INDEX_ATTRIBUTES``, in the block and its submodules) are shifted down by the number of
    removed blocks before it. The kept blocks' computation is unchanged (GPT-2's
    ``scale_attn_by_inverse_layer_idx`` factor, for one, was fixed when the block was built)."""
    list_name, blocks = stack
    removed = sorted({blocks.index(n) for n in names})
    kept = [i for i in range(len(blocks)) if i not in removed]
    if not kept:
        raise ValueError(f"Removing all {len(blocks)} blocks of {list_name!r} leaves no layer; keep at least one.")
    pruned = copy.deepcopy(model)
    config = _owner_config(pruned, list_name)
    if config is not None:
        _update_config(config, list_name, len(blocks), kept)
    stack_module = pruned.get_submodule(list_name)
    for position in reversed(removed):
        del stack_module[position]  # nn.ModuleList renumbers its keys 0..L'-1
    for new, old in enumerate(kept):
        for module in stack_module[new].modules():
            for attr in INDEX_ATTRIBUTES:
                value = vars(module).get(attr)
                if type(value) is int:
                    setattr(module, attr, value - (old - new))
    return pruned
