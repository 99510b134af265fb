"""What identifies a capture: the model's weights, the reducer's code, the options, and a
streaming hash of every input and label.

The data hash is independent of the batch size: each field (the input tensor, each key of a
dict batch, the labels) has its own SHA-256 fed with the samples' bytes in order, so the same
samples hash the same however they are batched.
"""
from __future__ import annotations

import functools
import hashlib
import itertools
import pickle
import types

import numpy as np
import torch
from torch import nn

_MAX_DEPTH = 3  # functions followed through closures and globals before a name stands for the rest


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


def _code_token(code: types.CodeType) -> list:
    consts = [_code_token(c) if isinstance(c, types.CodeType) else repr(c) for c in code.co_consts]
    return [code.co_code.hex(), consts, code.co_names, code.co_varnames, code.co_argcount,
            code.co_kwonlyargcount]


def value_token(value, _seen=None) -> str:
    """A text that changes whenever ``value`` does, for the values a reducer can close over:
    numbers, strings, containers, arrays and tensors (hashed), functions (their code, defaults,
    closure and the globals they read), modules (their weights) and picklable objects. An
    object none of these cover gives its ``repr``, which may hold its address: such a store is then
    never reused across processes (refused, not stale)."""
    seen = frozenset() if _seen is None else _seen
    if value is None or isinstance(value, (bool, int, float, complex, str, bytes)):
        return repr(value)
    if isinstance(value, (tuple, list, set, frozenset)):
        items = sorted(map(repr, value)) if isinstance(value, (set, frozenset)) else value
        return f"{type(value).__name__}(" + ",".join(value_token(v, seen) for v in items) + ")"
    if isinstance(value, dict):
        return "dict(" + ",".join(f"{k!r}:{value_token(v, seen)}" for k, v in value.items()) + ")"
    if isinstance(value, (np.ndarray, torch.Tensor)):
        dtype, shape, raw = _tensor_bytes(value)
        return f"array({dtype},{shape},{hashlib.sha256(raw).hexdigest()})"
    if isinstance(value, types.ModuleType):
        return f"module({value.__name__})"
    if isinstance(value, nn.Module):
        return f"nn.Module({model_digest(value)})"
    if isinstance(value, type):
        return f"class({value.__module__}.{value.__qualname__})"
    if callable(value):
        return callable_token(value, seen)
    try:
        return f"pickle({hashlib.sha256(pickle.dumps(value, protocol=4)).hexdigest()})"
    except Exception:  # noqa: BLE001 - any object that will not pickle falls back to its repr
        return f"repr({type(value).__qualname__}:{value!r})"


def _cell_token(cell, seen) -> str:
    try:
        return value_token(cell.cell_contents, seen)
    except ValueError:  # a cell not yet filled
        return "empty"


def callable_token(fn, _seen=None) -> str:
    """The identity of a callable for the fingerprint: its code, defaults, closure and the globals
    it reads, never its name alone (two lambdas differ by their code and captured values).

    Examples
    --------
    >>> callable_token(lambda t: t * 2) == callable_token(lambda t: t * 3)
    False
    >>> def make(k):
    ...     return lambda t: t * k
    >>> callable_token(make(2)) == callable_token(make(2)), callable_token(make(2)) == callable_token(make(3))
    (True, False)
    """
    seen = frozenset() if _seen is None else _seen
    if id(fn) in seen:
        return "recursive"
    if len(seen) >= _MAX_DEPTH:  # deep inside library code: its name and code stand for it
        code = getattr(fn, "__code__", None)
        return f"{getattr(fn, '__module__', '')}.{getattr(fn, '__qualname__', type(fn).__qualname__)}" + (
            f"#{hashlib.sha256(code.co_code).hexdigest()[:16]}" if code is not None else "")
    seen = seen | {id(fn)}
    if isinstance(fn, functools.partial):
        return (f"partial({callable_token(fn.func, seen)},{value_token(fn.args, seen)},"
                f"{value_token(fn.keywords, seen)})")
    if isinstance(fn, types.MethodType):
        return f"method({callable_token(fn.__func__, seen)},{value_token(fn.__self__, seen)})"
    if isinstance(fn, types.FunctionType):
        code = fn.__code__
        cells = [_cell_token(c, seen) for c in (fn.__closure__ or ())]
        globals_read = {name: value_token(fn.__globals__[name], seen)
                        for name in code.co_names if name in fn.__globals__}
        return repr(["function", fn.__module__, fn.__qualname__, _code_token(code),
                     value_token(fn.__defaults__, seen), value_token(fn.__kwdefaults__, seen), cells,
                     globals_read])
    if isinstance(fn, (types.BuiltinFunctionType, types.BuiltinMethodType)) or not hasattr(fn, "__dict__"):
        return f"builtin({getattr(fn, '__module__', '')}.{getattr(fn, '__qualname__', repr(fn))})"
    kind = type(fn)
    call = getattr(kind, "__call__", None)
    state = value_token(vars(fn), seen)
    return f"object({kind.__module__}.{kind.__qualname__},{callable_token(call, seen)},{state})"


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
