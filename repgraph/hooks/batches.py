"""The data forms capture accepts, as one iterator of ``Batch``es.

A batch is what the model is called with (positional inputs, or keyword inputs for dict
batches), the samples' labels (one per sample) and the sample count.

In-memory forms are cut into batches here: a tensor, array or pandas DataFrame of inputs;
``(X,)``, ``(X, y)`` or ``[X, y]``, where ``X`` may be a tuple of inputs passed to the model as
positional arguments (``((X1, X2), y)``); a dict of per-sample arrays (keyword inputs). A Dataset,
map-style or iterable, yields samples (torch's convention) and is batched by a DataLoader. Any
other iterable (a DataLoader, a list, a generator) yields batches, each taken as it is.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset

_LABEL_KEYS = ("labels", "label")
_ARRAYS = (torch.Tensor, np.ndarray, pd.DataFrame)
_SINGLE_SAMPLES = ("data yields single samples, not batches: batch them, e.g. DataLoader(samples, batch_size=64) "
                   "(a list of per-sample tensors: torch.stack(samples)); a Dataset is batched for you.")


def _dataframe_values(frame: pd.DataFrame, what: str) -> np.ndarray:
    """A DataFrame of numeric (or bool) feature columns as its ``to_numpy()``."""
    other = [str(c) for c, kind in zip(frame.columns, frame.dtypes) if getattr(kind, "kind", "O") not in "biuf"]
    if other:
        raise TypeError(f"{what} is a DataFrame with non-numeric column(s) {other}; pass only the feature "
                        "columns (df[feature_columns]), and labels as y of (X, y).")
    return frame.to_numpy(copy=True)  # a writable array (a view of a pandas frame is read-only)


def as_batch_tensor(x, what: str) -> torch.Tensor:
    """``x`` as a tensor with a sample axis (numpy arrays are wrapped without a copy; a DataFrame
    of numeric columns is taken as its ``to_numpy()``)."""
    if isinstance(x, pd.DataFrame):
        x = _dataframe_values(x, what)
    if isinstance(x, np.ndarray):
        if x.dtype.kind not in "biufc":
            raise TypeError(f"{what} is an array of dtype {x.dtype}; capture needs numbers (or bools), e.g. "
                            "np.asarray(values, dtype=np.float32).")
        x = torch.from_numpy(x)
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{what} must be a torch tensor, numpy array or DataFrame, got {type(x).__name__}.")
    if x.ndim == 0:
        raise ValueError(f"{what} is a 0-d tensor (one number, no sample axis); inputs need the samples on "
                         "their first axis, e.g. x.reshape(1, -1) for one sample of features.")
    return x


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


def input_dtype(model: torch.nn.Module) -> torch.dtype | None:
    """The dtype floating inputs are cast to: that of the model's first floating parameter."""
    return next((p.dtype for p in model.parameters() if p.is_floating_point()), None)


def _to_model(value, device: torch.device, dtype: torch.dtype | None):
    if isinstance(value, np.ndarray) and value.dtype.kind in "biuf":
        value = torch.from_numpy(value)
    if not isinstance(value, torch.Tensor):
        return value
    if value.is_floating_point() and dtype is not None and value.dtype != dtype:
        return value.to(device=device, dtype=dtype)
    return value.to(device)


def _length(value) -> int | None:
    if isinstance(value, (*_ARRAYS, pd.Series)):
        return value.shape[0] if value.ndim else None
    if isinstance(value, (list, tuple)):
        return len(value)
    return None


def _slice(value, start: int, stop: int, n: int):
    return value[start:stop] if _length(value) == n else value


