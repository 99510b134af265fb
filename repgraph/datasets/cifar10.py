"""CIFAR-10 from a local copy of the standard python-pickle batches (never downloaded)."""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch

from .tensor_dataset import ArrayDataset

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


class DatasetNotFoundError(FileNotFoundError, ValueError):
    """A data set folder is missing or incomplete (a ``FileNotFoundError`` and a ``ValueError``)."""


def _find_batches(root: Path, train: bool) -> list[Path]:
    names = [f"data_batch_{i}" for i in range(1, 6)] if train else ["test_batch"]
    for folder in (root, root / "cifar-10-batches-py"):
        paths = [folder / n for n in names]
        if all(p.is_file() for p in paths):
            return paths
    raise DatasetNotFoundError(
        f"cifar10(root={str(root)!r}): expected the python-pickle batches {names} in that folder or "
        "in its 'cifar-10-batches-py' subfolder. repgraph never downloads data: unpack "
        "cifar-10-python.tar.gz there, or use repgraph.datasets.digits() instead."
    )


def cifar10(root, train: bool = False, *, normalize: bool = True, max_samples: int | None = None) -> ArrayDataset:
    """CIFAR-10 images (N, 3, 32, 32) float32 in [0, 1], standardised per channel with ``normalize``.

    ``train=False`` (the default) returns the 10 000 test images, in file order.
    """
    paths = _find_batches(Path(root), train)
    images, labels = [], []
    for path in paths:
        with open(path, "rb") as fh:
            batch = pickle.load(fh, encoding="bytes")
        images.append(np.asarray(batch[b"data"], dtype=np.uint8))
        labels.extend(batch[b"labels"])
    data = torch.from_numpy(np.concatenate(images).reshape(-1, 3, 32, 32)).float() / 255.0
    targets = torch.tensor(labels, dtype=torch.int64)
    if max_samples is not None:
        data, targets = data[:max_samples], targets[:max_samples]
    if normalize:
        mean = torch.tensor(CIFAR10_MEAN).view(1, 3, 1, 1)
        std = torch.tensor(CIFAR10_STD).view(1, 3, 1, 1)
        data = (data - mean) / std
    return ArrayDataset(data.contiguous(), targets, classes=CLASSES)
