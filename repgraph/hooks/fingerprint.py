"""What identifies a capture: the model's weights, what the model computes with them (its module
tree, each module's settings and code, the hooks on it), the reducer's code, the options, and a
streaming hash of every input and label.

The data hash is independent of the batch size: each field (the input tensor, each key of a
dict batch, the labels) has its own SHA-256 fed with the samples' bytes in order, so the same
samples hash the same however they are batched.
"""
from __future__ import annotations

import dis
import functools
import hashlib
import itertools
import os
import pickle
import sys
import sysconfig
import types

import numpy as np
import torch
from torch import nn

# installed code (the standard library, site-packages): a function there stands for itself by its
# name and code, its globals not followed
_INSTALLED = tuple(sorted({os.path.realpath(p) + os.sep for key in ("stdlib", "platstdlib", "purelib", "platlib")
                           if (p := sysconfig.get_paths().get(key))}))


def _tensor_bytes(t) -> tuple[str, tuple, memoryview]:
    """(dtype name, shape, raw bytes in C order) of a tensor or array, any dtype (bfloat16 too)."""
    if isinstance(t, torch.Tensor):
        t = t.detach()
        if t.device.type != "cpu":
            t = t.cpu()
        t = t.contiguous()
        raw = t.reshape(-1).view(torch.uint8).numpy() if t.numel() else np.empty(0, np.uint8)
        return str(t.dtype).removeprefix("torch."), tuple(t.shape), memoryview(raw)
    a = np.ascontiguousarray(t)
    return str(a.dtype), a.shape, memoryview(a.reshape(-1).view(np.uint8))


def model_digest(model: nn.Module) -> str:
    """SHA-256 of the model's class and of every parameter and buffer (name, dtype, shape, bytes)."""
    digest = hashlib.sha256(f"{type(model).__module__}.{type(model).__qualname__}".encode())
    for name, tensor in itertools.chain(model.named_parameters(), model.named_buffers()):
        dtype, shape, raw = _tensor_bytes(tensor)
        digest.update(f"|{name}|{dtype}|{shape}|".encode())
        digest.update(raw)
    return digest.hexdigest()


# what nn.Module keeps in every instance's __dict__ besides the module's own settings: its tensors
# and submodules (hashed on their own), its hook tables (the forward ones hashed on their own) and
# ``training`` (a capture always runs the model in eval mode)
_MODULE_INTERNALS = frozenset(nn.Module().__dict__)
# each forward hook table with the tables of its flags, as register_forward_(pre_)hook fills them
_HOOK_TABLES = (("_forward_pre_hooks", ("_forward_pre_hooks_with_kwargs",)),
                ("_forward_hooks", ("_forward_hooks_with_kwargs", "_forward_hooks_always_called")))


def _methods(kind: type) -> list:
    """The functions a module class and its bases below ``nn.Module`` define (methods, static and
    class methods, property accessors), in definition order."""
    found = []
    for base in kind.__mro__[:kind.__mro__.index(nn.Module)]:
        for member in vars(base).values():
            if isinstance(member, (staticmethod, classmethod)):
                member = member.__func__
            accessors = (member.fget, member.fset) if isinstance(member, property) else (member,)
            found += [f for f in accessors if isinstance(f, types.FunctionType)]
    return found


def _written_by_forward(kind: type) -> frozenset:
    """The attribute names the class's ``forward`` assigns or deletes (a call counter, a cache)."""
    names, codes = set(), [getattr(kind.forward, "__code__", None)]
    while codes:
        code = codes.pop()
        if code is not None:
            names |= {i.argval for i in dis.get_instructions(code) if i.opname in ("STORE_ATTR", "DELETE_ATTR")}
            codes += [c for c in code.co_consts if isinstance(c, types.CodeType)]
    return frozenset(names)


def _module_token(name: str, module: nn.Module, classes: dict, walk) -> list:
    kind = type(module)
    if kind not in classes:  # each class's code hashed once however many modules share it
        classes[kind] = [f"{kind.__module__}.{kind.__qualname__}",
                         [callable_token(f, walk) for f in _methods(kind)], _written_by_forward(kind)]
    class_token, code, running_state = classes[kind]
    settings = {key: value_token(value, walk) for key, value in vars(module).items()
                if key not in _MODULE_INTERNALS and key not in running_state}
    hooks = [[table, [key in getattr(module, flag) for flag in flags], callable_token(hook, walk)]
             for table, flags in _HOOK_TABLES for key, hook in getattr(module, table).items()]
    return [name, class_token, code, module.extra_repr(), settings, hooks]