@dataclass
class Batch:
    """``model(*args, **kwargs)`` for ``n`` samples with ``labels`` (numpy, or None).

    ``as_given``: the batch is an item of an iterable, taken as it is (it may be a single sample
    by mistake; ``forward_all`` says so when the model fails on it)."""
    args: tuple
    kwargs: dict
    labels: np.ndarray | None
    n: int
    as_given: bool = False
    fields: dict = field(init=False)

    def __post_init__(self):
        if self.args:  # the first input keeps the name "input" (stores of one input keep their hash)
            self.fields = {("input" if i == 0 else f"input.{i}"): a for i, a in enumerate(self.args)}
        else:
            self.fields = dict(self.kwargs)

    def arguments(self, device: torch.device, dtype: torch.dtype | None) -> tuple[tuple, dict]:
        """``(args, kwargs)`` of ``model(*args, **kwargs)``: tensors on ``device``, floating ones
        cast to ``dtype`` (the model's, ``input_dtype``); integer and bool inputs (token ids,
        masks) are passed as they are."""
        return (tuple(_to_model(a, device, dtype) for a in self.args),
                {k: _to_model(v, device, dtype) for k, v in self.kwargs.items()})

    def explained(self, err: Exception, dtype: torch.dtype | None) -> Exception:
        """``err``, raised while a model ran this batch, with what the batch held and what may be
        wrong with the data: inputs of an integer or bool dtype for a model of floating ``dtype``;
        an item of an iterable that is one sample rather than a batch (``as_given``). ``err``
        itself when there is nothing to add or it is not a plain ``ValueError``, ``TypeError``
        or ``RuntimeError``."""
        hints = []
        tensors = {k: v for k, v in self.fields.items() if isinstance(v, torch.Tensor)}
        ints = [k for k, v in tensors.items() if not v.is_floating_point() and not v.is_complex()]
        if ints and dtype is not None and not self.kwargs:
            hints.append(f"the input(s) {ints} are not floating point while the model's weights are {dtype}: "
                         "cast them, e.g. X.float() (integer inputs are passed as they are, for token ids)")
        if self.as_given:
            hints.append("each item of data is taken as one batch of samples on its first axis: if data yields "
                         "single samples (a list of per-sample tensors, a generator of samples), batch them, "
                         "e.g. torch.stack(samples) or DataLoader(samples, batch_size=64)")
        if not hints or type(err) not in (ValueError, TypeError, RuntimeError):
            return err
        held = ", ".join(f"{k}={tuple(v.shape)} {v.dtype}" for k, v in tensors.items())
        return type(err)(f"{err}\n(The batch held {held}; " + "; ".join(hints) + ".)")

    def run(self, model, device: torch.device, dtype: torch.dtype | None, *, first: bool):
        """``model(*args, **kwargs)`` on this batch (``arguments``); an error of the ``first``
        batch is re-raised ``explained``, with the original chained."""
        args, kwargs = self.arguments(device, dtype)
        try:
            return model(*args, **kwargs)
        except Exception as err:
            explained = self.explained(err, dtype) if first else err
            if explained is err:
                raise
            raise explained from err

    def part(self, start: int, stop: int) -> "Batch":
        """The samples ``start:stop`` of this batch."""
        return Batch(tuple(_slice(a, start, stop, self.n) for a in self.args),
                     {k: _slice(v, start, stop, self.n) for k, v in self.kwargs.items()},
                     None if self.labels is None else self.labels[start:stop], min(stop, self.n) - start,
                     self.as_given)


def _label_key(keys, label_key, where: str):
    """The key of the labels among ``keys`` (None for none)."""
    if label_key == "auto":
        found = [k for k in _LABEL_KEYS if k in keys]
        if len(found) > 1:
            raise ValueError(f"{where} has both 'labels' and 'label' keys; label_key='auto' will not guess which "
                             "holds the samples' labels: pass label_key='labels' or label_key='label' (the other "
                             "goes to the model), or drop one.")
        return found[0] if found else None
    if label_key is not None and label_key not in keys:
        raise ValueError(f"label_key={label_key!r} but {where} has keys {sorted(map(str, keys))}.")
    return label_key


def _from_mapping(batch: Mapping, label_key, as_given: bool = False) -> Batch:
    kwargs = dict(batch)
    key = _label_key(kwargs, label_key, "the batch")
    y = kwargs.pop(key) if key is not None else None
    sizes = {k: _length(v) for k, v in kwargs.items() if isinstance(v, (torch.Tensor, np.ndarray))}
    lengths = {s for s in sizes.values() if s is not None}
    if not sizes:
        raise ValueError(f"A dict batch needs at least one per-sample tensor or array (the model's keyword inputs); "
                         f"got {_kinds(kwargs) or 'no key'} besides the labels.")
    if len(lengths) != 1:
        if as_given and not lengths:
            raise ValueError(f"A dict batch holds only 0-d tensors {sizes}: {_SINGLE_SAMPLES}")
        raise ValueError(f"A dict batch needs per-sample tensors of one length; got first dimensions {sizes}.")
    n = lengths.pop()
    try:
        labels = None if y is None else _labels_of(y, n, as_given)
    except ValueError as err:
        raise ValueError(f"Batch key {key!r}: {err}") from None
    return Batch((), kwargs, labels, n, as_given)


def _kinds(values: Mapping) -> str:
    return ", ".join(f"{k!r}: {type(v).__name__}" for k, v in values.items())


