"""Deleting blocks from a transformer's block stack, with the config and per-layer indices renumbered."""
from __future__ import annotations

import copy
import functools
import warnings

import torch
from torch import nn

# Attributes through which a block knows its own position; the KV cache is indexed by them
# (``layer_idx`` in GPT-2, BERT, LLaMA and most of transformers; ``layer_id`` in GPT-Neo).
INDEX_ATTRIBUTES = ("layer_idx", "layer_id")
# Config lists with one entry per block; transformers checks the first two against
# ``num_hidden_layers``, the KV cache is built from ``layer_types`` (full / sliding-window attention,
# ...), and SmolLM3 / Llama 4 attention reads ``no_rope_layers[layer_idx]`` when it is built.
PER_LAYER_CONFIG_LISTS = ("layer_types", "mlp_layer_types", "no_rope_layers")
# Module attributes that a fresh model legitimately has otherwise (mode switches, not structure).
_MODE_ATTRIBUTES = ("training", "gradient_checkpointing")
# Config settings from which transformers derives a block's computation from its index when it
# builds the block, and that no config value can carry over to the renumbered blocks.
INDEX_DERIVED_SETTINGS = {
    "scale_attn_by_inverse_layer_idx": "GPT-2 scales block i's attention scores by 1/(i + 1) when it "
                                       "builds the block, so a reloaded kept block gets the factor of its new "
                                       "position instead of its original one",
}


def _config_owner(model: nn.Module, list_name: str) -> nn.Module | None:
    """The nearest module above the stack whose ``config`` counts layers (a Hugging Face model), or
    None for a plain PyTorch model."""
    parts = list_name.split(".") if list_name else []
    for depth in range(len(parts) - 1, -1, -1):
        owner = model.get_submodule(".".join(parts[:depth]))
        if hasattr(getattr(owner, "config", None), "num_hidden_layers"):
            return owner
    return None


def _renumber_index_rules(config, kept: list[int]) -> None:
    """Rewrite the MoE placement rules that transformers evaluates on the block index so that each
    kept block is rebuilt with the MLP it has: Qwen-MoE's ``decoder_sparse_step`` /
    ``mlp_only_layers`` become the explicit dense list, DeepSeek / GLM-MoE's dense prefix
    ``first_k_dense_replace`` counts the kept dense blocks."""
    dense_only = getattr(config, "mlp_only_layers", None)
    if isinstance(dense_only, (list, tuple)) and hasattr(config, "decoder_sparse_step"):
        step, experts = config.decoder_sparse_step, getattr(config, "num_experts", 0) or 0
        config.mlp_only_layers = [new for new, old in enumerate(kept)
                                  if old in dense_only or not (experts > 0 and (old + 1) % step == 0)]
        config.decoder_sparse_step = 1
    first_dense = getattr(config, "first_k_dense_replace", None)
    if type(first_dense) is int:  # the kept dense blocks stay a prefix of the kept ones
        config.first_k_dense_replace = sum(old < first_dense for old in kept)


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
    _renumber_index_rules(config, kept)


def _reload_differences(owner: nn.Module, prefix: str) -> list[str]:
    """Where a model built from ``owner.config`` (as ``from_pretrained`` builds one before it loads
    the weights) differs from ``owner``: module names and types, parameter and buffer shapes, and
    the plain values (numbers, strings) a module keeps, such as GPT-2's attention ``scaling``; each
    named with ``prefix``, the owner's name in the whole model."""
    with torch.device("meta"):
        rebuilt = type(owner)(copy.deepcopy(owner.config))
    mine, theirs = dict(owner.named_modules()), dict(rebuilt.named_modules())
    found = [f"module {prefix + name!r} {'missing' if name not in theirs else 'extra'} after reloading"
             for name in sorted(mine.keys() ^ theirs.keys())]
    for name in (n for n in mine if n in theirs):
        a, b = mine[name], theirs[name]
        label = (prefix + name).rstrip(".") or type(owner).__name__
        if type(a) is not type(b):
            found.append(f"{label} is {type(a).__name__}, reloaded {type(b).__name__}")
            continue
        for attr, value in vars(a).items():
            other = vars(b).get(attr)
            if (attr not in _MODE_ATTRIBUTES and isinstance(value, (int, float, str))
                    and type(other) is type(value) and other != value):
                found.append(f"{label}.{attr} is {value!r}, reloaded {other!r}")
        for kind in ("_parameters", "_buffers"):
            for key, tensor in getattr(a, kind).items():
                other = getattr(b, kind).get(key)
                if tensor is not None and other is not None and tensor.shape != other.shape:
                    found.append(f"{label}.{key} has shape {tuple(tensor.shape)}, reloaded {tuple(other.shape)}")
    return found


