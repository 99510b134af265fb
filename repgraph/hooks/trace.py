"""One traced forward: run a model once in eval mode under no_grad with temporary forward hooks."""
from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from .handles import TemporaryHooks
from .modes import evaluating


def run_with_hooks(model: nn.Module, example_input, hooks) -> object:
    """Run ``model(example_input)`` (``model(**example_input)`` for a dict) once (eval mode,
    no_grad, modes restored) with each ``(module, hook)`` of ``hooks`` registered as a forward
    hook; the model's own hooks run too and stay (``TemporaryHooks``), and every hook added here
    is removed afterwards, also when the forward raises. Returns the model's output."""
    added = TemporaryHooks(model)
    try:
        for module, hook in hooks:
            added.forward(module, hook)
        with evaluating(model), torch.no_grad():
            if isinstance(example_input, Mapping):
                return model(**example_input)
            return model(example_input)
    finally:
        added.remove()


def execution_order(model: nn.Module, example_input) -> list[str]:
    """Names of the submodules in the order their forward calls finish (for leaf modules, the
    order they run), from one traced forward."""
    order = []
    run_with_hooks(model, example_input, [(m, lambda _m, _i, _o, name=n: order.append(name))
                                          for n, m in model.named_modules() if n])
    return order


def conv_bn_pairs(model: nn.Module, example_input) -> list[tuple[str, str]]:
    """(conv, bn) pairs where the BatchNorm directly consumes the conv's output, found by tracing
    one forward of ``example_input`` (data flow, never registration order); any dimensionality.

    A BatchNorm whose input is not a conv's output (e.g. a BN before its conv) raises
    ``ValueError`` naming it.
    """
    names = {m: n for n, m in model.named_modules()}
    conv_outputs: dict[int, tuple[torch.Tensor, str]] = {}  # the tensors are kept so ids stay unique
    pairs, problems = [], []

    def after_conv(module, _inputs, output):
        conv_outputs[id(output)] = (output, names[module])

    def after_bn(module, inputs, _output):
        found = conv_outputs.get(id(inputs[0]))
        if found is None or found[0] is not inputs[0]:
            problems.append(names[module])
        else:
            pairs.append((found[1], names[module]))

    hooks = [(m, after_conv) for m in model.modules() if isinstance(m, nn.modules.conv._ConvNd)]
    hooks += [(m, after_bn) for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    run_with_hooks(model, example_input, hooks)
    if problems:
        raise ValueError(f"BatchNorm layer(s) {problems} do not take a conv's output (a BN before its "
                         "conv?); CLP needs conv -> BN pairs and will not guess a pairing.")
    return pairs


def _conv(module) -> bool:
    return isinstance(module, nn.modules.conv._ConvNd)


def producing_conv(model: nn.Module, layer: str, example_input) -> str:
    """The last convolution executed up to ``layer`` in a traced forward: the conv whose filters make
    the layer's channels (``layer1.0.conv1`` for ``layer1.0.relu1``)."""
    order = execution_order(model, example_input)
    if layer not in order:
        raise ValueError(f"Layer {layer!r} did not run in the forward pass of example_input.")
    modules = dict(model.named_modules())
    convs = [n for n in order[:order.index(layer) + 1] if _conv(modules[n])]
    if not convs:
        raise ValueError(f"No convolution runs before {layer!r}; pass conv= explicitly.")
    return convs[-1]


def following_relu(model: nn.Module, conv: str, example_input) -> str:
    """The first ReLU module that runs after ``conv`` in a traced forward (where map-based filter
    criteria read the conv's post-ReLU maps)."""
    order = execution_order(model, example_input)
    if conv not in order:
        raise ValueError(f"Layer {conv!r} did not run in the forward pass of example_input.")
    modules = dict(model.named_modules())
    relu = next((n for n in order[order.index(conv) + 1:] if isinstance(modules[n], nn.ReLU)), None)
    if relu is None:
        raise ValueError(f"No ReLU module runs after {conv!r}; map-based criteria need one.")
    return relu
