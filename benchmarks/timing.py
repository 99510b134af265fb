"""Wall-clock timing shared by the benchmark scripts (run as ``python benchmarks/<script>.py``)."""
from __future__ import annotations

import time

import torch


def timed(fn, repeats: int = 1):
    """``(seconds, result)`` of ``fn()``: the best of ``repeats`` runs, CUDA work synchronised."""
    best, out = float("inf"), None
    for _ in range(repeats):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        start = time.perf_counter()
        out = fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return best, out
