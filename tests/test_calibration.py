"""Permutation calibration (Gröger et al., ICML 2026) against a line-by-line port of the
Aristotelian code at commit 785054b (tests/reference_calibration.py), hand-worked cases, and the
statistics of the test itself: uniform p-values under independence, the smallest p-value for
representations that differ by a rotation."""
import warnings

import numpy as np
import pytest
import torch
from scipy import stats

import repgraph as rg
from repgraph.analyzers.calibration import calibrated_score, gated, permutations, threshold
from repgraph.analyzers.similarity_measures import BUILTINS
import reference_calibration as ref


def _reference(raw, null, alpha, maximum=1.0):
    return ref.compute_calibration_stats(raw, null, quantile=1.0 - alpha, max_score=maximum)


# --- the formulas: equal to the reference on fixed nulls --------------------------------------------
@pytest.mark.parametrize("k", [1, 9, 19, 50, 199])
@pytest.mark.parametrize("alpha", [0.01, 0.05, 0.1, 0.25, 0.5])
def test_equals_the_aristotelian_code_on_fixed_nulls(k, alpha):
    rng = np.random.default_rng(k)
    null = np.round(rng.normal(0.3, 0.1, size=k), 2)  # rounded: ties between the null and the raw score
    for raw in [null[0], null.max(), null.min(), 0.31, 0.9, 1.2, -0.5, float(np.median(null))]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # K too small for alpha warns (tested below)
            got = calibrated_score(raw, null, alpha=alpha)
        want = _reference(raw, null, alpha)
        assert (got.p_value, got.tau, got.calibrated) == (want.pvalue, want.tau, want.gated)
        assert got.null_mean == want.variants.mean_null and got.null_std == want.variants.std_null
        assert got.null_centred == want.variants.null_centered and got.z == want.variants.z
        summary = ref.compute_null_summary(null, T_obs=raw, alpha=alpha)
        assert (got.tau, got.p_value, got.null_mean, got.null_std) == (
            summary["tau_alpha"], summary["p_value"], summary["mu0"], summary["sd0"])
        assert got.n_permutations == k and got.alpha == alpha and np.array_equal(got.null, null)


@pytest.mark.parametrize("maximum", [None, 0.5, 0.95, 1.0, 2.0])
def test_gated_score_equals_the_reference_for_any_maximum(maximum):
    for raw, tau in [(0.9, 0.5), (0.5, 0.5), (0.4, 0.5), (0.96, 0.94), (1.0, 1.0 - 1e-9), (3.0, 1.0)]:
        assert gated(raw, tau, maximum) == ref.gated_rescaled(raw, tau_alpha=tau, s_max=maximum)


def test_tau_with_nine_permutations_and_alpha_one_tenth_by_hand():
    # K = 9, alpha = 0.1: tau is the ceil(0.9 · 10) = 9th smallest of the 9 null values and s
    null = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]
    r = calibrated_score(0.95, null, alpha=0.1)  # sorted: 0.1 … 0.9, 0.95 -> 9th is 0.9
    assert (r.tau, r.p_value) == (0.9, 0.1)  # p = (1 + 0) / 10
    assert r.calibrated == pytest.approx((0.95 - 0.9) / (1.0 - 0.9), abs=1e-12)  # 0.5
    r = calibrated_score(0.05, null, alpha=0.1)  # sorted: 0.05, 0.1 … 0.9 -> 9th is 0.8
    assert (r.tau, r.p_value, r.calibrated) == (0.8, 1.0, 0.0)
    r = calibrated_score(0.85, null, alpha=0.1)  # 0.1 … 0.8, 0.85, 0.9 -> tau = s itself: gated to 0
    assert (r.tau, r.p_value, r.calibrated) == (0.85, 0.2, 0.0)
    r = calibrated_score(0.9, null, alpha=0.1)  # a tie with the null counts against s
    assert (r.tau, r.p_value, r.calibrated) == (0.9, 0.2, 0.0)
    assert r.null_mean == pytest.approx(0.5) and r.null_std == pytest.approx(np.std(null))  # ddof = 0
    assert r.z == pytest.approx((0.9 - 0.5) / (np.std(null, ddof=0) + 1e-8))
    assert threshold(null, 0.95, 0.1) == 0.9


