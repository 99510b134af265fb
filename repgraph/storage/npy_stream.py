"""Append-only writer of a ``.npy`` file whose first dimension is not known in advance, with a
running CRC-32 of its data bytes, and the matching checks.

The header is written with a fixed size first and rewritten with the final shape on ``close()``,
so a layer streams batch by batch to disk with one batch in memory, and the result is a plain
``.npy`` file that ``numpy.load(..., mmap_mode="r")`` opens. A writer can continue a file after
its first ``rows`` rows (a resumed capture), cutting off whatever follows them.
"""
from __future__ import annotations

import math
import os
import struct
import zlib

import numpy as np

_MAGIC = b"\x93NUMPY\x01\x00"
HEADER_BYTES = 512  # a multiple of 64, ample for any shape tuple
_READ_BLOCK = 16 * 2**20


def npy_header(dtype: np.dtype, shape: tuple) -> bytes:
    """The ``HEADER_BYTES``-byte ``.npy`` (version 1.0) header of a C-order array."""
    text = repr({"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": shape})
    room = HEADER_BYTES - len(_MAGIC) - 2
    if len(text) + 1 > room:
        raise ValueError(f"shape {shape} is too long for a .npy header")
    return _MAGIC + struct.pack("<H", room) + (text.ljust(room - 1) + "\n").encode("latin1")


def row_bytes(dtype, row_shape) -> int:
    return np.dtype(dtype).itemsize * math.prod(row_shape)


class NpyStreamWriter:
    """``append(batch)`` rows of one dtype and trailing shape; ``close()`` finalises the header.

    ``crc32`` is the running CRC-32 of the data bytes written (after the header). With ``rows``
    > 0 an existing file is continued after its first ``rows`` rows of ``dtype`` and ``row_shape``
    (the caller has checked them against ``crc32``); anything after them is cut off.
    """

    def __init__(self, path, *, rows: int = 0, dtype=None, row_shape=None, crc32: int = 0):
        self.path = path
        self.dtype = None if dtype is None else np.dtype(dtype)
        self.row_shape = None if row_shape is None else tuple(row_shape)
        self.n_rows, self.crc32 = rows, crc32
        if rows:
            self._fh = open(path, "r+b")
            self._fh.truncate(HEADER_BYTES + rows * row_bytes(self.dtype, self.row_shape))
            self._fh.seek(0, os.SEEK_END)
        else:
            self._fh = open(path, "wb")
            self._fh.write(b"\0" * HEADER_BYTES)

    def append(self, batch: np.ndarray):
        batch = np.ascontiguousarray(batch)
        if self.dtype is None:
            self.dtype, self.row_shape = batch.dtype, batch.shape[1:]
        elif batch.dtype != self.dtype or batch.shape[1:] != self.row_shape:
            raise ValueError(f"{self.path}: batch of {batch.dtype}{batch.shape[1:]} does not match "
                             f"earlier batches of {self.dtype}{self.row_shape}.")
        data = memoryview(batch.reshape(-1).view(np.uint8))
        self._fh.write(data)
        self.crc32 = zlib.crc32(data, self.crc32)
        self.n_rows += batch.shape[0]

    def flush(self):
        """Hand the written bytes to the operating system (they survive the process being killed)."""
        self._fh.flush()

    def close(self) -> tuple:
        shape = (self.n_rows, *(self.row_shape or ()))
        self._fh.seek(0)
        self._fh.write(npy_header(self.dtype or np.dtype(np.float32), shape))
        self._fh.close()
        return shape

    def abort(self):
        """Close the file without finishing it; a failed flush (e.g. a full disk) is ignored."""
        try:
            self._fh.close()
        except OSError:
            pass


def read_header(path) -> tuple[tuple, np.dtype, int]:
    """``(shape, dtype, header bytes)`` of a C-order ``.npy`` file; ``ValueError`` when damaged."""
    with open(path, "rb") as fh:
        version = np.lib.format.read_magic(fh)
        if version != (1, 0):
            raise ValueError(f"unexpected .npy version {version}")
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
        if fortran:
            raise ValueError("Fortran-ordered array")
        return shape, dtype, fh.tell()


def crc32_of(path, offset: int, n_bytes: int) -> int:
    """CRC-32 of ``n_bytes`` bytes of ``path`` from byte ``offset``, read in blocks."""
    crc = 0
    with open(path, "rb") as fh:
        fh.seek(offset)
        left = n_bytes
        while left:
            block = fh.read(min(left, _READ_BLOCK))
            if not block:
                break
            crc = zlib.crc32(block, crc)
            left -= len(block)
    return crc
