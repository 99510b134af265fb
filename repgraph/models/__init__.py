"""Models defined in repgraph (no torchvision): CIFAR ResNets, VGG-BN, a small CNN (every ReLU is its
own module so every hook point is unambiguous), and ``byte_gpt``, a byte-level Hugging Face GPT-2
built from a config (needs the ``transformers`` extra; not in ``MODELS``, whose factories take
``num_classes`` and ``in_channels``)."""
from __future__ import annotations

import difflib

from .byte_gpt import byte_gpt
from .resnet import BasicBlock, ResNet, resnet20, resnet32, resnet56, resnet110
from .small_cnn import SmallCNN, small_cnn
from .vgg import VGG, vgg11, vgg16, vgg19

MODELS = {
    "resnet20": resnet20, "resnet32": resnet32, "resnet56": resnet56, "resnet110": resnet110,
    "vgg11": vgg11, "vgg16": vgg16, "vgg19": vgg19, "small_cnn": small_cnn,
}


def get_model(name: str, num_classes: int = 10, in_channels: int = 3, **kwargs):
    """Build a model by name (one of ``MODELS``)."""
    try:
        factory = MODELS[name.lower()]
    except KeyError:
        close = difflib.get_close_matches(name.lower(), MODELS, n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise ValueError(f"Unknown model {name!r}; choose one of {sorted(MODELS)}.{hint}") from None
    return factory(num_classes=num_classes, in_channels=in_channels, **kwargs)


__all__ = ["MODELS", "get_model", "BasicBlock", "ResNet", "VGG", "SmallCNN", "resnet20",
           "resnet32", "resnet56", "resnet110", "vgg11", "vgg16", "vgg19", "small_cnn", "byte_gpt"]
