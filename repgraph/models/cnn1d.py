"""The MNIST-1D paper's small 1-D CNN, with BatchNorm after each conv."""
from __future__ import annotations

import torch
from torch import nn


class CNN1d(nn.Module):
    """conv1(k5, s2)-bn1-relu1, conv2(k3, s2)-bn2-relu2, conv3(k3, s2)-bn3-relu3, flatten, fc.

    The paper's ``ConvBase`` (three stride-2 convs, padding 1, 25 channels, the flattened last map
    into one linear layer: a length of 40 becomes 19, 10, 5) with a BatchNorm after each conv, so
    the convs have no bias and conv -> BN pairs exist for CLP. The flatten ties the classifier to
    the input ``length``.

    Parameters
    ----------
    num_classes : int, default 10
    in_channels : int, default 1
    width : int, default 25
        Channels of every conv.
    length : int, default 40
        Input length the classifier is built for (MNIST-1D: 40).

    Raises
    ------
    ValueError
        If ``length`` is too short to survive the three stride-2 convs (length < 3).

    References
    ----------
    S. Greydanus and D. Kobak, "Scaling down deep learning with MNIST-1D", ICML 2024
    (arXiv:2011.14439), the CNN baseline (94 % test accuracy).

    Examples
    --------
    >>> import torch
    >>> model = CNN1d().eval()
    >>> tuple(model(torch.zeros(2, 1, 40)).shape)
    (2, 10)
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 1, width: int = 25, length: int = 40):
        super().__init__()
        self.conv1 = nn.Conv1d(in_channels, width, 5, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm1d(width)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv1d(width, width, 3, stride=2, padding=1, bias=False)
        self.bn2 = nn.BatchNorm1d(width)
        self.relu2 = nn.ReLU()
        self.conv3 = nn.Conv1d(width, width, 3, stride=2, padding=1, bias=False)
        self.bn3 = nn.BatchNorm1d(width)
        self.relu3 = nn.ReLU()
        out_length = length
        for conv in (self.conv1, self.conv2, self.conv3):
            out_length = (out_length + 2 * conv.padding[0] - conv.kernel_size[0]) // conv.stride[0] + 1
        if out_length < 1:
            raise ValueError(f"length={length} is too short for three stride-2 convs; pass length >= 3.")
        self.fc = nn.Linear(width * out_length, num_classes)

    def forward(self, x):
        x = self.relu1(self.bn1(self.conv1(x)))
        x = self.relu2(self.bn2(self.conv2(x)))
        x = self.relu3(self.bn3(self.conv3(x)))
        return self.fc(torch.flatten(x, 1))


def cnn1d(num_classes=10, in_channels=1, width=25, length=40):
    """The MNIST-1D CNN (``CNN1d``): input (N, ``in_channels``, ``length``), logits (N, ``num_classes``).

    Parameters
    ----------
    num_classes : int, default 10
    in_channels : int, default 1
    width : int, default 25
    length : int, default 40

    Returns
    -------
    CNN1d

    Examples
    --------
    >>> sum(p.numel() for p in cnn1d().parameters())
    5285
    """
    return CNN1d(num_classes, in_channels, width, length)
