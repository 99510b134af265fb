"""A capture on a cluster that is abandoned while its shards still run on the workers (its client
closed, or one shard failed) never writes into another capture's store: the next capture of the
same folder returns exactly its own activations, and no file of its store changes afterwards. A
capture checks its shards' rows on disk before it publishes them, and the next writer of a store
deletes the folders of abandoned captures, leaving an interrupted in-process capture to resume."""
import copy
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

distributed = pytest.importorskip("distributed")

import repgraph as rg  # noqa: E402
from repgraph.execution.runner import InProcessRunner  # noqa: E402
from repgraph.hooks import DamagedStoreError  # noqa: E402
from repgraph.hooks.sharded_capture import capture_shards  # noqa: E402
from repgraph.storage.npy_stream import HEADER_BYTES  # noqa: E402
from repgraph.storage.store import capture_folder, partial_path  # noqa: E402

N, BATCH, SHARD = 2400, 100, 600  # 2 workers of 1 thread: 4 shards of 600 samples, 6 batches each


@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None,
                                  silence_logs=40) as local, distributed.Client(local) as client:
        client.run(__import__, "repgraph.hooks.sharded_capture")
        yield local, client


class _Paced(nn.Module):
    """The identity on batches whose column 0 holds the sample index. It marks each batch's first
    index in ``marks`` when it starts the batch and sleeps ``delay`` seconds on every batch after
    the first shard, ``hold`` seconds on the last batch; on the batch starting at ``fail_at`` it
    raises once another shard is running."""

    def __init__(self, marks: Path, delay: float = 0.0, hold: float = 0.0, fail_at: int | None = None):
        super().__init__()
        self.marks, self.delay, self.hold, self.fail_at = str(marks), delay, hold, fail_at

    def forward(self, x):
        first = int(x[0, 0])
        Path(self.marks, str(first)).touch()
        if first == self.fail_at:
            deadline = time.monotonic() + 20
            while not _slow_shard_started(Path(self.marks), but=first) and time.monotonic() < deadline:
                time.sleep(0.05)
            raise RuntimeError("a poisoned batch")
        time.sleep((self.delay if first >= SHARD else 0.0) + (self.hold if first == N - BATCH else 0.0))
        return x


def _slow_shard_started(marks: Path, but=None) -> bool:
    return any((marks / str(start)).exists() for start in range(SHARD, N, SHARD) if start != but)


def _model(seed: int, marks: Path, **pace) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(_Paced(marks, **pace), nn.Linear(4, 8))


def _data() -> torch.Tensor:
    x = torch.randn(N, 4, generator=torch.Generator().manual_seed(3))
    x[:, 0] = torch.arange(N, dtype=torch.float32)
    return x


def _snapshot(folder: Path) -> dict:
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir())}


def _wait_until_workers_idle(client, timeout=60):
    """Until no task runs on any worker (also tasks whose client is gone, which keep running)."""
    deadline = time.monotonic() + timeout
    while any(client.run(lambda dask_worker: len(dask_worker.state.executing)).values()):
        assert time.monotonic() < deadline, "the abandoned shards did not finish"
        time.sleep(0.1)


@pytest.mark.parametrize("abandon", ["client closed", "shard failed"])
def test_an_abandoned_cluster_capture_never_writes_into_the_next_capture(cluster, tmp_path, abandon):
    local, client = cluster
    marks, store, x = tmp_path / "marks", tmp_path / "acts", _data()
    marks.mkdir()
    kwargs = {"layers": ["1"], "batch_size": BATCH, "progress": False}
    model_a = _model(0, marks, delay=0.5, fail_at=1800 if abandon == "shard failed" else None)
    errors = []
    with distributed.Client(local) as doomed:
        def capture_a():
            try:
                rg.capture_activations(model_a, x, store=store, client=doomed, **kwargs)
            except BaseException as err:  # noqa: BLE001 - the abandoned capture's error, checked below
                errors.append(err)
        thread = threading.Thread(target=capture_a)
        thread.start()
        deadline = time.monotonic() + 30
        while not _slow_shard_started(marks):
            assert time.monotonic() < deadline and thread.is_alive(), "no shard of model_a started"
            time.sleep(0.05)
        if abandon == "shard failed":
            thread.join(30)
    thread.join(30)
    assert not thread.is_alive() and errors and not store.exists()
    # in process; model_a's shards (3 s each) finish while its last batch is held, its other rows written
    model_b = _model(1, marks, hold=4.0)
    got = rg.capture_activations(model_b, x, store=store, **kwargs)
    stored = _snapshot(store)
    fast_b = copy.deepcopy(model_b)
    fast_b[0].hold = 0.0
    expected = rg.capture_activations(fast_b, x, **kwargs)
    wrong = int((got["1"] != expected["1"]).any(axis=1).sum())
    assert wrong == 0, f"{wrong} of {N} rows are not model_b's"
    _wait_until_workers_idle(client)
    assert _snapshot(store) == stored
    assert np.array_equal(rg.Activations.load(store, verify=True)["1"], expected["1"])
    assert not list(tmp_path.glob("acts.partial*"))  # the abandoned capture deleted its folder


