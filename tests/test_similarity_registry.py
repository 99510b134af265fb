"""The registry of similarity measures and ``layer_similarity``: the built-ins score as
``repgraph.cka`` / ``repgraph.gbs``, hold the invariances they declare (and only those), permute
by re-indexing; ``layer_similarity`` equals ``cka_matrix`` / ``gbs_matrix``, runs user-registered
measures and gives the same on a Dask client."""
import warnings

import numpy as np
import pandas as pd
import pytest

import repgraph as rg
from repgraph.analyzers.similarity_measures import BUILTINS, INVARIANCES, permuted_state

# the built-ins and what they must equal
DIRECT = {
    "cka": lambda X, Y: rg.cka(X, Y),
    "cka_debiased": lambda X, Y: rg.cka(X, Y, debiased=True),
    "cka_rbf": lambda X, Y: rg.cka(X, Y, kernel="rbf"),
    "gbs": lambda X, Y: rg.gbs(X, Y),
    "gbs_knn": lambda X, Y: rg.gbs(X, Y, k=3),
}
MATRIX = {
    "cka": lambda *a, **kw: rg.cka_matrix(*a, progress=False, **kw),
    "cka_debiased": lambda *a, **kw: rg.cka_matrix(*a, debiased=True, progress=False, **kw),
    "cka_rbf": lambda *a, **kw: rg.cka_matrix(*a, kernel="rbf", progress=False, **kw),
    "gbs": lambda *a, **kw: rg.gbs_matrix(*a, progress=False, **kw),
    "gbs_knn": lambda *a, **kw: rg.gbs_matrix(*a, k=3, progress=False, **kw),
}


@pytest.fixture
def registered():
    """Names registered by a test, unregistered after it (the registry is process-wide)."""
    names = []
    yield names
    for name in names:
        if name in rg.measure_names():
            rg.unregister_measure(name)


def _acts(seed=0, n=40):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 6))
    return {"a": X, "b": X @ np.linalg.qr(rng.normal(size=(6, 6)))[0] + 0.5 * rng.normal(size=(n, 6)),
            "c": rng.normal(size=(n, 10)), "d": np.tanh(X @ rng.normal(size=(6, 50)))}


# --- the registry -----------------------------------------------------------------------------------
def test_the_builtins_are_registered_with_their_declarations():
    assert rg.measure_names()[:5] == ("cka", "cka_debiased", "cka_rbf", "gbs", "gbs_knn")
    for name, m in BUILTINS.items():
        assert rg.get_measure(name) is m and rg.get_measure(m) is m
        assert m.higher_is_more_similar and m.maximum == 1.0 and m.invariances <= INVARIANCES
        assert m.description and m.reference
    assert rg.get_measure("gbs_knn").defaults == {"k": 3} and rg.get_measure("cka_rbf").defaults == {"sigma": 0.5}
    assert BUILTINS["cka"].invariances == INVARIANCES
    assert BUILTINS["gbs"].invariances == {"orthogonal", "isotropic_scaling"}


def test_unknown_names_list_the_registered_ones_and_close_matches():
    with pytest.raises(ValueError, match=r"unknown similarity measure 'cka_debaised'; registered: cka, cka_debiased, "
                                         r"cka_rbf, gbs, gbs_knn.*Did you mean 'cka_debiased'"):
        rg.get_measure("cka_debaised")
    with pytest.raises(ValueError, match="registered: cka"):
        rg.unregister_measure("nope")
    with pytest.raises(TypeError, match="a registered name"):
        rg.get_measure(3)


def _toy_prepare(X):
    return np.asarray(X, dtype=float)


def _toy_score(a, b):
    return float(np.abs(np.corrcoef(a[:, 0], b[:, 0])[0, 1]))


def test_register_as_a_call_as_a_decorator_and_as_a_measure(registered):
    registered += ["toy", "toy2", "toy3"]
    m = rg.register_measure("toy", _toy_prepare, _toy_score, lambda s, p: s[p], maximum=1.0)
    assert rg.get_measure("toy") is m and m.invariances == frozenset()

    @rg.register_measure("toy2", prepare=_toy_prepare, permute=lambda s, p: s[p], maximum=1.0,
                         invariances=["translation", "isotropic_scaling"])
    def toy2(a, b):
        return _toy_score(a, b)

    assert toy2(np.eye(3), np.eye(3)) == 1.0  # the decorator returns the function itself
    assert rg.get_measure("toy2").score is toy2 and rg.get_measure("toy2").invariances == {"translation",
                                                                                          "isotropic_scaling"}
    third = rg.SimilarityMeasure("toy3", _toy_prepare, _toy_score)
    assert rg.register_measure(third) is third and rg.get_measure("toy3").permute is permuted_state
    assert rg.measure_names()[-3:] == ("toy", "toy2", "toy3")


