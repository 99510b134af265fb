"""kNN-neighbourhood similarity measures (repgraph.analyzers.neighbourhood) against independent
ports of the reference code (tests/reference_neighbourhood.py: ReSi's nearest_neighbor.py with its
scikit-learn kNN, platonic-rep's mutual_knn and cknna), a hand-worked 6-point case, the documented
deviations (self excluded by index, ties to the lower index, CKNNA without the 1e-6), permutations,
invariances and the input errors."""
import importlib

import numpy as np
import pytest
import torch

import repgraph
from reference_neighbourhood import (platonic_cknna, platonic_knn, platonic_mutual_knn, resi_jaccard, resi_knn,
                                     resi_rank_similarity, resi_second_order_cosine, unit_rows)
from repgraph.analyzers import (Neighbourhood, cknna, jaccard_knn, mutual_knn, neighbourhood, rank_similarity,
                                second_order_cosine)

nbm = importlib.import_module("repgraph.analyzers.neighbourhood")  # the function shadows the module's name

MEASURES = {"jaccard_knn": jaccard_knn, "rank_similarity": rank_similarity,
            "second_order_cosine": second_order_cosine, "mutual_knn": mutual_knn, "cknna": cknna}
REFERENCES = {"jaccard_knn": resi_jaccard, "rank_similarity": resi_rank_similarity,
              "second_order_cosine": resi_second_order_cosine, "mutual_knn": platonic_mutual_knn,
              "cknna": lambda X, Y, k: platonic_cknna(X, Y, k, eps=0.0)[0]}


def _cosines(X):
    U = X.reshape(len(X), -1) / np.linalg.norm(X.reshape(len(X), -1), axis=1, keepdims=True)
    return U @ U.T


def _assert_tie_free(X, k, gap=1e-9):
    """The k-th and (k+1)-th nearest (and every pair within the k) are apart by more than ``gap``:
    the neighbours and their order are exact, whoever breaks ties."""
    S = _cosines(X)
    np.fill_diagonal(S, -np.inf)
    top = -np.sort(-S, axis=1)[:, :k + 1]
    assert np.diff(-top, axis=1).min() > gap


def _gaussian(seed, n=120, d=16):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    Y = X @ rng.normal(size=(d, d)) + 0.7 * rng.normal(size=(n, d))  # related but different neighbours
    return X, Y


def _blobs(seed, n_per=20, centres=5, d=10):
    rng = np.random.default_rng(seed)
    C = 10 * rng.normal(size=(centres, d))
    X = np.repeat(C, n_per, axis=0) + rng.normal(size=(centres * n_per, d))
    Y = np.repeat(C @ rng.normal(size=(d, d)), n_per, axis=0) + 2 * rng.normal(size=(centres * n_per, d))
    return X, Y


DATA = {"gaussian": _gaussian(0), "blobs": _blobs(1)}


@pytest.fixture(scope="module")
def prepared():
    X, Y = DATA["gaussian"]
    return X, Y, neighbourhood(X, 8), neighbourhood(Y, 8, name="Y")


# --- the references --------------------------------------------------------------------------------
@pytest.mark.parametrize("data", sorted(DATA))
@pytest.mark.parametrize("k", [3, 10])
@pytest.mark.parametrize("measure", sorted(MEASURES))
def test_each_measure_equals_its_reference_port(measure, data, k):
    X, Y = DATA[data]
    _assert_tie_free(X, k), _assert_tie_free(Y, k)
    got = MEASURES[measure](X, Y, k=k)
    assert type(got) is float
    assert abs(got - REFERENCES[measure](X, Y, k)) <= 1e-12


