"""The plan shared by analyses that are sums over samples (filter similarity, HRank, CHIP): one
task per range of rows (images) per layer runs the analysis's kernel on its rows, and the partial
sums are added in range order, so the result does not depend on the runner."""
from __future__ import annotations

import math

import numpy as np

from .runner import task_rows


def row_ranges(source, runner, bytes_per_value: int = 8) -> list[tuple[int, int]]:
    """``(start, stop)`` ranges of the rows of ``source`` (a ``LayerSource``), one per task: within
    the working memory at ``bytes_per_value`` per value (float64 by default; ``task_rows``)."""
    rows = task_rows(source.n, 4 * bytes_per_value * math.prod(source.shape[1:]), runner)
    return [(a, min(source.n, a + rows)) for a in range(0, source.n, rows)]


def chunk_sum(kernel, rows, start: int, stop: int, *args) -> np.ndarray:
    """``kernel(rows[start:stop], *args)``'s sum over those rows (a kernel returns ``(sum, count)``),
    as float64 numpy."""
    total, _ = kernel(rows[start:stop], *args)
    return total.cpu().numpy()


def sum_over_rows(runner, sources, kernel, args_of, *, desc: str, progress: bool) -> list[np.ndarray]:
    """For each source: the sum over its row ranges of ``chunk_sum(kernel, ...)`` with the
    arguments ``args_of(source)``, added in range order."""
    tasks, plan = [], []
    for source in sources:
        ranges = row_ranges(source, runner)
        plan.append((len(tasks), len(ranges)))
        tasks += [runner.submit(chunk_sum, kernel, source.data, a, b, *args_of(source)) for a, b in ranges]
    parts = runner.results(tasks, desc=desc, progress=progress)
    totals = []
    for first, count in plan:
        total = parts[first]
        for part in parts[first + 1:first + count]:
            total = total + part
        totals.append(total)
    return totals


def mean_over_rows(runner, sources, kernel, args_of, *, desc: str, progress: bool = False) -> list[np.ndarray]:
    """Per source: ``sum_over_rows`` divided by its number of rows."""
    totals = sum_over_rows(runner, sources, kernel, args_of, desc=desc, progress=progress)
    return [total / source.n for source, total in zip(sources, totals)]
