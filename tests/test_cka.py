import importlib

import numpy as np
import pandas as pd
import pytest
import torch

from repgraph import Activations, MinibatchCKA, cka, cka_matrix
from repgraph.analyzers.cka import hsic_matrix
import reference_similarity

from oracles import cka_oracle, hsic_biased, hsic_unbiased


def _kornblith_fixture():
    np.random.seed(1337)
    X = np.random.randn(100, 10)
    Y = np.random.randn(100, 10) + X
    return X, Y


def _rbf_oracle(X, sigma):
    sq = ((X[:, None, :] - X[None, :, :]) ** 2).sum(-1)
    return np.exp(-sq / (2 * sigma**2 * np.median(sq)))


def test_kornblith_demo_fixture():
    X, Y = _kornblith_fixture()
    assert cka(X, Y) == pytest.approx(0.55761, abs=1e-5)
    # Gram path (stacked HSIC) and feature path agree
    hsic = hsic_matrix([X, Y])
    gram_path = hsic[0, 1] / np.sqrt(hsic[0, 0] * hsic[1, 1])
    assert gram_path == pytest.approx(cka(X, Y), abs=1e-7)
    assert cka(torch.from_numpy(X), torch.from_numpy(Y)) == pytest.approx(0.55761, abs=1e-5)


def test_estimators_equal_the_oracles(rng):
    X, Y = rng.normal(size=(30, 8)), rng.normal(size=(30, 50))
    Y[:, :8] += X
    K, L = X @ X.T, Y @ Y.T
    assert cka(X, Y) == pytest.approx(cka_oracle(K, L, hsic_biased), abs=1e-6)  # N < D: Gram path
    assert cka(X, Y, debiased=True) == pytest.approx(cka_oracle(K, L, hsic_unbiased), abs=1e-6)
    for sigma in (0.5, 1.0):
        Kr, Lr = _rbf_oracle(X, sigma), _rbf_oracle(Y, sigma)
        assert cka(X, Y, kernel="rbf", sigma=sigma) == pytest.approx(cka_oracle(Kr, Lr, hsic_biased), abs=1e-6)
        assert cka(X, Y, kernel="rbf", sigma=sigma, debiased=True) == pytest.approx(
            cka_oracle(Kr, Lr, hsic_unbiased), abs=1e-6)
    h = hsic_matrix([X, Y], debiased=True)
    assert h[0, 1] == pytest.approx(hsic_unbiased(K, L), rel=1e-5)


def test_unbiased_self_hsic_is_positive(rng):
    # regression: a broadcasting slip in the unbiased estimator makes HSIC(X, X) negative
    X = rng.normal(size=(40, 6)) + 5.0
    h = hsic_matrix([X], debiased=True)[0, 0]
    assert h > 0
    assert h == pytest.approx(hsic_unbiased(X @ X.T, X @ X.T), rel=1e-6)


@pytest.mark.parametrize("debiased", [False, True])
def test_invariances(rng, debiased):
    X = rng.normal(size=(60, 12))
    Y = X @ rng.normal(size=(12, 12)) + 0.5 * rng.normal(size=(60, 12))
    base = cka(X, Y, debiased=debiased)
    assert cka(X, X, debiased=debiased) == pytest.approx(1.0, abs=1e-6)
    assert cka(Y, X, debiased=debiased) == pytest.approx(base, abs=1e-6)
    Q, _ = np.linalg.qr(rng.normal(size=(12, 12)))
    assert cka(X @ Q, Y, debiased=debiased) == pytest.approx(base, abs=1e-6)
    assert cka(3.7 * X, Y, debiased=debiased) == pytest.approx(base, abs=1e-6)
    assert cka(X + 10.0, Y, debiased=debiased) == pytest.approx(base, abs=1e-5)
    # a generic invertible (anisotropic) linear map changes it
    A = np.diag(np.linspace(0.1, 10, 12)) @ rng.normal(size=(12, 12))
    assert abs(cka(X @ A, Y, debiased=debiased) - base) > 1e-3


def test_rbf_self_similarity_and_symmetry(rng):
    X, Y = rng.normal(size=(40, 5)), rng.normal(size=(40, 7))
    assert cka(X, X, kernel="rbf") == pytest.approx(1.0, abs=1e-9)
    assert cka(X, Y, kernel="rbf") == pytest.approx(cka(Y, X, kernel="rbf"), abs=1e-9)


def test_biased_cka_is_inflated_when_features_far_exceed_samples(rng):
    X, Y = rng.normal(size=(50, 5000)), rng.normal(size=(50, 5000))  # independent
    biased, debiased = cka(X, Y), cka(X, Y, debiased=True)
    assert biased > 0.8  # centred Grams of independent wide Gaussians both look like D·H
    assert abs(debiased) < 0.05


def test_minibatch_one_batch_equals_debiased_full(rng):
    xs = [rng.normal(size=(64, d)) for d in (5, 20, 80)]
    acc = MinibatchCKA()
    acc.update(xs)
    full = np.array([[cka(a, b, debiased=True) for b in xs] for a in xs])
    np.testing.assert_allclose(acc.compute(), full, atol=1e-9)


