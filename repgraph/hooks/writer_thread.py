"""A store writer's disk work on a background thread: while the model runs batch ``k + 1``, the
thread writes batch ``k`` to its files, updates their CRC-32 and commits it to the manifest.

``zlib.crc32`` and the file writes release the GIL for large buffers, so on a machine with a core
to spare the store costs little more than the copy of each recorded value into a reused buffer.
The guarantees of the synchronous writer are kept: the same bytes in the same order, a manifest
commit after every batch (one batch later in time), every error of the thread raised in the
caller, and the thread joined before the caller goes on, also when the forward raises.
"""
from __future__ import annotations

import queue
import threading

import torch

from ..storage.store import StoreWriter

_STOP = object()


class StoreWriterThread:
    """Context manager that runs ``writer.write`` and ``writer.commit`` on one background thread.

    Same interface as ``StoreWriter`` for ``forward_all``: ``write(key, start, value)`` copies
    the recorded tensor ``value`` (float32, as ``StoreWriter`` stores it) into a buffer of the
    current batch, so a later in-place op of the model cannot change it; ``commit(n, data)`` hands
    the batch to the thread, then waits until the batch before it is written and committed. So at
    most two batches are held: the one being written and the one being recorded, in two buffers
    per layer that alternate.

    On exit the thread writes and commits every batch handed to it (also when the block raises,
    as the synchronous writer had committed them already), then it is joined. An exception of the
    thread is raised by the next ``write`` or ``commit``, else on exit; after it the thread skips
    the remaining batches. The caller then closes, discards or publishes ``writer`` as before.

    Parameters
    ----------
    writer : StoreWriter
        The store writer whose ``write`` and ``commit`` run on the thread; it must not be used
        elsewhere until the block has ended.

    Examples
    --------
    >>> import tempfile, torch
    >>> from pathlib import Path
    >>> folder = Path(tempfile.mkdtemp()) / "acts.partial"
    >>> writer = StoreWriter(folder, fingerprint=None)
    >>> with StoreWriterThread(writer) as target:
    ...     target.write("layer", 0, torch.ones(2, 3))
    ...     target.commit(2, None)
    >>> writer.committed, writer.streams["layer"][1].n_rows
    (2, 2)
    >>> writer.discard()
    """

    def __init__(self, writer: StoreWriter):
        self.writer = writer
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._free = threading.Semaphore(1)  # released when a batch is written: one may wait behind it
        self._buffers: dict[tuple[str, int], torch.Tensor] = {}
        self._slot = 0
        self._batch: list[tuple[str, int, torch.Tensor]] = []
        self._error: BaseException | None = None
        self._raised = False
        self._skip = False
        self._thread = threading.Thread(target=self._run, name="repgraph-store-writer")

    def __enter__(self) -> StoreWriterThread:
        self._thread.start()
        return self

    def __exit__(self, kind, exc, tb):
        self._queue.put(_STOP)
        self._join()
        self._buffers.clear()  # not held while the store is published and loaded
        self._batch = []
        self._check()  # the block's own exception, if any, becomes the thread's error's __context__
        return False

    def _join(self):
        """Join the thread; an interrupt while waiting makes it skip what is left, then it is
        still joined and the interrupt raised."""
        interrupt = None
        while self._thread.is_alive():
            try:
                self._thread.join()
            except BaseException as err:  # noqa: BLE001 - e.g. a second Ctrl-C: re-raised once joined
                self._skip, interrupt = True, err
        if interrupt is not None:
            raise interrupt

    def _run(self):
        while (item := self._queue.get()) is not _STOP:
            try:
                if self._error is None and not self._skip:
                    writes, n_samples, data = item
                    for key, start, value in writes:
                        self.writer.write(key, start, value)
                    self.writer.commit(n_samples, data)
            except BaseException as err:  # noqa: BLE001 - every error is handed to the caller
                self._error = err
            finally:
                self._free.release()

    def _check(self):
        if self._error is not None and not self._raised:
            self._raised = True
            raise self._error

    def _buffer(self, key: str, value: torch.Tensor) -> torch.Tensor:
        buffer = self._buffers.get((key, self._slot))
        if buffer is None or buffer.shape[0] < value.shape[0] or buffer.shape[1:] != value.shape[1:]:
            buffer = torch.empty(value.shape, dtype=torch.float32)
            self._buffers[(key, self._slot)] = buffer
        return buffer[:value.shape[0]]

    def write(self, key: str, start: int, value: torch.Tensor):
        """Copy ``value`` (rows ``start:`` of layer ``key``) into this batch's buffer for ``key``."""
        self._check()
        copy = self._buffer(key, value)
        copy.copy_(value.detach())
        self._batch.append((key, start, copy))

    def commit(self, n_samples: int, data: dict | None):
        """Hand this batch and its commit (``n_samples`` rows, data hash ``data``) to the thread;
        return once the batch before it is written, so that its buffers can be reused."""
        self._check()
        batch, self._batch = self._batch, []
        self._queue.put((batch, n_samples, data))
        self._free.acquire()
        self._slot ^= 1
        self._check()
