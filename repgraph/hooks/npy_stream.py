"""Append-only writer of a ``.npy`` file whose first dimension is not known in advance.

The header is written with a fixed size first and rewritten with the final shape on ``close()``,
so a layer streams batch by batch to disk with one batch in memory, and the result is a plain
``.npy`` file that ``numpy.load(..., mmap_mode="r")`` opens.
"""
from __future__ import annotations

import struct

import numpy as np

_MAGIC = b"\x93NUMPY\x01\x00"
_HEADER_BYTES = 512  # a multiple of 64, ample for any shape tuple


def _header(dtype: np.dtype, shape: tuple) -> bytes:
    text = repr({"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": shape})
    room = _HEADER_BYTES - len(_MAGIC) - 2
    if len(text) + 1 > room:
        raise ValueError(f"shape {shape} is too long for a .npy header")
    return _MAGIC + struct.pack("<H", room) + (text.ljust(room - 1) + "\n").encode("latin1")


class NpyStreamWriter:
    """``append(batch)`` rows of one dtype and trailing shape; ``close()`` finalises the header."""

    def __init__(self, path):
        self.path = path
        self._fh = open(path, "wb")
        self._fh.write(b"\0" * _HEADER_BYTES)
        self.dtype = None
        self.row_shape = None
        self.n_rows = 0

    def append(self, batch: np.ndarray):
        batch = np.ascontiguousarray(batch)
        if self.dtype is None:
            self.dtype, self.row_shape = batch.dtype, batch.shape[1:]
        elif batch.dtype != self.dtype or batch.shape[1:] != self.row_shape:
            raise ValueError(f"{self.path}: batch of {batch.dtype}{batch.shape[1:]} does not match "
                             f"earlier batches of {self.dtype}{self.row_shape}.")
        self._fh.write(batch.tobytes())
        self.n_rows += batch.shape[0]

    def close(self) -> tuple:
        shape = (self.n_rows, *(self.row_shape or ()))
        self._fh.seek(0)
        self._fh.write(_header(self.dtype or np.dtype(np.float32), shape))
        self._fh.close()
        return shape

    def abort(self):
        self._fh.close()
