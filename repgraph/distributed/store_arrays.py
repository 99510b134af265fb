"""A store's layers as lazy arrays. ``LayerFile`` is a small picklable descriptor of one layer's
``.npy`` (path, shape, dtype, data offset) that reads rows straight from the file wherever it is
unpickled, so a task sent to a worker carries the descriptor, never the data; ``open_store`` gives
every layer of a store as a dask array chunked by samples without reading the data."""
from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .._arrays import row_chunk
from ..hooks.activations import MANIFEST, read_manifest

_HEADER_READERS = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
_READS = {"bytes": 0, "seconds": 0.0, "reads": 0}
_READS_LOCK = threading.Lock()


def read_statistics(reset: bool = False) -> dict:
    """What ``LayerFile`` reads cost in this process so far: ``bytes``, ``seconds``, ``reads``.

    On a cluster, ask every worker: ``client.run(read_statistics)``.

    Parameters
    ----------
    reset : bool
        Set the counters back to zero after reading them.

    Returns
    -------
    dict

    Examples
    --------
    >>> from repgraph.distributed import read_statistics
    >>> sorted(read_statistics())
    ['bytes', 'reads', 'seconds']
    """
    with _READS_LOCK:
        out = dict(_READS)
        if reset:
            _READS.update(bytes=0, seconds=0.0, reads=0)
    return out


@dataclass(frozen=True)
class LayerFile:
    """One layer's ``.npy`` file as a lazy (N, ...) array: ``layer[a:b]`` reads rows a…b−1 from
    the file (one seek and one read; nothing stays mapped), other keys go through a read-only
    memory map. Pickles to its four fields, so it travels to workers as a few hundred bytes.

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> from repgraph.distributed import LayerFile
    >>> path = os.path.join(tempfile.mkdtemp(), "x.npy")
    >>> np.save(path, np.arange(12.0).reshape(4, 3))
    >>> layer = LayerFile.open(path)
    >>> layer.shape, layer[1:3].tolist()
    ((4, 3), [[3.0, 4.0, 5.0], [6.0, 7.0, 8.0]])
    """

    path: str
    shape: tuple
    dtype: np.dtype
    offset: int

    @classmethod
    def open(cls, path) -> "LayerFile":
        """Read the ``.npy`` header of ``path`` (only the header)."""
        with open(path, "rb") as fh:
            version = np.lib.format.read_magic(fh)
            reader = _HEADER_READERS.get(version)
            if reader is None:
                raise ValueError(f"{path}: .npy format version {version} is not supported here; "
                                 "re-save it with numpy.save.")
            shape, fortran_order, dtype = reader(fh)
            offset = fh.tell()
        if fortran_order:
            raise ValueError(f"{path} holds a Fortran-ordered array; samples must be rows of a C-ordered "
                             "array (numpy.save(path, numpy.ascontiguousarray(a))).")
        if dtype.hasobject:
            raise ValueError(f"{path} holds Python objects, not numbers.")
        layer = cls(str(path), tuple(shape), dtype, offset)
        if os.path.getsize(path) < offset + layer.nbytes:
            raise ValueError(f"{path} is shorter than its header says ({os.path.getsize(path)} < "
                             f"{offset + layer.nbytes} bytes): the file is truncated.")
        return layer

    @classmethod
    def of_memmap(cls, array) -> "LayerFile | None":
        """The file behind ``array`` when it is a whole ``.npy`` opened with ``np.load(mmap_mode=...)``
        (as ``Activations.load`` does), else None."""
        if not isinstance(array, np.memmap) or not array.filename or not array.flags.c_contiguous:
            return None
        try:
            layer = cls.open(array.filename)
        except (OSError, ValueError):
            return None
        # a C-contiguous view with the file's own shape and dtype is the whole file
        whole = (layer.shape, layer.dtype, layer.offset) == (array.shape, array.dtype, array.offset)
        return layer if whole else None

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def row_bytes(self) -> int:
        return math.prod(self.shape[1:]) * self.dtype.itemsize

    @property
    def nbytes(self) -> int:
        return self.shape[0] * self.row_bytes

    def __len__(self):
        return self.shape[0]

    def __getitem__(self, key):
        key = key if isinstance(key, tuple) else (key,)
        rows, rest = key[0], key[1:]
        if isinstance(rows, slice) and rows.step in (None, 1):
            start, stop, _ = rows.indices(self.shape[0])
            block = self._read_rows(start, max(start, stop))
            return block[(slice(None), *rest)] if rest else block
        mapped = np.memmap(self.path, dtype=self.dtype, mode="r", offset=self.offset, shape=self.shape)
        return np.array(mapped[key])

    def _read_rows(self, start: int, stop: int) -> np.ndarray:
        count = (stop - start) * math.prod(self.shape[1:])
        began = time.perf_counter()
        with open(self.path, "rb") as fh:
            fh.seek(self.offset + start * self.row_bytes)
            block = np.fromfile(fh, dtype=self.dtype, count=count)
        if block.size != count:
            raise ValueError(f"{self.path}: rows {start}:{stop} lie past the end of the file (truncated?).")
        with _READS_LOCK:
            _READS["bytes"] += block.nbytes
            _READS["seconds"] += time.perf_counter() - began
            _READS["reads"] += 1
        return block.reshape((stop - start, *self.shape[1:]))

    def __dask_tokenize__(self):
        stat = os.stat(self.path)
        return ("repgraph.LayerFile", self.path, self.shape, self.dtype.str, self.offset, stat.st_mtime_ns,
                stat.st_size)