def modules_digest(model: nn.Module) -> str:
    """SHA-256 of what the model computes besides its weights: for every module of its tree, its
    qualified name, its class and the code of the class's methods (user code followed as the
    reducer's is, see ``callable_token``), its ``extra_repr()`` and the settings in its
    ``__dict__`` (``negative_slope``, ``padding``, a Hugging Face ``config``, a plain ``scale``;
    not the attributes its ``forward`` itself writes, such as a call counter), and the forward
    hooks and pre-hooks registered on it (their code and flags, in order).

    Examples
    --------
    >>> modules_digest(nn.LeakyReLU(0.01)) == modules_digest(nn.LeakyReLU(0.3))
    False
    >>> modules_digest(nn.Conv2d(1, 2, 3)) == modules_digest(nn.Conv2d(1, 2, 3))  # other weights
    True
    """
    walk, classes = (frozenset(), {}), {}
    tokens = [_module_token(name, module, classes, walk) for name, module in model.named_modules()]
    return hashlib.sha256(repr(tokens).encode()).hexdigest()


def _config_token(config) -> str:
    """A Hugging Face ``PretrainedConfig`` by its full content, keys sorted."""
    return f"config({hashlib.sha256(config.to_json_string(use_diff=False).encode()).hexdigest()})"


def _code_token(code: types.CodeType) -> list:
    # constants through value_token: a set literal compiles to a frozenset whose repr order changes
    # from process to process (string hashing is randomised)
    consts = [_code_token(c) if isinstance(c, types.CodeType) else value_token(c) for c in code.co_consts]
    return [code.co_code.hex(), consts, code.co_names, code.co_varnames, code.co_argcount,
            code.co_kwonlyargcount]


def value_token(value, _walk=None) -> str:
    """A text that changes whenever ``value`` does, for the values a reducer can close over:
    numbers, strings, containers, arrays and tensors (hashed), functions (their code, defaults,
    closure and the globals they read), modules (their weights and ``modules_digest``), Hugging
    Face configs (their content) and picklable objects. An
    object none of these cover gives its ``repr``, which may hold its address: such a store is then
    never reused across processes (refused, not stale)."""
    if value is None or isinstance(value, (bool, int, float, complex, str, bytes)):
        return repr(value)
    if isinstance(value, (tuple, list, set, frozenset)):
        items = sorted(map(repr, value)) if isinstance(value, (set, frozenset)) else value
        return f"{type(value).__name__}(" + ",".join(value_token(v, _walk) for v in items) + ")"
    if isinstance(value, dict):
        return "dict(" + ",".join(f"{k!r}:{value_token(v, _walk)}" for k, v in value.items()) + ")"
    if isinstance(value, (np.ndarray, torch.Tensor)):
        dtype, shape, raw = _tensor_bytes(value)
        return f"array({dtype},{shape},{hashlib.sha256(raw).hexdigest()})"
    if isinstance(value, types.ModuleType):
        return f"module({value.__name__})"
    if isinstance(value, nn.Module):
        return f"nn.Module({model_digest(value)},{modules_digest(value)})"
    if any(f"{k.__module__}.{k.__name__}" == "transformers.configuration_utils.PretrainedConfig"
           for k in type(value).__mro__):
        return _config_token(value)
    if isinstance(value, type):
        return f"class({value.__module__}.{value.__qualname__})"
    if callable(value):
        return callable_token(value, _walk)
    try:
        return f"pickle({hashlib.sha256(pickle.dumps(value, protocol=4)).hexdigest()})"
    except Exception:  # noqa: BLE001 - any object that will not pickle falls back to its repr
        return f"repr({type(value).__qualname__}:{value!r})"


def _cell_token(cell, walk) -> str:
    try:
        return value_token(cell.cell_contents, walk)
    except ValueError:  # a cell not yet filled
        return "empty"


def _installed(fn) -> bool:
    """Whether ``fn`` is defined in installed code (standard library, site-packages), not in the
    user's notebook, script or project."""
    module = sys.modules.get(getattr(fn, "__module__", None) or "")
    path = getattr(module, "__file__", None)
    return path is not None and os.path.realpath(path).startswith(_INSTALLED)


def _object_state(obj) -> dict:
    """The attributes of an object: its ``__dict__`` and its ``__slots__`` (a slotted class has no
    ``__dict__``)."""
    state = dict(getattr(obj, "__dict__", {}))
    for kind in type(obj).__mro__:
        slots = kind.__dict__.get("__slots__", ())
        for name in (slots,) if isinstance(slots, str) else slots:
            if name not in ("__dict__", "__weakref__") and hasattr(obj, name):
                state[f"{kind.__qualname__}.{name}"] = getattr(obj, name)
    return state