@pytest.mark.parametrize("data", sorted(DATA))
def test_neighbours_are_the_references_on_tie_free_data(data):
    X, _ = DATA[data]
    nb = neighbourhood(X, 10)
    np.testing.assert_array_equal(nb.indices, resi_knn(X, 10))  # nearest first, like scikit-learn's
    np.testing.assert_array_equal(nb.indices, platonic_knn(unit_rows(X), 10).numpy())
    np.testing.assert_allclose(nb.similarities, np.take_along_axis(_cosines(X), nb.indices, axis=1), atol=1e-15)
    np.testing.assert_allclose(np.linalg.norm(nb.unit, axis=1), 1.0, atol=1e-15)


def test_cknna_drops_the_references_1e6_by_the_documented_factor():
    for X, Y in DATA.values():
        ours = cknna(X, Y, k=10)
        theirs, s = platonic_cknna(X, Y, 10)  # with the reference's + 1e-6
        assert abs(ours * s / (s + 1e-6) - theirs) <= 1e-12
        assert abs(ours - theirs) > 1e-6  # the constant matters at these sizes: s is ~1e-2 or less
    X, _ = DATA["gaussian"]
    assert cknna(X, X, k=10) == pytest.approx(1.0, abs=1e-12)  # the reference gives s / (s + 1e-6) < 1


def test_cknna_with_every_other_sample_is_the_unbiased_cka_of_the_cosine_kernels():
    X, Y = _gaussian(3, n=40, d=6)
    theirs, _ = platonic_cknna(X, Y, 39, eps=0.0)
    assert cknna(X, Y, k=39) == pytest.approx(theirs, abs=1e-12)


# --- a hand-worked case ----------------------------------------------------------------------------
def _on_circle(degrees):
    a = np.deg2rad(np.asarray(degrees, dtype=np.float64))
    return np.stack([np.cos(a), np.sin(a)], axis=1)


def test_six_points_worked_by_hand():
    # Cosine distance grows with the angle between two points, so neighbours are nearest angles.
    # X at 0, 10, 30, 90, 100, 130 degrees; Y at 0, 40, 15, 90, 95, 170 degrees; k = 2.
    #   sample  X neighbours (angle)   Y neighbours (angle)   |∩|  Jaccard  rank term (ReSi)
    #   0       1 (10), 2 (30)         2 (15), 1 (40)         2    1        (1/3 + 1/3)/H_2 = 4/9
    #   1       0 (10), 2 (20)         2 (25), 0 (40)         2    1        4/9
    #   2       1 (20), 0 (30)         0 (15), 1 (25)         2    1        4/9
    #   3       4 (10), 5 (40)         4 (5),  1 (50)         1    1/3      2/(1·2)/H_1 = 1
    #   4       3 (10), 5 (30)         3 (5),  1 (55)         1    1/3      1
    #   5       4 (30), 3 (40)         4 (75), 3 (80)         2    1        (2/(1·2) + 2/(1·4))/H_2 = 1
    # (rank term of j: 2 / ((1 + |r_X − r_Y|)(r_X + r_Y)); H_2 = 3/2.)
    # Jaccard = (4 + 2/3)/6 = 7/9; mutual kNN = (2+2+2+1+1+2)/(2·6) = 5/6; rank = (3·4/9 + 3)/6 = 13/18.
    X = _on_circle([0, 10, 30, 90, 100, 130])
    Y = _on_circle([0, 40, 15, 90, 95, 170])
    assert neighbourhood(X, 2).indices.tolist() == [[1, 2], [0, 2], [1, 0], [4, 5], [3, 5], [4, 3]]
    assert neighbourhood(Y, 2).indices.tolist() == [[2, 1], [2, 0], [0, 1], [4, 1], [3, 1], [4, 3]]
    assert jaccard_knn(X, Y, k=2) == pytest.approx(7 / 9, abs=1e-15)
    assert mutual_knn(X, Y, k=2) == pytest.approx(5 / 6, abs=1e-15)
    assert rank_similarity(X, Y, k=2) == pytest.approx(13 / 18, abs=1e-15)
    for name in ("jaccard_knn", "mutual_knn", "rank_similarity", "second_order_cosine"):  # and the ports agree
        assert MEASURES[name](X, Y, k=2) == pytest.approx(REFERENCES[name](X, Y, 2), abs=1e-12)


