"""CIFAR-style ResNets (He et al., 2016, §4.2): a 3×3 stem with 16 channels, three stages of
BasicBlocks with 16/32/64 channels, global average pooling and a linear classifier.
Depth = 6n + 2 (ResNet-20/32/56/110 have n = 3/5/9/18 blocks per stage). The same network on
sequences (N, C, L) — Conv1d/BatchNorm1d, kernel 3 — is ``ResNet1d`` (``resnet1d``), whose
``width`` scales the channels (w/2w/4w, default w = 16) for wider variants."""
from __future__ import annotations

from .._arrays import check_count

import torch
import torch.nn.functional as F
from torch import nn


class PadShortcut(nn.Module):
    """Option-A shortcut: stride-2 subsampling and zero-padding of the new channels (no weights)."""

    def __init__(self, in_planes: int, planes: int, stride: int):
        super().__init__()
        self.stride = stride
        self.pad = planes - in_planes

    def forward(self, x):
        spatial = x.ndim - 2
        x = x[(slice(None), slice(None)) + (slice(None, None, self.stride),) * spatial]
        return F.pad(x, (0, 0) * spatial + (self.pad // 2, self.pad - self.pad // 2))


class BasicBlock(nn.Module):
    """conv1-bn1-relu1-conv2-bn2, plus the shortcut, then relu2 (the block output)."""

    is_residual_block = True
    conv_type, bn_type = nn.Conv2d, nn.BatchNorm2d

    def __init__(self, in_planes: int, planes: int, stride: int = 1, shortcut: str = "B"):
        super().__init__()
        conv, bn = self.conv_type, self.bn_type
        self.conv1 = conv(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = bn(planes)
        self.relu1 = nn.ReLU()
        self.conv2 = conv(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = bn(planes)
        self.relu2 = nn.ReLU()
        if stride == 1 and in_planes == planes:
            self.shortcut = nn.Identity()
        elif shortcut == "A":
            self.shortcut = PadShortcut(in_planes, planes, stride)
        elif shortcut == "B":
            self.shortcut = nn.Sequential(conv(in_planes, planes, 1, stride, bias=False), bn(planes))
        else:
            raise ValueError(f"shortcut must be 'A' (zero padding) or 'B' (1x1 conv), got {shortcut!r}.")

    def forward(self, x):
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu2(out + self.shortcut(x))


class ResNet(nn.Module):
    block, pool_type = BasicBlock, nn.AdaptiveAvgPool2d

    def __init__(self, blocks_per_stage: int, num_classes: int = 10, in_channels: int = 3,
                 shortcut: str = "B", width: int = 16):
        super().__init__()
        width = check_count(width, "width")
        conv, bn = self.block.conv_type, self.block.bn_type
        self.conv1 = conv(in_channels, width, 3, 1, 1, bias=False)
        self.bn1 = bn(width)
        self.relu1 = nn.ReLU()
        planes_in = width
        for stage, (planes, stride) in enumerate([(width, 1), (2 * width, 2), (4 * width, 2)], start=1):
            blocks = []
            for i in range(blocks_per_stage):
                blocks.append(self.block(planes_in, planes, stride if i == 0 else 1, shortcut))
                planes_in = planes
            setattr(self, f"layer{stage}", nn.Sequential(*blocks))
        self.avgpool = self.pool_type(1)
        self.fc = nn.Linear(4 * width, num_classes)
        for m in self.modules():
            if isinstance(m, conv):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x):
        x = self.relu1(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def resnet20(num_classes=10, in_channels=3, shortcut="B"):
    return ResNet(3, num_classes, in_channels, shortcut)


def resnet32(num_classes=10, in_channels=3, shortcut="B"):
    return ResNet(5, num_classes, in_channels, shortcut)


def resnet56(num_classes=10, in_channels=3, shortcut="B"):
    return ResNet(9, num_classes, in_channels, shortcut)


def resnet110(num_classes=10, in_channels=3, shortcut="B"):
    return ResNet(18, num_classes, in_channels, shortcut)


class BasicBlock1d(BasicBlock):
    """``BasicBlock`` on sequences (N, C, L): Conv1d (kernel 3) and BatchNorm1d; the shortcut is
    the identity when shapes match, else a 1×1 Conv1d + BatchNorm1d ("B") or zero padding ("A").

    Examples
    --------
    >>> import torch
    >>> block = BasicBlock1d(16, 32, stride=2)
    >>> tuple(block(torch.zeros(2, 16, 40)).shape)
    (2, 32, 20)
    """

    conv_type, bn_type = nn.Conv1d, nn.BatchNorm1d


class ResNet1d(ResNet):
    """``ResNet`` on sequences (N, C, L): a Conv1d stem with w channels, three stages of
    ``BasicBlock1d`` with w/2w/4w channels (strides 1/2/2; w = ``width``, default 16),
    global average pooling over the length and a linear classifier; depth 6n + 2. Any length
    >= 1 is accepted.

    Parameters
    ----------
    blocks_per_stage : int
        n in depth 6n + 2.
    num_classes, in_channels : int
    shortcut : {"B", "A"}
        As in ``BasicBlock``.
    width : int, default 16
        Channels of the stem and the first stage (the stages have width, 2·width, 4·width).

    Examples
    --------
    >>> import torch
    >>> tuple(ResNet1d(1, num_classes=4, in_channels=2).eval()(torch.zeros(3, 2, 17)).shape)
    (3, 4)
    """

    block, pool_type = BasicBlock1d, nn.AdaptiveAvgPool1d


def resnet1d(num_classes=10, in_channels=1, blocks_per_stage=3, shortcut="B", width=16):
    """A 1-D ResNet-(6·``blocks_per_stage`` + 2), by default ResNet-20, for MNIST-1D-like sequences.

    Parameters
    ----------
    num_classes : int, default 10
    in_channels : int, default 1
    blocks_per_stage : int, default 3
        n in depth 6n + 2.
    shortcut : {"B", "A"}, default "B"
        Projection when a block changes shape: 1×1 conv + BN ("B") or zero padding ("A").
    width : int, default 16
        Channels of the stem and first stage; the stages have width, 2·width, 4·width
        (``width=32`` is a 2× wider ResNet-20 with about 4× the weights).

    Returns
    -------
    ResNet1d
        Takes (N, in_channels, L), returns logits (N, num_classes).

    Raises
    ------
    ValueError
        If ``shortcut`` is neither "A" nor "B", or ``width`` < 1.
    TypeError
        If ``width`` is not an integer.

    References
    ----------
    K. He, X. Zhang, S. Ren and J. Sun, "Deep residual learning for image recognition", CVPR 2016.

    Examples
    --------
    >>> import torch
    >>> model = resnet1d(num_classes=10).eval()
    >>> tuple(model(torch.zeros(2, 1, 40)).shape)
    (2, 10)
    >>> resnet1d(width=32).fc.in_features
    128
    """
    return ResNet1d(blocks_per_stage, num_classes, in_channels, shortcut, width)
