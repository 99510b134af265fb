"""Degenerate inputs give a warning or a clear error, never a silently meaningless number
(issue 19, part C): negative-dominated modularity, one-class and missing labels, ambiguous
sample axes, one-image feature entropy, constant layers in GBS, and awkward inputs."""
import warnings

import networkx as nx
import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

import repgraph as rg
from repgraph.analyzers.topology import birth_point_of_map


def _nx_modularity(A, labels) -> float:
    G = nx.from_numpy_array(np.asarray(A))
    groups = [set(np.flatnonzero(np.asarray(labels) == c)) for c in np.unique(labels)]
    return nx.community.modularity(G, groups, weight="weight")


def _no_warnings(fn):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return fn()


# --- modularity with negative weights that nearly cancel the positive ones --------------------

def _cancelling_graph():
    """Two positive pairs (0-1, 2-3; weight 1) and two negative cross edges (0-2, 1-3; −0.9):
    total weight 2·(2 − 1.8) = 0.4 against an absolute weight 2·3.8 = 7.6."""
    A = np.zeros((4, 4))
    for i, j, w in [(0, 1, 1.0), (2, 3, 1.0), (0, 2, -0.9), (1, 3, -0.9)]:
        A[i, j] = A[j, i] = w
    return A


def test_modularity_warns_when_negative_weights_cancel_and_keeps_networkx_value():
    A, labels = _cancelling_graph(), [0, 0, 1, 1]
    with pytest.warns(UserWarning, match=r"total weight 0\.4 .* absolute\s+weight 7\.6"):
        q = rg.modularity(A, labels)
    # by hand: intra = 2·1 + 2·1 = 4 (directed sum), 2m = 0.4, class degrees 0.2 and 0.2 -> Q = 10 − 0.5
    assert q == pytest.approx(9.5) and q == pytest.approx(_nx_modularity(A, labels))


def test_modularity_warns_for_negative_total_weight():
    A = -np.ones((4, 4)) + np.eye(4)  # every edge −1: 2m = −12
    with pytest.warns(UserWarning, match="negative weights cancel"):
        rg.modularity(A, [0, 0, 1, 1])


def test_modularity_of_a_nonnegative_graph_does_not_warn():
    A = np.zeros((6, 6))
    for i, j in [(0, 1), (1, 2), (0, 2), (3, 4), (4, 5), (3, 5)]:
        A[i, j] = A[j, i] = 1.0
    assert _no_warnings(lambda: rg.modularity(A, [0, 0, 0, 1, 1, 1])) == pytest.approx(0.5)


def _zero_mean_layers():
    rng = np.random.default_rng(0)
    pre = rng.normal(size=(40, 200))  # zero-mean: with 4 samples and k = 3 every cosine enters the graph
    post = np.abs(pre)  # nonnegative: every cosine > 0
    return {"pre": pre, "post": post}, np.arange(40) % 2


def test_curve_warns_once_per_layer_for_negative_dominated_graphs():
    layers, labels = _zero_mean_layers()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        curve = rg.modularity_curve(layers, labels, batch_size=4, k=3, progress=False)
    messages = [str(w.message) for w in caught if "negative cosine" in str(w.message)]
    assert len(messages) == 1  # one summary for 'pre' over its 10 batches; none for 'post'
    assert "layer 'pre'" in messages[0] and "of 10 batch(es)" in messages[0]
    assert "total weight" in messages[0] and "absolute weight" in messages[0]
    assert "batch_size" in messages[0] and "smaller k" in messages[0] and "post-activation" in messages[0]
    assert curve.attrs["negative"] == "keep"


def test_curve_negative_clip_drops_negative_edges_as_networkx_on_the_clipped_graph():
    layers, labels = _zero_mean_layers()
    X = layers["pre"][:4]  # k = 3 of 3 others: every cosine, some negative, is an edge
    curve = _no_warnings(lambda: rg.modularity_curve({"pre": X}, labels[:4], batch_size=4, k=3,
                                                     negative="clip", progress=False))
    A = rg.knn_graph(X, 3).toarray()  # (A + Aᵀ)/2 with negative weights kept
    assert curve.attrs["negative"] == "clip"
    assert curve["modularity"].iloc[0] == pytest.approx(_nx_modularity(np.maximum(A, 0), labels[:4]), abs=1e-9)
    with pytest.raises(ValueError, match=r"layer 'pre' \(samples 0:4\).*negative similarity"):
        rg.modularity_curve({"pre": X}, labels[:4], batch_size=4, k=3, negative="raise", progress=False)
    with pytest.raises(ValueError, match="negative must be one of"):
        rg.modularity_curve({"pre": X}, labels[:4], batch_size=4, negative="drop", progress=False)


