"""A store's layers as dask arrays: ``open_store`` gives every layer of a store as a dask array
chunked by samples without reading the data; each chunk is read by the worker that computes it
from the layer's file (``repgraph.storage.LayerFile``)."""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from .._arrays import row_chunk
from ..storage.layer_file import store_files


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


def open_store(path, *, chunk_rows: int | None = None, verify: bool = True) -> StoreArrays:
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
    verify : bool
        Check what is read against the manifest's CRC-32 checksums: the worker that reads a chunk
        checks every checksummed range of rows it touches (whole, once per worker process and
        store), so damaged data fails the computation instead of entering it; the labels are
        checked here. False reads the rows unchecked (one pass over the files fewer).

    Returns
    -------
    StoreArrays
        Mapping layer -> ``dask.array.Array`` with ``labels``, ``files``, ``meta``, ``path``.

    Raises
    ------
    ValueError
        If ``path`` holds no complete store; ``DamagedStoreError`` (a ValueError) naming the
        layer and file when a file is missing, truncated or of another shape than the manifest's.
        With ``verify``, computing a chunk whose rows do not match their CRC-32 raises
        ``DamagedStoreError`` naming the layer, the file and the rows.

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
    if chunk_rows is not None and (not isinstance(chunk_rows, int) or chunk_rows < 1):
        raise ValueError(f"chunk_rows must be a positive integer or None, got {chunk_rows!r}.")
    files, labels, meta = store_files(path, verify=verify)
    return StoreArrays(Path(path), files, labels, meta, chunk_rows)
