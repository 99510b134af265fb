"""ActivationRecorder: forward hooks that copy selected modules' outputs."""
from __future__ import annotations

import warnings
from typing import Callable

import torch
from torch import nn

from .layers import select_layers


class ActivationRecorder:
    """Context manager that records the outputs of selected modules.

    Each call of a hooked module stores ``reducer(output)`` detached and copied (so a later in-place
    op such as ``ReLU(inplace=True)`` cannot overwrite it) on ``device`` as ``dtype``. A module called
    several times in one forward is recorded per call as ``name``, ``name:1``, … with a warning.
    ``outputs`` maps each recorded name to its list of tensors, one per forward, in order;
    ``clear()`` empties it. Every hook is removed on exit, also when the forward raises.
    """

    def __init__(self, model: nn.Module, layers, *, reducer: Callable | None = None,
                 device="cpu", dtype=torch.float32):
        self.model = model
        self.layers = select_layers(model, layers)
        self.reducer = reducer
        self.device = torch.device(device)
        self.dtype = dtype
        self.outputs: dict[str, list[torch.Tensor]] = {}
        self._calls: dict[str, int] = {}
        self._warned: set[str] = set()
        self._handles: list = []

    def _hook(self, name: str):
        def hook(_module, _inputs, output):
            call = self._calls.get(name, 0)
            self._calls[name] = call + 1
            key = name if call == 0 else f"{name}:{call}"
            if call == 1 and name not in self._warned:
                self._warned.add(name)
                warnings.warn(f"Layer {name!r} is called more than once per forward; each call is "
                              f"recorded separately as {name!r}, '{name}:1', ...", stacklevel=2)
            value = self.reducer(output) if self.reducer is not None else output
            if not isinstance(value, torch.Tensor):
                raise TypeError(f"Layer {name!r} returned {type(value).__name__}, not a tensor; hook a "
                                "submodule that returns a tensor or pass a reducer that picks one.")
            copy = value.detach().to(device=self.device, dtype=self.dtype, copy=True)
            self.outputs.setdefault(key, []).append(copy)
        return hook

    def _reset_calls(self, _module, _inputs):
        self._calls = {}

    def __enter__(self):
        modules = dict(self.model.named_modules())
        try:
            self._handles.append(self.model.register_forward_pre_hook(self._reset_calls))
            for name in self.layers:
                self._handles.append(modules[name].register_forward_hook(self._hook(name)))
        except Exception:
            self.remove()
            raise
        return self

    def __exit__(self, *exc):
        self.remove()
        return False

    def remove(self):
        """Remove every hook this recorder registered."""
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def clear(self):
        """Forget every recorded output."""
        self.outputs = {}