# --- the documented deviations ---------------------------------------------------------------------
def test_self_is_excluded_by_index_where_resi_drops_a_coinciding_point():
    rng = np.random.default_rng(5)
    X = rng.normal(size=(12, 3))
    X[2], X[5], X[6] = [1.0, 0, 0], [2.0, 0, 0], [0.5, 0, 0]  # one direction: cosine distance exactly 0
    Y = X + 1e-3 * rng.normal(size=X.shape)  # the same, the ties broken: 2, 5 and 6 are each other's neighbours
    _assert_tie_free(Y, 2)
    ours = neighbourhood(X, 2).indices
    assert not (ours == np.arange(12)[:, None]).any()
    assert ours[2].tolist() == [5, 6] and ours[5].tolist() == [2, 6] and ours[6].tolist() == [2, 5]
    resi = resi_knn(X, 2)  # scikit-learn lists the three zero distances lowest index first; ReSi drops the first
    assert resi[5].tolist() == [5, 6] and resi[6].tolist() == [5, 6]  # 5 and 6 are their own neighbours
    lists_y = neighbourhood(Y, 2).indices
    np.testing.assert_array_equal(lists_y, resi_knn(Y, 2))  # Y is tie-free: the same lists

    def per_row(lists):
        return np.array([len(set(a) & set(b)) / len(set(a) | set(b)) for a, b in zip(lists, lists_y)])

    ours_rows, resi_rows = per_row(ours), per_row(resi)
    assert jaccard_knn(X, Y, k=2) == pytest.approx(ours_rows.mean(), abs=1e-15)
    assert resi_jaccard(X, Y, 2) == pytest.approx(resi_rows.mean(), abs=1e-15)
    # rows 5 and 6 have Jaccard 1 here ({2, 6} and {2, 5} in both), 1/3 in ReSi ({5, 6} against them)
    assert ours_rows[[5, 6]].tolist() == [1.0, 1.0] and resi_rows[[5, 6]] == pytest.approx([1 / 3, 1 / 3])
    # (sample 3's second neighbour is a three-way tie among 2, 5 and 6: the lower index 2 here)
    assert ours[3].tolist() == [7, 2] and resi[3][1] in (2, 5, 6)
    # platonic-rep excludes self by index too: mutual kNN on the same self-free lists
    assert mutual_knn(X, Y, k=2) == pytest.approx(np.mean([len(set(a) & set(b)) / 2 for a, b in zip(ours, lists_y)]),
                                                  abs=1e-15)


def test_ties_go_to_the_lower_index_for_the_set_and_the_order():
    # sample 0 at 0 degrees; 1, 2 at ±30 (exactly the same cosine to 0); 3, 4 at ±60
    X = _on_circle([0, 30, -30, 60, -60, 180])
    nb = neighbourhood(X, 3)
    assert nb.indices[0].tolist() == [1, 2, 3]  # 1 before 2 (tied), then 3 of the tied 3 and 4
    assert nb.similarities[0, 0] == nb.similarities[0, 1]
    assert neighbourhood(X, 1).indices[0].tolist() == [1]


# --- permutations ----------------------------------------------------------------------------------
@pytest.mark.parametrize("measure", sorted(MEASURES))
def test_permuted_equals_a_fresh_search_of_the_permuted_data(measure, prepared):
    X, Y, A, B = prepared
    perm = np.random.default_rng(7).permutation(len(X))
    _assert_tie_free(X, 8), _assert_tie_free(Y, 8)
    fresh_a, fresh_b = neighbourhood(X[perm], 8), neighbourhood(Y[perm], 8)
    np.testing.assert_array_equal(A.permuted(perm).indices, fresh_a.indices)
    np.testing.assert_array_equal(B.permuted(torch.as_tensor(perm)).indices, fresh_b.indices)
    f = MEASURES[measure]
    value = f(A.permuted(perm), B.permuted(perm))
    assert value == pytest.approx(f(fresh_a, fresh_b), abs=1e-12)
    assert value == pytest.approx(f(A, B), abs=1e-12)  # every measure is invariant to reordering the samples