def test_duplicates_are_refused_unless_replaced(registered):
    registered.append("toy")
    first = rg.register_measure("toy", _toy_prepare, _toy_score)
    with pytest.raises(ValueError, match="registered already; pass replace=True"):
        rg.register_measure("toy", _toy_prepare, _toy_score)
    with pytest.raises(ValueError, match="registered already"):
        rg.register_measure("cka", _toy_prepare, _toy_score)
    second = rg.register_measure("toy", _toy_prepare, _toy_score, replace=True)
    assert rg.get_measure("toy") is second and second is not first
    rg.unregister_measure("toy")
    assert "toy" not in rg.measure_names()


def test_declarations_are_checked():
    with pytest.raises(ValueError, match=r"unknown invariance\(s\) \['rotation'\]"):
        rg.SimilarityMeasure("x", _toy_prepare, _toy_score, invariances={"rotation"})
    with pytest.raises(TypeError, match="score must be callable"):
        rg.SimilarityMeasure("x", _toy_prepare, 3)
    with pytest.raises(TypeError, match=r"defaults name \['k'\], which prepare does not take"):
        rg.SimilarityMeasure("x", _toy_prepare, _toy_score, defaults={"k": 3})
    with pytest.raises(ValueError, match="maximum must be a finite number or None"):
        rg.SimilarityMeasure("x", _toy_prepare, _toy_score, maximum=float("inf"))
    with pytest.raises(ValueError, match="non-empty string"):
        rg.SimilarityMeasure("", _toy_prepare, _toy_score)
    with pytest.raises(TypeError, match="prepare= is required"):
        rg.register_measure("x")
    assert "x" not in rg.measure_names()
    m = rg.SimilarityMeasure("x", _toy_prepare, _toy_score, invariances="translation")
    assert m.invariances == {"translation"} and hash(m) == hash("x")
    with pytest.raises(TypeError, match=r"has no \.permuted\(perm\) method; register its measure with permute="):
        m.permute(np.eye(3), np.arange(3))


# --- the built-ins ----------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(50, 5, 7), (30, 40, 8), (20, 50, 60)], ids=["N>D", "N<Dx", "N<D"])
@pytest.mark.parametrize("name", sorted(BUILTINS))
def test_builtin_scores_equal_cka_and_gbs(name, shape):
    n, dx, dy = shape
    rng = np.random.default_rng(dx)
    X = rng.normal(size=(n, dx))
    Y = rng.normal(size=(n, dy)) + X[:, :1]
    m = rg.get_measure(name)
    assert abs(m.score(m.prepare(X), m.prepare(Y)) - DIRECT[name](X, Y)) <= 1e-12


def _transforms(rng, d):
    Q = np.linalg.qr(rng.normal(size=(d, d)))[0]
    b = 4.0 * rng.normal(size=d)
    return {"orthogonal": lambda Y: Y @ Q, "isotropic_scaling": lambda Y: 3.7 * Y, "translation": lambda Y: Y + b}


@pytest.mark.parametrize("name", sorted(BUILTINS))
def test_declared_invariances_hold_and_the_others_fail(name):
    rng = np.random.default_rng(11)
    X = rng.normal(size=(40, 6))
    Y = np.tanh(X @ rng.normal(size=(6, 8))) + 0.3 * rng.normal(size=(40, 8))
    m = rg.get_measure(name)
    base = m.score(m.prepare(X), m.prepare(Y))
    for invariance, transform in _transforms(rng, 8).items():
        moved = m.score(m.prepare(X), m.prepare(transform(Y)))
        if invariance in m.invariances:
            assert moved == pytest.approx(base, abs=1e-6), invariance  # float32 products
        else:  # the declaration is not vacuous: this transformation changes the score
            assert abs(moved - base) > 1e-3, invariance
    assert set(_transforms(rng, 8)) == INVARIANCES


