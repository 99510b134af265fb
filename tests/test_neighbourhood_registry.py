"""The kNN-neighbourhood measures in the similarity registry: layer_similarity and calibrate use them
with one neighbourhood per layer, equal to the functions called on the arrays."""
from __future__ import annotations

import numpy as np
import pytest

import repgraph as rg

NAMES = ["jaccard_knn", "rank_similarity", "second_order_cosine", "mutual_knn", "cknna"]


@pytest.fixture(scope="module")
def layers():
    rng = np.random.default_rng(0)
    base = rng.normal(size=(60, 12))
    return {"a": base, "b": base @ np.linalg.qr(rng.normal(size=(12, 12)))[0] + 0.3 * rng.normal(size=(60, 12)),
            "c": rng.normal(size=(60, 8))}


@pytest.mark.parametrize("name", NAMES)
def test_layer_similarity_equals_the_measure_on_the_arrays(layers, name):
    fn = getattr(rg, name)
    matrix = rg.layer_similarity(layers, measure=name, k=6)
    for a in layers:
        for b in layers:
            assert matrix.loc[a, b] == pytest.approx(fn(layers[a], layers[b], k=6), abs=1e-12), (a, b)
    assert matrix.attrs["parameters"] == {"k": 6} and matrix.attrs["maximum"] == 1.0
    assert rg.get_measure(name).invariances == {"orthogonal", "isotropic_scaling"}


def test_cknna_is_scored_in_both_directions_not_mirrored(layers):
    matrix = rg.layer_similarity(layers, measure="cknna", k=6)
    assert not rg.get_measure("cknna").symmetric
    assert matrix.loc["a", "b"] == pytest.approx(rg.cknna(layers["a"], layers["b"], k=6), abs=1e-12)
    assert matrix.loc["b", "a"] == pytest.approx(rg.cknna(layers["b"], layers["a"], k=6), abs=1e-12)
    assert matrix.loc["a", "b"] != matrix.loc["b", "a"]


@pytest.mark.parametrize("name", NAMES)
def test_an_orthogonal_copy_is_significant_and_noise_is_not(name):
    rng = np.random.default_rng(1)
    X = rng.normal(size=(50, 10))
    Q = np.linalg.qr(rng.normal(size=(10, 10)))[0]
    same = rg.calibrate(name, X, X @ Q, n_permutations=49, seed=0, k=5)
    assert same.p_value == pytest.approx(1 / 50) and same.calibrated == pytest.approx(1.0)
    independent = rg.calibrate(name, X, rng.normal(size=(50, 10)), n_permutations=49, seed=0, k=5)
    assert independent.p_value > 0.05
