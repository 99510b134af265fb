"""Layer selection (names, glob patterns, predicates, presets) and the layer table."""
from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Mapping
from typing import Iterable

import pandas as pd
import torch
from torch import nn

from .._results import described
from .conv_groups import conv_groups, shape_preserving_groups
from .presets import PRESETS
from .structure import block_stack, is_residual_block
from .trace import run_with_hooks

_CONV_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


def _inside(name: str, parents: Iterable[str]) -> bool:
    return any(name.startswith(p + ".") for p in parents)


def _transformer_blocks(model: nn.Module, residual: list[str]) -> list[str]:
    """The entries of the model's block stack when it is the model's backbone: every residual
    block (if any) lies inside an entry and there are no more of them than entries (GPT-2's
    ``GPT2Block`` entries, a mixture-of-experts block inside each decoder layer); a CNN whose
    stages sit in a ``ModuleList`` keeps its residual blocks."""
    stack = block_stack(model)
    if stack is None:
        return []
    entries = stack[1]
    inside = all(any(b == e or b.startswith(e + ".") for e in entries) for b in residual)
    return entries if inside and len(residual) <= len(entries) else []


def plain_stack_blocks(model: nn.Module) -> dict[str, tuple[str, str]] | None:
    """The blocks of a plain (VGG-style) stack: its conv groups that keep the shape
    (``shape_preserving_groups``), each name -> (the module whose input is the block's input, the
    module whose output is its output) — the group's first and last member, which are the group
    itself for an ``nn.Sequential(conv, bn, relu)``.

    Parameters
    ----------
    model : nn.Module
        Any module.

    Returns
    -------
    dict or None
        None for a model that is no plain stack: it has residual blocks, a transformer's block
        stack, or no conv group (``conv_groups``); an empty dict for a plain stack whose every conv
        group changes the shape.

    References
    ----------
    Lu et al., ECCV 2022 (VGG convs removed on a modularity plateau; their ``cvgg19_*``
    configurations drop the deepest 512-channel convs).

    Examples
    --------
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU())
    >>> plain_stack_blocks(net)
    {'2': ('2', '3')}
    """
    if any(is_residual_block(m) for m in model.modules()) or _transformer_blocks(model, []) or not conv_groups(model):
        return None
    return {g.name: (g.members[0], g.members[-1]) for g in shape_preserving_groups(model)}


def _preset(model: nn.Module, preset: str) -> dict[str, tuple[str, str]]:
    """The preset's layers, each name -> (input module, output module)."""
    named = [(n, m) for n, m in model.named_modules() if n]
    blocks = [n for n, m in named if is_residual_block(m) and not _inside(n, [b for b, mb in named if b != n and is_residual_block(mb)])]
    convs = [n for n, m in named if isinstance(m, _CONV_TYPES)]
    if preset == "convs":
        chosen = convs
    elif preset == "relus":
        chosen = [n for n, m in named if isinstance(m, nn.ReLU)]
    elif _transformer_blocks(model, blocks):  # "blocks" and "modularity" of a transformer: its stack
        chosen = _transformer_blocks(model, blocks)
    elif preset == "blocks":
        plain = plain_stack_blocks(model)
        if blocks or not plain:  # residual blocks, else (no shape-keeping conv group) the top-level stages
            chosen = blocks or [n for n, m in model.named_children() if any(True for _ in m.parameters())]
        else:
            return plain
    elif blocks:  # "modularity" (Lu et al., ECCV 2022): ResNets -> stem conv + every residual block
        chosen = [n for n in convs if not _inside(n, blocks)][:1] + blocks
    else:  # every conv for VGG
        chosen = convs
    return {n: (n, n) for n in chosen}


