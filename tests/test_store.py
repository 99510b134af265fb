"""The activation store never hands back wrong data: fingerprint of every input, label and reducer;
concurrent writers; checksums; resume after kill -9; a full disk; the README example run twice.

Expected activations always come from running the model's layer by hand on the inputs
(``model.lin(X)``), never from the store under test.
"""
import errno
import json
import multiprocessing
import os
import signal
import time

import numpy as np
import pytest
import torch
from torch import nn

from repgraph import Activations, capture_activations
from repgraph.storage import npy_stream
from repgraph.storage.store import DamagedStoreError, partial_path


class Lin(nn.Module):
    """One linear layer; counts its forward calls (reuse must not run the model); optionally
    raises on call ``fail_at`` (an interrupted capture) or sleeps ``delay`` s per batch."""

    def __init__(self, seed=0, width=8, fail_at=None, delay=0.0):
        super().__init__()
        torch.manual_seed(seed)
        self.lin = nn.Linear(5, width)
        self.calls, self.fail_at, self.delay = 0, fail_at, delay

    def forward(self, x):
        self.calls += 1
        if self.calls == self.fail_at:
            raise KeyboardInterrupt("simulated interruption")
        if self.delay:
            time.sleep(self.delay)
        return self.lin(x)


def _expected(model, X):
    with torch.no_grad():
        return model.lin(torch.as_tensor(X, dtype=torch.float32)).numpy()


def _data(n=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 5, generator=g), torch.arange(n) % 4


def _capture(model, data, store, **kw):
    kw.setdefault("batch_size", 10)
    return capture_activations(model, data, layers=["lin"], store=store, progress=False, **kw)


# --- A1: the fingerprint covers every input, every label and the reducer's code ------------------

def test_changing_a_later_input_or_a_label_is_refused_not_stale(tmp_path):
    model = Lin()
    X, y = _data()
    _capture(model, (X, y), tmp_path / "s")
    X2 = X.clone()
    X2[35, 0] += 1.0  # in the 4th batch of 10; the old fingerprint hashed only the first batch
    with pytest.raises(ValueError, match="differ in: data"):
        _capture(model, (X2, y), tmp_path / "s")
    y2 = y.clone()
    y2[39] = 0
    with pytest.raises(ValueError, match="differ in: data"):
        _capture(model, (X, y2), tmp_path / "s")
    with pytest.raises(ValueError, match="differ in: data"):  # labels dropped
        _capture(model, X, tmp_path / "s")
    model.calls = 0
    again = _capture(model, (X, y), tmp_path / "s")
    assert model.calls == 0  # reused, and the reuse check ran no forward pass
    np.testing.assert_allclose(again["lin"], _expected(model, X), atol=1e-6)
    np.testing.assert_array_equal(again.labels, y.numpy())


def test_only_the_batch_size_changed_reuses(tmp_path):
    model = Lin()
    X, y = _data()
    _capture(model, (X, y), tmp_path / "s", batch_size=10)
    model.calls = 0
    for batch_size in (7, 40, 64):
        acts = _capture(model, (X, y), tmp_path / "s", batch_size=batch_size)
        np.testing.assert_allclose(acts["lin"], _expected(model, X), atol=1e-6)
    assert model.calls == 0


def _scaler(k):
    return lambda t: t * k


def test_reducer_identity_is_its_code_and_closure_not_its_name(tmp_path):
    model = Lin()
    X, _ = _data()
    _capture(model, X, tmp_path / "s", reduce=lambda t: t * 2)
    with pytest.raises(ValueError, match="differ in: reduce"):
        _capture(model, X, tmp_path / "s", reduce=lambda t: t * 3)  # same name '<lambda>', other code
    _capture(model, X, tmp_path / "c", reduce=_scaler(2))
    with pytest.raises(ValueError, match="differ in: reduce"):
        _capture(model, X, tmp_path / "c", reduce=_scaler(3))  # same code, other closure value
    model.calls = 0
    acts = _capture(model, X, tmp_path / "c", reduce=_scaler(2))  # an equal new closure is the same reducer
    assert model.calls == 0
    np.testing.assert_allclose(acts["lin"], 2 * _expected(model, X), atol=1e-5)
    with pytest.raises(ValueError, match="differ in: reduce"):
        _capture(model, X, tmp_path / "c", reduce="flatten")


