import importlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from repgraph import Activations, gbs, gbs_matrix, layer_correspondence
import reference_similarity
from oracles import naive_gbs


@pytest.mark.parametrize("k", [5, 3, None])
def test_gbs_equals_the_definition(rng, k):
    X = rng.normal(size=(60, 10))
    Y = X @ rng.normal(size=(10, 8)) + 0.8 * rng.normal(size=(60, 8))
    # neighbours follow the float64 definition; edge weights are float32-rounded similarities
    assert gbs(X, Y, k=k) == pytest.approx(naive_gbs(X, Y, k), abs=1e-7)


def test_gbs_default_is_the_full_graph_of_the_authors_code(rng):
    # the authors' LSim on their full cosine graphs (float32 features, as their saved features)
    X = np.maximum(rng.normal(size=(80, 30)), 0).astype(np.float32)
    Y = np.tanh(X @ rng.normal(size=(30, 12))).astype(np.float32)
    Y[:, :3] -= 0.5  # some negative cosines: kept as negative weights
    assert gbs(X, Y) == pytest.approx(reference_similarity.gbs(X, Y), abs=1e-6)
    assert gbs(X, Y) == gbs(X, Y, k=None)
    assert abs(gbs(X, Y, k=5) - gbs(X, Y)) > 1e-2  # the kNN variant is another measure
    M = gbs_matrix({"x": X, "y": Y}, progress=False)
    assert M.loc["x", "y"] == pytest.approx(reference_similarity.gbs(X, Y), abs=1e-6)
    assert M.attrs["k"] == "full" and M.attrs["graph"] == "full cosine graph"


def test_gbs_of_huge_activations_equals_the_unscaled_value(rng):
    # float32 values near 1e30: their squares overflow float32; cosine graphs are scale invariant
    X, Y = rng.normal(size=(40, 16)), rng.normal(size=(40, 9))
    big = (X * 1e30).astype(np.float32)
    for k in (None, 3):
        assert gbs(big, Y, k=k) == pytest.approx(gbs(X.astype(np.float32), Y, k=k), abs=1e-7)
    np.testing.assert_allclose(gbs_matrix({"a": big, "b": Y}, progress=False).to_numpy(),
                               gbs_matrix({"a": X.astype(np.float32), "b": Y}, progress=False).to_numpy(), atol=1e-7)
    tiny = (X * 1e-30).astype(np.float32)  # squares underflow: the 1e-8 norm floor still applies as defined
    assert gbs(tiny, Y) == pytest.approx(naive_gbs(X * 1e-30, Y, None), abs=1e-7)


def test_gbs_properties(rng):
    X = rng.normal(size=(80, 12))
    Y = np.tanh(X @ rng.normal(size=(12, 12))) + 0.3 * rng.normal(size=(80, 12))
    base = gbs(X, Y)
    assert gbs(X, X) == pytest.approx(1.0, abs=1e-12)
    assert gbs(Y, X) == pytest.approx(base, abs=1e-12)
    Q, _ = np.linalg.qr(rng.normal(size=(12, 12)))
    assert gbs(X @ Q, Y) == pytest.approx(base, abs=1e-7)
    scales = rng.uniform(0.1, 10.0, size=(80, 1))  # per-sample positive scaling
    assert gbs(scales * X, Y) == pytest.approx(base, abs=1e-7)
    assert gbs(2.5 * X, Y) == pytest.approx(base, abs=1e-7)
    assert abs(gbs(X + 1.5, Y) - base) > 1e-3  # not translation invariant
    assert abs(gbs(X * np.linspace(0.05, 20, 12), Y) - base) > 1e-3  # nor to anisotropic scaling


def test_gbs_matrix_builds_each_graph_once_and_equals_pairs(rng, monkeypatch):
    acts = Activations({f"l{i}": rng.normal(size=(50, 6 + i)) for i in range(4)})
    other = {f"m{i}": rng.normal(size=(50, 5)) for i in range(3)}
    gbs_module = importlib.import_module("repgraph.analyzers.gbs")  # the package exports a function `gbs`
    calls = []
    original = gbs_module._normalised_graph
    monkeypatch.setattr(gbs_module, "_normalised_graph", lambda *a, **kw: calls.append(1) or original(*a, **kw))
    M = gbs_matrix(acts)
    assert len(calls) == 4
    cross = gbs_matrix(acts, other, k=3)
    assert len(calls) == 4 + 7
    monkeypatch.setattr(gbs_module, "row_chunk", lambda n_rows, n_bytes: 7)  # blocks of 7 rows
    chunked = gbs_matrix(acts, other)
    monkeypatch.undo()
    assert isinstance(M, pd.DataFrame) and list(M.columns) == acts.layers and M.attrs["k"] == "full"
    np.testing.assert_allclose(M.to_numpy(), [[gbs(acts[a], acts[b]) for b in acts] for a in acts], atol=1e-12)
    np.testing.assert_allclose(cross.to_numpy(), [[gbs(acts[a], other[b], k=3) for b in other] for a in acts],
                               atol=1e-12)
    np.testing.assert_allclose(chunked.to_numpy(), [[naive_gbs(acts[a], other[b], None) for b in other] for a in acts],
                               atol=1e-7)


def test_zero_rows_contribute_zero_with_a_warning(rng):
    X = rng.normal(size=(20, 4))
    X[3] = 0.0  # an all-zero sample has cosine 0 with everyone: an empty row
    with pytest.warns(UserWarning, match="all-zero adjacency row"):
        value = gbs(X, X)
    assert value == pytest.approx(19 / 20)


def test_gbs_bad_input(rng):
    X = rng.normal(size=(6, 3))
    with pytest.raises(ValueError, match="N=6 samples but k=6"):
        gbs(X, X, k=6)
    with pytest.raises(ValueError, match="NaN or Inf"):
        gbs(np.full((6, 3), np.inf), X)
    with pytest.raises(ValueError, match="6 samples but Y has 5"):
        gbs(X, X[:5])
    with pytest.raises(TypeError, match="non-empty"):
        gbs_matrix({})
    with pytest.raises(ValueError, match="acts2: acts holds no complete repgraph activation store"):
        gbs_matrix({"a": X}, Path("acts/"))  # a store's path is analysed in process too: this folder holds none
    with pytest.raises(ValueError, match="same N"):
        gbs_matrix({"a": X}, {"b": X[:5]})


def test_layer_correspondence():
    assert layer_correspondence(np.eye(4)) == 1.0
    M = np.array([[0.9, 0.1, 0.0], [0.8, 0.7, 0.1], [0.1, 0.2, 0.6]])
    assert layer_correspondence(M) == pytest.approx(2 / 3)  # row 1 peaks at column 0
    with pytest.raises(ValueError, match="square"):
        layer_correspondence(np.ones((2, 3)))