def _save_with_warning(model: nn.Module, message: str, *args, **kwargs):
    """``save_pretrained`` of a pruned model that a reload will not reproduce: warns, then saves."""
    warnings.warn(message, UserWarning, stacklevel=2)
    return type(model).save_pretrained(model, *args, **kwargs)


def _check_reload(pruned: nn.Module, owner: nn.Module) -> None:
    """Warn, now and at every ``save_pretrained`` of ``pruned`` or of ``owner`` (its submodule that
    holds the config), when ``from_pretrained`` would rebuild ``owner`` otherwise than it is."""
    prefix = next(name for name, module in pruned.named_modules() if module is owner)
    try:
        differences = _reload_differences(owner, prefix + "." if prefix else "")
    except Exception as error:  # an architecture that cannot be built on the meta device
        warnings.warn(f"remove_layers could not check that save_pretrained/from_pretrained reproduces the "
                      f"pruned {type(pruned).__name__} (building it from its config on the meta device "
                      f"raised {error!r}); compare the reloaded model's outputs with the pruned one's.",
                      UserWarning, stacklevel=4)
        return
    if not differences:
        return
    causes = [f"config.{key}={getattr(owner.config, key)!r}: {why}"
              for key, why in INDEX_DERIVED_SETTINGS.items() if getattr(owner.config, key, False)]
    shown = "; ".join(differences[:4]) + (f"; and {len(differences) - 4} more" if len(differences) > 4 else "")
    message = (f"The pruned {type(pruned).__name__} computes what the original's kept blocks computed, but "
               f"save_pretrained/from_pretrained will not reproduce it: the model from_pretrained builds "
               f"from its config differs ({shown})"
               + (f" because {'; '.join(causes)}" if causes else "")
               + ". The reloaded model's outputs will differ. Keep the pruned model whole instead: "
               "torch.save(pruned, path) and torch.load(path, weights_only=False).")
    warnings.warn(message, UserWarning, stacklevel=4)
    for module in {id(m): m for m in (pruned, owner)}.values():
        if callable(getattr(module, "save_pretrained", None)):
            module.save_pretrained = functools.partial(_save_with_warning, module, message)


def delete_blocks(model: nn.Module, stack: tuple[str, list[str]], names: list[str]) -> nn.Module:
    """A deep copy of ``model`` without the blocks ``names`` of ``stack`` (from ``block_stack``):
    the ``nn.ModuleList`` entries are deleted, the owning config's ``num_hidden_layers``, per-layer
    lists (``PER_LAYER_CONFIG_LISTS``) and MoE placement rules (``_renumber_index_rules``) follow,
    and every kept block's position attributes (``INDEX_ATTRIBUTES``, in the block and its
    submodules) are shifted down by the number of removed blocks before it. The kept blocks'
    computation is unchanged (GPT-2's ``scale_attn_by_inverse_layer_idx`` factor, for one, was fixed
    when the block was built). For a Hugging Face model, a model built from the updated config is
    compared with the copy (``_check_reload``): where ``from_pretrained`` would rebuild it otherwise,
    a ``UserWarning`` says so now and at each ``save_pretrained`` of the copy."""
    list_name, blocks = stack
    removed = sorted({blocks.index(n) for n in names})
    kept = [i for i in range(len(blocks)) if i not in removed]
    if not kept:
        raise ValueError(f"Removing all {len(blocks)} blocks of {list_name!r} leaves no layer; keep at least one.")
    pruned = copy.deepcopy(model)
    owner = _config_owner(pruned, list_name)
    if owner is not None:
        _update_config(owner.config, list_name, len(blocks), kept)
    stack_module = pruned.get_submodule(list_name)
    for position in reversed(removed):
        del stack_module[position]  # nn.ModuleList renumbers its keys 0..L'-1
    for new, old in enumerate(kept):
        for module in stack_module[new].modules():
            for attr in INDEX_ATTRIBUTES:
                value = vars(module).get(attr)
                if type(value) is int:
                    setattr(module, attr, value - (old - new))
    if owner is not None and callable(getattr(owner, "save_pretrained", None)):
        _check_reload(pruned, owner)
    return pruned