def test_other_model_options_or_sample_count_are_refused(tmp_path):
    X, _ = _data()
    _capture(Lin(seed=0), X, tmp_path / "s")
    with pytest.raises(ValueError, match="differ in: model"):
        _capture(Lin(seed=1), X, tmp_path / "s")
    with pytest.raises(ValueError, match="differ in: max_samples"):
        _capture(Lin(seed=0), X, tmp_path / "s", max_samples=20)
    with pytest.raises(ValueError, match="differ in: inputs"):
        _capture(Lin(seed=0), X, tmp_path / "s", inputs=True)
    with pytest.raises(ValueError, match="differ in: data"):
        _capture(Lin(seed=0), X[:30], tmp_path / "s")


def test_dict_batches_hash_every_key(tmp_path):
    class Kw(nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.emb = nn.Embedding(20, 4)

        def forward(self, input_ids, attention_mask):
            return self.emb(input_ids) * attention_mask[..., None]

    ids = torch.randint(0, 20, (12, 6), generator=torch.Generator().manual_seed(0))
    mask = torch.ones(12, 6, dtype=torch.long)
    data = {"input_ids": ids, "attention_mask": mask, "labels": torch.arange(12) % 3}
    run = dict(layers=["emb"], reduce="token_mean", progress=False, batch_size=5)
    capture_activations(Kw(), data, store=tmp_path / "s", **run)
    mask2 = mask.clone()
    mask2[11, 5] = 0
    with pytest.raises(ValueError, match="differ in: data"):
        capture_activations(Kw(), {**data, "attention_mask": mask2}, store=tmp_path / "s", **run)


# --- A2: concurrent writers ----------------------------------------------------------------------

N_SLOW, BATCH_SLOW = 200, 10


def _worker(store, seed, out, go, delay):
    torch.set_num_threads(1)  # a forked child must not reuse the parent's OpenMP pool
    X, _ = _data(N_SLOW)
    model = Lin(seed=seed, width=64, delay=delay)
    open(out + ".ready", "w").close()
    while go and not os.path.exists(go):
        time.sleep(0.001)
    try:
        acts = _capture(model, X, store, batch_size=BATCH_SLOW)
        result = {"own": bool(np.allclose(acts["lin"], _expected(model, X), atol=1e-5)), "calls": model.calls}
    except Exception as err:  # noqa: BLE001 - reported to the test
        result = {"error": f"{type(err).__name__}: {err}"}
    with open(out, "w") as fh:
        json.dump(result, fh)


def _race(tmp_path, seeds, delay=0.01):
    ctx = multiprocessing.get_context("fork")
    go = str(tmp_path / "go")
    outs = [str(tmp_path / f"out{i}") for i in range(len(seeds))]
    procs = [ctx.Process(target=_worker, args=(str(tmp_path / "store"), s, o, go, delay)) for s, o in zip(seeds, outs)]
    for p in procs:
        p.start()
    while not all(os.path.exists(o + ".ready") for o in outs):
        time.sleep(0.001)
    open(go, "w").close()  # both start their capture at once
    for p in procs:
        p.join(60)
    return [json.loads(open(o).read()) for o in outs]


def test_two_writers_of_the_same_capture_one_writes_the_other_waits_and_reuses(tmp_path):
    results = _race(tmp_path, seeds=(0, 0))
    assert all(r.get("own") for r in results), results
    assert sorted(r["calls"] for r in results) == [0, N_SLOW // BATCH_SLOW]  # one computed, one reused


def test_a_writer_of_another_capture_fails_and_no_one_gets_foreign_activations(tmp_path):
    results = _race(tmp_path, seeds=(0, 1))
    errors = [r for r in results if "error" in r]
    assert len(errors) == 1 and "another" in errors[0]["error"], results
    winner = next(i for i, r in enumerate(results) if "own" in r)
    assert results[winner]["own"]
    X, _ = _data(N_SLOW)
    stored = Activations.load(tmp_path / "store", verify=True)
    np.testing.assert_allclose(stored["lin"], _expected(Lin(seed=(0, 1)[winner], width=64), X), atol=1e-5)


# --- A3: integrity -------------------------------------------------------------------------------

def _one_store(tmp_path):
    model = Lin()
    X, y = _data()
    store = tmp_path / "s"
    _capture(model, (X, y), store)
    return model, X, y, store


def test_truncated_file_names_store_layer_and_file(tmp_path):
    model, X, y, store = _one_store(tmp_path)
    path = store / "layer_0000.npy"
    path.write_bytes(path.read_bytes()[:-40])
    pattern = rf"{store}.*layer 'lin', file layer_0000.npy.*truncated"
    with pytest.raises(DamagedStoreError, match=pattern):
        Activations.load(store)
    with pytest.raises(DamagedStoreError, match=pattern):
        _capture(model, (X, y), store)


def test_bit_flip_is_caught_by_verify_and_by_reuse(tmp_path):
    model, X, y, store = _one_store(tmp_path)
    path = store / "layer_0000.npy"
    raw = bytearray(path.read_bytes())
    raw[npy_stream.HEADER_BYTES + 100] ^= 0x04
    path.write_bytes(bytes(raw))
    assert Activations.load(store).n_samples == 40  # size and header are intact: only verify reads the data
    with pytest.raises(DamagedStoreError, match=r"layer 'lin', file layer_0000.npy: rows 0:40 do not match"):
        Activations.load(store, verify=True)
    with pytest.raises(DamagedStoreError, match="layer_0000.npy"):
        _capture(model, (X, y), store)


def test_missing_file_damaged_header_or_manifest(tmp_path):
    model, X, y, store = _one_store(tmp_path)
    (store / "labels.npy").unlink()
    with pytest.raises(DamagedStoreError, match=r"layer 'labels', file labels.npy: the file is missing"):
        Activations.load(store)
    _, _, _, store = _one_store(tmp_path / "h")
    path = store / "layer_0000.npy"
    path.write_bytes(b"garbage!" + path.read_bytes()[8:])
    with pytest.raises(DamagedStoreError, match="layer_0000.npy: its .npy header is damaged"):
        Activations.load(store)
    _, _, _, store = _one_store(tmp_path / "m")
    (store / "manifest.json").write_text("{not json")
    with pytest.raises(DamagedStoreError, match=rf"{store}: manifest.json is damaged \(not valid JSON"):
        Activations.load(store)
    _, _, _, store = _one_store(tmp_path / "v")
    manifest = json.loads((store / "manifest.json").read_text())
    manifest["layers"][0]["name"] = "other"  # valid JSON, wrong content
    (store / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(DamagedStoreError, match="does not match its checksum"):
        Activations.load(store)
    with pytest.raises(DamagedStoreError, match="does not match its checksum"):
        _capture(model, (X, y), store)


# --- A4: resume ----------------------------------------------------------------------------------

def test_interrupted_capture_resumes_from_the_last_committed_batch(tmp_path):
    X, y = _data()
    store = tmp_path / "s"
    model = Lin(fail_at=3)  # batches 1 and 2 are committed, batch 3 raises
    with pytest.raises(KeyboardInterrupt):
        _capture(model, (X, y), store)
    assert not store.exists()
    progress = json.loads((partial_path(store) / "manifest.json").read_text())
    assert progress["complete"] is False and progress["committed"] == 20
    with pytest.raises(ValueError, match="no complete"):
        Activations.load(partial_path(store))
    done = model.calls  # the same model resumes (past call fail_at: it raises no more)
    acts = _capture(model, (X, y), store, batch_size=7)  # another batch size: batch 14:21 straddles 20
    assert model.calls - done == 4  # samples 20:21, 21:28, 28:35, 35:40 only
    np.testing.assert_allclose(acts["lin"], _expected(model, X), atol=1e-6)
    np.testing.assert_array_equal(acts.labels, y.numpy())
    assert not partial_path(store).exists()


def test_resume_cuts_uncommitted_rows_and_restarts_on_other_data(tmp_path):
    X, y = _data()
    store = tmp_path / "s"
    model = Lin(fail_at=3)
    with pytest.raises(KeyboardInterrupt):
        _capture(model, (X, y), store)
    with open(partial_path(store) / "layer_0000.npy", "ab") as fh:  # a batch written but not committed
        fh.write(np.full((10, 8), 7.0, np.float32).tobytes())
    done = model.calls
    acts = _capture(model, (X, y), store)
    assert model.calls - done == 2
    np.testing.assert_allclose(acts["lin"], _expected(model, X), atol=1e-6)

    other = tmp_path / "o"
    model = Lin(fail_at=3)
    with pytest.raises(KeyboardInterrupt):
        _capture(model, (X, y), other)
    done = model.calls
    X2 = X.clone()
    X2[3] += 1  # a committed sample changed: the interrupted part cannot be kept
    acts = _capture(model, (X2, y), other)
    assert model.calls - done == 4
    np.testing.assert_allclose(acts["lin"], _expected(model, X2), atol=1e-6)


def _slow_capture(store, n, batch):
    torch.set_num_threads(1)
    X, _ = _data(n)
    _capture(Lin(width=64, delay=0.02), X, store, batch_size=batch)


def test_kill_9_half_way_then_resume(tmp_path):
    n, batch = 200, 10
    store = tmp_path / "s"
    child = multiprocessing.get_context("fork").Process(target=_slow_capture, args=(str(store), n, batch))
    child.start()
    progress = partial_path(store) / "manifest.json"
    deadline = time.monotonic() + 60
    committed = 0
    while committed < n // 2 and time.monotonic() < deadline:
        try:
            committed = json.loads(progress.read_text())["committed"]
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.002)
    os.kill(child.pid, signal.SIGKILL)
    child.join()
    assert n // 2 <= committed < n and not store.exists()
    model = Lin(width=64, delay=0.02)  # the same model (its delay is an attribute its forward reads)
    X, _ = _data(n)
    acts = _capture(model, X, store, batch_size=batch)
    done_before = json.loads((store / "manifest.json").read_text())["n_samples"]
    assert done_before == n
    assert model.calls <= (n - n // 2) // batch  # at most the second half is computed again
    np.testing.assert_allclose(acts["lin"], _expected(model, X), atol=1e-5)


# --- A5: a full disk -----------------------------------------------------------------------------

def test_full_disk_leaves_no_partial_files(tmp_path, monkeypatch):
    X, _ = _data()
    store = tmp_path / "s"
    real_append, calls = npy_stream.NpyStreamWriter.append, []

    def append(self, batch):
        calls.append(1)
        if len(calls) == 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_append(self, batch)

    monkeypatch.setattr(npy_stream.NpyStreamWriter, "append", append)
    with pytest.raises(OSError, match="disk is full.*partial files were deleted") as info:
        _capture(Lin(), X, store)
    assert info.value.errno == errno.ENOSPC
    assert not store.exists() and not partial_path(store).exists()


def _capture_under_file_size_limit(store):
    import resource
    torch.set_num_threads(1)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))
    try:
        _capture(Lin(width=64), _data(200)[0], store, batch_size=10)
    except OSError as err:
        os._exit(100 + err.errno)
    os._exit(0)


def test_file_size_limit_like_a_full_disk(tmp_path):
    store = tmp_path / "s"
    child = multiprocessing.get_context("fork").Process(target=_capture_under_file_size_limit, args=(str(store),))
    child.start()
    child.join(60)
    assert child.exitcode == 100 + errno.EFBIG  # a real write failed and came back as OSError
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.lock"]


# --- stores written by save, foreign folders -----------------------------------------------------

def test_saved_store_and_foreign_folder_are_not_reused(tmp_path):
    X, _ = _data()
    Activations({"lin": np.zeros((40, 8))}).save(tmp_path / "saved")
    with pytest.raises(ValueError, match="saved with Activations.save"):
        _capture(Lin(), X, tmp_path / "saved")
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not a repgraph activation store"):
        _capture(Lin(), X, foreign)
    with pytest.raises(ValueError, match="not an activation store"):
        Activations({"a": np.ones((2, 1))}).save(foreign)
    assert (foreign / "notes.txt").read_text() == "mine"
    empty = tmp_path / "empty"
    empty.mkdir()
    np.testing.assert_allclose(_capture(Lin(), X, empty)["lin"], _expected(Lin(), X), atol=1e-6)


def test_save_replaces_a_store_atomically(tmp_path):
    Activations({"a": np.zeros((3, 2))}).save(tmp_path / "s")
    Activations({"b": np.ones((5, 1))}, labels=["x"] * 5).save(tmp_path / "s")
    back = Activations.load(tmp_path / "s", verify=True)
    assert back.layers == ["b"] and back.labels.tolist() == ["x"] * 5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s", "s.lock"]


# --- C: the README's ten-line example, run twice -------------------------------------------------

def test_readme_example_twice_into_one_store(tmp_path):
    from repgraph.datasets import digits
    from repgraph.models import resnet20
    test = digits("test", size=16)
    store = tmp_path / "acts"
    run = dict(layers="modularity", store=store, max_samples=64, progress=False)
    capture_activations(resnet20(num_classes=10, in_channels=1), test, **run)  # unseeded, as the README had it
    with pytest.raises(ValueError, match=r"differ in: model \(its weights: an unseeded model.*torch.manual_seed"):
        capture_activations(resnet20(num_classes=10, in_channels=1), test, **run)
    seeded = tmp_path / "seeded"
    torch.manual_seed(0)
    first = capture_activations(resnet20(num_classes=10, in_channels=1), test, **{**run, "store": seeded})
    torch.manual_seed(0)
    written = {p.name: p.stat().st_mtime_ns for p in seeded.iterdir()}
    second = capture_activations(resnet20(num_classes=10, in_channels=1), test, **{**run, "store": seeded})
    assert {p.name: p.stat().st_mtime_ns for p in seeded.iterdir()} == written  # reused, not rewritten
    for name in first:
        np.testing.assert_array_equal(second[name], first[name])


def test_a_store_assembled_from_shards_verifies_and_is_reused(tmp_path):
    """The procedure store.py documents for several writers: preallocated files, rows written at
    their offsets with one CRC-32 per shard, one manifest, one rename."""
    import zlib
    from repgraph.hooks import ActivationRecorder
    from repgraph.hooks.batches import iter_batches
    from repgraph.hooks.fingerprint import DataDigest
    from repgraph.storage.npy_stream import HEADER_BYTES, npy_header
    from repgraph.storage.store import (StoreLock, complete_manifest, file_entry, publish, write_manifest)
    from repgraph.hooks.stored import capture_config
    model = Lin()
    X, y = _data()
    store, n, width = tmp_path / "s", 40, 8
    lock = StoreLock(store)
    lock.acquire()
    partial = partial_path(store)
    partial.mkdir()
    with open(partial / "layer_0000.npy", "wb") as fh:
        fh.write(npy_header(np.dtype(np.float32), (n, width)))
        fh.truncate(HEADER_BYTES + n * width * 4)
    chunks = []
    for start, stop in ((0, 15), (15, 40)):  # two workers
        rows = np.ascontiguousarray(_expected(model, X[start:stop]))
        with open(partial / "layer_0000.npy", "r+b") as fh:
            fh.seek(HEADER_BYTES + start * width * 4)
            fh.write(rows.data)
        chunks.append({"start": start, "stop": stop, "crc32": zlib.crc32(rows.data)})
    labels = np.ascontiguousarray(y.numpy())
    (partial / "labels.npy").write_bytes(npy_header(labels.dtype, labels.shape) + labels.tobytes())
    digest = DataDigest()
    for batch in iter_batches((X, y), 10)[0]:
        digest.update(batch)
    rec = ActivationRecorder(model, ["lin"], reducer="flatten")
    fingerprint = {**capture_config(model, rec, None, 0, "auto", None), "data": digest.snapshot()}
    write_manifest(partial, complete_manifest(
        [file_entry("lin", "layer_0000.npy", (n, width), np.float32, chunks)],
        file_entry(None, "labels.npy", labels.shape, labels.dtype,
                   [{"start": 0, "stop": n, "crc32": zlib.crc32(labels.data)}]), fingerprint, {}))
    publish(partial, store)
    lock.release()
    np.testing.assert_allclose(Activations.load(store, verify=True)["lin"], _expected(model, X), atol=1e-6)
    model.calls = 0
    reused = _capture(model, (X, y), store)  # the in-process capture reuses the assembled store
    assert model.calls == 0
    np.testing.assert_array_equal(reused.labels, y.numpy())


def test_checksums_in_several_chunks_as_shards_would_write_them(tmp_path):
    from repgraph.storage.npy_stream import crc32_of
    from repgraph.storage.store import read_manifest, write_manifest
    model, X, y, store = _one_store(tmp_path)
    manifest = read_manifest(store)
    entry = manifest["layers"][0]
    stride = 8 * 4  # 8 float32 features per sample
    entry["chunks"] = [{"start": a, "stop": b, "crc32": crc32_of(store / entry["file"], 512 + a * stride, (b - a) * stride)}
                       for a, b in ((0, 15), (15, 40))]  # e.g. two workers' rows
    write_manifest(store, manifest)
    np.testing.assert_allclose(Activations.load(store, verify=True)["lin"], _expected(model, X), atol=1e-6)
    entry["chunks"][1]["crc32"] ^= 1
    write_manifest(store, manifest)
    with pytest.raises(DamagedStoreError, match="rows 15:40 do not match"):
        Activations.load(store, verify=True)
    entry["chunks"] = entry["chunks"][:1]
    write_manifest(store, manifest)
    with pytest.raises(DamagedStoreError, match="checksums do not cover its rows"):
        Activations.load(store)
