"""repgraph on Dask: every distributed analysis equals the in-process one, on a LocalCluster of two
worker processes; stores open lazily and tasks read their own rows on the workers."""
import functools
import importlib
import json
import pickle
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

distributed = pytest.importorskip("distributed")

import repgraph as rg  # noqa: E402
from repgraph import distributed as rd  # noqa: E402
from repgraph import storage as rs  # noqa: E402
from repgraph.analyzers.cka import hsic_matrix  # noqa: E402
from repgraph.analyzers.hsic_out_of_core import out_of_core_hsic  # noqa: E402
from repgraph.distributed.runner import ClusterRunner, Shipped  # noqa: E402
from repgraph.execution.runner import InProcessRunner  # noqa: E402
from repgraph.execution.sources import layer_sources  # noqa: E402
from repgraph.hooks import DamagedStoreError  # noqa: E402
from oracles import hsic_biased, hsic_unbiased  # noqa: E402


@pytest.fixture(scope="module")
def client():
    with distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None,
                                  silence_logs=40) as cluster, distributed.Client(cluster) as c:
        for module in ("repgraph.analyzers", "repgraph.hooks.sharded_capture", "dask.array"):
            c.run(importlib.import_module, module)  # both workers import at once, not one per first task
        yield c


def _layers(rng, n=300, widths=(12, 40, 9), classes=4):
    labels = rng.integers(0, classes, n)
    arrays = {f"block{i}": (rng.normal(size=(n, w)) + (0.3 * i + 0.2) * np.eye(classes, w)[labels] * 4
                            + 3.0).astype(np.float32) for i, w in enumerate(widths)}
    return rg.Activations(arrays, labels)


@pytest.fixture(scope="module")
def acts():
    return _layers(np.random.default_rng(0))


@pytest.fixture(scope="module")
def store(tmp_path_factory, acts):
    folder = tmp_path_factory.mktemp("store")
    acts.save(folder)
    return folder


def _read_bytes(client):
    return sum(s["bytes"] for s in client.run(rs.read_statistics).values())


# --- the store as chunked arrays ------------------------------------------------------------------
def test_open_store_is_lazy_and_workers_read_their_chunks(client, acts, store):
    local_before, workers_before = rs.read_statistics()["bytes"], _read_bytes(client)
    lazy = rd.open_store(store, chunk_rows=64)
    assert lazy.layers == acts.layers and np.array_equal(lazy.labels, acts.labels)
    x = lazy["block1"]
    assert x.shape == acts["block1"].shape and x.chunks[0] == (64, 64, 64, 64, 44)
    # the graph holds file descriptors, not data: far smaller than one chunk (64·40·4 bytes)
    assert len(pickle.dumps(dict(x.__dask_graph__()))) < 64 * 40 * 4 / 2
    assert np.array_equal(client.compute(x).result(), acts["block1"])
    assert float(client.compute(x.sum()).result()) == pytest.approx(float(acts["block1"].sum(dtype=np.float64)))
    assert rs.read_statistics()["bytes"] == local_before  # nothing was read in this process
    assert _read_bytes(client) - workers_before >= 2 * acts["block1"].nbytes


def test_open_store_refuses_incomplete_or_damaged_stores(tmp_path, acts):
    with pytest.raises(ValueError, match="no complete repgraph activation store"):
        rd.open_store(tmp_path)
    acts.save(tmp_path / "s")
    manifest = json.loads((tmp_path / "s" / "manifest.json").read_text())
    layer = tmp_path / "s" / manifest["layers"][1]["file"]
    layer.write_bytes(layer.read_bytes()[:-8])
    with pytest.raises(DamagedStoreError, match="'block1'.*truncated"):
        rd.open_store(tmp_path / "s")
    with pytest.raises(ValueError, match="truncated"):
        rs.LayerFile.open(layer)


def test_store_layers_travel_as_file_descriptors(client, acts, store):
    loaded = rg.Activations.load(store)
    for data in (loaded, store):  # an Activations loaded from a store, and the store's path
        sources, labels = layer_sources(data, ClusterRunner(client))
        assert all(isinstance(s.data, rs.LayerFile) for s in sources) and np.array_equal(labels, acts.labels)
        assert all(len(pickle.dumps(s.data)) < 500 for s in sources)
        assert all(np.array_equal(s.data[5:9], acts[s.layer][5:9]) for s in sources)
    here, _ = layer_sources(loaded, InProcessRunner())  # in process a loaded store's memory maps are read as they are
    assert all(s.data is loaded[s.layer] and s.in_memory for s in here)
    in_memory, _ = layer_sources(acts, InProcessRunner())  # arrays without files are shared as they are
    assert in_memory[0].data is acts["block0"]


