"""VGG-11/16/19 with batch normalisation (Simonyan & Zisserman, 2015), CIFAR-style: 3×3 convs,
each followed by BN and its own ReLU module; 2×2 max-pools (``ceil_mode`` so small inputs such as
16×16 digits survive five pools); global average pooling and one linear classifier."""
from __future__ import annotations

import torch
from torch import nn

CONFIGS = {
    "vgg11": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg16": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    "vgg19": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M",
              512, 512, 512, 512, "M", 512, 512, 512, 512, "M"],
}


class VGG(nn.Module):
    def __init__(self, config: list, num_classes: int = 10, in_channels: int = 3):
        super().__init__()
        layers = []
        channels = in_channels
        for item in config:
            if item == "M":
                layers.append(nn.MaxPool2d(2, ceil_mode=True))
            else:
                layers += [nn.Conv2d(channels, item, 3, padding=1, bias=False),
                           nn.BatchNorm2d(item), nn.ReLU()]
                channels = item
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(channels, num_classes)

    def forward(self, x):
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


def vgg11(num_classes=10, in_channels=3):
    return VGG(CONFIGS["vgg11"], num_classes, in_channels)


def vgg16(num_classes=10, in_channels=3):
    return VGG(CONFIGS["vgg16"], num_classes, in_channels)


def vgg19(num_classes=10, in_channels=3):
    return VGG(CONFIGS["vgg19"], num_classes, in_channels)