def test_curve_of_an_all_zero_layer_names_the_layer():
    with pytest.raises(ValueError, match=r"layer 'dead' \(samples 0:10\).*total edge weight is 0"):
        rg.modularity_curve({"dead": np.zeros((10, 3))}, np.arange(10) % 2, batch_size=10, progress=False)


# --- labels -------------------------------------------------------------------------------------

def test_one_class_warns_naming_it():
    X = np.random.default_rng(1).normal(size=(20, 5))
    with pytest.warns(UserWarning, match="every label is 'cat'"):
        rg.modularity(rg.knn_graph(np.abs(X), 3), ["cat"] * 20)
    with pytest.warns(UserWarning, match="every label is 7"):
        rg.modularity_curve({"a": np.abs(X)}, [7] * 20, batch_size=10, progress=False)


@pytest.mark.parametrize("labels, count, first", [([0, np.nan, 1, np.nan], 2, 1), ([0, 1, None, 1], 1, 2),
                                                  (pd.Series([1, None, 0, 1], dtype="Int64"), 1, 1)])
def test_missing_labels_are_refused_with_count_and_position(labels, count, first):
    A = rg.knn_graph(np.abs(np.random.default_rng(2).normal(size=(4, 3))), 1)
    with pytest.raises(ValueError, match=rf"{count} missing label\(s\).*position {first}"):
        rg.modularity(A, labels)


def test_mixed_number_and_string_labels_are_refused():
    A = rg.knn_graph(np.abs(np.random.default_rng(2).normal(size=(4, 3))), 1)
    with pytest.raises(TypeError, match=r"mix numbers and strings \(0 at position 0, 'a' at position 1\)"):
        rg.modularity(A, [0, "a", 1, 1])
    for not_a_sequence in ("abcd", {0: 1, 1: 0, 2: 0, 3: 1}):
        with pytest.raises(TypeError, match="one label per sample"):
            rg.modularity(A, not_a_sequence)


def test_string_bool_series_and_float_labels_give_the_same_partition():
    A = _cancelling_graph() ** 2  # nonnegative
    expected = _nx_modularity(A, [0, 0, 1, 1])
    for labels in (["a", "a", "b", "b"], [True, True, False, False], [0.0, 0.0, 1.0, 1.0],
                   pd.Series([5, 5, 3, 3], index=[3, 2, 1, 0]), torch.tensor([1, 1, 0, 0])):
        assert rg.modularity(A, labels) == pytest.approx(expected)


@pytest.mark.parametrize("shuffle", [-1, 1.5, True, "0"])
def test_bad_shuffle_names_shuffle(shuffle):
    with pytest.raises(ValueError, match="shuffle must be None"):
        rg.modularity_curve({"a": np.ones((8, 2))}, np.arange(8) % 2, batch_size=4, shuffle=shuffle, progress=False)


@pytest.mark.parametrize("resolution", [float("nan"), "1", None])
def test_bad_resolution_is_refused(resolution):
    with pytest.raises(ValueError, match="resolution must be a finite number"):
        rg.modularity(np.ones((3, 3)) - np.eye(3), [0, 0, 1], resolution=resolution)


@pytest.mark.parametrize("n", [0, 1])
def test_curve_with_fewer_than_two_samples_is_refused(n):
    with pytest.raises(ValueError, match=f"holds {n} sample"):
        rg.modularity_curve({"a": np.ones((n, 3))}, np.zeros(n), k=1, progress=False)


# --- the sample axis of a seq-first layer whose T equals the batch size --------------------------

class _Encoder(nn.Module):
    def __init__(self, batch_first: bool):
        super().__init__()
        self.enc = nn.TransformerEncoderLayer(4, 1, 8, dropout=0.0, batch_first=batch_first)
        self.batch_first = batch_first

    def forward(self, x):  # x: (N, T, D)
        return self.enc(x if self.batch_first else x.transpose(0, 1))


class _SeqFirst(nn.Module):
    """A custom module that returns its (N, T, D) input as (T, N, D), declaring nothing."""

    def forward(self, x):
        return 2 * x.transpose(0, 1)


class _Wrapped(nn.Module):
    def __init__(self):
        super().__init__()
        self.mix = _SeqFirst()

    def forward(self, x):
        return self.mix(x)


def test_seq_first_transformer_with_t_equal_to_batch_size_is_not_read_as_samples():
    torch.manual_seed(0)
    x = torch.randn(16, 8, 4)  # 16 samples of 8 tokens, captured in batches of 8: T = N
    seq_first = _Encoder(batch_first=False).eval()
    with pytest.raises(ValueError, match=r"batch_first=False.*T = N = 8.*batch_axis=\{'enc': 1\}"):
        rg.capture_activations(seq_first, x, layers=["enc"], batch_size=8, reduce="token_mean", progress=False)
    got = rg.capture_activations(seq_first, x, layers=["enc"], batch_size=8, batch_axis=1, reduce="token_mean",
                                 progress=False)
    with torch.no_grad():
        expected = seq_first(x).mean(0).numpy()  # (T, N, D): the mean over tokens is over axis 0
    np.testing.assert_allclose(got["enc"], expected, atol=1e-5)


