"""What a cluster can hold and what it reads: on workers with a memory limit the analyses plan
chunks within it (the defaults no longer kill them), and a store read on the cluster, or from its
path in process, is checked against its manifest's CRC-32s where the rows are read."""
import importlib
import json
import resource

import numpy as np
import pytest

distributed = pytest.importorskip("distributed")

import repgraph as rg  # noqa: E402
from repgraph import distributed as rd  # noqa: E402
from repgraph import storage as rs  # noqa: E402
from repgraph.distributed.runner import WORKER_BASELINE_MIB, ClusterRunner, worker_budget  # noqa: E402
from repgraph.hooks import DamagedStoreError  # noqa: E402

MEMORY_LIMIT = 640 * 10**6  # bytes: a worker that has imported torch holds about 340 MiB of it


@pytest.fixture(scope="module")
def client():
    with distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1, memory_limit=MEMORY_LIMIT,
                                  dashboard_address=None, silence_logs=40) as cluster, distributed.Client(cluster) as c:
        c.run(importlib.import_module, "repgraph.analyzers")
        yield c


def _peak_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _save(folder, n, width, layers, seed=0):
    rng = np.random.default_rng(seed)
    arrays = {f"l{i}": rng.normal(size=(n, width)).astype(np.float32) + i for i in range(layers)}
    rg.Activations(arrays, labels=np.arange(n) % 3).save(folder)
    return folder


# --- the budget ----------------------------------------------------------------------------------
def test_worker_budget_takes_the_tightest_worker_per_thread():
    mib = 2**20
    workers = {"a": {"memory_limit": 4096 * mib, "nthreads": 2}, "b": {"memory_limit": 2048 * mib, "nthreads": 1},
               "c": {"memory_limit": 0, "nthreads": 8}, "d": {"memory_limit": None, "nthreads": 1}}
    # a: (4096 − 384)/2/2 = 928; b: (2048 − 384)/2 = 832; c, d: no limit
    assert worker_budget(workers, 10_000) == 832
    assert worker_budget(workers, 256) == 256  # the configured budget is never exceeded
    assert worker_budget({"c": workers["c"]}, 256) == 256
    assert worker_budget({"x": {"memory_limit": 100 * mib, "nthreads": 1}}, 256) == 1  # below the baseline


def test_cluster_runner_plans_with_the_workers_limit(client):
    expected = int(0.5 * (MEMORY_LIMIT / 2**20 - WORKER_BASELINE_MIB))
    assert ClusterRunner(client).working_memory == expected == 113 < rg.get_config()["working_memory"]
    with rg.config_context(working_memory=64):
        assert ClusterRunner(client).working_memory == 64


def test_out_of_core_cka_on_small_workers_completes_with_the_defaults(client, tmp_path):
    """With the 256 MiB default as the tasks' budget, a 2600² Gram tile of 2 layers takes about
    440 MiB above the worker's baseline and the nanny kills both workers (KilledWorker); planned
    with the workers' 113 MiB, every task stays within it."""
    store = _save(tmp_path / "s", 2600, 1000, 2)
    before = client.run(_peak_mib)
    got = rg.cka_matrix(store, client=client, progress=False)
    grown = {worker: peak - before[worker] for worker, peak in client.run(_peak_mib).items()}
    expected = rg.cka_matrix(rg.Activations.load(store), progress=False)  # in memory, here
    assert got.attrs["hsic_path"] == "gram"
    np.testing.assert_allclose(got.to_numpy(), expected.to_numpy(), rtol=0, atol=1e-10)
    assert all(growth < 113 for growth in grown.values()), grown


def test_feature_space_chunks_count_every_block(client, tmp_path):
    """The feature path on the cluster, planned with the workers' budget, equals the in-process
    one (planned with the 256 MiB default: other chunks) to float64 rounding."""
    store = _save(tmp_path / "f", 6000, 40, 3)
    got = rg.cka_matrix(store, debiased=True, client=client, progress=False)
    expected = rg.cka_matrix(store, debiased=True, progress=False)
    assert got.attrs["hsic_path"] == "features"
    np.testing.assert_allclose(got.to_numpy(), expected.to_numpy(), rtol=0, atol=1e-10)


