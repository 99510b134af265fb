"""Runners: how an analysis executes its plan. An analysis is written once, as module-level kernel
tasks over chunks (a batch, a row range of a layer, a pair of layers) and a combine step; a runner
runs the tasks. ``InProcessRunner`` (the default) runs them one after another in this process;
a registered provider (``repgraph.distributed``: Dask) gives a runner that sends them to a
cluster. Both have the same protocol:

- ``in_process``: whether the tasks run here, in order (so a task's arguments need not travel);
- ``slots``: how many tasks can run at once (worker threads);
- ``working_memory``: the budget in MiB that tasks are planned with (chunk sizes, tiles) and
  run under, the same on the client and the workers;
- ``share(obj)``: a handle of ``obj`` for tasks (sent once);
- ``submit(fn, *args)``: a handle of ``fn(*args)``; handles of earlier tasks (also inside lists
  and tuples) are replaced by their values;
- ``results(handles, desc=, progress=)``: the values, in submission order;
- ``emit_warnings(handles)``: raise here the warnings of tasks whose values stayed remote.
"""
from __future__ import annotations

import contextlib
import math

from tqdm.auto import tqdm

from .._arrays import row_chunk
from .._config import config_context, get_config
from .context import active_client, provider_of


def resolved(arg, kind, value):
    """``arg`` with every ``kind`` instance in it, also inside lists and tuples, replaced by
    ``value(instance)``."""
    if isinstance(arg, kind):
        return value(arg)
    if type(arg) in (list, tuple):
        return type(arg)(resolved(a, kind, value) for a in arg)
    return arg


class _Deferred:
    """An in-process task, run when first needed (its arguments first), its value kept."""

    def __init__(self, fn, args):
        self.fn, self.args, self.done, self.value = fn, args, False, None

    def result(self):
        if not self.done:
            self.value = self.fn(*resolved(self.args, _Deferred, _Deferred.result))
            self.done, self.fn, self.args = True, None, None
        return self.value


class InProcessRunner:
    """Runs the tasks in this process, in submission order; warnings are raised where they occur."""

    in_process = True
    slots = 1

    def __init__(self):
        self.working_memory = get_config()["working_memory"]

    def share(self, obj):
        return obj

    def submit(self, fn, *args):
        return _Deferred(fn, args)

    def results(self, handles, *, desc: str, progress: bool) -> list:
        return [h.result() for h in tqdm(handles, desc=desc, disable=not progress, leave=False)]

    def emit_warnings(self, handles):
        """Warnings of tasks kept for later ones: raised already, when they ran."""


def runner_for(client=None):
    """The runner of ``active_client(client)`` (its registered provider's), or an
    ``InProcessRunner`` when there is none."""
    client = active_client(client)
    return InProcessRunner() if client is None else provider_of(client).make(client)


@contextlib.contextmanager
def planning(client=None):
    """The runner of ``client`` (as ``runner_for``), with its working-memory budget in force here
    for the ``with`` block, so that the plan's chunks are those the tasks run under."""
    runner = runner_for(client)
    with config_context(working_memory=runner.working_memory):
        yield runner


def tree_sum(runner, add, handles: list):
    """One handle to ``add``-ed values of ``handles``, summed pairwise in a fixed binary tree (so
    the rounding does not depend on which worker finished first); the sums run as tasks."""
    if not handles:
        raise ValueError("tree_sum needs at least one handle.")
    while len(handles) > 1:
        pairs = [runner.submit(add, handles[i], handles[i + 1]) for i in range(0, len(handles) - 1, 2)]
        handles = pairs + handles[len(pairs) * 2:]
    return handles[0]


def task_rows(n: int, bytes_per_row: int, runner, *, multiple: int = 1) -> int:
    """Rows per task: within the working-memory budget and, on a cluster, small enough that every
    slot gets about two tasks (in process one task takes all that fit); a multiple of
    ``multiple`` (except when one task takes all)."""
    spread = n if runner.in_process else math.ceil(n / (2 * runner.slots))
    rows = min(row_chunk(n, bytes_per_row), spread)
    rows = max(multiple, rows // multiple * multiple)
    return min(n, rows)
