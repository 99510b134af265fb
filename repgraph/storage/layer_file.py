"""One layer's ``.npy`` file of an activation store as a lazy array that reads its rows straight
from the file wherever it is unpickled (``LayerFile``), and ``store_files``: every layer of a
complete store as such descriptors. A task sent to another process carries the descriptor, a few
hundred bytes, never the data.

A descriptor made from a store's manifest (``store_files(path, verify=True)``) carries the
manifest's CRC-32 chunks of its file, and the process that reads rows checks them there (a
client may not see its workers' disks, nor they its checks): every chunk a read touches is
checked once per process, store (manifest checksum) and chunk, so a store written again at the
same path is checked again."""
from __future__ import annotations

import math
import os
import threading
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .npy_stream import crc32_of, read_header
from .store import LABELS, MANIFEST, check_files, damaged_file, read_manifest

_READS = {"bytes": 0, "seconds": 0.0, "reads": 0, "checked_bytes": 0, "check_seconds": 0.0}
_READS_LOCK = threading.Lock()
# (file path, manifest checksum, chunk start, chunk stop) of every chunk that matched its CRC-32
# in this process: checked once, not on every read
_CHECKED: set = set()


def read_statistics(reset: bool = False) -> dict:
    """What ``LayerFile`` reads cost in this process so far: ``bytes``, ``seconds``, ``reads``,
    and the checksums of a verified store's chunks: ``checked_bytes``, ``check_seconds``.

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
    ['bytes', 'check_seconds', 'checked_bytes', 'reads', 'seconds']
    """
    with _READS_LOCK:
        out = dict(_READS)
        if reset:
            _READS.update(bytes=0, seconds=0.0, reads=0, checked_bytes=0, check_seconds=0.0)
    return out


@dataclass(frozen=True)
class LayerFile:
    """One layer's ``.npy`` file as a lazy (N, ...) array: ``layer[a:b]`` reads rows a…b−1 from
    the file (one seek and one read; nothing stays mapped), other keys go through a read-only
    memory map. Pickles to its fields, so it travels to workers as a few hundred bytes.

    With ``chunks`` (the manifest's ``(start, stop, crc32)`` row ranges of the file, and
    ``manifest_crc32`` the manifest's checksum) a read first checks the CRC-32 of every chunk its
    rows touch (the whole chunk, also when the read covers part of it), once per process;
    ``DamagedStoreError`` naming ``layer`` when one does not match. Without (``open``), rows are
    read unchecked.

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
    layer: str | None = None
    chunks: tuple = ()
    manifest_crc32: int | None = None

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
        touched = np.arange(self.shape[0])[rows]
        if touched.size:
            self.verify(int(touched.min()), int(touched.max()) + 1)
        mapped = np.memmap(self.path, dtype=self.dtype, mode="r", offset=self.offset, shape=self.shape)
        return np.array(mapped[key])

    def _read_rows(self, start: int, stop: int) -> np.ndarray:
        self.verify(start, stop, covered=False)  # chunks this read covers in part: streamed first
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
        self.verify(start, stop, block=block)  # chunks it covers whole: from the bytes read
        return block.reshape((stop - start, *self.shape[1:]))

    def verify(self, start: int = 0, stop: int | None = None, *, block: np.ndarray | None = None,
               covered: bool = True):
        """Check the CRC-32 of every manifest chunk that rows ``start:stop`` touch and this process
        has not checked yet (nothing without ``chunks``). A chunk is read from the file, or taken
        from ``block`` (rows ``start:stop`` as read, flat) when it lies inside them; ``covered=False``
        skips the chunks inside ``start:stop`` (the read that follows checks them).

        Raises ``DamagedStoreError`` naming the store, the layer, the file and the rows."""
        stop = self.shape[0] if stop is None else stop
        for c_start, c_stop, crc in self.chunks:
            inside = start <= c_start and c_stop <= stop
            key = (self.path, self.manifest_crc32, c_start, c_stop)
            if c_stop <= start or c_start >= stop or (inside and not covered) or key in _CHECKED:
                continue
            began = time.perf_counter()
            if inside and block is not None:
                per_row = math.prod(self.shape[1:])  # block: the flat values read
                got = zlib.crc32(block[(c_start - start) * per_row:(c_stop - start) * per_row])
            else:
                got = crc32_of(self.path, self.offset + c_start * self.row_bytes, (c_stop - c_start) * self.row_bytes)
            with _READS_LOCK:
                _READS["checked_bytes"] += (c_stop - c_start) * self.row_bytes
                _READS["check_seconds"] += time.perf_counter() - began
            if got != crc:
                folder = Path(self.path).parent
                raise damaged_file(folder, self.layer, Path(self.path).name,
                                   f"rows {c_start}:{c_stop} do not match their CRC-32 (the file was changed or "
                                   "corrupted)")
            _CHECKED.add(key)

    def __dask_tokenize__(self):
        stat = os.stat(self.path)
        return ("repgraph.LayerFile", self.path, self.shape, self.dtype.str, self.offset, stat.st_mtime_ns,
                stat.st_size, self.chunks, self.manifest_crc32)


def store_files(path, *, verify: bool = True) -> tuple[dict, object, dict]:
    """``(files, labels, meta)`` of the complete store in folder ``path``: layer -> ``LayerFile`` in
    the manifest's order, the labels (numpy, or None) and the capture's ``meta``. Only the
    manifest, the ``.npy`` headers and the labels are read.

    Parameters
    ----------
    path : str or Path
    verify : bool
        The files carry the manifest's CRC-32 chunks, so that whichever process reads rows checks
        them (see ``LayerFile``); the labels are checked here.

    Raises
    ------
    ValueError
        If ``path`` holds no complete store; ``DamagedStoreError`` (a ValueError) naming the layer
        and file when a file is missing, truncated or of another shape than the manifest's (or,
        with ``verify``, when the labels do not match their CRC-32).
    """
    folder = Path(path)
    manifest = read_manifest(folder)
    if manifest is None or not manifest.get("complete"):
        raise ValueError(f"{folder} holds no complete repgraph activation store (no complete {MANIFEST}); "
                         "capture into it again (capture_activations(..., store=...)).")
    check_files(folder, manifest, verify=False)  # present, headers and sizes as the manifest says
    def layer_file(name, entry):
        chunks = tuple((c["start"], c["stop"], c["crc32"]) for c in entry["chunks"]) if verify else ()
        return LayerFile(str(folder / entry["file"]), tuple(entry["shape"]), np.dtype(entry["dtype"]),
                         entry["header_bytes"], name, chunks, manifest["manifest_crc32"] if verify else None)
    files = {e["name"]: layer_file(e["name"], e) for e in manifest["layers"]}
    labels = None
    if manifest.get("labels"):
        layer_file("labels", manifest["labels"]).verify()
        labels = np.load(folder / LABELS)
    return files, labels, manifest.get("meta", {})