# --- verification where the rows are read --------------------------------------------------------
def _flip_byte(store, layer_index, row):
    manifest = json.loads((store / "manifest.json").read_text())
    entry = manifest["layers"][layer_index]
    path = store / entry["file"]
    data = bytearray(path.read_bytes())
    data[entry["header_bytes"] + row * 4 * entry["shape"][1] + 1] ^= 0xFF
    path.write_bytes(data)


def test_a_damaged_store_is_refused_on_the_cluster_and_in_process(client, tmp_path):
    store = _save(tmp_path / "d", 300, 16, 3)
    _flip_byte(store, 1, 200)  # sizes and headers intact: only the checksums see it
    with pytest.raises(DamagedStoreError, match=r"layer 'l1', file layer_0001.npy: rows 0:300 do not match"):
        rg.cka_matrix(store, client=client, progress=False)
    with pytest.raises(DamagedStoreError, match="layer 'l1'"):
        rg.modularity_curve(store, batch_size=100, client=client, progress=False)
    with pytest.raises(DamagedStoreError, match="layer 'l1'"):
        rg.cka_matrix(store, progress=False)  # a store's path in process is read through LayerFile too
    lazy = rd.open_store(store, chunk_rows=50)
    with pytest.raises(DamagedStoreError, match="layer 'l1'"):
        client.compute(lazy["l1"][:50]).result()  # rows 0:50 touch the chunk 0:300: it is checked whole
    assert np.isfinite(client.compute(lazy["l0"].sum()).result())  # the intact layers read as before
    unchecked = rd.open_store(store, chunk_rows=50, verify=False)
    assert client.compute(unchecked["l1"][:50]).result().shape == (50, 16)
    assert rg.Activations.load(store).n_samples == 300  # its documented default reads no checksum


def test_a_passed_check_is_cached_until_the_store_is_rewritten(tmp_path):
    store = _save(tmp_path / "c", 200, 8, 1)
    layer = rs.store_files(store)[0]["l0"]
    rs.read_statistics(reset=True)
    layer[10:20]
    layer[30:40]
    checked = rs.read_statistics()["checked_bytes"]
    assert checked == 200 * 8 * 4  # the one chunk, checked whole, once
    _flip_byte(store, 0, 150)  # the same manifest: the check holds (published stores never change)
    layer[150:160]
    assert rs.read_statistics()["checked_bytes"] == checked
    # written again (new data, so a new manifest checksum), then damaged: checked again, refused
    _save(tmp_path / "c2", 200, 8, 1, seed=1)
    rewritten = rs.store_files(tmp_path / "c2")[0]["l0"]
    (tmp_path / "c2" / "layer_0000.npy").replace(store / "layer_0000.npy")
    (tmp_path / "c2" / "manifest.json").replace(store / "manifest.json")
    _flip_byte(store, 0, 150)
    again = rs.store_files(store)[0]["l0"]
    assert again.path == layer.path and again.manifest_crc32 == rewritten.manifest_crc32 != layer.manifest_crc32
    with pytest.raises(DamagedStoreError, match="layer 'l0'.*rows 0:200"):
        again[0:10]


def test_labels_are_checked_when_the_store_is_opened(tmp_path):
    folder = tmp_path / "l"
    rg.Activations({"a": np.ones((20, 2), np.float32)}, labels=np.arange(20)).save(folder)
    labels = folder / "labels.npy"
    data = bytearray(labels.read_bytes())
    data[-3] ^= 0xFF
    labels.write_bytes(data)
    with pytest.raises(DamagedStoreError, match="layer 'labels'"):
        rd.open_store(folder)
    assert rd.open_store(folder, verify=False).labels.shape == (20,)
