"""The store's writer thread: the store it writes is the in-memory capture bit for bit, with the
synchronous writer's manifest; every error of the thread reaches the caller; the thread is always
joined; at most two batches are held; a recorded value changed in place later is stored as it was.
"""
import contextlib
import json
import threading
import zlib

import numpy as np
import pytest
import torch
from torch import nn

from repgraph import capture_activations
from repgraph.hooks import stored
from repgraph.storage import npy_stream
from repgraph.models import resnet20
from repgraph.storage.store import StoreWriter, partial_path
from repgraph.hooks.writer_thread import StoreWriterThread


def _writer_threads():
    return [t for t in threading.enumerate() if t.name == "repgraph-store-writer"]


class Lin(nn.Module):
    """One linear layer then an in-place ReLU (which would change a recorded value not copied);
    raises KeyboardInterrupt on call ``fail_at``."""

    def __init__(self, fail_at=None):
        super().__init__()
        torch.manual_seed(0)
        self.lin = nn.Linear(5, 6)
        self.relu = nn.ReLU(inplace=True)
        self.calls, self.fail_at = 0, fail_at

    def forward(self, x):
        self.calls += 1
        if self.calls == self.fail_at:
            raise KeyboardInterrupt("simulated interruption")
        return self.relu(self.lin(x))


def _capture(model, X, store, **kw):
    return capture_activations(model, X, layers=["lin"], store=store, batch_size=10, progress=False, **kw)


def _manifest(folder):
    return json.loads((folder / "manifest.json").read_text())


def test_store_equals_the_in_memory_capture_and_the_synchronous_writers_manifest(tmp_path, monkeypatch):
    torch.manual_seed(0)
    model = resnet20(in_channels=1).eval()
    X, y = torch.randn(23, 1, 8, 8), torch.arange(23) % 3
    run = dict(layers="modularity", inputs=True, batch_size=5, progress=False)  # 5 batches, the last of 3
    memory = capture_activations(model, (X, y), **run)
    threaded = capture_activations(model, (X, y), store=tmp_path / "threaded", **run)
    monkeypatch.setattr(stored, "StoreWriterThread", contextlib.nullcontext)  # the writer itself, in the loop
    synchronous = capture_activations(model, (X, y), store=tmp_path / "sync", **run)
    assert threaded.layers == memory.layers
    for name in memory:
        assert threaded[name].dtype == memory[name].dtype == np.float32
        np.testing.assert_array_equal(threaded[name], memory[name])
    np.testing.assert_array_equal(threaded.labels, y.numpy())
    manifest = _manifest(tmp_path / "threaded")
    assert manifest == _manifest(tmp_path / "sync")
    for entry in manifest["layers"]:
        [chunk] = entry["chunks"]
        assert chunk == {"start": 0, "stop": 23, "crc32": zlib.crc32(memory[entry["name"]].tobytes())}


def test_an_error_of_the_thread_is_raised_in_the_caller_and_the_commits_before_it_kept(tmp_path, monkeypatch):
    real_append, calls = npy_stream.NpyStreamWriter.append, []

    def append(self, batch):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("write failed in the thread")
        return real_append(self, batch)

    monkeypatch.setattr(npy_stream.NpyStreamWriter, "append", append)
    X = torch.randn(60, 5)
    store = tmp_path / "s"
    with pytest.raises(RuntimeError, match="write failed in the thread"):
        _capture(Lin(), X, store)
    assert _writer_threads() == []
    assert not store.exists() and _manifest(partial_path(store))["committed"] == 20
    monkeypatch.setattr(npy_stream.NpyStreamWriter, "append", real_append)
    model = Lin()
    acts = _capture(model, X, store)  # resumes after the two committed batches
    assert model.calls == 4
    np.testing.assert_array_equal(acts["lin"], capture_activations(Lin(), X, layers=["lin"], progress=False)["lin"])