def test_lower_is_more_similar_is_the_reference_on_negated_scores():
    rng = np.random.default_rng(3)
    null = rng.uniform(0.5, 2.0, size=49)
    for raw in [0.1, 0.6, null[3], 2.5]:
        got = calibrated_score(raw, null, alpha=0.05, maximum=0.0, higher_is_more_similar=False)
        want = _reference(-raw, -null, 0.05, maximum=-0.0)
        assert got.p_value == want.pvalue == (1 + np.sum(null <= raw)) / 50  # p counts null <= s
        assert got.tau == -want.tau and got.calibrated == want.gated
        assert got.null_mean == pytest.approx(null.mean()) and got.null_centred == want.variants.null_centered
        assert got.z == want.variants.z
    r = calibrated_score(0.1, null, maximum=0.0, higher_is_more_similar=False)  # best = 0: (τ − s)/(τ − 0)
    assert r.tau == np.sort(null)[1] and r.calibrated == pytest.approx((r.tau - 0.1) / r.tau, abs=1e-12)


def test_an_unbounded_measure_gets_the_excess_over_tau_never_nan():
    null = np.arange(1.0, 20.0)  # 19 values: tau = the 19th of 20 = 19 when s = 25
    r = calibrated_score(25.0, null, alpha=0.05, maximum=None)
    assert r.tau == 19.0 and r.calibrated == 6.0 == ref.gated_rescaled(25.0, tau_alpha=19.0, s_max=None)
    assert calibrated_score(5.0, null, alpha=0.05, maximum=None).calibrated == 0.0


def test_bad_inputs_raise_and_a_too_small_k_warns():
    with pytest.raises(ValueError, match="alpha must be a level in"):
        calibrated_score(0.5, [0.1], alpha=0.0)
    with pytest.raises(ValueError, match="alpha must be a level in"):
        rg.calibrate("cka", np.eye(5), np.eye(5), alpha=1.5)
    with pytest.raises(ValueError, match="non-finite"):
        calibrated_score(0.5, [0.1, np.nan])
    with pytest.raises(ValueError, match="the score is nan"):
        calibrated_score(np.nan, [0.1, 0.2])
    with pytest.raises(ValueError, match="empty"):
        calibrated_score(0.5, [])
    with pytest.raises(ValueError, match="n_permutations must be an integer >= 1"):
        rg.calibrate("cka", np.eye(5), np.eye(5), n_permutations=0)
    with pytest.raises(ValueError, match="X has 5 samples but Y has 4"):
        rg.calibrate("cka", np.eye(5), np.eye(4))
    with pytest.warns(UserWarning, match=r"use n_permutations >= 19"):
        r = calibrated_score(0.99, np.zeros(9), alpha=0.05)  # the smallest p, 1/10, exceeds alpha
    assert r.calibrated == 0.0


# --- the test: seeded, from prepared states, valid ---------------------------------------------------
def _counting_measure(calls):
    def prepare(X):
        calls.append(1)
        return np.asarray(X, dtype=float)
    return rg.SimilarityMeasure("counting", prepare, lambda a, b: float(np.sum(a * b)), lambda s, p: s[p],
                                maximum=None)


def test_the_null_reuses_the_prepared_states_and_is_seeded():
    calls = []
    m = _counting_measure(calls)
    X, Y = np.random.default_rng(0).normal(size=(2, 30, 3))
    r = rg.calibrate(m, X, Y, n_permutations=50, seed=7)
    assert len(calls) == 2  # X and Y prepared once each, never per permutation
    expected = [float(np.sum(X * Y[p])) for p in permutations(30, 50, seed=7)]
    assert np.array_equal(r.null, expected) and r.score == float(np.sum(X * Y))
    again = rg.calibrate(m, X, Y, n_permutations=50, seed=7)
    assert np.array_equal(again.null, r.null) and again._replace(null=None) == r._replace(null=None)
    assert not np.array_equal(rg.calibrate(m, X, Y, n_permutations=50, seed=8).null, r.null)
    assert np.array_equal(permutations(30, 5, seed=np.random.default_rng(7)), permutations(30, 5, seed=7))


