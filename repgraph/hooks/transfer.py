"""Moving reduced outputs from the model's device into the capture target.

On the CPU each value is written into the target at once, from inside the hook (before a later
in-place op could change it). On a CUDA device the transfer is pipelined: each value is copied
asynchronously into a pinned host buffer on the model's stream (stream order keeps later
in-place kernels after the copy), and a batch is written into the target only after the next
batch's forward has been launched, so the host's copying overlaps the device's compute; two
buffers per layer alternate.
"""
from __future__ import annotations

from collections import deque

import torch


class _Done:
    """The event of a pipelined transfer without CUDA: the copy is already complete."""

    def synchronize(self):
        pass


class HostTransfer:
    """``begin(start)``, then ``stage(key, value)`` per recorded value, then
    ``end_batch(done)``: ``done()`` runs once the batch's rows are in ``target`` (at once, or one
    batch later when pipelined); ``finish()`` writes what is still pending.

    ``pipelined`` defaults to True on CUDA devices; forcing it elsewhere runs the same buffer
    logic with synchronous copies (how it is tested without a GPU).
    """

    def __init__(self, target, device: torch.device, pipelined: bool | None = None):
        self.target = target
        self.cuda = device.type == "cuda"
        self.pipelined = self.cuda if pipelined is None else pipelined
        self.start = 0
        self._staged: dict[str, torch.Tensor] = {}
        self._buffers: dict[tuple[str, int], torch.Tensor] = {}
        self._slot = 0
        self._pending: deque = deque()

    def begin(self, start: int):
        self.start, self._staged = start, {}

    def _buffer(self, key: str, value: torch.Tensor) -> torch.Tensor:
        buffer = self._buffers.get((key, self._slot))
        if buffer is None or buffer.shape[0] < value.shape[0] or buffer.shape[1:] != value.shape[1:]:
            buffer = torch.empty(value.shape, dtype=torch.float32, pin_memory=self.cuda)
            self._buffers[(key, self._slot)] = buffer
        return buffer[:value.shape[0]]

    def stage(self, key: str, value: torch.Tensor):
        if not self.pipelined:
            self.target.write(key, self.start, value if value.device.type == "cpu" else value.cpu())
            return
        if value.dtype != torch.float32:
            value = value.float()  # on the device, before the copy
        host = self._buffer(key, value)
        host.copy_(value, non_blocking=self.cuda)
        self._staged[key] = host

    def end_batch(self, done):
        if not self.pipelined:
            done()
            return
        event = torch.cuda.Event() if self.cuda else _Done()
        if self.cuda:
            event.record()
        self._pending.append((event, self.start, self._staged, done))
        self._slot ^= 1
        while len(self._pending) > 1:
            self._write_oldest()

    def _write_oldest(self):
        event, start, staged, done = self._pending.popleft()
        event.synchronize()
        for key, host in staged.items():
            self.target.write(key, start, host)
        done()

    def finish(self):
        while self._pending:
            self._write_oldest()