# --- where the analyses run -----------------------------------------------------------------------
def test_parallel_block_runs_on_the_cluster_and_explicit_client_wins(client, acts):
    assert rd.active_client() is None
    with distributed.get_task_stream(client) as stream, rd.parallel(client):
        assert rd.active_client() is client
        curve = rg.modularity_curve(acts, batch_size=100, progress=False)
    assert rd.active_client() is None
    assert len(stream.data) > 0  # the tasks ran on the cluster
    pd.testing.assert_frame_equal(curve, rg.modularity_curve(acts, batch_size=100, progress=False), check_exact=True)
    with pytest.raises(TypeError, match="distributed.Client"):
        rd.active_client("tcp://127.0.0.1:1")
    address = client.scheduler.address
    with rd.parallel(address) as other:
        assert other is not client and rd.active_client() is other and len(other.nthreads()) == 2
    assert other.status == "closed"


def test_public_functions_hand_their_work_to_the_client(client, acts, tmp_path):
    """``rg.<analysis>(..., client=)`` and a ``rg.parallel`` block run the distributed twin: tasks
    reach the cluster and the values are the in-process ones."""
    rng = np.random.default_rng(3)
    maps = np.maximum(rng.normal(size=(12, 4, 5, 5)), 0).astype(np.float32)
    calls = {
        "modularity_curve": lambda **c: rg.modularity_curve(acts, batch_size=100, progress=False, **c),
        "cka_matrix": lambda **c: rg.cka_matrix(acts, batch_size=100, progress=False, **c),
        "gbs_matrix": lambda **c: rg.gbs_matrix(acts, k=5, progress=False, **c),
        "filter_similarity": lambda **c: rg.filter_similarity(maps, **c),
        "hrank_scores": lambda **c: rg.hrank_scores(maps, **c),
        "chip_scores": lambda **c: rg.chip_scores(maps, **c),
        "birth_points": lambda **c: rg.birth_points(maps, **c),
        "feature_entropy": lambda **c: rg.feature_entropy(maps, **c),
    }
    for name, call in calls.items():
        here = call()
        for how in ("client=", "parallel"):
            with distributed.get_task_stream(client) as stream:
                if how == "client=":
                    there = call(client=client)
                else:
                    with rg.parallel(client):
                        there = call()
            assert len(stream.data) > 0, f"{name} with {how} ran no task on the cluster"
            if isinstance(here, pd.DataFrame):
                pd.testing.assert_frame_equal(there, here, check_exact=False, rtol=1e-12, atol=1e-12)
            else:
                np.testing.assert_allclose(there, here, rtol=1e-12, atol=1e-12, err_msg=name)
    model, x = _cnn(), torch.randn(40, 1, 8, 8)
    with distributed.get_task_stream(client) as stream:
        there = rg.capture_activations(model, x, layers=["3"], store=tmp_path / "s", client=client, progress=False)
    assert len(stream.data) > 0
    np.testing.assert_array_equal(there["3"], rg.capture_activations(model, x, layers=["3"], progress=False)["3"])


def test_a_parallel_block_keeps_in_memory_captures_here_and_explicit_clients_need_a_store(client, tmp_path):
    model, x = _cnn(), torch.randn(20, 1, 8, 8)
    here = rg.capture_activations(model, x, layers=["3"], progress=False)
    with distributed.get_task_stream(client) as stream, rg.parallel(client):
        inside = rg.capture_activations(model, x, layers=["3"], progress=False)  # no store: in memory, here
        scores = rg.filter_scores(model, "l1", example_input=x[:1], convs=["0"])  # a workflow in the block
    assert len(stream.data) == 0 and np.array_equal(inside["3"], here["3"]) and len(scores["0"]) == 4
    with pytest.raises(ValueError, match="writes a store: pass store=PATH"):
        rg.capture_activations(model, x, layers=["3"], client=client, progress=False)