@pytest.fixture
def one_thread():
    # tiny products run faster on one thread than with torch's pool on shared, busy cores
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_p_values_of_independent_representations_are_uniform(one_thread):
    # Under independence (X, Y i.i.d. Gaussian, N = 50) every pairing is exchangeable with the
    # observed one, so the add-one p-value is uniform on {1, …, K + 1}/(K + 1). 150 seeds with
    # K = 99 permutations of linear CKA (N ≥ D: each score one 5 × 5 product, ~3 s in all): the
    # grid's spacing (0.01) is far below the KS test's 1 % critical distance at n = 150 (≈ 0.13).
    p_values = []
    for seed in range(150):
        rng = np.random.default_rng(seed)
        X, Y = rng.normal(size=(50, 5)), rng.normal(size=(50, 5))
        p_values.append(rg.calibrate("cka", X, Y, n_permutations=99, seed=seed).p_value)
    assert stats.kstest(p_values, "uniform").pvalue > 0.01
    assert min(p_values) >= 1 / 100


@pytest.mark.parametrize("name", sorted(BUILTINS))
def test_a_rotated_copy_gets_the_smallest_p_value(name):
    # every built-in is invariant to orthogonal maps: s(X, XQ) = s(X, X) = 1, above every null value
    rng = np.random.default_rng(1)
    X = rng.normal(size=(50, 8))
    Q = np.linalg.qr(rng.normal(size=(8, 8)))[0]
    m = rg.get_measure(name)
    assert "orthogonal" in m.invariances
    r = rg.calibrate(name, X, X @ Q, n_permutations=99, seed=0)
    assert r.null.max() < r.score - 1e-6  # does not saturate: no permutation reaches the raw score
    assert r.p_value == 1 / 100 and r.score == pytest.approx(m.maximum, abs=1e-6)
    assert r.calibrated > 0.5 and r.z > 3 and r.null_centred > 0


def test_a_rotated_copy_gets_the_smallest_p_value_for_every_registered_invariant_measure():
    # the same for whatever else is registered (e.g. the neighbourhood measures, once they are)
    rng = np.random.default_rng(2)
    X = rng.normal(size=(50, 8))
    Q = np.linalg.qr(rng.normal(size=(8, 8)))[0]
    for name in rg.measure_names():
        m = rg.get_measure(name)
        if "orthogonal" not in m.invariances:
            continue
        r = rg.calibrate(m, X, X @ Q, n_permutations=49, seed=0)
        if r.null.max() < r.score - 1e-9 if m.higher_is_more_similar else r.null.min() > r.score + 1e-9:
            assert r.p_value == 1 / 50, name


def test_layer_similarity_calibrated_entries_are_those_of_calibrate():
    rng = np.random.default_rng(4)
    X = rng.normal(size=(40, 6))
    acts = {"a": X, "b": X @ np.linalg.qr(rng.normal(size=(6, 6)))[0] + 0.3 * rng.normal(size=(40, 6)),
            "c": rng.normal(size=(40, 3))}
    M = rg.layer_similarity(acts, measure="cka_debiased", calibrate=True, n_permutations=60, alpha=0.1, seed=3)
    table = M.attrs["calibration"]
    for a in acts:
        for b in acts:
            first, second = (a, b) if list(acts).index(a) <= list(acts).index(b) else (b, a)  # (b, a) mirrors
            r = rg.calibrate("cka_debiased", acts[first], acts[second], n_permutations=60, alpha=0.1, seed=3)
            assert M.loc[a, b] == r.calibrated
            assert [table[f].loc[a, b] for f in ("score", "p_value", "tau", "null_mean", "null_std", "null_centred",
                                                 "z")] == [r.score, r.p_value, r.tau, r.null_mean, r.null_std,
                                                           r.null_centred, r.z]
            assert np.array_equal(table["null"][list(acts).index(a), list(acts).index(b)], r.null)
    assert M.loc["a", "b"] > 0 and M.loc["a", "c"] == 0.0
    assert M.attrs["n_permutations"] == 60 and M.attrs["alpha"] == 0.1 and M.attrs["seed"] == 3
    assert M.attrs["values"] == "calibrated" and M.attrs["calibrated"] is True
    cross = rg.layer_similarity({"a": acts["a"]}, {"c": acts["c"], "b": acts["b"]}, measure="cka_debiased",
                                calibrate=True, n_permutations=60, alpha=0.1, seed=3)
    assert list(cross.columns) == ["c", "b"] and cross.loc["a", "b"] == M.loc["a", "b"]