def test_an_error_committing_the_last_batch_is_raised_on_exit(tmp_path, monkeypatch):
    real_commit = StoreWriter.commit

    def commit(self, n_samples, data):
        if n_samples == 40:  # the last batch: no later write or commit to report it
            raise OSError(5, "Input/output error")
        return real_commit(self, n_samples, data)

    monkeypatch.setattr(StoreWriter, "commit", commit)
    with pytest.raises(OSError, match="Input/output error"):
        _capture(Lin(), torch.randn(40, 5), tmp_path / "s")
    assert _writer_threads() == [] and not (tmp_path / "s").exists()


def test_an_interrupted_forward_joins_the_thread_after_committing_the_batches_handed_to_it(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        _capture(Lin(fail_at=3), torch.randn(40, 5), tmp_path / "s")
    assert _writer_threads() == []
    assert _manifest(partial_path(tmp_path / "s"))["committed"] == 20  # as the synchronous writer did


class _GatedWriter:
    """A stand-in for ``StoreWriter`` whose ``commit`` waits for ``gate``; records what it gets."""

    def __init__(self, fail=None):
        self.gate, self.committing = threading.Event(), threading.Event()
        self.rows, self.commits, self.fail = [], [], fail

    def write(self, key, start, value):
        self.rows.append((key, start, value.clone()))

    def commit(self, n_samples, data):
        self.committing.set()
        self.gate.wait()
        if self.fail is not None:
            raise self.fail
        self.commits.append(n_samples)


def test_at_most_two_batches_are_held_and_a_value_changed_later_is_stored_as_recorded():
    writer = _GatedWriter()
    second_commit_returned = threading.Event()
    with StoreWriterThread(writer) as target:
        first = torch.ones(2, 3)
        target.write("a", 0, first)
        first.fill_(7.0)  # as an in-place op of the model would, after the hook
        target.commit(2, None)  # nothing before it: returns while the thread waits at the gate

        def second():
            target.write("a", 2, torch.full((2, 3), 2.0))
            target.commit(4, None)  # waits until batch 1 is written: its buffers are reused next
            second_commit_returned.set()

        helper = threading.Thread(target=second)
        helper.start()
        try:
            second_held = not second_commit_returned.wait(0.2) and writer.commits == []
        finally:
            writer.gate.set()  # (also when the check fails: the exit would wait for the gate)
            helper.join()
    assert second_held and writer.commits == [2, 4]
    assert [(k, s) for k, s, _ in writer.rows] == [("a", 0), ("a", 2)]
    torch.testing.assert_close(writer.rows[0][2], torch.ones(2, 3), rtol=0, atol=0)
    torch.testing.assert_close(writer.rows[1][2], torch.full((2, 3), 2.0), rtol=0, atol=0)
    assert _writer_threads() == []


def test_the_threads_error_wins_over_the_blocks_and_keeps_it_as_context():
    writer = _GatedWriter(fail=OSError(28, "No space left on device"))
    writer.gate.set()
    with pytest.raises(OSError, match="No space") as info:
        with StoreWriterThread(writer) as target:
            target.write("a", 0, torch.ones(2, 3))
            target.commit(2, None)
            writer.committing.wait()
            raise ValueError("the forward failed too")
    assert isinstance(info.value.__context__, ValueError)
    assert _writer_threads() == []


def test_an_interrupt_while_joining_still_joins_the_thread():
    writer = _GatedWriter()
    with pytest.raises(KeyboardInterrupt):
        with StoreWriterThread(writer) as target:
            target.write("a", 0, torch.ones(2, 3))
            target.commit(2, None)
            writer.committing.wait()
            join, joins = target._thread.join, []

            def interrupted_join():  # a Ctrl-C while the exit waits for the thread, then a plain join
                joins.append(1)
                if len(joins) == 1:
                    raise KeyboardInterrupt
                writer.gate.set()
                join()

            target._thread.join = interrupted_join
    assert len(joins) == 2 and _writer_threads() == []
