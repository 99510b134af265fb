"""The analyzers on a CUDA device give the CPU values (skipped where no GPU is present)."""
import numpy as np
import pytest
import torch

from repgraph import birth_points, cka, filter_similarity, gbs, knn_graph, modularity_curve, Activations
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