def test_minibatch_cross_model_equals_block_of_joint(rng):
    xs = [rng.normal(size=(200, 10)) for _ in range(3)]
    ys = [x @ rng.normal(size=(10, 6)) + rng.normal(size=(200, 6)) for x in xs[:2]]
    cross, joint = MinibatchCKA(), MinibatchCKA()
    for s in range(0, 200, 50):
        cross.update([x[s:s + 50] for x in xs], [y[s:s + 50] for y in ys])
        joint.update([x[s:s + 50] for x in xs] + [y[s:s + 50] for y in ys])
    assert cross.n_batches == 4
    np.testing.assert_allclose(cross.compute(), joint.compute()[:3, 3:], atol=1e-12)


def test_minibatch_sums_hsic_not_cka(rng):
    # two batches: CKA from summed unbiased HSIC, never the mean of per-batch CKA values
    X, Y = rng.normal(size=(40, 4)), rng.normal(size=(40, 4))
    Y[:20] += 3 * X[:20]  # strongly related in the first batch only
    acc = MinibatchCKA()
    acc.update([X[:20], Y[:20]])
    acc.update([X[20:], Y[20:]])
    h = [(hsic_unbiased(a @ a.T, b @ b.T), hsic_unbiased(a @ a.T, a @ a.T), hsic_unbiased(b @ b.T, b @ b.T))
         for a, b in ((X[:20], Y[:20]), (X[20:], Y[20:]))]
    expected = (h[0][0] + h[1][0]) / np.sqrt((h[0][1] + h[1][1]) * (h[0][2] + h[1][2]))
    assert acc.compute()[0, 1] == pytest.approx(expected, rel=1e-6)
    mean_of_ckas = np.mean([cka(X[:20], Y[:20], debiased=True), cka(X[20:], Y[20:], debiased=True)])
    assert abs(acc.compute()[0, 1] - mean_of_ckas) > 1e-3


def test_cka_matrix_equals_pairwise_and_is_labelled(rng):
    acts = Activations({f"l{i}": rng.normal(size=(40, 3 + 4 * i)) for i in range(4)})
    acts2 = {f"m{i}": rng.normal(size=(40, 6)) for i in range(2)}
    for debiased in (False, True):
        for kernel in ("linear", "rbf"):
            M = cka_matrix(acts, kernel=kernel, debiased=debiased)
            assert isinstance(M, pd.DataFrame) and list(M.index) == acts.layers
            expected = [[cka(acts[a], acts[b], kernel=kernel, debiased=debiased) for b in acts] for a in acts]
            np.testing.assert_allclose(M.to_numpy(), expected, atol=1e-6)
            assert M.attrs["kernel"] == kernel
        cross = cka_matrix(acts, acts2, debiased=debiased)
        assert list(cross.columns) == ["m0", "m1"]
        expected = [[cka(acts[a], acts2[b], debiased=debiased) for b in acts2] for a in acts]
        np.testing.assert_allclose(cross.to_numpy(), expected, atol=1e-6)
    mb = cka_matrix(acts, batch_size=20)
    acc = MinibatchCKA()
    for s in (0, 20):
        acc.update([acts[l][s:s + 20] for l in acts])
    np.testing.assert_allclose(mb.to_numpy(), acc.compute(), atol=1e-12)
    assert "minibatch" in mb.attrs["estimator"]


def test_chunked_hsic_equals_unchunked(rng, monkeypatch):
    xs = [rng.normal(size=(50, 7)) for _ in range(3)]
    full = hsic_matrix(xs, debiased=True)
    cka_module = importlib.import_module("repgraph.analyzers.cka")  # the package exports a function `cka`
    monkeypatch.setattr(cka_module, "row_chunk", lambda n_rows, n_cols: 7)
    # float32 Gram blocks round slightly differently per chunk size: compare on the self-HSIC scale
    np.testing.assert_allclose(hsic_matrix(xs, debiased=True), full, atol=1e-7 * np.abs(full).max())
    rbf_chunked = hsic_matrix(xs, kernel="rbf")
    monkeypatch.undo()
    rbf_full = hsic_matrix(xs, kernel="rbf")
    np.testing.assert_allclose(rbf_chunked, rbf_full, atol=1e-7 * np.abs(rbf_full).max())


def test_bad_input(rng):
    X = rng.normal(size=(10, 3))
    with pytest.raises(ValueError, match="10 samples but Y has 9"):
        cka(X, X[:9])
    with pytest.raises(ValueError, match="same N"):
        cka(X, X[:9], debiased=True)
    with pytest.raises(ValueError, match="at least 4"):
        cka(X[:3], X[:3], debiased=True)
    with pytest.raises(ValueError, match="constant"):
        cka(np.ones((10, 3)), X)
    with pytest.raises(ValueError, match="identical"):
        cka(np.ones((10, 3)), X, kernel="rbf")
    with pytest.raises(ValueError, match="kernel"):
        cka(X, X, kernel="poly")
    with pytest.raises(ValueError, match="NaN or Inf"):
        cka(np.full((10, 3), np.nan), X)
    with pytest.raises(TypeError, match="non-empty"):
        cka_matrix({})
    with pytest.raises(ValueError, match="no complete repgraph activation store"):
        cka_matrix("acts/")  # a store's path is analysed in process too: this folder holds none
    with pytest.raises(ValueError, match="before any update"):
        MinibatchCKA().compute()


