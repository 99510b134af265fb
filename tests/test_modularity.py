import warnings

import numpy as np
import pytest
import scipy.sparse as sp

from repgraph import knn_graph, modularity, modularity_curve, Activations
from repgraph.datasets import synthetic_clusters
from oracles import nx_modularity, reference_modularity_curve


def _adjacency(n, edges):
    A = np.zeros((n, n))
    for u, v, *w in edges:
        A[u, v] = A[v, u] = w[0] if w else 1.0
    return A


def test_two_disjoint_triangles_is_one_half():
    # m = 6 edges; each triangle: 3 internal edges, degree sum 6.
    # Q = sum_c [L_c/m - (d_c/2m)^2] = 2 * (3/6 - (6/12)^2) = 2 * (1/2 - 1/4) = 0.5
    A = _adjacency(6, [(0, 1), (1, 2), (0, 2), (3, 4), (4, 5), (3, 5)])
    assert modularity(A, [0, 0, 0, 1, 1, 1]) == pytest.approx(0.5, abs=1e-12)


def test_two_triangles_joined_by_one_edge_is_five_fourteenths():
    # m = 7; each triangle: L_c = 3, d_c = 2+2+3 = 7. Q = 2 * (3/7 - (7/14)^2) = 6/7 - 1/2 = 5/14
    A = _adjacency(6, [(0, 1), (1, 2), (0, 2), (3, 4), (4, 5), (3, 5), (2, 3)])
    assert modularity(sp.csr_matrix(A), [0, 0, 0, 1, 1, 1]) == pytest.approx(5 / 14, abs=1e-12)


def test_equal_perfectly_separated_cliques_give_one_minus_one_over_c():
    # C disjoint equal cliques: each community has L_c = m/C and d_c = 2m/C, so
    # Q = C * (1/C - 1/C^2) = 1 - 1/C.
    for c in (2, 5, 10):
        labels = np.repeat(np.arange(c), 4)
        A = (labels[:, None] == labels[None, :]).astype(float)
        np.fill_diagonal(A, 0)
        assert modularity(A, labels) == pytest.approx(1 - 1 / c, abs=1e-12)


@pytest.mark.parametrize("signed", [False, True])
@pytest.mark.parametrize("self_loops", [False, True])
def test_random_weighted_graphs_equal_networkx(rng, signed, self_loops):
    for trial in range(15):
        n = int(rng.integers(5, 40))
        W = rng.random((n, n)) * (rng.random((n, n)) < 0.3)
        if signed:
            W = W - 0.3 * (rng.random((n, n)) < 0.2)
        A = np.triu(W, 1)
        A = A + A.T
        if self_loops:
            A[np.diag_indices(n)] = rng.random(n) * (rng.random(n) < 0.5)
        if A.sum() == 0 or (A.sum() + np.trace(A)) == 0:
            continue
        labels = rng.integers(0, 4, n)
        for gamma in (1.0, 0.5, 2.0):
            expected = nx_modularity(A, labels, gamma)
            assert modularity(A, labels, resolution=gamma) == pytest.approx(expected, abs=1e-9)


def test_knn_graph_modularity_equals_networkx_on_the_same_graph(rng):
    X, y = synthetic_clusters(200, 5, 30, separation=1.0, seed=3)
    A = knn_graph(X, k=3)
    assert modularity(A, y) == pytest.approx(nx_modularity(A.toarray(), y), abs=1e-9)


def test_label_types_do_not_matter():
    A = _adjacency(6, [(0, 1), (1, 2), (0, 2), (3, 4), (4, 5), (3, 5), (2, 3)])
    assert modularity(A, ["a", "a", "a", "b", "b", "b"]) == pytest.approx(5 / 14)


def test_modularity_bad_input():
    A = _adjacency(3, [(0, 1), (1, 2)])
    with pytest.raises(ValueError, match="length 2"):
        modularity(A, [0, 1])
    B = A.copy()
    B[0, 2] = 1.0
    with pytest.raises(ValueError, match="not symmetric"):
        modularity(B, [0, 0, 1])
    with pytest.raises(ValueError, match="total edge weight is 0"):
        modularity(np.zeros((3, 3)), [0, 0, 1])
    with pytest.raises(ValueError, match="square"):
        modularity(np.zeros((3, 4)), [0, 0, 1])


