import igraph as ig
import networkx as nx
import numpy as np
import pytest
import scipy.sparse as sp
import torch
from sklearn.metrics.pairwise import cosine_similarity, rbf_kernel

from repgraph import knn_graph, similarity_matrix, to_igraph, to_networkx
from repgraph.builders.similarity import gram
import reference_similarity
from oracles import naive_knn


@pytest.mark.parametrize("symmetrize", ["mean", "max", "mutual", None])
def test_knn_graph_equals_naive_definition_with_ties(rng, symmetrize):
    for trial in range(5):
        # small integer features make many exactly tied similarities
        X = rng.integers(0, 3, size=(40, 4)).astype(np.float32)
        for k in (1, 3, 5):
            A = knn_graph(X, k=k, symmetrize=symmetrize)
            assert sp.isspmatrix_csr(A) or isinstance(A, sp.csr_matrix)
            np.testing.assert_allclose(A.toarray(), naive_knn(X, k, symmetrize), atol=1e-6)


def test_knn_graph_equals_naive_definition_on_a_large_tied_batch(rng):
    # N above the block-triangular Gram threshold; integer features give many exact ties and
    # near-ties that the float64 re-scoring must settle
    X = rng.integers(0, 3, size=(300, 6)).astype(np.float32)
    np.testing.assert_allclose(knn_graph(X, k=3).toarray(), naive_knn(X, 3), atol=1e-6)


@pytest.mark.parametrize("n", [10, 300, 517])
def test_gram_equals_the_full_product(rng, n):
    X = rng.normal(size=(n, 33))
    G = gram(torch.from_numpy(X))
    np.testing.assert_allclose(G.numpy(), X @ X.T, rtol=0, atol=1e-10)
    np.testing.assert_allclose(G.numpy(), G.numpy().T, rtol=0, atol=1e-10)


def test_knn_graph_each_node_keeps_k_out_edges(rng):
    X = rng.normal(size=(60, 7))
    A = knn_graph(X, k=4, symmetrize=None)
    assert (np.diff(A.indptr) == 4).all()
    assert A.diagonal().sum() == 0


def test_knn_graph_chunked_equals_unchunked(rng, monkeypatch):
    X = rng.normal(size=(90, 12))
    full = knn_graph(X, k=3).toarray()
    import repgraph.builders.knn as knn_module
    monkeypatch.setattr(knn_module, "row_chunk", lambda n_rows, n_cols: 7)
    np.testing.assert_allclose(knn_graph(X, k=3).toarray(), full, atol=1e-6)


def test_knn_graph_accepts_torch_and_images(rng):
    X = rng.normal(size=(30, 2, 3, 3)).astype(np.float32)
    np.testing.assert_allclose(knn_graph(torch.from_numpy(X), k=3).toarray(),
                               naive_knn(X.reshape(30, -1), 3), atol=1e-6)


def test_negative_weights(rng):
    # Two opposite groups {0,1} and {2,3}: each node keeps its twin (s=1) and, by the tie rule,
    # the lowest-index node of the other group (s=-1): 0->2, 1->2, 2->0, 3->0.
    # Edge 0-2 is mutual (weight -1); 1-2 and 3-0 are one-sided (weight -1/2).
    X = np.array([[1.0, 0], [1.0, 0], [-1.0, 0], [-1.0, 0]])
    kept = knn_graph(X, k=2, negative="keep").toarray()
    assert kept[0, 2] == pytest.approx(-1.0) and kept[1, 2] == pytest.approx(-0.5)
    assert kept[3, 0] == pytest.approx(-0.5) and kept[1, 3] == 0.0
    assert knn_graph(X, k=2, negative="clip").toarray().min() == 0.0
    with pytest.raises(ValueError, match="negative similarity"):
        knn_graph(X, k=2, negative="raise")


def test_knn_graph_bad_input(rng):
    X = rng.normal(size=(5, 3))
    with pytest.raises(ValueError, match="N=5 samples but k=5"):
        knn_graph(X, k=5)
    with pytest.raises(ValueError, match="1 sample"):
        knn_graph(X[:1], k=1)
    bad = X.copy()
    bad[0, 0] = np.inf
    with pytest.raises(ValueError, match="NaN or Inf"):
        knn_graph(bad, k=2)
    with pytest.raises(ValueError, match="symmetrize"):
        knn_graph(X, k=2, symmetrize="sum")
    with pytest.raises(ValueError, match="k must be a positive integer"):
        knn_graph(X, k=0)
    with pytest.raises(ValueError, match="n_samples, n_features"):
        knn_graph(np.ones(5), k=2)