@pytest.mark.parametrize("shape", [(40, 6), (30, 60)], ids=["N>D", "N<D"])
@pytest.mark.parametrize("name", sorted(BUILTINS))
def test_permute_is_prepare_of_the_permuted_rows(name, shape):
    rng = np.random.default_rng(5)
    X = rng.normal(size=shape)
    Y = X @ rng.normal(size=(shape[1], shape[1])) + rng.normal(size=shape)
    perm = rng.permutation(shape[0])
    m = rg.get_measure(name)
    sx, sy = m.prepare(X), m.prepare(Y)
    m.score(sx, sy)  # a state used (its Gram built) before it is permuted, and one that is not
    for state in (sy, m.prepare(Y)):
        assert abs(m.score(sx, m.permute(state, perm)) - m.score(sx, m.prepare(Y[perm]))) <= 1e-10
    twice = m.permute(m.permute(sy, perm), perm)
    assert abs(m.score(sx, twice) - m.score(sx, m.prepare(Y[perm][perm]))) <= 1e-10
    with pytest.raises(ValueError, match="perm must be a permutation"):
        m.permute(sy, perm[:-1])


# --- layer_similarity -------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(BUILTINS))
def test_layer_similarity_of_a_builtin_is_its_matrix(name):
    acts = _acts()
    other = {"x": acts["c"], "y": acts["a"]}
    got, want = rg.layer_similarity(acts, measure=name), MATRIX[name](acts)
    assert got.equals(want)
    assert {k: v for k, v in want.attrs.items() if k != "measure"}.items() <= got.attrs.items()
    assert got.attrs["measure"] == name and got.attrs["calibrated"] is False
    assert got.attrs["invariances"] == tuple(sorted(BUILTINS[name].invariances))
    assert got.attrs["higher_is_more_similar"] is True and got.attrs["maximum"] == 1.0
    assert rg.layer_similarity(acts, other, measure=name).equals(MATRIX[name](acts, other))


def test_layer_similarity_passes_the_measure_parameters_on():
    acts = _acts()
    assert rg.layer_similarity(acts, measure="gbs_knn", k=5).equals(rg.gbs_matrix(acts, k=5, progress=False))
    M = rg.layer_similarity(acts, measure="cka_rbf", sigma=0.8)
    assert M.equals(rg.cka_matrix(acts, kernel="rbf", sigma=0.8, progress=False))
    assert M.attrs["parameters"] == {"sigma": 0.8}
    with pytest.raises(TypeError, match=r"measure 'gbs' takes no parameter\(s\) \['k'\]; its parameters .*none"):
        rg.layer_similarity(acts, measure="gbs", k=5)
    with pytest.raises(TypeError, match="acts2='gbs' is the name of a measure.*pass measure='gbs'"):
        rg.layer_similarity(acts, "gbs")


def test_layer_similarity_reads_activations_and_stores(tmp_path):
    acts = rg.Activations(_acts(), labels=np.arange(40) % 3)
    acts.save(tmp_path / "store")
    for name in ("cka", "gbs"):
        assert rg.layer_similarity(acts, measure=name).equals(MATRIX[name](acts))
        assert rg.layer_similarity(tmp_path / "store", measure=name).equals(MATRIX[name](tmp_path / "store"))
    # a registry-path measure (calibrated) reads the store's files as the in-memory arrays
    on_disk = rg.layer_similarity(str(tmp_path / "store"), measure="gbs", calibrate=True, n_permutations=20)
    in_memory = rg.layer_similarity(acts, measure="gbs", calibrate=True, n_permutations=20)
    pd.testing.assert_frame_equal(on_disk, in_memory, check_exact=False, rtol=1e-6)


# a user measure: representational similarity analysis (Kriegeskorte et al. 2008) — the Pearson
# correlation of the two cosine-distance matrices' off-diagonal entries
class RDM:
    def __init__(self, D):
        self.D = D

    def permuted(self, perm):
        return RDM(self.D[np.ix_(perm, perm)])


def rsa_prepare(X, *, name="X"):
    X = np.asarray(X, dtype=float).reshape(len(X), -1)
    U = X / np.linalg.norm(X, axis=1, keepdims=True)
    return RDM(1.0 - U @ U.T)


def rsa_score(a, b):
    mask = ~np.eye(len(a.D), dtype=bool)
    return float(np.corrcoef(a.D[mask], b.D[mask])[0, 1])


def _rsa_direct(X, Y):
    return rsa_score(rsa_prepare(X), rsa_prepare(Y))


@pytest.fixture
def rsa(registered):
    registered.append("rsa")
    return rg.register_measure("rsa", prepare=rsa_prepare, score=rsa_score, maximum=1.0,
                               invariances={"orthogonal", "isotropic_scaling"}, description="RSA, cosine RDMs",
                               reference="Kriegeskorte et al. 2008")


