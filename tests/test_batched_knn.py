"""The batched kNN kernel (all batches of a layer in one batched product and top-k) gives, batch
for batch, the edges of ``knn_edges`` and of the naive definition; the batched modularity gives
networkx's modularity of the naive graph."""
import numpy as np
import pytest
import scipy.sparse as sp
import torch

import repgraph.builders.knn as knn_module
from repgraph import config_context
from repgraph.analyzers.batched_modularity import batch_modularities
from repgraph.builders.knn import knn_edges, knn_edges_batched
from oracles import naive_knn, nx_modularity


def tied_batches(rng, n_batches, n, d, noise=0.0):
    """Small integer features (many exact ties; for n >= 256 the unbatched path takes the
    block-triangular Gram); ``noise`` > 0 turns exact ties into near ties that only float64 settles."""
    X = rng.integers(0, 3, size=(n_batches, n, d)).astype(np.float64)
    return torch.from_numpy((X + noise * rng.normal(size=X.shape)).astype(np.float32))


def spy(monkeypatch, name):
    """Count the calls of the kernel's helper ``name`` (the band re-scoring paths)."""
    calls = []
    original = getattr(knn_module, name)

    def wrapped(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(knn_module, name, wrapped)
    return calls


def assert_same_edges(batched, X, k, metric, rtol):
    assert len(batched) == len(X)
    for (r, c, w), Xb in zip(batched, X):
        r1, c1, w1 = knn_edges(Xb, k, metric)
        np.testing.assert_array_equal(r, r1)
        np.testing.assert_array_equal(c, c1)
        np.testing.assert_allclose(w, w1, rtol=rtol, atol=0)


@pytest.mark.parametrize("metric", ["cosine", "correlation", "linear"])
@pytest.mark.parametrize("n", [40, 300])
def test_batched_equals_unbatched_on_tied_integer_data(rng, monkeypatch, metric, n):
    rescored, exact = spy(monkeypatch, "_rescore_band"), spy(monkeypatch, "_exact_rows")
    X = tied_batches(rng, 4, n, 4)
    for k in (1, 3, 5):
        # integer features: every float32 dot product is exact, so both paths hold the same float32
        # similarities and the same float64 re-scorings: equal to 1e-12
        assert_same_edges(knn_edges_batched(X, k, metric), X, k, metric, rtol=1e-12)
    assert rescored and exact  # the data reached both float64 re-scoring paths


def test_batched_equals_unbatched_on_near_ties(rng, monkeypatch):
    rescored = spy(monkeypatch, "_rescore_band")
    X = tied_batches(rng, 3, 300, 8, noise=1e-6)
    # edge sets identical; weights: float64 re-scored ones agree to 1e-12, the others are float32
    # similarities of two different float32 products (bmm against the block-triangular gram)
    assert_same_edges(knn_edges_batched(X, 3), X, 3, "cosine", rtol=2e-6)
    assert rescored


@pytest.mark.parametrize("noise", [0.0, 1e-3])  # near ties a float64 cosine separates by > 1e-9,
def test_batched_equals_naive_definition(rng, monkeypatch, noise):  # the oracle's tie resolution
    rescored = spy(monkeypatch, "_rescore_band")
    X = tied_batches(rng, 3, 60, 4, noise)
    for (r, c, w), Xb in zip(knn_edges_batched(X, 3), X.numpy()):
        A = sp.csr_matrix((w, (r, c)), shape=(60, 60)).toarray()
        np.testing.assert_allclose((A + A.T) / 2, naive_knn(Xb, 3), atol=1e-6)
    assert rescored


def test_batch_groups_and_row_chunks_give_the_same_edges(rng, monkeypatch):
    X = tied_batches(rng, 5, 300, 6)
    whole = knn_edges_batched(X, 3)
    with config_context(working_memory=1):  # 1 MiB holds two 300x300 float32 blocks: groups 2, 2, 1
        grouped = knn_edges_batched(X, 3)
    monkeypatch.setattr(knn_module, "row_chunk", lambda n_rows, row_bytes: 7)  # 7 rows of one batch
    chunked = knn_edges_batched(X, 3)
    for a, b, c in zip(whole, grouped, chunked):
        for x, y, z in zip(a, b, c):
            np.testing.assert_array_equal(x, y)
            np.testing.assert_array_equal(x, z)


def test_batched_kernel_bad_input(rng):
    X = tied_batches(rng, 3, 10, 4)
    with pytest.raises(ValueError, match=r"\(B, n, D\)"):
        knn_edges_batched(X[0], 3)
    with pytest.raises(ValueError, match="1 <= k < n"):
        knn_edges_batched(X, 10)
    with pytest.raises(ValueError, match="metric"):
        knn_edges_batched(X, 3, "rbf")
    X[2, 4, 1] = float("nan")
    with pytest.raises(ValueError, match=r"acts \(batch 2\) contains NaN or Inf in 1 of 10"):
        knn_edges_batched(X, 3, name="acts")


def test_batch_modularities_equal_networkx_on_naive_graphs(rng):
    X = tied_batches(rng, 4, 80, 6, noise=1e-3)
    labels = rng.choice(["cat", "dog", "eel"], size=(4, 80))
    expected = [nx_modularity(naive_knn(Xb, 3), yb) for Xb, yb in zip(X.numpy(), labels)]
    # 1e-6: the weights of rows without near ties are float32 cosines
    np.testing.assert_allclose(batch_modularities(X, labels, k=3), expected, rtol=0, atol=1e-6)
    # the same from numpy images (B, n, C, H, W)
    images = X.numpy().reshape(4, 80, 1, 2, 3)
    np.testing.assert_allclose(batch_modularities(images, labels, k=3), expected, rtol=0, atol=1e-6)


def test_batch_modularities_bad_input(rng):
    X = tied_batches(rng, 2, 10, 4)
    labels = np.zeros((2, 10), dtype=int)
    with pytest.raises(ValueError, match=r"\(B, n, \.\.\.\)"):
        batch_modularities(X[0], labels[0])
    with pytest.raises(ValueError, match=r"labels must have shape \(B, n\) = \(2, 10\)"):
        batch_modularities(X, labels[:, :5])
    with pytest.raises(ValueError, match="positive integer"):
        batch_modularities(X, labels, k=2.5)