def test_cluster_capture_slices_dict_data_by_its_own_length_and_checks_the_model(client, tmp_path):
    lin = nn.Sequential(nn.Linear(3, 4))
    data = {"input": torch.randn(9, 3), "labels": np.arange(9)}
    kwargs = {"layers": ["0"], "max_samples": 6, "batch_size": 2, "progress": False}
    got = rg.capture_activations(lin, data, store=tmp_path / "s", client=client, **kwargs)
    here = rg.capture_activations(lin, data, **kwargs)
    assert got["0"].shape == (6, 4) and np.array_equal(got["0"], here["0"]) and got.labels.tolist() == list(range(6))
    rg.Activations.load(tmp_path / "s", verify=True)
    with torch.device("meta"):
        ghost = nn.Sequential(nn.Linear(3, 4))
    with pytest.raises(ValueError, match="meta device"):
        rg.capture_activations(ghost, data, store=tmp_path / "m", client=client, **kwargs)


def test_bfloat16_maps_and_wrong_types_on_the_cluster(client):
    maps = torch.rand(6, 3, 4, 4).to(torch.bfloat16)
    np.testing.assert_array_equal(rg.hrank_scores(maps, client=client), rg.hrank_scores(maps))
    with pytest.raises(TypeError, match="must be a numpy array or a torch tensor, got dict"):
        rg.birth_points({"a": maps.float().numpy()}, client=client)


def test_wrong_map_shapes_fail_on_the_client_as_in_process(client):
    flat, oblong = np.random.default_rng(5).random((4, 3)), np.random.default_rng(5).random((4, 3, 5, 6))
    cases = [(fn, flat) for fn in (rg.filter_similarity, rg.hrank_scores, rg.chip_scores, rg.birth_points)]
    for fn, maps in cases + [(rg.birth_points, oblong)]:
        with pytest.raises(ValueError) as here:
            fn(maps)
        with distributed.get_task_stream(client) as stream, pytest.raises(ValueError) as there:
            fn(maps, client=client)
        assert str(there.value) == str(here.value)  # the whole array's shape, not a chunk's
        assert "got shape (4, 3)" in str(here.value) or "5x6 maps" in str(here.value)
        assert len(stream.data) == 0, f"{fn.__name__} ran tasks before refusing the shape"


def test_modularity_options_are_checked_before_any_data_is_sent(client, acts, monkeypatch):
    def no_sending(*args, **kwargs):
        raise AssertionError("the layers were sent to the cluster before the options were checked")
    # the package's name `modularity` is the function: patch the module itself
    monkeypatch.setattr(importlib.import_module("repgraph.analyzers.modularity"), "layer_sources", no_sending)
    for bad, message in (({"k": 0}, "k must be a positive integer"), ({"batch_size": 1}, "batch_size must be"),
                         ({"n_batches": 0}, "n_batches must be None")):
        with pytest.raises(ValueError, match=message):
            rg.modularity_curve(acts, client=client, progress=False, **bad)


def test_worker_errors_and_warnings_reach_the_client(client):
    X = np.random.default_rng(1).normal(size=(40, 5)).astype(np.float32)
    bad = X.copy()
    bad[30, 2] = np.nan
    with pytest.raises(ValueError, match="'bad'.*NaN or Inf"):
        rg.cka_matrix({"ok": X, "bad": bad}, client=client, progress=False)
    X[:, :] = 0.0
    X[:20, 0] = np.arange(1, 21)  # 20 samples share one direction, 20 are all-zero rows
    with pytest.warns(UserWarning, match="all-zero adjacency row") as caught:
        rg.gbs_matrix({"x": X}, k=3, client=client, progress=False)
    assert {w.filename for w in caught} == {__file__}  # re-raised here, naming the caller's line