def test_a_user_registered_measure_works_end_to_end(rsa):
    acts = _acts()
    M = rg.layer_similarity(acts, measure="rsa")
    for a in acts:
        for b in acts:
            assert M.loc[a, b] == pytest.approx(_rsa_direct(acts[a], acts[b]), abs=1e-14)
    assert np.array_equal(M.values, M.values.T) and list(M.index) == list(acts)
    assert M.index.name == "layer" and M.columns.name == "layer2"
    assert M.attrs == {"measure": "rsa", "reference": "Kriegeskorte et al. 2008", "estimator": "RSA, cosine RDMs",
                       "parameters": {}, "higher_is_more_similar": True,
                       "invariances": ("isotropic_scaling", "orthogonal"), "maximum": 1.0, "calibrated": False,
                       "n_samples": 40}
    cross = rg.layer_similarity({"a": acts["a"]}, {"c": acts["c"], "b": acts["b"]}, measure=rsa)
    assert list(cross.columns) == ["c", "b"] and cross.loc["a", "b"] == M.loc["a", "b"]
    C = rg.layer_similarity(acts, measure="rsa", calibrate=True, n_permutations=50, seed=1)
    assert C.loc["a", "b"] > 0.3 and C.attrs["calibration"]["p_value"].loc["a", "b"] == 1 / 51
    assert C.attrs["calibration"]["score"].equals(M)
    r = rg.calibrate("rsa", acts["a"], acts["c"], n_permutations=50, seed=1)
    assert C.loc["a", "c"] == r.calibrated and C.attrs["calibration"]["z"].loc["a", "c"] == r.z
    pd.concat([C, C])  # attrs holding frames do not break pandas' own operations
    assert (C.round(3) + 1).attrs["calibration"]["p_value"].shape == (4, 4)


def test_each_layer_is_prepared_once(registered):
    calls = []

    def prepare(X):
        calls.append(len(X))
        return np.asarray(X, dtype=float)

    registered.append("counting")
    rg.register_measure("counting", prepare, lambda a, b: float(np.mean(a[:, 0] * b[:, 0])), lambda s, p: s[p])
    acts = _acts()
    rg.layer_similarity(acts, measure="counting")
    assert len(calls) == 4
    rg.layer_similarity(acts, measure="counting", calibrate=True, n_permutations=30)
    assert len(calls) == 8  # the null re-indexes the prepared states


class Neighbourhood:
    """A stand-in for analyzers.neighbourhood's state: the indices of each sample's k neighbours."""

    def __init__(self, idx):
        self.idx = idx

    def permuted(self, perm):
        inverse = np.argsort(perm)
        return Neighbourhood(inverse[self.idx[perm]])