def test_modularity_curve_matches_reference_pipeline():
    layers = {}
    for depth, sep in enumerate([0.3, 1.0, 3.0]):
        X, y = synthetic_clusters(300, 6, 40, separation=sep, seed=depth, shuffle=False)
        layers[f"layer{depth}"] = X
    labels = np.arange(300) % 6
    curve = modularity_curve(Activations(layers, labels), k=3, batch_size=100, n_batches=3, progress=False)
    expected = reference_modularity_curve(layers, labels, 3, 100, 3)
    assert list(curve.columns) == ["layer", "depth", "modularity", "std", "n_samples"]
    for (_, row), (name, mean, std) in zip(curve.iterrows(), expected):
        assert row["layer"] == name
        assert row["modularity"] == pytest.approx(mean, abs=1e-6)
        assert row["std"] == pytest.approx(std, abs=1e-6)
        assert row["n_samples"] == 300
    # better-separated layers have higher modularity, approaching 1 - 1/6
    assert curve["modularity"].is_monotonic_increasing
    assert curve.attrs["k"] == 3 and curve.attrs["batch_size"] == 100


def test_modularity_curve_matches_reference_on_large_tied_batches():
    # batches above the block-triangular Gram threshold; features rounded to integers so that about
    # 120 of the 600 rows have exactly or nearly tied k-th neighbours (the float64 re-scoring paths)
    X, _ = synthetic_clusters(600, 4, 16, separation=1.0, seed=7, shuffle=False)
    layers = {"crowded": np.round(np.maximum(X, 0.0)).astype(np.float32)}
    labels = np.arange(600) % 4
    curve = modularity_curve(Activations(layers, labels), k=3, batch_size=300, progress=False)
    (_, mean, std), = reference_modularity_curve(layers, labels, 3, 300, 2)
    assert curve["modularity"].item() == pytest.approx(mean, abs=1e-6)
    assert curve["std"].item() == pytest.approx(std, abs=1e-6)


def test_modularity_curve_batches_protocol():
    X, y = synthetic_clusters(1250, 5, 20, seed=1)
    acts = Activations({"a": X}, y)
    with pytest.warns(UserWarning, match="the last 250 of 1250 samples are left out"):
        assert modularity_curve(acts, batch_size=500, progress=False)["n_samples"].item() == 1000
    assert modularity_curve(acts, batch_size=500, n_batches=1, progress=False)["n_samples"].item() == 500
    assert modularity_curve(acts, batch_size=5000, progress=False)["n_samples"].item() == 1250


def test_modularity_curve_says_which_samples_it_leaves_out():
    X, y = synthetic_clusters(178, 5, 20, seed=2)
    acts = Activations({"a": X}, y)
    # 178 = 100 + 78: kNN modularity depends on the batch size, so only full batches are averaged
    with pytest.warns(UserWarning, match=r"last 78 of 178 samples .* \(batch_size=89 uses all of them\)"):
        curve = modularity_curve(acts, batch_size=100, progress=False)
    assert curve["n_samples"].item() == 100 and curve.attrs["n_samples"] == 100
    assert curve.attrs["n_batches_used"] == 1 and np.isnan(curve["std"].item())  # one batch: no spread
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        curve = modularity_curve(acts, batch_size=89, progress=False)
    assert curve.attrs["n_samples"] == 178
    (_, mean, std), = reference_modularity_curve({"a": X}, y, 3, 89, 2)
    assert curve["modularity"].item() == pytest.approx(mean, abs=1e-6)
    assert curve["std"].item() == pytest.approx(std, abs=1e-6)  # ddof = 1, as Lu et al.'s torch.std
    with pytest.warns(UserWarning, match="n_batches=5 asked for, but only 2 full batch"):
        assert modularity_curve(acts, batch_size=89, n_batches=5, progress=False).attrs["n_samples"] == 178
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="n_batches must be None"):
            modularity_curve(acts, batch_size=89, n_batches=bad, progress=False)