def test_undeclared_ambiguous_axis_warns_once_and_can_be_confirmed():
    x = torch.randn(16, 8, 4)
    model = _Wrapped()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rg.capture_activations(model, x, layers=["mix"], batch_size=8, reduce=None, progress=False)
    ambiguous = [str(w.message) for w in caught if "cannot show where the samples are" in str(w.message)]
    assert len(ambiguous) == 1 and "batch_axis={'mix': 1}" in ambiguous[0]  # one warning for two batches
    got = _no_warnings(lambda: rg.capture_activations(model, x, layers=["mix"], batch_size=8, reduce=None,
                                                      batch_axis={"mix": 1}, progress=False))
    np.testing.assert_allclose(got["mix"], 2 * x.numpy())
    _no_warnings(lambda: rg.capture_activations(model, x, layers=["mix"], batch_size=8, reduce=None,
                                                batch_axis={"mix": 0}, progress=False))
    _no_warnings(lambda: rg.capture_activations(model, x, layers=["mix"], batch_size=5, reduce=None,
                                                batch_axis=1, progress=False))  # T ≠ N: nothing to doubt


# --- feature entropy and birth points -----------------------------------------------------------

def test_feature_entropy_of_one_image_is_refused():
    with pytest.raises(ValueError, match="1 image"):
        rg.feature_entropy(np.array([[1, 0, 2]]))
    with pytest.raises(ValueError, match="1 image"):
        rg.feature_entropy(np.random.default_rng(0).normal(size=(1, 2, 5, 5)))


def test_feature_entropy_has_no_negative_zero():
    table = rg.feature_entropy(np.array([[1, 0], [1, 0], [1, 0]]))  # one value, or none: entropy 0
    values = table[["entropy", "ineffectiveness"]].to_numpy()
    assert (values == 0).all() and not np.signbit(values).any()


@pytest.mark.parametrize("points", [[[1.5, 0], [2, 0]], [[-1, 0], [2, 0]]])
def test_birth_points_must_be_nonnegative_integers(points):
    with pytest.raises(ValueError, match="nonnegative integers"):
        rg.feature_entropy(np.array(points))


@pytest.mark.parametrize("options, match", [({"max_level": 0}, "max_level"), ({"max_level": 2.5}, "max_level"),
                                            ({"max_level": True}, "max_level"),
                                            ({"max_edge_density": 0}, "max_edge_density"),
                                            ({"max_edge_density": 1.5}, "max_edge_density")])
def test_birth_point_options_are_validated(options, match):
    M = np.random.default_rng(0).normal(size=(2, 2, 5, 5))
    with pytest.raises(ValueError, match=match):
        rg.birth_points(M, **options)
    with pytest.raises(ValueError, match=match):
        birth_point_of_map(M[0, 0], **options)


def test_full_edge_density_is_allowed():
    M = np.zeros((4, 4))  # a 4-cycle with sides 10, 9, 8, 7 and diagonals 2, 1: born at level 3
    M[0, 1], M[1, 2], M[2, 3], M[0, 3], M[0, 2], M[1, 3] = 10, 9, 8, 7, 2, 1
    assert birth_point_of_map(M, max_edge_density=1.0) == 3


def test_class_feature_entropy_refuses_missing_labels_and_warns_for_single_image_classes():
    points = np.array([[1], [2], [3]])
    with pytest.raises(ValueError, match=r"2 missing label\(s\)"):
        rg.class_feature_entropy(points, [0, np.nan, np.nan])
    with pytest.warns(UserWarning, match=r"1 class\(es\) hold a single image \(\['b'\]\)"):
        rg.class_feature_entropy(points, ["a", "a", "b"])


# --- GBS of constant layers; empty input ---------------------------------------------------------

def test_gbs_matrix_warns_for_a_constant_layer_naming_it():
    rng = np.random.default_rng(0)
    layers = {"flat": np.ones((10, 4)), "ok": rng.normal(size=(10, 4))}
    with pytest.warns(UserWarning, match="layer 'flat' is constant"):
        rg.gbs_matrix(layers, progress=False)
    with pytest.warns(UserWarning, match="X is constant"):
        rg.gbs(np.ones((10, 4)), rng.normal(size=(10, 4)))
    _no_warnings(lambda: rg.gbs_matrix({"ok": layers["ok"], "ok2": rng.normal(size=(10, 4))}, progress=False))


def test_gbs_of_empty_features_names_the_argument():
    with pytest.raises(ValueError, match="X has 0 sample"):
        rg.gbs(np.zeros((0, 3)), np.zeros((0, 3)))