def neighbourhood(X, k=10):
    X = np.asarray(X, dtype=float)
    d = ((X[:, None] - X[None]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    return Neighbourhood(np.argsort(d, axis=1, kind="stable")[:, :k])


def jaccard_knn(a, b):
    return float(np.mean([len(set(x) & set(y)) / len(set(x) | set(y)) for x, y in zip(a.idx, b.idx)]))


def test_a_neighbourhood_measure_is_one_register_call(registered):
    registered.append("jaccard_knn_toy")
    rg.register_measure("jaccard_knn_toy", prepare=neighbourhood, score=jaccard_knn,
                        permute=lambda s, p: s.permuted(p), maximum=1.0,
                        invariances={"orthogonal", "isotropic_scaling", "translation"}, defaults={"k": 10})
    rng = np.random.default_rng(0)
    X = rng.normal(size=(30, 4))
    perm = rng.permutation(30)
    m = rg.get_measure("jaccard_knn_toy")
    assert m.score(m.prepare(X), m.permute(m.prepare(X), perm)) == jaccard_knn(neighbourhood(X), neighbourhood(X[perm]))
    acts = {"x": X, "y": 2 * X + 1, "z": rng.normal(size=(30, 4))}
    M = rg.layer_similarity(acts, measure="jaccard_knn_toy", k=5)
    assert M.loc["x", "y"] == 1.0 and M.loc["x", "z"] == jaccard_knn(neighbourhood(X, 5), neighbourhood(acts["z"], 5))
    assert M.attrs["parameters"] == {"k": 5}
    assert rg.calibrate("jaccard_knn_toy", X, 2 * X, n_permutations=30, k=5).p_value == 1 / 31


def test_a_lower_is_more_similar_measure_is_calibrated_on_its_side(registered):
    registered.append("rdm_distance")
    rg.register_measure("rdm_distance", prepare=rsa_prepare, score=lambda a, b: float(np.abs(a.D - b.D).mean()),
                        higher_is_more_similar=False, maximum=0.0, invariances={"orthogonal", "isotropic_scaling"})
    acts = _acts()
    C = rg.layer_similarity(acts, measure="rdm_distance", calibrate=True, n_permutations=40)
    assert C.loc["a", "a"] == 1.0 and C.loc["a", "b"] > 0
    r = rg.calibrate("rdm_distance", acts["a"], acts["c"], n_permutations=40, seed=0)
    assert C.loc["a", "c"] == r.calibrated and C.attrs["calibration"]["tau"].loc["a", "c"] == r.tau
    assert r.tau == np.sort(np.append(r.null, r.score))[::-1][38]  # the ceil(0.95 · 41) = 39th largest
    assert C.attrs["calibration"]["p_value"].loc["a", "b"] == 1 / 41
    assert C.attrs["higher_is_more_similar"] is False


def test_measure_errors_name_the_layer_and_the_fix(rsa):
    acts = _acts()
    bad = dict(acts, e=np.zeros((40, 3)))
    with pytest.raises(ValueError, match="measure 'rsa' gave nan"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rg.layer_similarity(bad, measure="rsa")
    with pytest.raises(ValueError, match=r"layer 'e'.*constant"):
        rg.layer_similarity(bad, measure="cka", calibrate=True, n_permutations=5, alpha=0.5)
    with pytest.raises(ValueError, match=r"All layers must hold the same samples"):
        rg.layer_similarity(dict(acts, e=np.ones((30, 3))), measure="rsa")
    with pytest.raises(ValueError, match=r"layer 'e'.*NaN"):
        rg.layer_similarity(dict(acts, e=np.full((40, 3), np.nan)), measure="cka", calibrate=True)

    def fussy(X):
        raise ValueError("needs more features")

    m = rg.SimilarityMeasure("fussy", fussy, _toy_score)
    with pytest.raises(ValueError, match=r"layer 'a': needs more features"):
        rg.layer_similarity(acts, measure=m)
    with pytest.raises(TypeError, match="takes no device=; pass device=None"):
        rg.layer_similarity(acts, measure=m, device="cpu")


# --- on a Dask client -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def client():
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=1, processes=False, threads_per_worker=2, dashboard_address=None,
                                  silence_logs=40) as cluster, distributed.Client(cluster) as c:
        yield c


def test_layer_similarity_on_a_client_equals_in_process(client, registered):
    registered.append("rsa")
    rg.register_measure("rsa", prepare=rsa_prepare, score=rsa_score, maximum=1.0)
    acts = _acts()
    other = {"x": acts["c"], "y": acts["a"]}
    for kwargs in [dict(measure="cka"), dict(measure="gbs_knn", k=4), dict(measure="rsa"),
                   dict(measure="rsa", calibrate=True, n_permutations=30, seed=2),
                   dict(measure="cka_debiased", calibrate=True, n_permutations=30)]:
        for args in [(acts,), (acts, other)]:
            here = rg.layer_similarity(*args, **kwargs)
            there = rg.layer_similarity(*args, client=client, **kwargs)
            if kwargs["measure"] in BUILTINS and not kwargs.get("calibrate"):  # gbs_matrix's sums in another order
                pd.testing.assert_frame_equal(there, here, check_exact=False, rtol=1e-12, atol=1e-15)
            else:  # the same tasks, here or on the worker
                assert there.equals(here), kwargs
            if kwargs.get("calibrate"):
                for field, table in here.attrs["calibration"].items():
                    assert np.array_equal(np.asarray(there.attrs["calibration"][field]), np.asarray(table)), field
    with rg.parallel(client):
        assert rg.layer_similarity(acts, measure="rsa").equals(rg.layer_similarity(acts, measure="rsa", client=None))


def test_a_replaced_builtin_name_runs_the_replacement():
    acts = _acts()
    try:
        rg.register_measure("cka", prepare=rsa_prepare, score=rsa_score, maximum=1.0, replace=True)
        M = rg.layer_similarity(acts, measure="cka")  # the user's measure, not cka_matrix
        assert M.loc["a", "c"] == pytest.approx(_rsa_direct(acts["a"], acts["c"]), abs=1e-14)
    finally:
        rg.register_measure(BUILTINS["cka"], replace=True)
    assert rg.get_measure("cka") is BUILTINS["cka"]
    assert rg.layer_similarity(acts, measure="cka").equals(rg.cka_matrix(acts, progress=False))