def _labels_of(y, n: int, as_given: bool) -> np.ndarray:
    if as_given and np.ndim(y) == 0:
        raise ValueError(f"the batch's label is one value ({y!r}), a single sample's: {_SINGLE_SAMPLES}")
    return as_labels(y, n)


def _inputs(x, what: str) -> tuple:
    """The positional inputs of a batch: one tensor, or a tuple or list of them (a model of several
    inputs)."""
    if isinstance(x, (tuple, list)) and x and all(isinstance(a, _ARRAYS) for a in x):
        return tuple(as_batch_tensor(a, f"{what}[{i}]") for i, a in enumerate(x))
    return (as_batch_tensor(x, what),)


def _sample_count(args: tuple, what: str) -> int:
    lengths = [a.shape[0] for a in args]
    if len(set(lengths)) != 1:
        raise ValueError(f"{what} are {len(args)} inputs with {lengths} samples; every input needs the same "
                         "samples on its first axis.")
    return lengths[0]


def as_batch(batch, label_key="auto", as_given: bool = True) -> Batch:
    """One batch of a loader or iterable: a tensor/array of inputs, a tuple or list
    ``(inputs, labels, ...)`` (``inputs`` a tensor, or a tuple or list of the model's positional
    inputs) or a dict of model keyword inputs (labels under ``label_key``). A batch that is
    plainly one sample (a 0-d tensor, a scalar label) is refused, saying how to batch samples.
    ``as_given``: the batch comes as an item of an iterable (not from a DataLoader's batching)."""
    if isinstance(batch, _ARRAYS):
        if batch.ndim == 0:
            raise ValueError(f"A batch is a 0-d tensor: {_SINGLE_SAMPLES}")
        x = as_batch_tensor(batch, "a batch")
        return Batch((x,), {}, None, x.shape[0], as_given)
    if isinstance(batch, Mapping):
        return _from_mapping(batch, label_key, as_given)
    if isinstance(batch, (tuple, list)) and batch and (isinstance(batch[0], _ARRAYS) or _inputs_tuple(batch[0])):
        if isinstance(batch[0], _ARRAYS) and batch[0].ndim == 0:
            raise ValueError(f"A batch's inputs are a 0-d tensor: {_SINGLE_SAMPLES}")
        args = _inputs(batch[0], "a batch's inputs")
        n = _sample_count(args, "a batch's inputs")
        labels = _labels_of(batch[1], n, as_given) if len(batch) > 1 and batch[1] is not None else None
        return Batch(args, {}, labels, n, as_given)
    hint = " (nested Python lists of numbers: convert them with numpy.asarray first)" \
        if isinstance(batch, list) and batch and isinstance(batch[0], (int, float, list)) else ""
    raise TypeError("Each batch must be a tensor, a tuple or list (inputs, labels, ...) or a dict of "
                    f"model keyword inputs; got {type(batch).__name__}{hint}.")


def _inputs_tuple(value) -> bool:
    return isinstance(value, (tuple, list)) and len(value) > 0 and all(isinstance(a, _ARRAYS) for a in value)


def _is_pair(data) -> bool:
    """Whether ``data`` is the in-memory form ``(X,)``, ``(X, y)`` (``X`` an array or a tuple of
    inputs) or ``[X, y]`` (an array and one label per input)."""
    if isinstance(data, tuple):  # ((X1, X2), y), not a tuple of (x, y) batches
        return len(data) in (1, 2) and (isinstance(data[0], _ARRAYS) or
                                        (_inputs_tuple(data[0]) and (len(data) == 1 or not _inputs_tuple(data[1]))))
    return (isinstance(data, list) and len(data) == 2 and isinstance(data[0], _ARRAYS)
            and _length(data[1]) == _length(data[0]) and np.ndim(data[1]) == 1)


def _from_pair(data, label_key) -> Batch:
    if isinstance(data[0], pd.DataFrame):
        _no_label_column(data[0], label_key, "data[0]")
    args = _inputs(data[0], "data[0] (inputs)")
    n = _sample_count(args, "data[0]")
    y = data[1] if len(data) > 1 else None
    if y is None:
        return Batch(args, {}, None, n)
    if _length(y) is None or isinstance(y, str):
        raise ValueError(f"data = (X, y) with {n} inputs but y is a {type(y).__name__}, not one label per input; "
                         "pass y as an array or list of labels, or (X,) for none.")
    if np.ndim(y) > 1 and _length(y) == n and isinstance(y, _ARRAYS):
        raise ValueError(f"data = (X, y) but y has shape {tuple(y.shape)}, not one label per input: for a model "
                         "of two inputs pass ((X1, X2), y) or ((X1, X2),); for per-token labels pass a dict "
                         "batch with label_key=None.")
    if _length(y) != n:
        raise ValueError(f"data = (X, y) with {n} inputs but {_length(y)} labels; pass one label per input.")
    return Batch(args, {}, as_labels(y, n), n)


