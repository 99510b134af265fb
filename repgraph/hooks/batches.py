"""The data forms capture accepts, as one iterator of ``Batch``es.

A batch is what the model is called with (positional inputs, or keyword inputs for dict
batches), the samples' labels (one per sample) and the sample count.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset

_LABEL_KEYS = ("labels", "label")


def as_batch_tensor(x, what: str) -> torch.Tensor:
    """``x`` as a tensor (numpy arrays are wrapped without a copy)."""
    if isinstance(x, torch.Tensor):
        return x
    if isinstance(x, np.ndarray):
        return torch.from_numpy(x)
    raise TypeError(f"{what} must be a torch tensor or numpy array, got {type(x).__name__}.")


def as_labels(y, n: int) -> np.ndarray:
    """One batch's labels as a 1-D numpy array of numbers or strings, one per sample."""
    if isinstance(y, torch.Tensor):
        y = y.detach().cpu().numpy()
    elif not isinstance(y, np.ndarray):
        y = np.asarray(list(y))
    if y.dtype.kind == "O":  # e.g. strings held as Python objects (pandas)
        y = np.asarray(y.tolist())
    if y.dtype.kind not in "biufUS":
        raise TypeError(f"labels must be numbers or strings, got dtype {y.dtype}.")
    if y.ndim != 1 or y.shape[0] != n:
        raise ValueError(f"A batch of {n} samples has labels of shape {y.shape}; capture keeps one label per "
                         "sample (for per-token labels, pass label_key=None and they go to the model).")
    return y


def _length(value) -> int | None:
    if isinstance(value, (torch.Tensor, np.ndarray)):
        return value.shape[0] if value.ndim else None
    if isinstance(value, (list, tuple)):
        return len(value)
    return None


def _slice(value, start: int, stop: int, n: int):
    return value[start:stop] if _length(value) == n else value


@dataclass
class Batch:
    """``model(*args, **kwargs)`` for ``n`` samples with ``labels`` (numpy, or None)."""
    args: tuple
    kwargs: dict
    labels: np.ndarray | None
    n: int
    fields: dict = field(init=False)

    def __post_init__(self):
        self.fields = {"input": self.args[0]} if self.args else dict(self.kwargs)

    def part(self, start: int, stop: int) -> "Batch":
        """The samples ``start:stop`` of this batch."""
        return Batch(tuple(_slice(a, start, stop, self.n) for a in self.args),
                     {k: _slice(v, start, stop, self.n) for k, v in self.kwargs.items()},
                     None if self.labels is None else self.labels[start:stop], min(stop, self.n) - start)


def _from_mapping(batch: Mapping, label_key) -> Batch:
    kwargs = dict(batch)
    key = label_key
    if label_key == "auto":
        key = next((k for k in _LABEL_KEYS if k in kwargs), None)
    elif label_key is not None and label_key not in kwargs:
        raise ValueError(f"label_key={label_key!r} but the batch has keys {sorted(kwargs)}.")
    y = kwargs.pop(key) if key is not None else None
    sizes = {k: _length(v) for k, v in kwargs.items() if isinstance(v, (torch.Tensor, np.ndarray))}
    lengths = {s for s in sizes.values() if s is not None}
    if len(lengths) != 1:
        raise ValueError(f"A dict batch needs per-sample tensors of one length; got first dimensions {sizes}.")
    n = lengths.pop()
    try:
        labels = None if y is None else as_labels(y, n)
    except ValueError as err:
        raise ValueError(f"Batch key {key!r}: {err}") from None
    return Batch((), kwargs, labels, n)


def as_batch(batch, label_key="auto") -> Batch:
    """One batch of a loader or iterable: a tensor/array of inputs, a tuple or list
    ``(inputs, labels, ...)``, or a dict of model keyword inputs (labels under ``label_key``)."""
    if isinstance(batch, (torch.Tensor, np.ndarray)):
        x = as_batch_tensor(batch, "a batch")
        return Batch((x,), {}, None, x.shape[0])
    if isinstance(batch, Mapping):
        return _from_mapping(batch, label_key)
    if isinstance(batch, (tuple, list)) and batch and isinstance(batch[0], (torch.Tensor, np.ndarray)):
        x = as_batch_tensor(batch[0], "a batch's inputs")
        labels = as_labels(batch[1], x.shape[0]) if len(batch) > 1 else None
        return Batch((x,), {}, labels, x.shape[0])
    raise TypeError("Each batch must be a tensor, a tuple or list (inputs, labels, ...) or a dict of "
                    f"model keyword inputs; got {type(batch).__name__}.")


def _is_pair(data) -> bool:
    if isinstance(data, tuple):
        return len(data) == 2 and not isinstance(data[0], (tuple, list))
    return (isinstance(data, list) and len(data) == 2 and isinstance(data[0], (torch.Tensor, np.ndarray))
            and _length(data[1]) == _length(data[0]) and np.ndim(data[1]) == 1)


def _sliced(whole: Batch, batch_size: int):
    return (whole.part(i, i + batch_size) for i in range(0, whole.n, batch_size))


def iter_batches(data, batch_size: int, label_key="auto"):
    """``(batches, total)``: an iterator of ``Batch``es of ``data`` and the sample count when it
    is known (else None).

    ``data``: a tensor or array of inputs; ``(X, y)`` or ``[X, y]``; a dict of per-sample
    arrays (model keyword inputs, labels under ``label_key``); a Dataset (batched by a
    DataLoader of ``batch_size``, not shuffled); a DataLoader or any iterable of batches.
    """
    if isinstance(data, (torch.Tensor, np.ndarray)):
        whole = as_batch(data)
        return _sliced(whole, batch_size), whole.n
    if _is_pair(data):
        X = as_batch_tensor(data[0], "data[0] (inputs)")
        if _length(data[1]) != len(X):
            raise ValueError(f"data = (X, y) with {len(X)} inputs but {_length(data[1])} labels; pass one "
                             "label per input.")
        whole = Batch((X,), {}, as_labels(data[1], len(X)), len(X))
        return _sliced(whole, batch_size), whole.n
    if isinstance(data, Mapping):
        whole = _from_mapping(data, label_key)
        return _sliced(whole, batch_size), whole.n
    if isinstance(data, Dataset) and not isinstance(data, IterableDataset):
        data = DataLoader(data, batch_size=batch_size, shuffle=False)
    if isinstance(data, DataLoader):
        total = len(data.dataset) if hasattr(data.dataset, "__len__") else None
    elif hasattr(data, "__iter__") and not isinstance(data, (str, bytes)):
        total = None
    else:
        raise TypeError("data must be a DataLoader, a Dataset, a tensor/array of inputs, a tuple (X, y), "
                        f"a dict of per-sample arrays or an iterable of batches; got {type(data).__name__}.")
    return (as_batch(b, label_key) for b in data), total


def first_input(data) -> torch.Tensor:
    """The first sample of ``data`` (any form ``iter_batches`` accepts with positional inputs) as a
    batch of one."""
    batches, _ = iter_batches(data, 1)
    try:
        batch = next(iter(batches))
    except StopIteration:
        raise ValueError("data is empty: there is no sample to trace the model with.") from None
    if not batch.args:
        raise TypeError("data holds dict batches (keyword inputs); pass an example input tensor instead.")
    return batch.args[0][:1]