def layer_ends(model: nn.Module, layers) -> dict[str, tuple[str, str]]:
    """Resolve a layer specification (as ``select_layers``) to each layer's name -> (the module
    whose first input is the layer's input, the module whose output is its output).

    Both are the named module itself, except for the ``"blocks"`` of a plain stack
    (``plain_stack_blocks``): a conv group that lies among other layers of an ``nn.Sequential``
    (VGG's flat ``features``) is no module of its own, so it is named by its conv and runs from
    the conv's input to the output of its last member (the ReLU, or the BatchNorm or conv that
    ends it; ``repgraph.hooks.conv_groups``). ``ActivationRecorder`` hooks those two modules.

    Parameters
    ----------
    model : nn.Module
        The model.
    layers : str, list of str or callable
        As in ``select_layers``.

    Returns
    -------
    dict of str to (str, str)
        In the order of ``select_layers``.

    Raises
    ------
    ValueError, TypeError
        As ``select_layers``.

    References
    ----------
    PyTorch's module hooks: a forward pre-hook on the first module sees the layer's input, a
    forward hook on the last its output (``torch.nn.Module.register_forward_pre_hook``).

    Examples
    --------
    >>> from repgraph.models import vgg11
    >>> layer_ends(vgg11(), "blocks")["features.11"], layer_ends(vgg11(), ["features.11"])
    (('features.11', 'features.13'), {'features.11': ('features.11', 'features.11')})
    """
    names = [n for n, _ in model.named_modules() if n]
    if callable(layers) and not isinstance(layers, str):
        chosen = [n for n, m in model.named_modules() if n and layers(n, m)]
        if not chosen:
            raise ValueError("The layer predicate selected no module; check it against list_layers(model, x).")
        return {n: (n, n) for n in chosen}
    if isinstance(layers, str):
        if layers in PRESETS:
            ends = _preset(model, layers)
            if not ends:
                raise ValueError(f"The preset {layers!r} matches no module of {type(model).__name__}; "
                                 "pass layer names instead (see list_layers(model, x)).")
            return ends
        layers = [layers]
    if not isinstance(layers, (list, tuple)) or not all(isinstance(x, str) for x in layers):
        raise TypeError(f"layers must be a preset {tuple(PRESETS)}, a name, a glob pattern, a list of those, "
                        f"or a predicate (name, module) -> bool; got {type(layers).__name__}.")
    if not layers:
        raise ValueError(f"layers={layers!r} selects no layer; pass at least one name, glob pattern or preset "
                         f"{tuple(PRESETS)} (list_layers(model, x) shows every name).")
    chosen: list[str] = []
    for spec in layers:
        if any(ch in spec for ch in "*?["):
            hits = fnmatch.filter(names, spec)
        else:
            hits = [spec] if spec in names else []
        if not hits:
            close = difflib.get_close_matches(spec, names, n=5)
            hint = f" Close matches: {', '.join(close)}." if close else ""
            raise ValueError(f"Unknown layer {spec!r} in {type(model).__name__}.{hint} "
                             "list_layers(model, x) shows every name.")
        chosen.extend(h for h in hits if h not in chosen)
    order = {n: i for i, n in enumerate(names)}
    return {n: (n, n) for n in sorted(chosen, key=order.__getitem__)}


def select_layers(model: nn.Module, layers) -> list[str]:
    """Resolve a layer specification to module names, in registration order.

    Parameters
    ----------
    model : nn.Module
        The model.
    layers : str, list of str or callable
        A preset: ``"blocks"`` (residual blocks; for a transformer its stack of repeated blocks as
        ``block_stack`` finds it, e.g. BERT's ``encoder.layer.N``, GPT-2's ``h.N``, LLaMA's
        ``layers.N``; for a plain stack the conv groups that keep the shape, ``conv_shape_change``
        None: an ``nn.Sequential(conv, bn, relu)`` by its name, a flat group of VGG's
        ``features`` by its conv's name (``plain_stack_blocks``; ``layer_ends`` says where its
        input and output are taken); else the top-level children with parameters), ``"convs"``, ``"relus"``,
        ``"modularity"`` (stem conv + residual blocks; every conv for VGG; a transformer's
        blocks); a name; a glob pattern (``"layer1.*"``); a list of names and patterns; or a
        predicate ``(name, module) -> bool``.

    Returns
    -------
    list of str
        Module names as ``named_modules()`` gives them.

    Raises
    ------
    ValueError
        For an unknown name (listing close matches), an empty list or a selection that matches
        nothing.
    TypeError
        For a specification of another type.

    Examples
    --------
    >>> from torch import nn
    >>> class Net(nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.embed = nn.Embedding(10, 4)
    ...         self.layers = nn.ModuleList(nn.Linear(4, 4) for _ in range(3))
    >>> select_layers(Net(), "blocks"), select_layers(Net(), "layers.*")
    (['layers.0', 'layers.1', 'layers.2'], ['layers.0', 'layers.1', 'layers.2'])
    """
    return list(layer_ends(model, layers))