def test_permuted_keeps_the_original_tie_choices():
    X = _on_circle([0, 30, -30, 100, 150, -150])
    perm = np.array([0, 2, 1, 3, 4, 5])  # the tied samples 1 and 2 swap places
    moved = neighbourhood(X, 1).permuted(perm)
    assert moved.indices[0].tolist() == [2]  # the original choice, old sample 1, is now sample 2
    assert neighbourhood(X[perm], 1).indices[0].tolist() == [1]  # a fresh search gives the tie to the lower index


def test_permuted_refuses_what_is_not_a_permutation(prepared):
    _, _, A, _ = prepared
    with pytest.raises(ValueError, match="perm must be a permutation"):
        A.permuted(np.zeros(A.n, dtype=int))
    with pytest.raises(ValueError, match="perm must be a 1-D integer array of length n=120"):
        A.permuted(np.arange(A.n - 1))
    with pytest.raises(ValueError, match="perm must be a 1-D integer"):
        A.permuted(np.arange(A.n, dtype=float))


# --- invariances -----------------------------------------------------------------------------------
_Q = np.linalg.qr(np.random.default_rng(11).normal(size=(16, 16)))[0]
TRANSFORMS = {"orthogonal": lambda X: X @ _Q, "scaled 0.37": lambda X: 0.37 * X, "scaled 5": lambda X: 5.0 * X,
              "scaled 1e-200": lambda X: 1e-200 * X, "scaled 1e200": lambda X: 1e200 * X,
              "orthogonal, scaled 3": lambda X: 3.0 * (X @ _Q)}


@pytest.mark.parametrize("transform", sorted(TRANSFORMS))
def test_invariant_to_orthogonal_transforms_and_isotropic_scaling(transform, prepared):
    X, Y, A, B = prepared
    _assert_tie_free(X, 8), _assert_tie_free(Y, 8)
    changed = neighbourhood(TRANSFORMS[transform](X), 8)
    for measure, f in MEASURES.items():
        assert f(changed, B) == pytest.approx(f(A, B), abs=1e-12), measure
        assert f(B, changed) == pytest.approx(f(B, A), abs=1e-12), measure


@pytest.mark.parametrize("measure", sorted(MEASURES))
def test_symmetric_and_one_for_a_representation_with_itself(measure, prepared):
    _, _, A, B = prepared
    f = MEASURES[measure]
    if measure != "cknna":
        assert f(B, A) == pytest.approx(f(A, B), abs=1e-12)
    assert f(A, A) == pytest.approx(1.0, abs=1e-12)


def test_cknna_is_not_exactly_symmetric_as_the_reference():
    # its one-directional masks make the kernels asymmetric: 1ᵀK̃L̃1 is not 1ᵀL̃K̃1
    X, Y = DATA["gaussian"]
    forward, backward = cknna(X, Y, k=6), cknna(Y, X, k=6)
    assert forward == pytest.approx(platonic_cknna(X, Y, 6, eps=0.0)[0], abs=1e-12)
    assert backward == pytest.approx(platonic_cknna(Y, X, 6, eps=0.0)[0], abs=1e-12)
    assert 1e-6 < abs(forward - backward) < 1e-2


# --- the Neighbourhood object and the inputs ---------------------------------------------------------
def test_the_neighbourhood_holds_what_the_measures_need(prepared):
    X, _, A, _ = prepared
    assert (A.n, A.k) == (120, 8) and A.indices.dtype == np.int64 and A.indices.shape == (120, 8)
    assert not (A.indices == np.arange(120)[:, None]).any()
    assert (np.diff(A.similarities, axis=1) <= 0).all()  # nearest first
    assert A.similarities.dtype == np.float64 and A.unit.shape == X.shape
    with pytest.raises(ValueError):
        A.indices[0, 0] = 3  # shared by every pair: read-only
    assert "n=120, k=8" in repr(A)