# --- distributed analyses equal the in-process ones ------------------------------------------------
def _warned(fn, prefix=""):
    """``fn()`` and the messages of the warnings it raised that start with ``prefix``."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = fn()
    return out, [str(w.message) for w in caught if str(w.message).startswith(prefix)]


@pytest.mark.parametrize("form", ["memory", "store path", "memmapped Activations"])
def test_modularity_curve_equals_in_process(client, acts, store, form):
    data = {"memory": acts, "store path": store, "memmapped Activations": rg.Activations.load(store)}[form]
    # 300 samples: batches of 64 leave 44 out (a warning); 500 > N is one batch (std NaN); shuffled
    # batches; all batches of a layer in one batched product
    for kwargs in ({"batch_size": 64}, {"batch_size": 100, "n_batches": 2, "k": 5}, {"batch_size": 500},
                   {"batch_size": 60, "shuffle": 7}, {"batch_size": 64, "shuffle": 1, "batched": True}):
        expected, expected_warnings = _warned(lambda: rg.modularity_curve(acts, progress=False, **kwargs),
                                              "modularity_curve")
        got, got_warnings = _warned(lambda: rg.modularity_curve(data, client=client, progress=False, **kwargs),
                                    "modularity_curve")
        pd.testing.assert_frame_equal(got, expected, check_exact=True)
        assert got.attrs == expected.attrs and got_warnings == expected_warnings
    assert expected.attrs["shuffle"] == 1 and expected_warnings == [
        "modularity_curve: the last 44 of 300 samples are left out: they do not fill a batch of 64, and kNN "
        "modularity depends on the batch size, so batches of another size are not averaged in (batch_size=60 "
        "uses all of them)."]


def test_batched_tasks_take_whole_groups_of_the_in_process_product():
    from repgraph.analyzers.modularity import _Batch, _batches_per_task

    class TwoSlots:
        slots = 2
        working_memory = 1

    sources, _ = layer_sources({f"x{i}": np.zeros((1500, 8), np.float32) for i in range(4)}, InProcessRunner())
    batches = [_Batch(a, a + 300, slice(a, a + 300)) for a in range(0, 1500, 300)]
    with rg.config_context(working_memory=1):
        # 4 layers × 5 batches, about 4 tasks per slot: runs of ceil(20/8) = 3 batches; stacked, the
        # in-process product takes 2 batches at a time (2·300²·4 B ≤ 1 MiB < 3·300²·4 B), so runs of 2
        # (on CPU the products agree bit for bit here either way; a lone batch goes through X @ Xᵀ, not
        # the batched product, which on CUDA may round differently)
        assert _batches_per_task(sources, batches, TwoSlots(), stack=False) == 3
        assert _batches_per_task(sources, batches, TwoSlots(), stack=True) == 2


def test_modularity_curve_warnings_and_batched_groups_equal_in_process(client):
    rng = np.random.default_rng(12)
    labels = np.repeat(np.arange(5), 300)  # sorted by class: batches of 300 hold one class each
    arrays = {f"x{i}": rng.normal(size=(1500, 8 + i)).astype(np.float32) for i in range(3)}
    layers = rg.Activations({**arrays, "constant": np.ones((1500, 3), np.float32)}, labels)
    # 1 MiB holds two 300×300 float32 similarity blocks: the in-process batched product runs the 5
    # batches as groups [0, 1], [2, 3], [4], and so do the tasks (see the next test)
    with rg.config_context(working_memory=1):
        for kwargs in ({"batch_size": 300}, {"batch_size": 300, "batched": True}, {"batch_size": 300, "shuffle": 0}):
            expected, expected_warnings = _warned(lambda: rg.modularity_curve(layers, progress=False, **kwargs))
            got, got_warnings = _warned(lambda: rg.modularity_curve(layers, client=client, progress=False, **kwargs))
            pd.testing.assert_frame_equal(got, expected, check_exact=True)
            assert got_warnings == expected_warnings
            assert any("'constant' is constant" in w for w in got_warnings)
            assert any("cover fewer than the 5 classes" in w for w in got_warnings) == ("shuffle" not in kwargs)


@pytest.mark.parametrize("k", [5, None])
def test_gbs_matrix_equals_in_process(client, acts, store, k):
    other = _layers(np.random.default_rng(9), widths=(7, 20))
    for args in ((acts,), (store, other)):
        expected = rg.gbs_matrix(*[rg.Activations.load(a) if not isinstance(a, rg.Activations) else a
                                   for a in args], k=k, progress=False)
        got = rg.gbs_matrix(*args, k=k, client=client, progress=False)
        np.testing.assert_allclose(got.to_numpy(), expected.to_numpy(), rtol=0, atol=1e-12)
        assert list(got.index) == list(expected.index) and list(got.columns) == list(expected.columns)
        assert got.attrs == expected.attrs
    if k is None:  # the default is the full graph, as in process
        assert rg.gbs_matrix(acts, client=client, progress=False).attrs["k"] == "full"


def _integer_layers(rng, n=240, widths=(6, 30, 11)):
    """Small integers with exactly zero column means ([A; −A]): centring, the float32 Gram products
    and the float64 oracle are all exact, so the feature-space and Gram paths meet the in-process
    float32 computation to float64 rounding."""
    half = rng.integers(-3, 4, size=(n // 2, sum(widths))).astype(np.float32)
    X = np.concatenate([half, -half])
    edges = np.cumsum([0, *widths])
    return {f"l{i}": X[:, a:b] + (X[:, :1] if i else 0) for i, (a, b) in enumerate(zip(edges[:-1], edges[1:]))}


def _hsic_oracle(layers, debiased):
    """Float64 HSIC matrix from the textbook formulas, on the features centred as in repgraph
    (float32 minus the float32-rounded column means)."""
    centred = [np.asarray(X, np.float32) - np.asarray(X, np.float32).mean(0, dtype=np.float64).astype(np.float32)
               for X in layers]
    grams = [Z.astype(np.float64) @ Z.astype(np.float64).T for Z in centred]
    hsic = hsic_unbiased if debiased else hsic_biased
    return np.array([[hsic(K, L) for L in grams] for K in grams])


@pytest.mark.parametrize("debiased", [False, True])
@pytest.mark.parametrize("path", ["features", "gram"])
def test_out_of_core_hsic_equals_hsic_matrix_and_the_oracle(debiased, path):
    rng = np.random.default_rng(3)
    exact = _integer_layers(rng)
    generic = {name: (rng.normal(size=X.shape) * 2 + 5).astype(np.float32) for name, X in exact.items()}
    runner = InProcessRunner()
    # generic floats: the Gram path is the in-process float32 Gram, tiled (equal to it; float32
    # rounding from the exact oracle); the feature path is float64 (equal to the oracle; the
    # in-process float32 Gram's rounding from it)
    tolerances = (1e-7, 1e-10) if path == "features" else (1e-12, 1e-7)
    for layers, (rtol_in_process, rtol_oracle) in ((exact, (1e-12, 1e-10)), (generic, tolerances)):
        sources, _ = layer_sources(layers, runner)
        with rg.config_context(working_memory=1):  # 1 MiB: many chunks, tiles and panels
            H, used = out_of_core_hsic(sources, runner, debiased=debiased, path=path)
        assert used == path
        reference = hsic_matrix(list(layers.values()), debiased=debiased)
        scale = np.abs(reference).max()
        np.testing.assert_allclose(H, reference, rtol=0, atol=rtol_in_process * scale)
        np.testing.assert_allclose(H, _hsic_oracle(list(layers.values()), debiased), rtol=0,
                                   atol=rtol_oracle * scale)


def test_hsic_path_follows_the_cost_rule():
    from repgraph.analyzers.hsic_out_of_core import feature_panels, hsic_path
    assert hsic_path(1000, [100, 400]) == "features"  # 2·500 ≤ 1000
    assert hsic_path(1000, [100, 401]) == "gram"
    assert hsic_path(10**6, [6000], budget_bytes=256 * 2**20) == "gram"  # 6000²·8 B > 256 MiB
    # three float64 6×6 blocks in half the budget: panels at most 6 wide
    assert feature_panels([3, 3, 5, 1, 20], budget_bytes=2 * 3 * 8 * 36) == [[0, 1], [2, 3], [4]]


@pytest.mark.parametrize("debiased", [False, True])
def test_cka_matrix_equals_in_process(client, debiased):
    rng = np.random.default_rng(4)
    exact = _integer_layers(rng)  # 2·ΣD = 94 ≤ N = 240: feature space
    wide = {f"w{i}": rng.normal(size=(60, 50)).astype(np.float32) + i for i in range(3)}  # Gram tiles
    with rg.config_context(working_memory=1):
        for layers, path in ((exact, "features"), (wide, "gram")):
            expected = rg.cka_matrix(layers, debiased=debiased, progress=False)
            got = rg.cka_matrix(layers, debiased=debiased, client=client, progress=False)
            assert got.attrs["hsic_path"] == path and got.attrs["estimator"] == expected.attrs["estimator"]
            np.testing.assert_allclose(got.to_numpy(), expected.to_numpy(), rtol=0, atol=1e-12)
        other = wide_rows(exact, rng)
        cross = rg.cka_matrix(exact, other, debiased=debiased, client=client, progress=False)
        expected = rg.cka_matrix(exact, other, debiased=debiased, progress=False)
        np.testing.assert_allclose(cross.to_numpy(), expected.to_numpy(), rtol=0, atol=1e-12)
        assert list(cross.columns) == list(expected.columns)


def wide_rows(like, rng):
    """Layers of a second 'model' on the same samples: integer features as exact as ``like``."""
    n = len(next(iter(like.values())))
    half = rng.integers(-2, 3, size=(n // 2, 8)).astype(np.float32)
    return {"other": np.concatenate([half, -half])}


def test_cka_matrix_on_a_store_is_deterministic_and_close_to_in_process(client, acts, store):
    expected = rg.cka_matrix(acts, progress=False)
    on_cluster = rg.cka_matrix(store, client=client, progress=False)
    in_process = rg.cka_matrix(store, progress=False)  # the same tasks, one after another, here
    assert on_cluster.attrs["hsic_path"] == "features"
    assert np.array_equal(on_cluster.to_numpy(), in_process.to_numpy())
    # generic floats: the in-process float32 Gram carries float32 rounding the float64 path does not
    np.testing.assert_allclose(on_cluster.to_numpy(), expected.to_numpy(), rtol=0, atol=1e-7)


def test_minibatch_and_rbf_cka_equal_in_process(client, acts):
    other = _layers(np.random.default_rng(13), widths=(5,))
    # N = 300: batches of 64 end with one of 44 (used); of 298 with one of 2 (left out, a warning);
    # 1000 > N is one batch
    for kwargs in ({"batch_size": 64}, {"batch_size": 298}, {"batch_size": 1000}, {"kernel": "rbf", "sigma": 0.8},
                   {"kernel": "rbf", "debiased": True}):
        for args in ((acts,), (acts, other)):
            expected, expected_warnings = _warned(lambda: rg.cka_matrix(*args, progress=False, **kwargs))
            got, got_warnings = _warned(lambda: rg.cka_matrix(*args, client=client, progress=False, **kwargs))
            # to the last bits: a worker may add the batches' HSIC terms in another order
            np.testing.assert_allclose(got.to_numpy(), expected.to_numpy(), rtol=1e-12, atol=1e-15)
            assert got_warnings == expected_warnings
            assert list(got.columns) == list(expected.columns)
            assert got.attrs == expected.attrs
    assert expected.attrs["n_batches"] == 1 and expected.attrs["n_samples"] == 300
    with pytest.warns(UserWarning, match="the last 2 of 300 samples are left out"):
        assert rg.cka_matrix(acts, batch_size=298, progress=False).attrs["n_samples"] == 298


# --- filter analyses --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def maps():
    rng = np.random.default_rng(5)
    F = np.maximum(rng.normal(size=(37, 6, 5, 5)), 0).astype(np.float32)  # post-ReLU maps
    F[3, 2] = 0.0  # an all-zero map
    F[8, 4] = 1.5  # a constant non-zero map (an undefined correlation in that image)
    F[:, 5] = F[:, 1] * 2 + 0.1 * rng.random((37, 5, 5))  # a redundant filter
    return F


def test_filter_similarity_and_central_filters_equal_in_process(client, maps, tmp_path):
    expected = rg.filter_similarity(maps)
    got = rg.filter_similarity(maps, client=client)
    assert np.array_equal(np.isnan(got), np.isnan(expected))
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)
    rg.Activations({"conv": maps, "conv2": maps[:, ::-1]}).save(tmp_path)
    per_layer = rg.filter_similarity(tmp_path, client=client)
    np.testing.assert_allclose(per_layer["conv2"], rg.filter_similarity(np.ascontiguousarray(maps[:, ::-1])),
                               rtol=0, atol=1e-12)
    clean_maps = maps.copy()  # without the constant map: every similarity defined
    clean_maps[8, 4] = maps[7, 4]
    # with the constant map, filter 4's similarities are all NaN (never an edge): at 0.67 the graph
    # of the other 5 filters allows 4 of the ceil(6·0.67) = 5 prunes, with a warning
    for layer_maps, ratio in ((clean_maps, 0.2), (clean_maps, 0.34), (maps, 0.67)):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            reference = rg.central_filters(rg.filter_similarity(layer_maps), ratio)
        with warnings.catch_warnings(record=True) as caught_on_cluster:
            warnings.simplefilter("always")
            selections = rg.layer_central_filters({"conv": layer_maps}, ratio, client=client, progress=False)
        assert (selections["conv"].kept, selections["conv"].pruned, selections["conv"].delegates) == \
            (reference.kept, reference.pruned, reference.delegates)
        assert [str(w.message) for w in caught_on_cluster] == [str(w.message) for w in caught]
    assert len(caught) == 1 and "allows only 4 of the 5" in str(caught[0].message)


def test_one_dimensional_maps_equal_in_process(client, maps):
    maps_1d = np.ascontiguousarray(maps.reshape(37, 6, 25))  # the (N, C, L) maps of a Conv1d
    np.testing.assert_allclose(rg.filter_similarity(maps_1d, client=client), rg.filter_similarity(maps_1d),
                               rtol=0, atol=1e-12)
    np.testing.assert_array_equal(rg.hrank_scores(maps_1d, client=client), rg.hrank_scores(maps_1d))
    np.testing.assert_allclose(rg.chip_scores(maps_1d, client=client), rg.chip_scores(maps_1d), rtol=0, atol=1e-12)
    selection = rg.layer_central_filters({"conv1d": maps_1d}, 0.34, client=client, progress=False)["conv1d"]
    assert selection.pruned == rg.central_filters(rg.filter_similarity(maps_1d), 0.34).pruned


def test_hrank_chip_birth_points_and_entropy_equal_in_process(client, maps):
    np.testing.assert_array_equal(rg.hrank_scores(maps, client=client), rg.hrank_scores(maps))
    for route in ("gram", "svd"):
        np.testing.assert_allclose(rg.chip_scores(maps, route=route, client=client),
                                   rg.chip_scores(maps, route=route), rtol=0, atol=1e-12)
    layers = rg.Activations({"a": maps, "b": maps[:, :3]})
    got = rg.hrank_scores(layers, client=client)
    assert list(got) == ["a", "b"] and np.array_equal(got["b"], rg.hrank_scores(maps[:, :3]))
    points = rg.birth_points(maps, client=client)
    assert points.dtype == np.int64 and np.array_equal(points, rg.birth_points(maps, n_jobs=1))
    pd.testing.assert_frame_equal(rg.feature_entropy(maps, client=client), rg.feature_entropy(maps),
                                  check_exact=True)


# --- capture on workers --------------------------------------------------------------------------------
def _cnn():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 6, 3, padding=1), nn.ReLU(),
                         nn.Flatten(), nn.Linear(6 * 8 * 8, 10))


def test_capture_on_workers_equals_in_process_and_is_reused(client, tmp_path):
    model = _cnn()
    x = torch.randn(150, 1, 8, 8)
    y = np.array(["cat", "horse", "ox"])[np.arange(150) % 3]  # string labels, of unequal lengths
    kwargs = {"layers": ["1", "3", "5"], "batch_size": 32, "inputs": True, "progress": False}
    rg.capture_activations(model, (x, y), store=tmp_path / "here", **kwargs)
    with rg.config_context(working_memory=1):  # small shards: several per worker
        got = rg.capture_activations(model, (x, y), store=tmp_path / "s", client=client, **kwargs)
    here = json.loads((tmp_path / "here" / "manifest.json").read_text())
    there = json.loads((tmp_path / "s" / "manifest.json").read_text())
    assert there["fingerprint"] == here["fingerprint"] and there["meta"] == here["meta"]
    assert [e["name"] for e in there["layers"]] == [e["name"] for e in here["layers"]]
    assert len(there["layers"][0]["chunks"]) > 2  # one checksum per shard
    for a, b in zip(here["layers"] + [here["labels"]], there["layers"] + [there["labels"]]):
        # the files hold the same bytes after their headers
        assert (tmp_path / "here" / a["file"]).read_bytes()[512:] == (tmp_path / "s" / b["file"]).read_bytes()[512:]
    rg.Activations.load(tmp_path / "s", verify=True)  # every shard's checksum holds
    assert got.layers == [e["name"] for e in here["layers"]] and got.labels.tolist() == y.tolist()
    stamp = (tmp_path / "s" / "layer_0000.npy").stat().st_mtime_ns
    again = rg.capture_activations(model, (x, y), store=tmp_path / "s", **kwargs)  # reused in process
    assert (tmp_path / "s" / "layer_0000.npy").stat().st_mtime_ns == stamp
    assert np.array_equal(again["5"], got["5"])
    dataset = torch.utils.data.TensorDataset(x, torch.arange(150))
    from_dataset = rg.capture_activations(model, dataset, layers=["3"], batch_size=16, max_samples=70,
                                          store=tmp_path / "d", client=client, progress=False)
    assert np.array_equal(from_dataset["3"], got["3"][:70]) and from_dataset.labels.tolist() == list(range(70))


class _FailsLate(nn.Module):
    def forward(self, x):
        if float(x.abs().max()) > 100:
            raise RuntimeError("a poisoned sample")
        return x * 2


def test_a_failed_shard_publishes_nothing(client, tmp_path):
    model = nn.Sequential(_FailsLate())
    x = torch.ones(64, 3)
    x[50] = 1000.0
    with pytest.raises(RuntimeError, match="poisoned"):
        rg.capture_activations(model, x, layers=["0"], batch_size=8, store=tmp_path / "s", client=client,
                               progress=False)
    assert not (tmp_path / "s").exists()
    with pytest.raises(ValueError, match="no complete"):
        rg.Activations.load(tmp_path / "s")
    x[50] = 1.0  # the same folder takes a good capture afterwards
    assert rg.capture_activations(model, x, layers=["0"], batch_size=8, store=tmp_path / "s", client=client,
                                  progress=False)["0"].shape == (64, 3)
    with pytest.raises(ValueError, match="store=PATH"):
        rg.capture_activations(model, x, layers=["0"], client=client)
    with pytest.raises(TypeError, match="index"):
        rg.capture_activations(model, iter([x]), layers=["0"], store=tmp_path / "g", client=client)


def test_a_shared_model_can_be_spilled_or_sent_while_a_task_hooks_it():
    # Dask pickles managed data whenever it spills or moves it; a model under a task's hooks cannot
    # be pickled (the benchmark's 1 GB workers hit this), so the cluster holds its frozen pickle
    shared = pickle.loads(pickle.dumps(Shipped(_cnn())))
    handle = shared.obj[1].register_forward_hook(lambda module, inputs, output: None)
    copy = pickle.loads(pickle.dumps(shared))  # what a spill or a transfer does
    handle.remove()
    assert type(copy.obj[1]._forward_hooks).__name__ == "OrderedDict" and not copy.obj[1]._forward_hooks
    array = pickle.loads(pickle.dumps(Shipped(np.arange(4.0)), protocol=5)).obj
    assert array.flags.writeable and array.tolist() == [0.0, 1.0, 2.0, 3.0]


# --- many checkpoints ---------------------------------------------------------------------------------
def _checkpoint(seed):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU())


def test_modularity_curves_of_checkpoints_equal_in_process(client):
    rng = np.random.default_rng(6)
    y = rng.integers(0, 3, 120)
    x = torch.from_numpy((rng.normal(size=(120, 6)) + 2 * np.eye(3, 6)[y]).astype(np.float32))
    checkpoints = {"epoch0": _checkpoint(0), "epoch5": functools.partial(_checkpoint, 5)}
    table = rg.modularity_curves(checkpoints, (x, torch.from_numpy(y)), layers=["1", "3"], batch_size=60,
                                 client=client, progress=False)
    assert list(table.columns) == ["checkpoint", "layer", "depth", "modularity", "std", "n_samples"]
    for name, seed in (("epoch0", 0), ("epoch5", 5)):
        acts = rg.capture_activations(_checkpoint(seed), (x, torch.from_numpy(y)), layers=["1", "3"], progress=False)
        expected = rg.modularity_curve(acts, batch_size=60, progress=False)
        got = table[table["checkpoint"] == name].drop(columns="checkpoint").reset_index(drop=True)
        pd.testing.assert_frame_equal(got, expected, check_exact=True)
    with pytest.raises(TypeError, match="nn.Module"):
        rg.modularity_curves({"bad": lambda: 3}, (x, torch.from_numpy(y)), layers=["1"], client=client)

