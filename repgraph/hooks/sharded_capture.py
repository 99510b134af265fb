"""Capture on a cluster: the samples are cut into shards of whole batches, one task per shard runs
the model on its samples (the in-process capture, in memory) and writes their rows into the
store's preallocated layer files, returning their CRC-32; the store is published once every shard
is in. The plan runs on any runner (``repgraph.execution``); ``capture_activations`` takes it
with a cluster runner and a store.

The store is the one of ``repgraph.storage.store``, written by the procedure its module docstring
gives for several writers: under the store's lock, the capture's own folder (``capture_folder``,
a fresh token) with each file preallocated; rows written at ``HEADER_BYTES + start·row_bytes``
into files opened by path; each shard's rows re-read and checked against the CRC-32 its task
returned; the manifest with each shard's checksum; one atomic rename. A capture that fails
deletes its folder, so its shards still running on the workers (a cancelled Dask task runs to its
end) fail to open their files instead of writing into another capture's. Fingerprint and reuse
are the in-process ones, so either capture reuses a store the other made."""
from __future__ import annotations

import math
import shutil
import threading
import uuid
import weakref
import zlib
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from torch import nn
from torch.utils.data import DataLoader, Dataset, IterableDataset, SequentialSampler, Subset

from ..execution.runner import task_rows
from ..storage.npy_stream import HEADER_BYTES, NpyStreamWriter, crc32_of, npy_header
from ..storage.store import (LABELS, DamagedStoreError, capture_folder, check_files, complete_manifest, file_entry,
                             layer_filename, publish, store_folder, write_manifest)
from .activations import Activations
from .batches import _is_pair, _slice, iter_batches
from .in_process_capture import capture_in_process, check_materialised, check_options
from .presets import PRESETS
from .recorder import ActivationRecorder
from .stored import _hash_data, capture_config, reuse_or_lock

_LOCKS: "weakref.WeakKeyDictionary[nn.Module, threading.Lock]" = weakref.WeakKeyDictionary()
_LOCKS_GUARD = threading.Lock()


def _model_lock(model: nn.Module) -> threading.Lock:
    """One lock per model object in a worker process: two threads must not hook one model at once."""
    with _LOCKS_GUARD:
        return _LOCKS.setdefault(model, threading.Lock())


def _shard_batch_size(data, batch_size: int) -> int:
    """The batch size the in-process capture uses for ``data`` (a DataLoader keeps its own), after
    checking that ``data`` can be cut into shards."""
    if isinstance(data, DataLoader):
        if not isinstance(data.sampler, SequentialSampler) or data.batch_size is None or data.drop_last:
            raise TypeError("capture on a cluster cuts the data into shards: pass a DataLoader with "
                            "shuffle=False, a batch_size and drop_last=False, or its dataset.")
        return data.batch_size
    indexable = (isinstance(data, Dataset) and not isinstance(data, IterableDataset)) or _is_pair(data) or \
        isinstance(data, Mapping) or hasattr(data, "shape")
    if not indexable:
        raise TypeError("capture on a cluster needs data it can index to cut into shards: a tensor or array of "
                        "inputs, (X, y), a dict of per-sample arrays, a map-style Dataset or a sequential "
                        f"DataLoader; got {type(data).__name__}.")
    return batch_size


def _shard_view(data, start: int, stop: int, n_data: int):
    """Samples ``start:stop`` of ``data`` (``n_data`` samples: a dict's values of that length are
    per-sample, the others are passed whole) in the same form; a DataLoader keeps its
    batch size and collate function but no worker processes (a Dask worker's cannot have children)."""
    if isinstance(data, DataLoader):
        return DataLoader(Subset(data.dataset, range(start, stop)), batch_size=data.batch_size, shuffle=False,
                          collate_fn=data.collate_fn)
    if isinstance(data, Dataset):
        return Subset(data, range(start, stop))
    if _is_pair(data):
        inputs = data[0]  # one array, or a tuple of the model's positional inputs
        if isinstance(inputs, (tuple, list)):
            inputs = type(inputs)(x[start:stop] for x in inputs)
        else:
            inputs = inputs[start:stop]
        return type(data)((inputs, *(None if y is None else y[start:stop] for y in data[1:])))
    if isinstance(data, Mapping):
        return {key: _slice(value, start, stop, n_data) for key, value in data.items()}
    return data[start:stop]


def _capture_rows(model, data, start, stop, n_data, options) -> Activations:
    with _model_lock(model):
        acts = capture_in_process(model, _shard_view(data, start, stop, n_data), progress=False, **options)
    if acts.n_samples != stop - start:
        raise ValueError(f"samples {start}:{stop} of the data gave {acts.n_samples} rows; the data's "
                         "per-sample arrays must all have the same length.")
    return acts


