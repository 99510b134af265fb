"""The Dask runner: ``ClusterRunner`` submits an analysis's tasks to a ``distributed.Client``
(the protocol of ``repgraph.execution.runner``; ``InProcessRunner`` runs the very same tasks in
this process). Tasks are module-level functions on small arguments (file descriptors, row ranges,
handles of earlier tasks); results come back in submission order, with the tasks' warnings."""
from __future__ import annotations

import pickle
import threading
import warnings
from dataclasses import dataclass, field

from tqdm import tqdm

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


class ClusterRunner:
    """Submits the tasks to ``client``; values are gathered in submission order and the tasks'
    warnings re-emitted here in that order."""

    in_process = False

    def __init__(self, client):
        self.client = client
        self.working_memory = get_config()["working_memory"]
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
