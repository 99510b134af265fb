"""sklearn's bundled 8×8 handwritten digits (1797 images, 10 classes) as a torch dataset: the
embedded default data set of repgraph (no download)."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from .tensor_dataset import ArrayDataset


def digits(split: str = "train", *, size: int = 16, test_size: float = 0.3, seed: int = 0,
           normalize: bool = True) -> ArrayDataset:
    """Digits as (N, 1, size, size) float32 images.

    Pixels (0..16) are scaled to [0, 1], bilinearly resized to ``size`` (8 keeps the originals),
    and, with ``normalize``, standardised with the mean and std of the *training* split.
    The train/test split is stratified and deterministic for a given ``seed`` and ``test_size``;
    ``split="all"`` returns every image in the original order.
    """
    if split not in ("train", "test", "all"):
        raise ValueError(f"split must be 'train', 'test' or 'all', got {split!r}.")
    if not isinstance(size, int) or size < 8:
        raise ValueError(f"size must be an integer >= 8 (the original resolution), got {size!r}.")
    if not 0.0 < test_size < 1.0:
        raise ValueError(f"test_size must lie in (0, 1), got {test_size!r}.")
    bunch = load_digits()
    images = torch.from_numpy(bunch.images.astype(np.float32) / 16.0).unsqueeze(1)
    if size != 8:
        images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)
    targets = torch.from_numpy(bunch.target.astype(np.int64))
    index = np.arange(len(targets))
    train_idx, test_idx = train_test_split(index, test_size=test_size, random_state=seed,
                                           stratify=bunch.target)
    train_idx, test_idx = np.sort(train_idx), np.sort(test_idx)
    if normalize:
        mean = images[train_idx].mean()
        std = images[train_idx].std()
        images = (images - mean) / std
    chosen = {"train": train_idx, "test": test_idx, "all": index}[split]
    chosen = torch.from_numpy(chosen)
    return ArrayDataset(images[chosen].contiguous(), targets[chosen], classes=range(10))
