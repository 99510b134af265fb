"""Capture on a Dask cluster: the samples are split into shards of whole batches, each worker runs
the model on its shards and writes their rows into the store's layer files (preallocated at their
final size), and the manifest is published complete only once every shard is written.

Written against the store format of ``repgraph.hooks.activations`` (one ``.npy`` per layer,
``labels.npy``, ``manifest.json``); the fingerprint and the reuse rule are those of the in-process
``capture_activations``, so either one reuses a store the other made."""
from __future__ import annotations

import hashlib
import threading
import weakref
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, IterableDataset, SequentialSampler, Subset

from ..hooks.activations import FORMAT, Activations, layer_filename, write_manifest
from ..hooks.batches import iter_batches
from ..hooks.capture import _check_store, _model_fingerprint, _reduce_name, _reducer
from ..hooks.capture import capture_activations as _capture
from ..hooks.layers import select_layers
from .runner import runner_for, task_rows
from .store_arrays import LayerFile

_LOCKS: "weakref.WeakKeyDictionary[nn.Module, threading.Lock]" = weakref.WeakKeyDictionary()
_LOCKS_GUARD = threading.Lock()


def _model_lock(model: nn.Module) -> threading.Lock:
    """One lock per model object in a worker process: two threads must not hook one model at once."""
    with _LOCKS_GUARD:
        return _LOCKS.setdefault(model, threading.Lock())


def _extent(data, batch_size: int) -> tuple[int, int]:
    """``(number of samples, batch size)`` of a data form that can be cut into shards."""
    if isinstance(data, (torch.Tensor, np.ndarray)):
        return len(data), batch_size
    if isinstance(data, tuple) and len(data) == 2 and not isinstance(data[0], (tuple, list)):
        return len(data[0]), batch_size
    if isinstance(data, DataLoader):
        if not isinstance(data.sampler, SequentialSampler) or data.batch_size is None or data.drop_last:
            raise TypeError("capture on a cluster splits the data into shards: pass a DataLoader with "
                            "shuffle=False, a batch_size and drop_last=False, or its dataset.")
        return len(data.dataset), data.batch_size
    if isinstance(data, Dataset) and not isinstance(data, IterableDataset) and hasattr(data, "__len__"):
        return len(data), batch_size
    raise TypeError("capture on a cluster needs data it can index to split into shards: a tensor or array "
                    f"of inputs, a tuple (X, y), a map-style Dataset or a sequential DataLoader; got "
                    f"{type(data).__name__}.")


def _shard_view(data, start: int, stop: int):
    """Samples ``start:stop`` of ``data`` in the same form (a DataLoader keeps its batch size and
    collate function, without worker processes: a Dask worker's processes cannot have children)."""
    if isinstance(data, (torch.Tensor, np.ndarray)):
        return data[start:stop]
    if isinstance(data, tuple):
        return data[0][start:stop], data[1][start:stop]
    if isinstance(data, DataLoader):
        return DataLoader(Subset(data.dataset, range(start, stop)), batch_size=data.batch_size,
                          shuffle=False, collate_fn=data.collate_fn)
    return Subset(data, range(start, stop))


def _capture_rows(model, data, start, stop, names, reduce, device, batch_size) -> Activations:
    with _model_lock(model):
        return _capture(model, _shard_view(data, start, stop), names, reduce=reduce, device=device,
                        progress=False, batch_size=batch_size)


def _probe_layout(model, data, n_probe: int, names, reduce, device, batch_size):
    """What each layer's rows look like: ``([(name, row shape, dtype)], labels dtype or None)``
    from the first ``n_probe`` samples, in the order the layers fire (the store's file order)."""
    acts = _capture_rows(model, data, 0, n_probe, names, reduce, device, batch_size)
    layout = [(name, tuple(array.shape[1:]), array.dtype.str) for name, array in acts.items()]
    return layout, None if acts.labels is None else acts.labels.dtype.str


def _write_rows(path: Path, start: int, array: np.ndarray):
    """Write ``array`` as rows ``start:`` of the preallocated ``.npy`` at ``path``."""
    layer = LayerFile.open(path)
    if (array.shape[1:], array.dtype) != (layer.shape[1:], layer.dtype) or start + len(array) > layer.shape[0]:
        raise ValueError(f"{path}: rows {start}:{start + len(array)} of {array.dtype}{array.shape[1:]} do not fit "
                         f"the layer's {layer.dtype}{layer.shape}.")
    with open(path, "r+b") as fh:
        fh.seek(layer.offset + start * layer.row_bytes)
        fh.write(np.ascontiguousarray(array).data)


def _capture_shard(model, data, start, stop, names, reduce, device, batch_size, folder: str, layout,
                  label_dtype) -> int:
    """Run samples ``start:stop`` through the model and write their rows into the store's files;
    returns the number of rows written. A layer whose rows differ from the probe's is an error."""
    acts = _capture_rows(model, data, start, stop, names, reduce, device, batch_size)
    if list(acts) != [name for name, _, _ in layout]:
        raise ValueError(f"samples {start}:{stop} recorded layers {list(acts)} but the first samples recorded "
                         f"{[name for name, _, _ in layout]}; the model's control flow depends on its input.")
    for index, (name, _, _) in enumerate(layout):
        _write_rows(Path(folder) / layer_filename(index), start, acts[name])
    if label_dtype is not None:
        if acts.labels is None:
            raise ValueError(f"samples {start}:{stop} carry no labels but the first samples did.")
        _write_rows(Path(folder) / "labels.npy", start, acts.labels)
    return stop - start


