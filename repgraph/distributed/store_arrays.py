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
from ..hooks.npy_stream import read_header
from ..hooks.store import LABELS, MANIFEST, check_files, read_manifest

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
        """Read the ``.npy`` header of ``path`` (only the header); ``ValueError`` for a file that is
        not a C-ordered version-1.0 ``.npy`` or is shorter than its header says."""
        try:
            shape, dtype, offset = read_header(path)
        except (ValueError, SyntaxError) as err:
            raise ValueError(f"{path}: not a readable C-ordered .npy file ({err}).") from None
        layer = cls(str(path), tuple(shape), dtype, offset)
        if os.path.getsize(path) < offset + layer.nbytes:
            raise ValueError(f"{path} is shorter than its header says ({os.path.getsize(path)} < "
                             f"{offset + layer.nbytes} bytes): the file is truncated.")
        return layer

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
        If ``path`` holds no complete store; ``DamagedStoreError`` (a ValueError) naming the
        layer and file when a file is missing, truncated or of another shape than the manifest's
        (the checksums are not read here: ``Activations.load(path, verify=True)`` reads them).

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
    check_files(folder, manifest, verify=False)  # present, headers and sizes as the manifest says
    files = {e["name"]: LayerFile(str(folder / e["file"]), tuple(e["shape"]), np.dtype(e["dtype"]), e["header_bytes"])
             for e in manifest["layers"]}
    labels = np.load(folder / LABELS) if manifest.get("labels") else None
    return StoreArrays(folder, files, labels, manifest.get("meta", {}), chunk_rows)