def callable_token(fn, _walk=None) -> str:
    """The identity of a callable for the fingerprint: its code, defaults, closure and the globals
    it reads, never its name alone (two lambdas differ by their code and captured values).

    The user's own functions are followed to any depth (a constant read three calls down is part
    of the identity); a function of installed code (the standard library, site-packages) stands
    for itself by its module, name and code.

    Examples
    --------
    >>> callable_token(lambda t: t * 2) == callable_token(lambda t: t * 3)
    False
    >>> def make(k):
    ...     return lambda t: t * k
    >>> callable_token(make(2)) == callable_token(make(2)), callable_token(make(2)) == callable_token(make(3))
    (True, False)
    """
    path, memo = (frozenset(), {}) if _walk is None else _walk  # the callables being followed; done ones
    if id(fn) in path:
        return "recursive"
    if id(fn) not in memo:  # each callable followed once however many paths lead to it
        memo[id(fn)] = (fn, _callable_token(fn, (path | {id(fn)}, memo)))
    return memo[id(fn)][1]


def _callable_token(fn, walk) -> str:
    if isinstance(fn, functools.partial):
        return (f"partial({callable_token(fn.func, walk)},{value_token(fn.args, walk)},"
                f"{value_token(fn.keywords, walk)})")
    if isinstance(fn, types.MethodType):
        return f"method({callable_token(fn.__func__, walk)},{value_token(fn.__self__, walk)})"
    if isinstance(fn, types.FunctionType):
        code = fn.__code__
        if _installed(fn):
            return f"{fn.__module__}.{fn.__qualname__}#{hashlib.sha256(code.co_code).hexdigest()[:16]}"
        cells = [_cell_token(c, walk) for c in (fn.__closure__ or ())]
        globals_read = {name: value_token(fn.__globals__[name], walk)
                        for name in code.co_names if name in fn.__globals__}
        return repr(["function", fn.__module__, fn.__qualname__, _code_token(code),
                     value_token(fn.__defaults__, walk), value_token(fn.__kwdefaults__, walk), cells,
                     globals_read])
    kind = type(fn)
    call = getattr(kind, "__call__", None)
    if isinstance(fn, (types.BuiltinFunctionType, types.BuiltinMethodType)) or not isinstance(
            call, types.FunctionType):  # implemented in C (a builtin, a ufunc, operator.itemgetter, ...)
        return f"builtin({getattr(fn, '__module__', '')}.{getattr(fn, '__qualname__', repr(fn))})"
    return (f"object({kind.__module__}.{kind.__qualname__},{callable_token(call, walk)},"
            f"{value_token(_object_state(fn), walk)})")


class DataDigest:
    """Streaming SHA-256 of every field of the batches seen, independent of the batch size.

    ``update(batch)`` feeds a batch; ``snapshot()`` gives ``{"n_samples": n, field: {"dtype",
    "shape" (per sample), "sha256"}}`` for the samples seen so far.
    """

    def __init__(self):
        self.n_samples = 0
        self._fields: dict[str, dict] = {}

    def _feed(self, name: str, value, n: int):
        entry = self._fields.setdefault(name, {"hash": hashlib.sha256(), "layout": None})
        if isinstance(value, (torch.Tensor, np.ndarray)) and value.ndim >= 1 and value.shape[0] == n:
            if isinstance(value, np.ndarray) and value.dtype.kind in "US":
                layout, raw = ("str", ()), "".join(f"{v}\x00" for v in value.tolist()).encode()
            else:
                dtype, shape, raw = _tensor_bytes(value)
                layout = (dtype, shape[1:])
        elif isinstance(value, (list, tuple)) and len(value) == n:
            layout, raw = ("list", ()), "".join(f"{value_token(v)}\x00" for v in value).encode()
        else:  # not per sample (e.g. a flag passed with every batch): hashed when it changes
            layout, raw = ("per-batch", value_token(value)), b""
        if layout != entry["layout"]:  # marked once per change, so batching does not show
            entry["hash"].update(f"|layout {layout}|".encode())
            entry["layout"] = layout
        entry["hash"].update(raw)

    def update(self, batch):
        for name, value in batch.fields.items():
            self._feed(name, value, batch.n)
        if batch.labels is not None:
            self._feed("labels", batch.labels, batch.n)
        self.n_samples += batch.n

    def snapshot(self) -> dict:
        out = {"n_samples": self.n_samples}
        for name, entry in self._fields.items():
            out[name] = {"layout": repr(entry["layout"]), "sha256": entry["hash"].copy().hexdigest()}
        return out
