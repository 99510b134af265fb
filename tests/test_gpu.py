"""The analyzers on a CUDA device give the CPU values (skipped where no GPU is present)."""
import numpy as np
import pytest
import torch

from repgraph import birth_points, cka, config_context, filter_similarity, gbs, knn_graph, modularity_curve, Activations
from repgraph.analyzers.batched_modularity import batch_modularities
from repgraph.analyzers.modularity import edge_modularity
from repgraph.builders.knn import knn_edges, knn_edges_batched
from repgraph.datasets import synthetic_clusters

pytestmark = pytest.mark.gpu


def test_knn_graph_and_modularity_on_cuda_equal_cpu():
    X, y = synthetic_clusters(600, 5, 64, seed=0)  # N >= 256: the block-triangular Gram path
    np.testing.assert_allclose(knn_graph(torch.from_numpy(X).cuda(), k=3).toarray(), knn_graph(X, k=3).toarray(),
                               atol=1e-6)
    acts = Activations({"a": X, "b": X ** 2}, y)
    for batch_size in (100, 300):
        np.testing.assert_allclose(
            modularity_curve(acts, batch_size=batch_size, device="cuda", progress=False)["modularity"],
            modularity_curve(acts, batch_size=batch_size, progress=False)["modularity"], atol=1e-6)


def test_similarities_on_cuda_equal_cpu():
    rng = np.random.default_rng(0)
    X, Y = rng.normal(size=(80, 30)), rng.normal(size=(80, 40))
    for debiased in (False, True):
        assert cka(X, Y, debiased=debiased, device="cuda") == pytest.approx(cka(X, Y, debiased=debiased), abs=1e-6)
    assert gbs(X, Y, device="cuda") == pytest.approx(gbs(X, Y), abs=1e-6)
    F = np.maximum(rng.normal(size=(8, 6, 5, 5)), 0)
    np.testing.assert_allclose(filter_similarity(F, device="cuda"), filter_similarity(F), atol=1e-10)
    assert (birth_points(torch.from_numpy(F).cuda()) == birth_points(F)).all()


@pytest.mark.parametrize("working_memory", [256, 1])  # 1 MiB: groups of two 300x300 blocks
def test_batched_knn_and_modularity_on_cuda_equal_cpu(working_memory):
    rng = np.random.default_rng(0)
    tied = rng.integers(0, 3, size=(5, 300, 4)).astype(np.float32)  # exact and near ties
    clusters = synthetic_clusters(1500, 5, 64, seed=0, shuffle=False)[0].reshape(5, 300, 64)
    labels = np.arange(1500).reshape(5, 300) % 5
    for X in (tied, clusters):
        with config_context(working_memory=working_memory):
            edges = knn_edges_batched(torch.from_numpy(X).cuda(), 3)
            values = batch_modularities(torch.from_numpy(X).cuda(), labels, k=3)
        expected = []
        for (r, c, w), Xb, yb in zip(edges, X, labels):
            r1, c1, w1 = knn_edges(torch.from_numpy(Xb), 3)  # CPU, block-triangular Gram
            np.testing.assert_array_equal(r, r1)
            np.testing.assert_array_equal(c, c1)  # the neighbours of the float64 definition
            np.testing.assert_allclose(w, w1, rtol=1e-6)  # float32 weights of two products
            expected.append(edge_modularity(r1, c1, w1, yb))
        np.testing.assert_allclose(values, expected, rtol=0, atol=1e-6)