def test_minibatch_equal_batches_equal_nguyen_et_al(rng):
    layers = [rng.normal(size=(120, d)) for d in (4, 9, 30)]
    layers[1][:, :4] += layers[0]
    M = cka_matrix({f"l{i}": x for i, x in enumerate(layers)}, batch_size=40, progress=False)
    expected = reference_similarity.nguyen_minibatch_cka([[x[s:s + 40] for x in layers] for s in (0, 40, 80)])
    np.testing.assert_allclose(M.to_numpy(), expected, atol=1e-9)


def test_cka_matrix_uses_the_last_partial_batch(rng):
    X = rng.normal(size=(130, 6))
    Y = X @ rng.normal(size=(6, 5)) + rng.normal(size=(130, 5))
    M = cka_matrix({"x": X, "y": Y}, batch_size=50, progress=False)
    # batches 50, 50, 30; each batch's unbiased HSIC weighted by its size, normalised once
    parts = [(X[a:b], Y[a:b]) for a, b in ((0, 50), (50, 100), (100, 130))]
    h = np.array([[len(a) * hsic_unbiased(a @ a.T, b @ b.T), len(a) * hsic_unbiased(a @ a.T, a @ a.T),
                   len(a) * hsic_unbiased(b @ b.T, b @ b.T)] for a, b in parts]).sum(axis=0)
    assert M.loc["x", "y"] == pytest.approx(h[0] / np.sqrt(h[1] * h[2]), rel=1e-6)
    assert (M.attrs["n_batches"], M.attrs["n_samples"]) == (3, 130)
    # a remainder too small for the unbiased HSIC (< 4 samples) is left out, and said so
    with pytest.warns(UserWarning, match=r"the last 2 of 102 samples are left out"):
        short = cka_matrix({"x": X[:102], "y": Y[:102]}, batch_size=50, progress=False)
    assert short.attrs["n_samples"] == 100
    expected = MinibatchCKA()
    for s in (0, 50):
        expected.update([X[s:s + 50], Y[s:s + 50]])
    np.testing.assert_allclose(short.to_numpy(), expected.compute(), atol=1e-12)
    # batch_size > N: one batch of all N, the debiased CKA of the whole set
    whole = cka_matrix({"x": X[:30], "y": Y[:30]}, batch_size=100, progress=False)
    assert whole.loc["x", "y"] == pytest.approx(cka(X[:30], Y[:30], debiased=True), abs=1e-9)
    assert (whole.attrs["n_batches"], whole.attrs["n_samples"]) == (1, 30)
    for bad in (3, 0, 2.5):
        with pytest.raises(ValueError, match="batch_size must be an integer >= 4"):
            cka_matrix({"x": X}, batch_size=bad, progress=False)
    with pytest.raises(ValueError, match="at least 4 samples; the layers hold N=3"):
        cka_matrix({"x": X[:3]}, batch_size=10, progress=False)
    with pytest.raises(ValueError, match="same N"):
        cka_matrix({"x": X}, {"y": Y[:100]}, batch_size=50, progress=False)


def test_cka_of_huge_activations_equals_the_unscaled_value(rng):
    # float32 values near 1e30: a float32 Gram of them overflows; CKA is invariant to isotropic scaling
    X = rng.normal(size=(40, 60))  # N < D: the Gram path
    Y = X[:, :20] @ rng.normal(size=(20, 8)) + rng.normal(size=(40, 8))  # N >= D: the feature path
    big_x, big_y = (X * 1e30).astype(np.float32), (Y * 1e30).astype(np.float32)
    x32, y32 = X.astype(np.float32), Y.astype(np.float32)
    for kwargs in ({}, {"debiased": True}, {"kernel": "rbf"}):
        assert cka(big_x, big_y, **kwargs) == pytest.approx(cka(x32, y32, **kwargs), abs=1e-6)
        assert cka(big_x, Y, **kwargs) == pytest.approx(cka(x32, Y, **kwargs), abs=1e-6)
    big = cka_matrix({"x": big_x, "y": big_y}, batch_size=20, progress=False)
    np.testing.assert_allclose(big.to_numpy(), cka_matrix({"x": x32, "y": y32}, batch_size=20, progress=False),
                               atol=1e-6)
    # HSIC itself is scaled back exactly (powers of two): HSIC(2^100 X, Y) = 2^200 HSIC(X, Y)
    h = hsic_matrix([x32 * np.float32(2.0 ** 100), y32])
    np.testing.assert_allclose(h[0, 1], hsic_matrix([x32, y32])[0, 1] * 2.0 ** 200, rtol=1e-12)