class _Overwriter(InProcessRunner):
    """Runs the tasks here; once the shards of the capture into ``store`` are in, another writer
    changes one row of its folder's first file."""

    def __init__(self, store: Path):
        super().__init__()
        self.store = store

    def results(self, handles, *, desc, progress):
        values = super().results(handles, desc=desc, progress=progress)
        if desc == "capture":
            (folder,) = self.store.parent.glob(self.store.name + ".partial-*")
            with open(folder / "layer_0000.npy", "r+b") as fh:
                fh.seek(HEADER_BYTES + 5 * 8 * 4)
                fh.write(np.full(8, 7.0, np.float32).tobytes())
        return values


def test_rows_changed_on_disk_before_publishing_are_caught_and_nothing_is_published(tmp_path):
    torch.manual_seed(0)
    model, x, store = nn.Sequential(nn.Linear(4, 8)), torch.randn(40, 4), tmp_path / "acts"
    kwargs = {"layers": ["0"], "batch_size": 8, "progress": False}
    with pytest.raises(DamagedStoreError, match=r"rows 0:40 of layer '0' changed on disk"):
        capture_shards(model, x, store=store, runner=_Overwriter(store), **kwargs)
    assert not store.exists() and not list(tmp_path.glob("acts.partial*"))
    got = capture_shards(model, x, store=store, runner=InProcessRunner(), **kwargs)
    assert np.array_equal(got["0"], rg.capture_activations(model, x, **kwargs)["0"])


class _Interrupted(nn.Module):
    """A linear layer that counts its calls and raises KeyboardInterrupt on call ``fail_at``."""

    def __init__(self, fail_at=None):
        super().__init__()
        torch.manual_seed(0)
        self.lin, self.fail_at, self.calls = nn.Linear(4, 8), fail_at, 0

    def forward(self, x):
        self.calls += 1
        if self.calls == self.fail_at:
            raise KeyboardInterrupt
        return self.lin(x)


def test_the_next_writer_deletes_abandoned_folders_and_an_interrupted_capture_resumes(tmp_path):
    x, store = torch.randn(40, 4), tmp_path / "acts"
    kwargs = {"layers": ["lin"], "batch_size": 10, "progress": False}
    model = _Interrupted(fail_at=3)  # batches 1 and 2 are committed
    with pytest.raises(KeyboardInterrupt):
        rg.capture_activations(model, x, store=store, **kwargs)
    abandoned = capture_folder(store, "0123abcd")  # left by a cluster capture whose client was killed
    abandoned.mkdir()
    (abandoned / "layer_0000.npy").write_bytes(b"rows of another model")
    other_store = capture_folder(tmp_path / "acts2", "0123abcd")
    other_store.mkdir()
    done = model.calls  # the same model resumes (past call fail_at: it raises no more)
    got = rg.capture_activations(model, x, store=store, **kwargs)
    assert model.calls - done == 2  # resumed from the in-process capture's acts.partial: batches 3 and 4 only
    assert np.array_equal(got["lin"], rg.capture_activations(model, x, **kwargs)["lin"])
    assert not abandoned.exists() and not partial_path(store).exists() and other_store.exists()