def test_neighbourhoods_arrays_and_tensors_give_the_same_values(prepared):
    X, Y, A, B = prepared
    for f in MEASURES.values():
        value = f(A, B)
        assert f(X, Y, k=8) == value
        assert f(A, Y) == value and f(X, B) == value  # an array is prepared with the Neighbourhood's k
        assert f(A, B, k=8) == value  # an explicit k that agrees
        assert f(torch.as_tensor(X, dtype=torch.float64), Y.reshape(120, 4, 4), k=8) == value  # (N, ...) flattened


def test_a_k_other_than_the_neighbourhoods_is_refused(prepared):
    X, Y, A, B = prepared
    with pytest.raises(ValueError, match="k=10 but the Neighbourhood passed as X and Y has k=8"):
        jaccard_knn(A, B, k=10)  # an explicit 10 is not the default left out
    with pytest.raises(ValueError, match="X has k=8 neighbours per sample but Y has k=5"):
        mutual_knn(A, neighbourhood(Y, 5))


def test_bad_inputs_name_the_argument():
    X, Y = _gaussian(2, n=20, d=4)
    with pytest.raises(ValueError, match="X has N=20 samples but Y has N=19"):
        jaccard_knn(X, Y[:19], k=3)
    with pytest.raises(ValueError, match="k=20 but X has N=20 samples"):
        rank_similarity(X, Y, k=20)
    with pytest.raises(TypeError, match="k must be an integer"):
        mutual_knn(X, Y, k=2.5)
    with pytest.raises(ValueError, match="k must be an integer >= 1"):
        mutual_knn(X, Y, k=0)
    bad = Y.copy()
    bad[4, 1] = np.nan
    with pytest.raises(ValueError, match="Y contains NaN or Inf in 1 of 20 samples"):
        second_order_cosine(X, bad, k=3)
    bad = Y.copy()
    bad[7] = 0.0
    with pytest.raises(ValueError, match=r"Y has 1 all-zero sample\(s\) \(row 7\)"):
        cknna(X, bad, k=3)
    with pytest.raises(ValueError, match="X must have shape"):
        jaccard_knn(X[:, 0], Y, k=3)
    with pytest.raises(ValueError, match="CKNNA needs k >= 2"):
        cknna(X, Y, k=1)
    with pytest.raises(ValueError, match="needs N >= 4"):
        cknna(X[:3], Y[:3], k=2)


def test_every_other_sample_as_neighbour_is_allowed_and_trivial():
    X, Y = _gaussian(4, n=15, d=3)
    assert jaccard_knn(X, Y, k=14) == 1.0 and mutual_knn(X, Y, k=14) == 1.0


def test_undefined_second_order_cosine_and_cknna_raise():
    X = np.repeat(np.eye(3), 3, axis=0)  # three samples per axis: unit rows exactly, distance exactly 0
    with pytest.raises(ValueError, match="sample 0 is at cosine distance 0 from all its neighbours in X"):
        second_order_cosine(X, X, k=2)
    E = np.eye(6)  # every cosine 0: the kNN-restricted kernel is zero
    with pytest.raises(ValueError, match="X's cosine kernel restricted to its own kNN pairs"):
        cknna(E, _gaussian(0, n=6, d=3)[0], k=2)


def test_exported_from_repgraph():
    for name in ("Neighbourhood", "neighbourhood", *MEASURES):
        assert getattr(repgraph, name) is getattr(nbm, name)
        assert name in repgraph.__all__
    assert isinstance(repgraph.neighbourhood(np.eye(3) + 1, 1), Neighbourhood)