def _shape_of(output) -> str | tuple:
    if isinstance(output, torch.Tensor):
        return tuple(output.shape)
    if isinstance(output, (tuple, list)):
        return str([_shape_of(o) for o in output])
    if isinstance(output, Mapping):
        return str({k: _shape_of(v) for k, v in output.items() if v is not None})
    return type(output).__name__


def list_layers(model: nn.Module, example_input) -> pd.DataFrame:
    """The model's hook points: one row per submodule, from one traced forward.

    Runs the model once on ``example_input``, in eval mode under no_grad, and restores the
    model's modes. The input is taken as ``capture_activations`` takes its data: moved to the
    model's device, floating inputs cast to the model's dtype.

    Parameters
    ----------
    model : nn.Module
        Any model.
    example_input : tensor, array, DataFrame, tuple, dict, Dataset, DataLoader or iterable
        Any data form of ``capture_activations``: a tensor, array or DataFrame of inputs, ``(X,
        y)`` and a dict of per-sample arrays (keyword inputs) are run whole; a Dataset gives one
        sample, a DataLoader or iterable its first batch. One sample is enough.

    Returns
    -------
    pandas.DataFrame
        Columns ``name``, ``type``, ``output_shape`` (of its first call; structures of tuples and
        dicts are shown as text), ``params`` (in the module and its children) and ``calls`` (per
        forward; 0 for modules that never run).

    Raises
    ------
    ValueError, TypeError
        For an input form ``capture_activations`` refuses, empty data, or several positional
        inputs (``((X1, X2), y)``: the traced forward takes one input or keyword inputs).
    Exception
        Whatever the model raises on the input (e.g. a ``RuntimeError`` for an input of the
        wrong shape), a plain ``ValueError``, ``TypeError`` or ``RuntimeError`` with a line on what
        the input held when the data form may be the cause (integer inputs to a floating model);
        the hooks are removed and the modes restored first.

    References
    ----------
    A forward hook on every submodule (``torch.nn.Module.register_forward_hook``), the way
    summary tables such as torchinfo's ``summary`` trace a model.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> table = list_layers(nn.Sequential(nn.Linear(4, 3), nn.ReLU()), torch.zeros(2, 4))
    >>> table[["name", "type", "output_shape", "params", "calls"]].values.tolist()
    [['0', 'Linear', (2, 3), 15, 1], ['1', 'ReLU', (2, 3), 0, 1]]
    """
    rows: dict[str, dict] = {}

    def make_hook(name, module):
        def hook(_mod, _inp, out):
            row = rows.setdefault(name, {"name": name, "type": type(module).__name__,
                                         "output_shape": _shape_of(out),
                                         "params": sum(p.numel() for p in module.parameters()),
                                         "calls": 0})
            row["calls"] += 1
        return hook

    run_with_hooks(model, example_input, [(m, make_hook(n, m)) for n, m in model.named_modules() if n])
    table = [rows.get(n, {"name": n, "type": type(m).__name__, "output_shape": None,
                          "params": sum(p.numel() for p in m.parameters()), "calls": 0})
             for n, m in model.named_modules() if n]
    return described(pd.DataFrame(table, columns=["name", "type", "output_shape", "params", "calls"]),
                     "layer table of one traced forward", None, model=type(model).__name__)
