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
    assert modularity_curve(acts, batch_size=500, progress=False)["n_samples"].item() == 1000
    assert modularity_curve(acts, batch_size=500, n_batches=1, progress=False)["n_samples"].item() == 500
    assert modularity_curve(acts, batch_size=5000, progress=False)["n_samples"].item() == 1250


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
