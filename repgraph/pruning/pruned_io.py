"""Saving and loading a pruned model with its pruned architecture: the module tree (each module's
class, plain attributes, parameters and buffers, children) in a file that ``torch.load`` reads
with ``weights_only=True``."""
from __future__ import annotations

import importlib
from pathlib import Path

import torch
from torch import nn

FORMAT = "repgraph.pruned/1"
# What nn.Module.__init__ sets up itself (parameters, buffers, children, hooks): rebuilt on load.
_MODULE_INTERNALS = frozenset(vars(nn.Module())) - {"training"}
_PLAIN = (type(None), bool, int, float, complex, str, torch.Size)


def _plain(value) -> bool:
    """Whether ``torch.load(weights_only=True)`` reads ``value`` back: numbers, strings, None and
    lists, tuples and str-keyed dicts of them."""
    if type(value) in _PLAIN:  # exact types: a str or tuple subclass is a class the unpickler refuses
        return True
    if type(value) in (list, tuple):
        return all(_plain(v) for v in value)
    if type(value) is dict:
        return all(type(k) is str and _plain(v) for k, v in value.items())
    return False


def _class_path(module: nn.Module, name: str) -> str:
    cls = type(module)
    if "<locals>" in cls.__qualname__ or cls.__module__ == "__main__":
        raise ValueError(f"Module {name or '(the model)'!r} is a {cls.__qualname__} defined in "
                         f"{'a function' if '<locals>' in cls.__qualname__ else '__main__'}; load_pruned imports "
                         "each module's class by name, so define the class at the top level of an importable module.")
    return f"{cls.__module__}:{cls.__qualname__}"


def _entry(module: nn.Module, name: str, paths: dict) -> dict:
    attributes = {}
    for key, value in vars(module).items():
        if key in _MODULE_INTERNALS:
            continue
        if not _plain(value):
            raise ValueError(f"Module {name or '(the model)'!r} ({type(module).__name__}) holds attribute {key!r} of "
                             f"type {type(value).__name__}, which save_pruned cannot store as plain data. Keep such "
                             "state in a class attribute or a buffer, or save the whole model with torch.save(model) "
                             "(loaded with torch.load(path, weights_only=False), for files you trust only).")
        attributes[key] = value
    return {
        "name": name,
        "class": _class_path(module, name),
        "attributes": attributes,
        "parameters": {k: None if p is None else p.detach().cpu() for k, p in module._parameters.items()},
        "requires_grad": {k: p.requires_grad for k, p in module._parameters.items() if p is not None},
        "buffers": {k: None if b is None else b.detach().cpu() for k, b in module._buffers.items()},
        "non_persistent": sorted(module._non_persistent_buffers_set),
        "children": {k: None if c is None else paths[id(c)] for k, c in module._modules.items()},
    }


def save_pruned(model: nn.Module, path) -> Path:
    """Save a pruned model so that ``load_pruned`` gives it back without the original class's
    constructor: every module's class, plain attributes (widths, kernel sizes, ...), parameters
    and buffers (their pruned shapes) and children (``nn.Identity`` where ``remove_layers`` took
    a block out).

    A pruned model no longer fits its class's constructor: ``load_state_dict`` into a fresh
    instance fails with "Missing key(s)" (a removed block) or a size mismatch (pruned filters).
    This file records the architecture as it is instead. Forward hooks are not saved.

    Parameters
    ----------
    model : nn.Module
        The model (pruned or not); not modified. Tensors are saved from the CPU.
    path : str or Path
        The file to write (its folder must exist).

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    ValueError
        For a module whose class is defined inside a function or in ``__main__`` (``load_pruned``
        must import it by name), or that holds an attribute that is not plain data (a function,
        a config object: the message names the module and attribute).

    Notes
    -----
    The file is a ``torch.save`` of tensors, numbers, strings, lists and dicts only, so
    ``load_pruned`` reads it with ``torch.load(weights_only=True)``, which runs no code from
    the file. Torch-Pruning's ``tp.state_dict`` / ``tp.load_state_dict`` (1.6) save each
    module's whole ``__dict__``, module objects included, which ``torch.load`` reads only with
    ``weights_only=False`` (unpickling, which can run any code the file names): not used here.

    References
    ----------
    PyTorch, "Saving and loading models" (``state_dict`` and ``torch.load(weights_only=True)``);
    Torch-Pruning's serialization of pruned models (``torch_pruning.serialization``),
    github.com/VainF/Torch-Pruning.

    Examples
    --------
    >>> import tempfile, torch
    >>> from pathlib import Path
    >>> import repgraph as rg
    >>> from repgraph.models import small_cnn
    >>> model, x = small_cnn().eval(), torch.randn(2, 3, 32, 32)
    >>> pruned = rg.prune_filters(model, rg.l1_scores(model), ratio=0.5, example_input=x[:1])
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     path = rg.save_pruned(pruned, Path(folder) / "pruned.pt")
    ...     again = rg.load_pruned(path)
    >>> again.conv1.out_channels, torch.equal(again(x), pruned(x))
    (8, True)
    """
    paths: dict[int, str] = {}
    entries = []
    for name, module in model.named_modules():  # parents before children; a shared module once
        paths[id(module)] = name
    for name, module in model.named_modules():
        entries.append(_entry(module, name, paths))
    path = Path(path)
    torch.save({"format": FORMAT, "torch": str(torch.__version__), "modules": entries}, path)
    return path