def capture_activations(model: nn.Module, data, layers="blocks", *, reduce="flatten",
                        max_samples: int | None = None, device=None, store=None, progress: bool = True,
                        batch_size: int = 256, client=None) -> Activations:
    """``repgraph.capture_activations`` with the forward passes on a cluster, into a store.

    The N samples are cut into shards of whole batches (so every batch is the one the in-process
    capture runs, and the rows are identical); the model and the data are sent to the cluster
    once; each task runs one shard through the model (eval mode, ``torch.no_grad()``) with the
    in-process capture and writes its rows at their place in the layer files. The files are
    preallocated from a probe of the first samples; the manifest says ``complete: false`` until
    every shard is written, then is replaced atomically by the complete one. A failed shard
    leaves the store incomplete (never loaded as complete) and raises its error here. A complete
    store with a matching fingerprint (the in-process one) is reused instead of recomputed.

    Parameters
    ----------
    model : nn.Module
        The network (picklable; sent to the cluster once).
    data : tensor or array of inputs, tuple (X, y), map-style Dataset, or sequential DataLoader
        Data that can be indexed, to cut into shards.
    layers, reduce, max_samples, device, progress, batch_size
        As in ``repgraph.capture_activations``.
    store : str or Path
        Folder of the store, visible to the workers under the same path (required).
    client : distributed.Client, optional
        Default: the client of the enclosing ``repgraph.parallel`` block; with none, the shards
        run in this process.

    Returns
    -------
    Activations
        The store, loaded with memory maps.

    Raises
    ------
    ValueError
        Without ``store``, for bad ``max_samples``, empty data, unknown layers, a foreign store folder
        or shards that disagree with the probe.
    TypeError
        For data that cannot be indexed (iterable datasets, generators, shuffling loaders).

    Examples
    --------
    >>> import tempfile, torch
    >>> from repgraph.distributed import capture_activations
    >>> model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU())
    >>> x, y = torch.randn(10, 3), torch.arange(10) % 2
    >>> acts = capture_activations(model, (x, y), layers=["0"], store=tempfile.mkdtemp(), batch_size=4,
    ...                            progress=False)
    >>> acts["0"].shape, acts.labels.tolist()[:4]
    ((10, 4), [0, 1, 0, 1])
    """
    if store is None:
        raise ValueError("capture on a cluster writes a store: pass store=PATH, a folder the workers can "
                         "write under the same path.")
    names = select_layers(model, layers)
    _reducer(reduce)
    if max_samples is not None and max_samples < 1:
        raise ValueError(f"max_samples must be a positive integer or None, got {max_samples!r}.")
    total, batch = _extent(data, batch_size)
    try:
        first = next(iter_batches(data, batch_size)[0])
    except StopIteration:
        raise ValueError("data is empty: no batch to run through the model.") from None
    n = total if max_samples is None else min(total, max_samples)
    fingerprint = {"model": _model_fingerprint(model),
                   "data": hashlib.sha1(first[0].detach().cpu().contiguous().numpy().tobytes()).hexdigest(),
                   "n_samples": n, "layers": names, "reduce": _reduce_name(reduce), "max_samples": max_samples}
    folder = Path(store)
    reused = _check_store(folder, fingerprint)
    if reused is not None:
        return reused
    folder.mkdir(parents=True, exist_ok=True)
    runner = runner_for(client)
    model_handle, data_handle = runner.share(model), runner.share(data)
    probe = runner.submit(_probe_layout, model_handle, data_handle, min(n, 2), names, reduce, device, batch)
    layout, label_dtype = runner.results([probe], desc="probe", progress=False)[0]
    for stale in [*folder.glob("layer_*.npy"), *folder.glob("labels.npy")]:
        stale.unlink()
    write_manifest(folder, {"format": FORMAT, "complete": False, "fingerprint": fingerprint})
    entries = []
    for index, (name, shape, dtype) in enumerate(layout):
        np.lib.format.open_memmap(folder / layer_filename(index), mode="w+", dtype=np.dtype(dtype),
                                  shape=(n, *shape))
        entries.append({"name": name, "file": layer_filename(index), "shape": [n, *shape],
                        "dtype": str(np.dtype(dtype))})
    if label_dtype is not None:
        np.lib.format.open_memmap(folder / "labels.npy", mode="w+", dtype=np.dtype(label_dtype), shape=(n,))
    row_bytes = sum(int(np.prod(shape)) * np.dtype(dtype).itemsize for _, shape, dtype in layout)
    rows = task_rows(n, 2 * row_bytes, runner, multiple=batch)
    tasks = [runner.submit(_capture_shard, model_handle, data_handle, a, min(n, a + rows), names, reduce, device,
                           batch, str(folder), layout, label_dtype) for a in range(0, n, rows)]
    written = sum(runner.results(tasks, desc="capture", progress=progress))
    if written != n:
        raise ValueError(f"the shards wrote {written} of {n} samples; the store stays incomplete.")
    meta = {"model": type(model).__name__, "reduce": _reduce_name(reduce), "max_samples": max_samples}
    write_manifest(folder, {"format": FORMAT, "complete": True, "fingerprint": fingerprint, "layers": entries,
                            "labels": label_dtype is not None, "n_samples": n, "meta": meta})
    return Activations.load(folder)