def test_similarity_matrix_metrics(rng):
    X = rng.normal(size=(20, 6))
    np.testing.assert_allclose(similarity_matrix(X, "cosine"), cosine_similarity(X), atol=1e-6)
    np.testing.assert_allclose(similarity_matrix(X, "correlation"), np.corrcoef(X), atol=1e-6)
    np.testing.assert_allclose(similarity_matrix(X, "linear"), X @ X.T, atol=1e-4)
    np.testing.assert_allclose(similarity_matrix(X, "rbf", sigma=2.0), rbf_kernel(X, gamma=1 / 8), atol=1e-6)
    d2 = ((X[:, None] - X[None]) ** 2).sum(-1)
    sigma = np.sqrt(np.median(d2))
    np.testing.assert_allclose(similarity_matrix(X, "rbf"), np.exp(-d2 / (2 * sigma**2)), atol=1e-5)
    t = similarity_matrix(torch.from_numpy(X), "cosine")
    assert isinstance(t, torch.Tensor)
    with pytest.raises(ValueError, match="metric"):
        similarity_matrix(X, "manhattan")


def test_zero_rows_use_the_norm_floor():
    X = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0]])
    S = similarity_matrix(X, "cosine")
    assert np.isfinite(S).all() and S[0].tolist() == [0.0, 0.0, 0.0]


def test_conversions_round_trip(rng):
    X = rng.normal(size=(25, 5))
    A = knn_graph(X, k=3)
    labels = rng.integers(0, 3, 25)
    G = to_networkx(A, labels)
    assert isinstance(G, nx.Graph) and not G.is_directed()
    np.testing.assert_allclose(nx.to_numpy_array(G, weight="weight"), A.toarray())
    assert [G.nodes[i]["label"] for i in range(25)] == labels.tolist()
    H = to_igraph(A, labels)
    assert isinstance(H, ig.Graph) and not H.is_directed()
    np.testing.assert_allclose(np.array(H.get_adjacency(attribute="weight").data), A.toarray())
    assert H.vs["label"] == labels.tolist()
    D = knn_graph(X, k=3, symmetrize=None)
    assert to_networkx(D).is_directed() and to_igraph(D).is_directed()
    with pytest.raises(ValueError, match="labels has length"):
        to_networkx(A, labels[:3])


def test_knn_graph_of_huge_activations_equals_the_unscaled_graph(rng):
    # float32 values near 1e30 overflow the float32 Gram; scaling by a power of two is exact
    X = rng.normal(size=(50, 12)).astype(np.float32)
    X[7] = 0.0  # a zero row keeps its 1e-8 norm floor (cosine 0 with everyone)
    for scale in (2.0 ** 100, 1e30):
        big = X * np.float32(scale)
        np.testing.assert_allclose(knn_graph(big, k=3).toarray(), naive_knn(big.astype(np.float64), 3), atol=1e-6)
    np.testing.assert_array_equal(knn_graph(X * np.float32(2.0 ** 100), k=3).toarray(), knn_graph(X, k=3).toarray())
    linear = knn_graph(X * np.float32(2.0 ** 100), k=3, metric="linear").toarray()  # weights scaled back
    np.testing.assert_array_equal(linear, knn_graph(X, k=3, metric="linear").toarray() * 2.0 ** 200)


def test_knn_graph_differs_from_lu_et_al_only_where_a_node_would_pick_itself(rng):
    # rows with at least k positive similarities: the same graph as Lu et al.'s code
    X = np.abs(rng.normal(size=(40, 8))).astype(np.float32)
    np.testing.assert_allclose(knn_graph(X, k=3).toarray(), reference_similarity.lu_knn_graph(X, 3), atol=1e-6)
    # three points with pairwise cosine -1/3 (exact ties), k = 1: Lu et al.'s ranking includes the
    # zeroed diagonal, so every node picks itself (no edge); here each keeps its best other node
    T = np.array([[1.0, -1, -1], [-1, 1, -1], [-1, -1, 1]])
    assert not reference_similarity.lu_knn_graph(T, 1).any()
    ours = knn_graph(T, k=1).toarray()  # 0 -> 1, 1 -> 0, 2 -> 0 (ties: lowest index): 0-1 mutual, 2-0 one-sided
    np.testing.assert_allclose(ours, [[0, -1 / 3, -1 / 6], [-1 / 3, 0, 0], [-1 / 6, 0, 0]], atol=1e-7)