def _import_class(spec: str, name: str) -> type:
    module_name, _, qualname = spec.partition(":")
    try:
        found = importlib.import_module(module_name)
        for part in qualname.split("."):
            found = getattr(found, part)
    except (ImportError, AttributeError) as err:
        raise ValueError(f"Module {name or '(the model)'!r} is a {spec}, which cannot be imported here ({err}); "
                         "install or put on the path the code that defines it.") from err
    if not (isinstance(found, type) and issubclass(found, nn.Module)):
        raise ValueError(f"Module {name or '(the model)'!r} names {spec}, which is not an nn.Module class; "
                         "the file is not one save_pruned wrote.")
    return found


def _rebuilt(entry: dict, map_location) -> nn.Module:
    """The module of ``entry`` without its children: made without calling its class's
    ``__init__`` (the pruned widths would not fit it), then given its attributes and tensors."""
    cls = _import_class(entry["class"], entry["name"])
    module = cls.__new__(cls)
    nn.Module.__init__(module)
    module.__dict__.update(entry["attributes"])
    for key, value in entry["parameters"].items():
        parameter = None if value is None else nn.Parameter(value.to(map_location) if map_location else value,
                                                            requires_grad=entry["requires_grad"][key])
        module.register_parameter(key, parameter)
    for key, value in entry["buffers"].items():
        buffer = value.to(map_location) if value is not None and map_location else value
        module.register_buffer(key, buffer, persistent=key not in entry["non_persistent"])
    return module


def load_pruned(path, *, map_location=None) -> nn.Module:
    """The model ``save_pruned`` wrote to ``path``, pruned architecture and weights, in the
    train/eval modes it was saved in.

    Parameters
    ----------
    path : str or Path
        A file written by ``save_pruned``.
    map_location : str or torch.device, optional
        Where to put the tensors; default the CPU.

    Returns
    -------
    nn.Module
        A new model of the saved classes: each module is made without calling its class's
        ``__init__`` and given the saved attributes, parameters, buffers and children.

    Raises
    ------
    ValueError
        For a file ``save_pruned`` did not write, or a module class that cannot be imported here
        or is not an ``nn.Module``.

    Notes
    -----
    The file is read with ``torch.load(path, weights_only=True)``: tensors and plain data only,
    no code from the file runs. The file does name the classes to use (``torch.nn.Conv2d``,
    ``repgraph.models.resnet.ResNet``, your own): they are imported from the code installed here,
    as ``import`` would, and must be ``nn.Module`` subclasses; their forward is the code that
    runs. A file from someone else can thus make you import an installed module by name, but not
    run code of its own.

    References
    ----------
    PyTorch, "Saving and loading models" (``torch.load(weights_only=True)``).

    Examples
    --------
    >>> import tempfile, torch
    >>> from pathlib import Path
    >>> import repgraph as rg
    >>> from repgraph.models import resnet20
    >>> model = resnet20().eval()
    >>> pruned = rg.remove_layers(model, ["layer1.1"])
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     again = rg.load_pruned(rg.save_pruned(pruned, Path(folder) / "pruned.pt"))
    >>> x = torch.randn(2, 3, 32, 32)
    >>> type(again.layer1[1]).__name__, torch.equal(again(x), pruned(x))
    ('Identity', True)
    """
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # an unpickling error names what the file holds beyond plain data
        raise ValueError(f"{path} is not a file save_pruned wrote (torch.load with weights_only=True refused "
                         f"it: {type(err).__name__}: {err}).") from err
    if not isinstance(saved, dict) or saved.get("format") != FORMAT:
        raise ValueError(f"{path} is not a file save_pruned wrote (format {FORMAT!r}); a plain state_dict "
                         "loads with model.load_state_dict(torch.load(path, weights_only=True)).")
    modules = {e["name"]: _rebuilt(e, map_location) for e in saved["modules"]}
    for entry in saved["modules"]:
        parent = modules[entry["name"]]
        for key, child in entry["children"].items():
            parent.register_module(key, None if child is None else modules[child])
    return modules[""]
