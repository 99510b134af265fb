"""The Dask runner: ``ClusterRunner`` submits an analysis's tasks to a ``distributed.Client``
(the protocol of ``repgraph.execution.runner``; ``InProcessRunner`` runs the very same tasks in
this process). Tasks are module-level functions on small arguments (file descriptors, row ranges,
handles of earlier tasks); results come back in submission order, with the tasks' warnings."""
from __future__ import annotations

import pickle
import threading
import warnings
from dataclasses import dataclass, field

from tqdm.auto import tqdm

from .._config import config_context, get_config
from .._warnings import warn_user
from ..execution.context import without_client
from ..execution.runner import resolved
from .dask_import import require_distributed


@dataclass
class Outcome:
    """A task's value and the warnings it raised (category, message), to re-emit on the client."""

    value: object
    warnings: list = field(default_factory=list)


class Shipped:
    """An object sent to the cluster as its pickle, unpickled once per worker when a task first
    needs it (``obj``). Dask holds and moves only the frozen pickle (its array buffers out of
    band, not copied), so spilling or sending it never touches the live object, which a task may
    be using: a model with a task's hooks on it cannot be pickled. It also keeps Dask's generic
    serialisation of an ``nn.Module`` (which rebuilds its hook ``OrderedDict``s as plain dicts,
    which torch cannot hook) away from the model."""

    def __init__(self, obj):
        buffers = []
        self._payload = pickle.dumps(obj, protocol=5, buffer_callback=buffers.append)
        self._buffers = buffers
        self._obj, self._lock = obj, threading.Lock()

    def __getstate__(self):
        return {"payload": self._payload, "buffers": self._buffers}

    def __setstate__(self, state):
        # writable copies of the received buffers: arrays come back writable, as from Dask's own
        # serialisation (torch warns on read-only ones), and share them (no copy when unpickled)
        self._payload, self._buffers = state["payload"], [bytearray(b) for b in state["buffers"]]
        self._obj, self._lock = _UNPICKLED, threading.Lock()

    @property
    def obj(self):
        with self._lock:
            if self._obj is _UNPICKLED:
                self._obj = pickle.loads(self._payload, buffers=self._buffers)
            return self._obj


_UNPICKLED = object()


def _unwrapped(arg):
    return arg.value if isinstance(arg, Outcome) else arg.obj


def run_task(fn, working_memory: int, *args):
    """Run ``fn(*args)`` on a worker under the client's working-memory budget (so chunking, and
    with it every rounding, is the client's), recording warnings instead of losing them there.
    ``Outcome`` arguments (earlier tasks kept on a worker) are unwrapped to their value, ``Shipped``
    ones to their object. No client is active while it runs (``without_client``), so a public
    function a task calls computes in the worker, never submits tasks of its own."""
    args = resolved(args, (Outcome, Shipped), _unwrapped)
    with config_context(working_memory=working_memory), without_client(), \
            warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        value = fn(*args)
    return Outcome(value, [(w.category, str(w.message)) for w in caught])


def _warnings_of(outcome: Outcome) -> list:
    return outcome.warnings


def _rewarn(records):
    for category, message in records:
        warn_user(message, category)


#: MiB a worker process holds before any task runs: the interpreter with torch, dask and repgraph
#: imported measures about 340 MiB (RSS); the rest is slack for what varies with versions
WORKER_BASELINE_MIB = 384
#: share of a worker's memory above the baseline that its running tasks may plan with: the other
#: half holds the task results the worker keeps for later tasks (partial sums, moments), their
#: copies while they are serialised, and the allocator's fragmentation; it also keeps a worker at
#: full load below Dask's pause threshold (80 % of its limit) and far below the nanny's 95 %
WORKER_FRACTION = 0.5


def worker_budget(workers: dict, working_memory: int) -> int:
    """The working memory (MiB) a task may plan with on every worker of ``workers`` (the
    ``scheduler_info()["workers"]`` of a cluster: address -> ``memory_limit`` in bytes, 0 or None
    for none, and ``nthreads``): ``working_memory`` (the configured budget), or less where a
    worker's limit asks for it, ``WORKER_FRACTION`` of its memory above ``WORKER_BASELINE_MIB``
    shared among its threads (each may run a task at once); at least 1.

    Only configured limits count, never the memory free at run time, so the same inputs on the
    same cluster are chunked alike and give the same bits.

    Examples
    --------
    >>> from repgraph.distributed.runner import worker_budget
    >>> worker_budget({"a": {"memory_limit": 640 * 10**6, "nthreads": 1}}, 256)
    113
    >>> worker_budget({"a": {"memory_limit": 0, "nthreads": 4}}, 256)  # no limit: the configured budget
    256
    """
    budgets = [working_memory]
    for info in workers.values():
        limit = info.get("memory_limit")
        if limit:
            above = limit / 2**20 - WORKER_BASELINE_MIB
            budgets.append(max(1, int(WORKER_FRACTION * above / max(1, info.get("nthreads") or 1))))
    return min(budgets)


def _workers(client) -> dict:
    """Every worker's ``scheduler_info`` entry (newer Dask lists only a few unless asked for all)."""
    try:
        return client.scheduler_info(n_workers=-1)["workers"]
    except TypeError:  # Dask before the n_workers argument lists them all
        return client.scheduler_info()["workers"]


class ClusterRunner:
    """Submits the tasks to ``client``; values are gathered in submission order and the tasks'
    warnings re-emitted here in that order.

    ``working_memory`` is the configured budget capped by what the workers can hold
    (``worker_budget`` of their memory limits), so an analysis left at repgraph's defaults plans
    chunks its workers survive. It is not recorded in the results: they do not depend on it beyond
    float rounding (``repgraph.set_config``), and a cluster's result stays comparable, attrs
    included, with the in-process one; ``repgraph.execution.runner_for(client).working_memory``
    tells it.
    """

    in_process = False

    def __init__(self, client):
        self.client = client
        workers = _workers(client)
        self.working_memory = worker_budget(workers, get_config()["working_memory"])
        self.slots = max(1, sum(client.nthreads().values()))

    def share(self, obj):
        """Send ``obj`` to the cluster once; tasks given the handle receive the object."""
        return self.client.scatter([Shipped(obj)], hash=False)[0]

    def submit(self, fn, *args):
        return self.client.submit(run_task, fn, self.working_memory, *args, pure=False)

    def results(self, futures, *, desc: str, progress: bool) -> list:
        distributed = require_distributed()
        bar = tqdm(total=len(futures), desc=desc, disable=not progress, leave=False)
        try:
            for future in distributed.as_completed(futures):
                bar.update()
                if future.status == "error":
                    break  # gather raises its error now, not after every other task
            outcomes = self.client.gather(futures)
        except BaseException:
            self.client.cancel(futures)
            raise
        finally:
            bar.close()
        for outcome in outcomes:
            _rewarn(outcome.warnings)
        return [outcome.value for outcome in outcomes]

    def emit_warnings(self, futures):
        """Re-emit the warnings of tasks whose values stayed on the workers."""
        for records in self.client.gather([self.client.submit(_warnings_of, f, pure=False) for f in futures]):
            _rewarn(records)
