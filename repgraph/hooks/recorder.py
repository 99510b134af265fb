"""ActivationRecorder: forward hooks that copy selected modules' outputs (and inputs)."""
from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from .._warnings import warn_user
from .handles import TemporaryHooks
from .layers import layer_ends
from .outputs import batch_first, declared_batch_first, module_input, per_layer, select_output
from .reducers import resolve_reducer


class ActivationRecorder:
    """Context manager that records the outputs of selected modules, one tensor per call.

    Each call of a hooked module stores its output, made batch-first and reduced, detached and
    copied (so a later in-place op such as ``ReLU(inplace=True)`` cannot overwrite it) on
    ``device`` as ``dtype``. A module called several times in one forward is recorded per call as
    ``name``, ``name:1``, … with a warning. Every hook is removed on exit, also when the forward
    raises.

    The model's own hooks stay and run as in a bare forward, before the recorder's: its hooks get
    ids no hook of the model holds, also in a process that unpickled the model
    (``repgraph.hooks.handles.TemporaryHooks``), and only they are removed.

    Parameters
    ----------
    model : nn.Module
        The model whose submodules are hooked; it is not put in eval mode (do that yourself, or
        use ``capture_activations``).
    layers : str, list of str or callable
        A preset, names, glob patterns or a predicate, as in ``capture_activations``. A layer
        that is no module of its own (a flat conv group of the ``"blocks"`` of a plain stack)
        is recorded at the output of its last module and, with ``inputs``, at the input of its
        first (``layer_ends``).
    reducer : str, callable or None
        Applied to each batch-first output on its device: a name of ``repgraph.hooks.reducers``
        (``"flatten"``, ``"spatial_mean"``, ``"token_mean"``, ``"first_token"``,
        ``"last_token"``) or a callable ``output -> (N, ...) tensor`` (given ``attention_mask=``
        too when it takes that keyword). None keeps the output as it is.
    device : str or torch.device or None
        Where the copies are kept (None: where the output is).
    dtype : torch.dtype
        Dtype of the copies.
    inputs : bool
        Also record each module's input (its first positional tensor argument, else its
        ``hidden_states`` keyword) under ``"name:input"`` (``"name:1:input"`` for a second call),
        through a forward pre-hook, with the same reducer and batch axis.
    output : int, str, dict or None
        Which tensor to take when a module returns a tuple, list, dict or ``ModelOutput``: an index
        or key, or ``{layer or glob: index or key}``; None takes the first tensor (the hidden states
        of a transformer block). A module returning a tensor ignores it.
    batch_axis : int or dict
        The axis of the samples in each output (e.g. 1 for the (T, N, D) outputs of
        ``nn.TransformerEncoderLayer(batch_first=False)``), moved to the front before reducing; an
        int for all layers or ``{layer or glob: axis}`` (others: 0).

    Attributes
    ----------
    layers : list of str
        The selected layers' names.
    ends : dict of str to (str, str)
        Each layer -> the module whose input is recorded as its input and the module whose
        output is recorded as its output (``layer_ends``; both the layer itself but for flat
        conv groups).
    outputs : dict of str to list of torch.Tensor
        Each recorded name -> its tensors, one per forward, in order; ``clear()`` empties it.
    attention_mask : torch.Tensor or None
        The ``attention_mask`` keyword of the model's current call, given to token reducers.

    Raises
    ------
    ValueError
        On construction, for an unknown layer name (listing close matches), a selection that
        matches nothing, an unknown reducer name, or an ``output``/``batch_axis`` dict key that
        names no selected layer. During a forward, for a scalar output, a ``batch_axis`` the
        output does not have, an ``output`` index or key its return value lacks, a reducer that
        does not fit the output's shape or drops the sample axis.
    TypeError
        On construction, for a ``layers`` specification or reducer of another type, or a
        non-integer ``batch_axis``. During a forward, when the selected output (or input) is not
        a tensor, or a callable reducer returns something else.

    References
    ----------
    PyTorch's module hooks (``torch.nn.Module.register_forward_hook`` and
    ``register_forward_pre_hook(with_kwargs=True)``), whose handles are removed on exit.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(inplace=True)).eval()
    >>> with ActivationRecorder(model, ["0"], inputs=True) as rec:
    ...     _ = model(torch.ones(2, 4))
    >>> list(rec.outputs), rec.outputs["0"][0].shape, bool((rec.outputs["0:input"][0] == 1).all())
    (['0:input', '0'], torch.Size([2, 3]), True)
    """

    def __init__(self, model: nn.Module, layers, *, reducer=None, device="cpu", dtype=torch.float32,
                 inputs: bool = False, output=None, batch_axis=0):
        self.model = model
        self.ends = layer_ends(model, layers)
        self.layers = list(self.ends)
        self.reducer = resolve_reducer(reducer)
        self.device = None if device is None else torch.device(device)
        self.dtype = dtype
        self.inputs = bool(inputs)
        self._output = per_layer(output, self.layers, "output", None)
        self._axis = per_layer(batch_axis, self.layers, "batch_axis", 0)
        named = per_layer(batch_axis, self.layers, "batch_axis", None) if isinstance(batch_axis, Mapping) else {}
        self._confirmed_axis = {name for name, axis in named.items() if axis is not None}  # set per layer
        modules = dict(model.named_modules())
        self._declared = {name: declared_batch_first(modules[self.ends[name][1]]) for name in self.layers}
        for name, axis in self._axis.items():
            if isinstance(axis, bool) or not isinstance(axis, int):
                raise TypeError(f"batch_axis for layer {name!r} must be an int, got {axis!r}.")
        self.outputs: dict[str, list[torch.Tensor]] = {}
        self.attention_mask: torch.Tensor | None = None
        self.n_samples: int | None = None  # set by capture_activations: each output is checked against it
        self.fired: list[str] = []         # names recorded during the current forward
        self._sink = None                  # capture_activations' callback (name, tensor), instead of lists
        self._calls: dict[str, int] = {}
        self._input_calls: dict[str, int] = {}
        self._warned: set[str] = set()
        self._warned_axis: set[str] = set()  # outputs whose sample axis was ambiguous
        self._hooks: TemporaryHooks | None = None

    def _record(self, layer: str, key: str, tensor: torch.Tensor):
        t = batch_first(tensor, self._axis[layer], self.n_samples, key, declared=self._declared[layer],
                        confirmed=layer in self._confirmed_axis, warned=self._warned_axis)
        value = self.reducer(t, self.attention_mask, key)
        self.fired.append(key)
        if self._sink is not None:
            self._sink(key, value)
        else:
            copy = value.detach().to(device=self.device, dtype=self.dtype, copy=True)
            self.outputs.setdefault(key, []).append(copy)

    @staticmethod
    def _key(name: str, call: int) -> str:
        return name if call == 0 else f"{name}:{call}"

    def _output_hook(self, name: str):
        def hook(_module, _inputs, output):
            call = self._calls.get(name, 0)
            self._calls[name] = call + 1
            if call == 1 and name not in self._warned:
                self._warned.add(name)
                warn_user(f"Layer {name!r} is called more than once per forward; each call is "
                          f"recorded separately as {name!r}, '{name}:1', ...")
            key = self._key(name, call)
            self._record(name, key, select_output(output, self._output[name], key))
        return hook

    def _input_hook(self, name: str):
        def hook(_module, args, kwargs):
            call = self._input_calls.get(name, 0)
            self._input_calls[name] = call + 1
            key = self._key(name, call) + ":input"
            self._record(name, key, module_input(args, kwargs, key))
        return hook

    def _start(self, _module, _args, kwargs):
        self._calls, self._input_calls, self.fired = {}, {}, []
        mask = kwargs.get("attention_mask")
        self.attention_mask = mask if isinstance(mask, torch.Tensor) else None

    def __enter__(self):
        modules = dict(self.model.named_modules())
        self._hooks = TemporaryHooks(self.model)
        try:
            self._hooks.pre(self.model, self._start, with_kwargs=True)
            for name in self.layers:
                first, last = self.ends[name]
                if self.inputs:
                    self._hooks.pre(modules[first], self._input_hook(name), with_kwargs=True)
                self._hooks.forward(modules[last], self._output_hook(name))
        except Exception:
            self.remove()
            raise
        return self

    def __exit__(self, *exc):
        self.remove()
        return False

    def remove(self):
        """Remove every hook this recorder registered (and no other)."""
        if self._hooks is not None:
            self._hooks.remove()
            self._hooks = None

    def clear(self):
        """Forget every recorded output."""
        self.outputs = {}
