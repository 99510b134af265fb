"""One layer's ``.npy`` file of an activation store as a lazy array that reads its rows straight
from the file wherever it is unpickled (``LayerFile``), and ``store_files``: every layer of a
complete store as such descriptors. A task sent to another process carries the descriptor, a few
hundred bytes, never the data."""
from __future__ import annotations

import math
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .npy_stream import read_header
from .store import LABELS, MANIFEST, check_files, read_manifest

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
    >>> from repgraph.storage import read_statistics
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
    >>> from repgraph.storage import LayerFile
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


def store_files(path) -> tuple[dict, object, dict]:
    """``(files, labels, meta)`` of the complete store in folder ``path``: layer -> ``LayerFile`` in
    the manifest's order, the labels (numpy, or None) and the capture's ``meta``. Only the
    manifest, the ``.npy`` headers and the labels are read.

    Raises
    ------
    ValueError
        If ``path`` holds no complete store; ``DamagedStoreError`` (a ValueError) naming the layer
        and file when a file is missing, truncated or of another shape than the manifest's.
    """
    folder = Path(path)
    manifest = read_manifest(folder)
    if manifest is None or not manifest.get("complete"):
        raise ValueError(f"{folder} holds no complete repgraph activation store (no complete {MANIFEST}); "
                         "capture into it again (capture_activations(..., store=...)).")
    check_files(folder, manifest, verify=False)  # present, headers and sizes as the manifest says
    files = {e["name"]: LayerFile(str(folder / e["file"]), tuple(e["shape"]), np.dtype(e["dtype"]), e["header_bytes"])
             for e in manifest["layers"]}
    labels = np.load(folder / LABELS) if manifest.get("labels") else None
    return files, labels, manifest.get("meta", {})
