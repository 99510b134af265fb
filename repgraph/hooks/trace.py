"""One traced forward: run a model once in eval mode under no_grad with temporary forward hooks."""
from __future__ import annotations

import torch
from torch import nn

from .._arrays import resolve_device
from .batches import example_batch, input_dtype
from .handles import TemporaryHooks
from .modes import evaluating


def traced_input(model: nn.Module, example_input):
    """The input of one traced forward, from any data form ``capture_activations`` takes (a
    tensor, array or DataFrame; ``(X, y)``; a dict of per-sample inputs; a Dataset's first
    sample, a DataLoader's or iterable's first batch): one tensor for ``model(x)`` or a dict for
    ``model(**inputs)``, on the model's device, floating inputs cast to its dtype (integer and
    bool inputs, token ids and masks, as they are). ``TypeError`` for several positional inputs
    (``((X1, X2), y)``); ``ValueError``/``TypeError`` for a form capture refuses, or empty data."""
    return _traced_batch(model, example_input)[1]


def _traced_batch(model: nn.Module, example_input):
    """``(batch, input)``: the ``Batch`` drawn from ``example_input`` (once: a DataLoader is not
    asked twice) and its ``traced_input``."""
    batch = example_batch(example_input)
    args, kwargs = batch.arguments(resolve_device(None, like=model), input_dtype(model))
    if len(args) > 1:
        raise TypeError(f"example_input holds {len(args)} positional inputs; a traced forward runs model(x) or "
                        "model(**inputs): pass one input, or a dict of the model's keyword inputs.")
    return batch, args[0] if args else kwargs


def run_with_hooks(model: nn.Module, example_input, hooks) -> object:
    """Run the model once on ``example_input`` (any form ``traced_input`` takes: ``model(x)``,
    ``model(**inputs)`` for a dict) in eval mode under no_grad, modes restored, with each
    ``(module, hook)`` of ``hooks`` registered as a forward hook; the model's own hooks run too
    and stay (``TemporaryHooks``), and every hook added here is removed afterwards, also when the
    forward raises. An error of the model's that the data form may explain (integer inputs to a
    floating model) is raised again with what the input held. Returns the model's output."""
    batch, x = _traced_batch(model, example_input)
    added = TemporaryHooks(model)
    try:
        for module, hook in hooks:
            added.forward(module, hook)
        with evaluating(model), torch.no_grad():
            return model(**x) if isinstance(x, dict) else model(x)
    except Exception as err:
        explained = batch.explained(err, input_dtype(model))
        if explained is err:
            raise
        raise explained from err
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
