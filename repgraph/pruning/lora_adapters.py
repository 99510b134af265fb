"""LoRA adapters (through the optional ``peft`` package) that live only while a model is being
healed: injected into the model's linear layers, trained, then merged into the weights they adapt,
so the healed model has its own classes, modules and hooks again."""
from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator, Mapping

from torch import nn

# r = 8 with alpha = 2r on every linear layer (the output head of a Hugging Face LM excluded by
# peft's "all-linear"), no dropout: peft's defaults apart from the target, which covers the MLPs
# too, as QLoRA's recipe (and Gromov et al.'s healing) does.
DEFAULT_LORA = {"r": 8, "lora_alpha": 16, "lora_dropout": 0.0, "target_modules": "all-linear"}


def lora_config(lora):
    """``lora`` as a ``peft.LoraConfig``: True (``DEFAULT_LORA``), a rank r (alpha 2r), a mapping
    of ``LoraConfig`` arguments over ``DEFAULT_LORA``, or a ``LoraConfig``."""
    try:
        import peft
    except ImportError as error:
        raise ImportError("heal_lm(lora=...) needs the optional peft package: pip install -c constraints.txt "
                          "'repgraph[lora]' (or pip install peft with torch pinned); lora=None fine-tunes every "
                          "weight without it.") from error
    if isinstance(lora, peft.LoraConfig):
        return lora
    if lora is True:
        return peft.LoraConfig(**DEFAULT_LORA)
    if isinstance(lora, int) and not isinstance(lora, bool):
        if lora < 1:
            raise ValueError(f"lora must be a rank >= 1, True, a dict of LoraConfig arguments or a LoraConfig; "
                             f"got {lora}.")
        return peft.LoraConfig(**{**DEFAULT_LORA, "r": lora, "lora_alpha": 2 * lora})
    if isinstance(lora, Mapping):
        return peft.LoraConfig(**{**DEFAULT_LORA, **lora})
    raise TypeError(f"lora must be None, True, a rank (int), a dict of peft.LoraConfig arguments or a LoraConfig; "
                    f"got {type(lora).__name__}.")


@contextlib.contextmanager
def lora_adapters(model: nn.Module, lora) -> Iterator[list[nn.Parameter]]:
    """Inject LoRA adapters into ``model`` for the block; yield their parameters; merge them.

    Inside the block each targeted linear layer computes ``W x + (α/r) B A x`` with A (r × in)
    random and B (out × r) zero, so the model's output is unchanged until A and B are trained, and
    only A and B require gradients. On exit — also after an error — every adapter is merged,
    ``W ← W + (α/r) B A``, and the original layer object is put back in its place (its hooks with
    it); the ``requires_grad`` flags are restored.

    Parameters
    ----------
    model : nn.Module
        The model, changed in place.
    lora : True, int, mapping or peft.LoraConfig
        See ``lora_config``.

    Yields
    ------
    list of nn.Parameter
        The adapters' parameters (A and B of every targeted layer).

    Raises
    ------
    ImportError
        Without ``peft``.
    TypeError, ValueError
        For a ``lora`` of another kind, a rank < 1, or a config that targets no layer (peft's error).

    References
    ----------
    Hu et al., "LoRA: Low-Rank Adaptation of Large Language Models", ICLR 2022; Gromov et al. 2024
    (healing pruned LLMs with QLoRA).
    """
    config = lora_config(lora)
    from peft.tuners.lora import LoraModel

    flags = {p: p.requires_grad for p in model.parameters()}
    with warnings.catch_warnings():
        # GPT-2's Conv1D stores W transposed; peft says so and adapts to it (fan_in_fan_out=True)
        warnings.filterwarnings("ignore", message="fan_in_fan_out is set to False")
        tuner = LoraModel(model, config, "default")
    try:
        yield [p for name, p in model.named_parameters() if "lora_" in name]
    finally:
        tuner.merge_and_unload()
        for p, flag in flags.items():
            p.requires_grad_(flag)
