"""The data forms capture accepts, as one iterator of (inputs, labels) batches."""
from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset


def as_batch_tensor(x, what: str) -> torch.Tensor:
    """``x`` as a tensor (numpy arrays are wrapped without a copy)."""
    if isinstance(x, torch.Tensor):
        return x
    if isinstance(x, np.ndarray):
        return torch.from_numpy(x)
    raise TypeError(f"{what} must be a torch tensor or numpy array, got {type(x).__name__}.")


def iter_batches(data, batch_size: int):
    """``(batches, total)``: an iterator of ``(inputs, labels or None)`` batches of ``data`` (a tensor
    or array of inputs, a tuple ``(X, y)``, a Dataset or a DataLoader) and the sample count when it
    is known (else None)."""
    if isinstance(data, (torch.Tensor, np.ndarray)):
        X = as_batch_tensor(data, "data")
        return ((X[i:i + batch_size], None) for i in range(0, len(X), batch_size)), len(X)
    if isinstance(data, tuple) and len(data) == 2 and not isinstance(data[0], (tuple, list)):
        X, y = as_batch_tensor(data[0], "data[0] (inputs)"), as_batch_tensor(data[1], "data[1] (labels)")
        if len(X) != len(y):
            raise ValueError(f"data = (X, y) with {len(X)} inputs but {len(y)} labels; pass one label per input.")
        return ((X[i:i + batch_size], y[i:i + batch_size]) for i in range(0, len(X), batch_size)), len(X)
    if isinstance(data, Dataset) and not isinstance(data, torch.utils.data.IterableDataset):
        data = DataLoader(data, batch_size=batch_size, shuffle=False)
    if isinstance(data, DataLoader):
        total = len(data.dataset) if hasattr(data.dataset, "__len__") else None
    elif hasattr(data, "__iter__"):
        total = None
    else:
        raise TypeError("data must be a DataLoader, a Dataset, a tensor/array of inputs or a tuple "
                        f"(X, y); got {type(data).__name__}.")

    def split(batch):
        if isinstance(batch, torch.Tensor):
            return batch, None
        if isinstance(batch, (tuple, list)) and batch and isinstance(batch[0], torch.Tensor):
            return batch[0], (batch[1] if len(batch) > 1 else None)
        raise TypeError(f"Each batch must be a tensor or a tuple (inputs, labels, ...), got {type(batch).__name__}.")
    return (split(b) for b in data), total


def first_input(data) -> torch.Tensor:
    """The first sample of ``data`` (any form ``iter_batches`` accepts) as a batch of one."""
    batches, _ = iter_batches(data, 1)
    try:
        return next(iter(batches))[0][:1]
    except StopIteration:
        raise ValueError("data is empty: there is no sample to trace the model with.") from None