class StoreArrays(Mapping):
    """A complete activation store opened lazily: mapping layer -> dask array (N, ...) chunked by
    samples, with ``labels`` (numpy, or None), ``files`` (layer -> ``LayerFile``), ``meta`` and
    ``path``. Made by ``open_store``; the distributed analyses read each task's rows from ``files``."""

    def __init__(self, path: Path, files: dict, labels, meta: dict, chunk_rows: int | None):
        self.path, self.files, self.labels, self.meta = path, files, labels, meta
        self.n_samples = next(iter(files.values())).shape[0]
        self._chunk_rows, self._arrays = chunk_rows, {}

    @property
    def layers(self) -> list[str]:
        return list(self.files)

    def __getitem__(self, name):
        if name not in self.files:
            raise KeyError(f"No layer {name!r} in the store at {self.path}; layers: {', '.join(self.files)}.")
        if name not in self._arrays:
            import dask.array as da
            from dask.base import tokenize

            layer = self.files[name]
            rows = self._chunk_rows or row_chunk(layer.shape[0], layer.row_bytes)
            self._arrays[name] = da.from_array(
                layer, chunks=(rows, *layer.shape[1:]), name=f"repgraph-store-{tokenize(layer)}", lock=False,
                asarray=False, fancy=False, inline_array=True, meta=np.empty((0,) * layer.ndim, layer.dtype))
        return self._arrays[name]

    def __iter__(self):
        return iter(self.files)

    def __len__(self):
        return len(self.files)

    def __repr__(self):
        return f"StoreArrays({str(self.path)!r}, N={self.n_samples}, layers={self.layers})"


def open_store(path, *, chunk_rows: int | None = None) -> StoreArrays:
    """Open a complete activation store lazily: each layer as a dask array chunked by samples.

    Only the manifest, the ``.npy`` headers and the labels are read. Each chunk of a dask array
    is read by whichever worker computes it, straight from the layer's file (``LayerFile``), so
    the store's folder must be visible to the workers under the same path.

    Parameters
    ----------
    path : str or Path
        A folder written by ``capture_activations(store=...)`` or ``Activations.save``.
    chunk_rows : int, optional
        Samples per chunk; default: as many as fit the working-memory budget
        (``repgraph.set_config(working_memory=MiB)``).

    Returns
    -------
    StoreArrays
        Mapping layer -> ``dask.array.Array`` with ``labels``, ``files``, ``meta``, ``path``.

    Raises
    ------
    ValueError
        If ``path`` holds no complete store, or a layer file disagrees with the manifest.

    Examples
    --------
    >>> import numpy as np, tempfile
    >>> from repgraph import Activations
    >>> from repgraph.distributed import open_store
    >>> folder = tempfile.mkdtemp()
    >>> Activations({"a": np.ones((6, 2), np.float32)}, labels=np.arange(6)).save(folder)
    >>> store = open_store(folder, chunk_rows=4)
    >>> store["a"].chunks, float(store["a"].sum().compute()), store.labels.tolist()
    (((4, 2), (2,)), 12.0, [0, 1, 2, 3, 4, 5])
    """
    folder = Path(path)
    manifest = read_manifest(folder)
    if manifest is None or not manifest.get("complete"):
        raise ValueError(f"{folder} holds no complete repgraph activation store (no complete {MANIFEST}); "
                         "capture into it again (capture_activations(..., store=...)).")
    if chunk_rows is not None and (not isinstance(chunk_rows, int) or chunk_rows < 1):
        raise ValueError(f"chunk_rows must be a positive integer or None, got {chunk_rows!r}.")
    files = {}
    for entry in manifest["layers"]:
        layer = LayerFile.open(folder / entry["file"])
        if list(layer.shape) != list(entry["shape"]) or layer.dtype != np.dtype(entry["dtype"]):
            raise ValueError(f"{layer.path} holds {layer.dtype}{layer.shape} but the manifest says "
                             f"{entry['dtype']}{tuple(entry['shape'])}: the store was modified; capture again.")
        files[entry["name"]] = layer
    labels = np.load(folder / "labels.npy") if manifest.get("labels") else None
    return StoreArrays(folder, files, labels, manifest.get("meta", {}), chunk_rows)
