"""The in-memory dataset type returned by repgraph's loaders."""
from __future__ import annotations

import torch
from torch.utils.data import Dataset


class ArrayDataset(Dataset):
    """Samples ``data`` (N, C, ...) float32, e.g. images (N, C, H, W) or sequences (N, C, L), and
    integer ``targets`` (N,), indexable as (x, y)."""

    def __init__(self, data: torch.Tensor, targets: torch.Tensor, classes=None):
        if data.shape[0] != targets.shape[0]:
            raise ValueError(f"data has {data.shape[0]} samples but targets has {targets.shape[0]}.")
        self.data = data
        self.targets = targets
        self.classes = list(classes) if classes is not None else sorted(set(targets.tolist()))

    def __len__(self):
        return self.data.shape[0]

    def __getitem__(self, index):
        return self.data[index], self.targets[index]

    @property
    def tensors(self):
        """``(data, targets)``, the form ``capture_activations`` also accepts."""
        return self.data, self.targets