def _probe_layout(model, data, n_probe: int, n_data: int, options) -> list[tuple[str, tuple]]:
    """``[(key, row shape)]`` of the first ``n_probe`` samples, in the order the layers fire (the
    order of the store's files)."""
    return [(key, tuple(array.shape[1:])) for key, array in _capture_rows(model, data, 0, n_probe, n_data, options).items()]


def _capture_shard(model, data, start, stop, n_data, options, partial: str, layout) -> tuple[list[int], object]:
    """Run samples ``start:stop`` through the model and write their rows into the files of
    ``partial``; returns each file's CRC-32 of these rows and the rows' labels (or None).

    Each file is opened by path and never created: once an abandoned capture's folder is deleted,
    its shard fails here (a file opened just before goes on being written after it is deleted,
    unseen by anyone)."""
    acts = _capture_rows(model, data, start, stop, n_data, options)
    if [(key, tuple(a.shape[1:])) for key, a in acts.items()] != layout:
        raise ValueError(f"samples {start}:{stop} gave layers {[(k, a.shape[1:]) for k, a in acts.items()]} but "
                         f"the first samples gave {layout}; the model's outputs depend on its input.")
    crcs = []
    for index, (key, shape) in enumerate(layout):
        rows = memoryview(np.ascontiguousarray(acts[key], dtype=np.float32).reshape(-1).view(np.uint8))
        with open(Path(partial) / layer_filename(index), "r+b") as fh:
            fh.seek(HEADER_BYTES + start * 4 * math.prod(shape))
            fh.write(rows)
        crcs.append(zlib.crc32(rows))
    return crcs, acts.labels


def _data_digest(data, batch_size, label_key, max_samples) -> dict:
    """The data hash of the in-process capture (every input and label), computed on a worker."""
    return _hash_data(iter_batches(data, batch_size, label_key)[0], max_samples)


def _shard_crcs(partial: str, layout, start: int, stop: int) -> list[int]:
    """Each file's CRC-32 of rows ``start:stop`` as they are on disk now."""
    crcs = []
    for index, (_, shape) in enumerate(layout):
        row = 4 * math.prod(shape)
        crcs.append(crc32_of(Path(partial) / layer_filename(index), HEADER_BYTES + start * row, (stop - start) * row))
    return crcs


def _verify_shards(runner, folder: Path, partial: Path, layout, shards, written):
    """Re-read every shard's rows (one task per shard) and check them against the CRC-32 its
    capture task returned; ``DamagedStoreError`` naming the layer and the rows when they differ."""
    tasks = [runner.submit(_shard_crcs, str(partial), layout, a, b) for a, b in shards]
    on_disk = runner.results(tasks, desc="verify", progress=False)
    for (a, b), (crcs, _), now in zip(shards, written, on_disk):
        for (key, _), crc, got in zip(layout, crcs, now):
            if crc != got:
                raise DamagedStoreError(f"store={str(folder)!r}: rows {a}:{b} of layer {key!r} changed on disk after "
                                        "their shard wrote them (another process wrote into the capture's folder, "
                                        "or the disk failed); nothing was published. Capture again.")


def _preallocate(partial: Path, layout, n: int):
    """The capture's new folder with each layer's file at its final size (header, then a sparse
    hole)."""
    partial.mkdir(parents=True)
    for index, (_, shape) in enumerate(layout):
        with open(partial / layer_filename(index), "wb") as fh:
            fh.write(npy_header(np.dtype(np.float32), (n, *shape)))
            fh.truncate(HEADER_BYTES + n * 4 * math.prod(shape))


def _labels_entry(partial: Path, parts: list):
    """Write the shards' labels (all or none) as ``labels.npy``; its manifest entry, or None."""
    if all(p is None for p in parts):
        return None
    if any(p is None for p in parts):
        raise ValueError("some shards carry labels and others do not; every batch must carry labels or none.")
    writer = NpyStreamWriter(partial / LABELS)
    writer.append(np.concatenate(parts))
    shape = writer.close()
    return file_entry(None, LABELS, shape, writer.dtype, [{"start": 0, "stop": shape[0], "crc32": writer.crc32}])