def _no_label_column(frame: pd.DataFrame, label_key, what: str):
    """Refuse a DataFrame of inputs holding the labels' column (``label_key``; for ``"auto"``
    ``labels`` or ``label``): it would go to the model as a feature."""
    keys = () if label_key is None else _LABEL_KEYS if label_key == "auto" else (label_key,)
    found = [k for k in keys if k in {str(c) for c in frame.columns}]
    if found:
        raise ValueError(f"{what} is a DataFrame with a {found[0]!r} column, which would go to the model as a "
                         f"feature; pass (df.drop(columns={found[0]!r}), df[{found[0]!r}]), or label_key=None "
                         "to use it as a feature.")


def _sliced(whole: Batch, batch_size: int):
    return (whole.part(i, i + batch_size) for i in range(0, whole.n, batch_size))


def _whole(data, label_key) -> Batch | None:
    """The in-memory forms (tensor, array, DataFrame, ``(X, y)``, dict) as one batch; None for the
    others."""
    if isinstance(data, pd.DataFrame):
        _no_label_column(data, label_key, "data")
    if isinstance(data, _ARRAYS):
        x = as_batch_tensor(data, "data")
        return Batch((x,), {}, None, x.shape[0])
    if _is_pair(data):
        return _from_pair(data, label_key)
    if isinstance(data, Mapping):
        return _from_mapping(data, label_key)
    if isinstance(data, tuple) and not isinstance(data, Dataset) and data and isinstance(data[0], _ARRAYS):
        raise TypeError(f"data is a tuple of {len(data)} entries; capture takes (X,) or (X, y), with X a tensor or "
                        "a tuple of the model's positional inputs: ((X1, X2), y). Drop other per-sample arrays "
                        "(e.g. weights), pass a dict of keyword inputs, or a list for a sequence of batches.")
    return None


def iter_batches(data, batch_size: int, label_key="auto"):
    """``(batches, total)``: an iterator of ``Batch``es of ``data`` and the sample count when it
    is known (else None).

    ``data``: a tensor, array or DataFrame (numeric columns) of inputs; ``(X,)``, ``(X, y)`` or
    ``[X, y]``, ``X`` possibly a tuple of positional inputs; a dict of per-sample arrays (model
    keyword inputs, labels under ``label_key``); a Dataset, map-style or iterable (it yields samples:
    batched by a DataLoader of ``batch_size``, not shuffled); a DataLoader or any other iterable of
    batches.
    """
    whole = _whole(data, label_key)
    if whole is not None:
        return _sliced(whole, batch_size), whole.n
    if isinstance(data, Dataset):
        data = DataLoader(data, batch_size=batch_size, shuffle=False)
    if isinstance(data, DataLoader):
        total = len(data.dataset) if hasattr(data.dataset, "__len__") else None
    elif hasattr(data, "__iter__") and not isinstance(data, (str, bytes)):
        total = None
    else:
        raise TypeError("data must be a DataLoader, a Dataset, a tensor/array of inputs, a tuple (X, y), "
                        f"a dict of per-sample arrays or an iterable of batches; got {type(data).__name__}.")
    as_given = not (isinstance(data, DataLoader) and data.batch_size is not None)
    return (as_batch(b, label_key, as_given) for b in data), total


def example_batch(data, label_key="auto") -> Batch:
    """The batch a traced forward runs: an in-memory form (tensor, array, ``(X, y)``, dict) whole,
    else the first batch of ``data`` (one sample of a Dataset)."""
    whole = _whole(data, label_key)
    if whole is not None:
        batches = iter([whole])
    else:
        batches = iter(iter_batches(data, 1, label_key)[0])
    try:
        batch = next(batches)
    except StopIteration:
        raise ValueError("data is empty: there is no sample to trace the model with.") from None
    if batch.n == 0:
        raise ValueError("data is empty: there is no sample to trace the model with.")
    return batch


def first_input(data) -> torch.Tensor:
    """The first sample of ``data`` (any form ``iter_batches`` accepts with one positional input) as
    a batch of one."""
    batch = example_batch(data)
    if len(batch.args) != 1:
        what = "dict batches (keyword inputs)" if not batch.args else f"{len(batch.args)} positional inputs"
        raise TypeError(f"data holds {what}; pass an example input tensor instead.")
    return batch.args[0][:1]