def test_modularity_curve_warns_about_sorted_labels_and_shuffles_on_request():
    X, y = synthetic_clusters(400, 4, 16, separation=2.0, seed=3, shuffle=False)
    order = np.argsort(y, kind="stable")  # class-sorted: each batch of 100 holds one class
    X, y = X[order], y[order]
    with pytest.warns(UserWarning, match=r"4 of 4 batch\(es\) cover fewer than the 4 classes .* shuffle="):
        sorted_curve = modularity_curve({"a": X}, y, batch_size=100, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        curve = modularity_curve({"a": X}, y, batch_size=100, shuffle=0, progress=False)
    # the expected value: the reference pipeline on the same random batches (each in original order)
    perm = np.random.default_rng(0).permutation(400)
    rows = np.concatenate([np.sort(perm[b:b + 100]) for b in range(0, 400, 100)])
    (_, mean, std), = reference_modularity_curve({"a": X[rows]}, y[rows], 3, 100, 4)
    assert curve["modularity"].item() == pytest.approx(mean, abs=1e-6)
    assert curve["std"].item() == pytest.approx(std, abs=1e-6)
    assert curve.attrs["shuffle"] == 0 and abs(sorted_curve["modularity"].item() - mean) > 0.1


def test_warnings_name_the_callers_line(rng):
    X = rng.normal(size=(150, 5))
    with pytest.warns(UserWarning, match="left out") as caught:
        modularity_curve({"a": X}, np.arange(150) % 3, batch_size=100, progress=False)
    assert [w.filename for w in caught] == [__file__]  # this test's line, not repgraph's


def test_modularity_curve_warns_about_continuous_labels_and_constant_layers(rng):
    X = rng.normal(size=(60, 5))
    with pytest.warns(UserWarning, match="every sample has its own label"):
        modularity_curve({"a": X}, np.linspace(0, 1, 60), batch_size=30, progress=False)
    labels = np.arange(60) % 3
    with pytest.warns(UserWarning, match=r"layer 'flat' is constant .* in 2 of 2 batch"):
        modularity_curve({"flat": np.ones((60, 5)) * 2.0}, labels, batch_size=30, progress=False)
    half_flat = np.ones((60, 5))
    half_flat[30:] = rng.normal(size=(30, 5))  # batch 0 constant; batch 1 varies
    half_flat[31] = half_flat[30]  # ... though its first two rows are alike
    with pytest.warns(UserWarning, match=r"layer 'half' is constant .* in 1 of 2 batch"):
        modularity_curve({"half": half_flat}, labels, batch_size=30, progress=False)


def test_modularity_curve_of_huge_activations_equals_the_reference():
    # float32 values near 1e30: the float32 Gram would overflow; the cosine graph is scale invariant
    X, y = synthetic_clusters(200, 4, 12, separation=1.0, seed=4)
    big = X * np.float32(1e30)
    curve = modularity_curve({"big": big, "plain": X}, y, batch_size=100, progress=False)
    (_, mean, _), = reference_modularity_curve({"big": big.astype(np.float64)}, y, 3, 100, 2)
    assert curve["modularity"].iloc[0] == pytest.approx(mean, abs=1e-6)
    assert curve["modularity"].iloc[0] == pytest.approx(curve["modularity"].iloc[1], abs=1e-6)


def test_modularity_curve_bad_input():
    X, y = synthetic_clusters(50, 5, 8, seed=0)
    with pytest.raises(ValueError, match="No labels"):
        modularity_curve(Activations({"a": X}), progress=False)
    with pytest.raises(ValueError, match=r"labels \(for layer 'a'\) has length 49"):
        modularity_curve({"a": X}, labels=y[:-1], progress=False)
    bad = X.copy()
    bad[3, 2] = np.nan
    with pytest.raises(ValueError, match="layer 'b'.*NaN or Inf"):
        modularity_curve(Activations({"a": X, "b": bad}, y), progress=False)
    with pytest.raises(ValueError, match="N=3 samples but k=3"):
        modularity_curve(Activations({"a": X[:3]}, y[:3]), progress=False)
    with pytest.raises(ValueError, match="1 sample"):
        modularity_curve(Activations({"a": X[:1]}, y[:1]), progress=False)