def capture_shards(model: nn.Module, data, layers="blocks", *, reduce="auto", output=None, batch_axis=0,
                   inputs: bool = False, label_key="auto", max_samples: int | None = None, device=None,
                   store=None, progress: bool = True, batch_size: int = 256, runner) -> Activations:
    """``capture_activations`` by ``runner``'s tasks, one per shard, into ``store``.

    The N samples are cut into shards of whole batches, so each batch is one the in-process
    capture runs and every row is identical to its. The model and the data are shared with the
    runner once. A probe of the first samples gives each layer's shape; under the store's lock
    the capture's own folder (``capture_folder``: a fresh token) gets each layer's file
    preallocated; one task per shard runs the in-process capture on its samples and writes its
    rows in place, returning their CRC-32; a task hashes the data meanwhile (the fingerprint of
    the in-process capture). Once every shard is in, one task per shard re-reads its rows and
    checks their CRC-32, the manifest (each shard's checksum as a chunk) is written and checked
    against the files, and the folder is published with one atomic rename. A failed shard (or a
    closed client) raises its error here, nothing is published and the folder is deleted before
    the lock is released, so shards still running on the workers cannot write into the next
    capture of the store (no resume). A complete store of the same capture is reused, after its
    checksums are verified, as in process.

    Parameters
    ----------
    model : nn.Module
        The network (picklable, for a cluster; shared once).
    data : tensor or array, (X, y), dict of per-sample arrays, map-style Dataset or sequential DataLoader
        Data that can be indexed, to cut into shards.
    layers, reduce, output, batch_axis, inputs, label_key, max_samples, device, progress, batch_size
        As in ``repgraph.capture_activations``.
    store : str or Path
        The store's folder, visible to the workers under the same path (required).
    runner
        The runner of the tasks (``repgraph.execution.runner``).

    Returns
    -------
    Activations
        The store, loaded with memory maps.

    Raises
    ------
    ValueError
        Without ``store``, for bad options, empty data, unknown layers, a store of another capture,
        or shards that disagree with the probe.
    DamagedStoreError
        When rows on disk differ from those their shard wrote (nothing is published).
    TypeError
        For data that cannot be indexed (iterable datasets, generators, shuffling loaders).
    """
    if store is None:
        raise ValueError("capture on a cluster writes a store: pass store=PATH, a folder the workers can "
                         "write under the same path (or capture without client= to keep the activations "
                         "in memory here).")
    check_options(batch_size, max_samples, store)
    check_materialised(model)
    rec = ActivationRecorder(model, layers, reducer=reduce, inputs=inputs, output=output, batch_axis=batch_axis)
    batch = _shard_batch_size(data, batch_size)
    _, total = iter_batches(data, batch_size, label_key)
    if not total:
        raise ValueError("data is empty: no batch to run through the model.")
    n = total if max_samples is None else min(total, max_samples)
    config = capture_config(model, rec, output, batch_axis, label_key, max_samples)
    folder = store_folder(store)
    reused, lock = reuse_or_lock(folder, config, data, batch_size=batch_size, label_key=label_key,
                                 max_samples=max_samples, progress=progress)
    if reused is not None:
        return reused
    # a preset goes by its name: the workers resolve it as here, to the same layers and the same
    # modules their inputs and outputs are taken from (a flat conv group's name alone is its conv)
    chosen = layers if isinstance(layers, str) and layers in PRESETS else rec.layers
    options = {"layers": chosen, "reduce": reduce, "output": output, "batch_axis": batch_axis, "inputs": inputs,
               "label_key": label_key, "device": device, "batch_size": batch_size}
    try:
        model_handle, data_handle = runner.share(model), runner.share(data)
        digest = runner.submit(_data_digest, data_handle, batch_size, label_key, max_samples)
        probe = runner.submit(_probe_layout, model_handle, data_handle, min(n, 2), total, options)
        layout = runner.results([probe], desc="probe", progress=False)[0]
        partial = capture_folder(folder, uuid.uuid4().hex)
        try:
            _preallocate(partial, layout, n)
            rows = task_rows(n, 2 * 4 * sum(math.prod(shape) for _, shape in layout), runner, multiple=batch)
            shards = [(a, min(n, a + rows)) for a in range(0, n, rows)]
            tasks = [runner.submit(_capture_shard, model_handle, data_handle, a, b, total, options, str(partial),
                                   layout) for a, b in shards]
            written = runner.results(tasks, desc="capture", progress=progress)
            _verify_shards(runner, folder, partial, layout, shards, written)
            data_hash = runner.results([digest], desc="data hash", progress=False)[0]
            entries = [file_entry(key, layer_filename(i), (n, *shape), np.float32,
                                  [{"start": a, "stop": b, "crc32": crcs[i]}
                                   for (a, b), (crcs, _) in zip(shards, written)])
                       for i, (key, shape) in enumerate(layout)]
            labels = _labels_entry(partial, [labels for _, labels in written])
            meta = {"model": type(model).__name__, "reduce": rec.reducer.name, "max_samples": max_samples,
                    "inputs": rec.inputs}
            manifest = complete_manifest(entries, labels, {**config, "data": data_hash}, meta)
            write_manifest(partial, manifest)
            check_files(partial, manifest, verify=False)
            publish(partial, folder)
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)  # the shards still running find no files to write
            raise
    finally:
        lock.release()
    return Activations.load(folder)

