import math

import networkx as nx
import numpy as np
import pytest
import torch
from torch import nn

from repgraph import (birth_points, central_filters, chip_scores, closeness_centrality, clp_scores,
                      compensate_next_layer, feature_entropy, filter_similarity, hrank_scores, l1_scores,
                      persistence_entropy)
from repgraph.analyzers.topology import birth_point_of_map, entropy_ranking_scores
from oracles import brute_force_filter_similarity, naive_birth_point


# --- filter similarity ---------------------------------------------------------------------------
def test_filter_similarity_equals_brute_force(rng):
    F = np.maximum(rng.normal(size=(6, 7, 5, 5)), 0)  # post-ReLU maps
    F[2, 3] = 0.0  # an all-zero map in one image
    F[4, 1] = 0.0
    F[4, 5] = 0.0  # both zero in image 4 -> +1 for the pair (1, 5)
    S = filter_similarity(F)
    np.testing.assert_allclose(S, brute_force_filter_similarity(F), atol=1e-10)
    np.testing.assert_allclose(S, S.T)
    assert (np.diag(S) == 1).all()
    assert isinstance(filter_similarity(torch.from_numpy(F)), torch.Tensor)


def test_filter_similarity_special_cases():
    varying = np.arange(9.0).reshape(3, 3)
    maps = np.stack([np.zeros((3, 3)), np.zeros((3, 3)), np.full((3, 3), 2.0), varying, varying ** 2])[None]
    S = filter_similarity(maps)
    assert S[0, 1] == 1.0  # both zero
    assert S[0, 2] == 1.0  # both constant (one of them zero): the first rule applies
    assert S[0, 3] == -1.0  # exactly one all-zero
    assert np.isnan(S[2, 3])  # constant non-zero vs varying: undefined, never an edge
    assert S[3, 4] == pytest.approx(np.corrcoef(varying.ravel(), (varying ** 2).ravel())[0, 1])


# --- closeness -----------------------------------------------------------------------------------
def test_closeness_equals_networkx_on_karate_club(rng):
    G = nx.karate_club_graph()
    n = G.number_of_nodes()
    S = np.full((n, n), np.nan)
    for u, v in G.edges:
        s = rng.uniform(-0.5, 1.0)
        S[u, v] = S[v, u] = s
        G.edges[u, v]["length"] = 1.0 - s
    np.fill_diagonal(S, 1.0)
    expected = nx.closeness_centrality(G, distance="length")
    np.testing.assert_allclose(closeness_centrality(S), [expected[i] for i in range(n)], atol=1e-12)


def test_closeness_on_a_disconnected_graph_matches_networkx():
    # two components {0,1,2} (a path) and {3,4}, and an isolated node 5
    S = np.full((6, 6), np.nan)
    for u, v, s in [(0, 1, 0.5), (1, 2, 0.8), (3, 4, 1.0)]:  # (3,4) has length 0
        S[u, v] = S[v, u] = s
    G = nx.Graph()
    G.add_nodes_from(range(6))
    G.add_weighted_edges_from([(0, 1, 0.5), (1, 2, 0.2), (3, 4, 0.0)], weight="length")
    expected = nx.closeness_centrality(G, distance="length")
    np.testing.assert_allclose(closeness_centrality(S), [expected[i] for i in range(6)], atol=1e-12)
    assert closeness_centrality(S)[5] == 0.0


def test_cf_local_score_by_hand():
    S = np.array([[1.0, 0.5, 0.2], [0.5, 1.0, np.nan], [0.2, np.nan, 1.0]])
    # node 0: two neighbours, 2 / ((1024 - 0.5) + (1024 - 0.2)); node 1: 1 / (1024 - 0.5)
    expected = [2 / (2048 - 0.7), 1 / 1023.5, 1 / 1023.8]
    np.testing.assert_allclose(closeness_centrality(S, kind="cf_local"), expected)
    assert closeness_centrality(S, kind="cf_local", threshold=0.3)[2] == 0.0  # isolated


# --- central filters -----------------------------------------------------------------------------
def test_central_filters_threshold_and_delegates():
    # similarities: a tight triple {0,1,2} around 1, a pair {3,4}, and 5 on its own
    S = np.full((6, 6), -0.5)
    for (u, v), s in {(0, 1): 0.95, (1, 2): 0.93, (0, 2): 0.90, (3, 4): 0.85, (2, 3): 0.10}.items():
        S[u, v] = S[v, u] = s
    np.fill_diagonal(S, 1.0)
    sel = central_filters(S, ratio=0.5)  # ceil(6 * 0.5) = 3 prunes
    # the largest t with (#nodes with an edge - #components) >= 3 keeps edges > 0.10:
    # {0,1,2} and {3,4}: 5 - 2 = 3
    assert sel.threshold == pytest.approx(0.10)
    # cf_local: node 1 and node 0 have 2 neighbours, node 1's lengths are shortest -> central
    assert sel.delegates == {1: [0, 2], 3: [4]} or sel.delegates == {1: [0, 2], 4: [3]}
    assert len(sel.pruned) == 3 and sorted(sel.kept + sel.pruned) == list(range(6))
    with pytest.raises(ValueError, match="ratio"):
        central_filters(S, ratio=1.0)
    with pytest.raises(ValueError, match="ratio"):
        central_filters(S, ratio=0.0)


def test_compensation_keeps_the_next_layer_output_when_a_filter_is_a_copy():
    torch.manual_seed(0)
    conv1, conv2 = nn.Conv2d(3, 5, 3, padding=1), nn.Conv2d(5, 4, 3, padding=1)
    with torch.no_grad():
        conv1.weight[3] = conv1.weight[1]  # filter 3 is an exact copy of filter 1
        conv1.bias[3] = conv1.bias[1]
    x = torch.randn(8, 3, 9, 9)
    maps = torch.relu(conv1(x)).detach()
    expected = conv2(maps)
    sel = central_filters(filter_similarity(maps), ratio=0.2)  # ceil(5 * 0.2) = 1 prune
    assert set(sel.pruned) in ({1}, {3})
    new_conv2 = compensate_next_layer(conv2, sel)
    assert new_conv2.in_channels == 4
    torch.testing.assert_close(new_conv2(maps[:, sel.kept]), expected, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="input channels"):
        compensate_next_layer(nn.Conv2d(7, 2, 1), sel)


# --- birth points ---------------------------------------------------------------------------------
def test_birth_point_worked_example():
    # A 4-cycle 0-1-2-3-0 with side weights 10, 9, 8, 7 and diagonals 0-2: 2, 1-3: 1.
    # Distinct values 10 > 9 > 8 > 7 > 2 > 1 give levels 0..5; C(4,2) = 6 edges, so edges at level
    # >= ceil(6 * 0.8) = 5 (the diagonal 1-3) are excluded. Levels 0-2 add a path; level 3 (weight 7)
    # closes the 4-cycle with no triangle: beta_1 = 1, so the birth point is 3. (Level 4 adds the
    # diagonal 0-2 and both triangles 0-1-2 and 0-2-3, which fill the cycle.)
    M = np.zeros((4, 4))
    M[0, 1], M[1, 2], M[2, 3], M[0, 3], M[0, 2], M[1, 3] = 10, 9, 8, 7, 2, 1
    assert birth_point_of_map(M) == 3
    assert birth_points(M[None, None]).tolist() == [[3]]
    # a triangle closes and is filled at the same level: a zero-length bar, no birth
    T = np.array([[0, 3, 2], [0, 0, 1], [0, 0, 0]], dtype=float)
    assert birth_point_of_map(T) == 0


def test_birth_points_equal_the_naive_gudhi_route_on_random_maps_with_ties(rng):
    for _ in range(300):
        h = int(rng.integers(3, 10))
        M = rng.integers(0, int(rng.integers(2, 10)), size=(h, h)).astype(float)
        assert birth_point_of_map(M) == naive_birth_point(M)
    for max_level in (2, 5):
        M = rng.random((12, 12))
        assert birth_point_of_map(M, max_level=max_level) == naive_birth_point(M, max_level=max_level)


def test_birth_points_invariances_and_parallel(rng, monkeypatch):
    import importlib
    monkeypatch.setattr(importlib.import_module("repgraph.analyzers.topology"), "PARALLEL_MIN_MAPS", 100)
    F = rng.random((4, 70, 8, 8))  # 280 maps: the parallel path runs
    base = birth_points(F, n_jobs=2)
    assert (birth_points(np.exp(3 * F) - 7.0) == base).all()  # strictly increasing transform
    assert (birth_points(F ** 3) == base).all()
    assert (birth_points(np.swapaxes(F, 2, 3)) == base).all()  # transposition
    assert (birth_points(F, n_jobs=1) == base).all()


def test_feature_entropy_by_hand():
    points = np.array([[3, 0, 2, 4],
                       [3, 0, 5, 4],
                       [3, 0, 2, 0],
                       [3, 0, 5, 0]])
    table = feature_entropy(points)
    assert list(table.columns) == ["unit", "entropy", "selective_rate", "ineffectiveness"]
    assert table.loc[0, "entropy"] == 0.0 and table.loc[0, "selective_rate"] == 0.0  # all equal
    assert table.loc[1, "selective_rate"] == 1.0 and table.loc[1, "ineffectiveness"] == 0.0
    assert table.loc[2, "entropy"] == pytest.approx(math.log(2))  # uniform over 2 values
    # unit 3: half zeros, the rest all 4 -> entropy 0; with one more value it would be ln m / (1 - 0.5)
    assert table.loc[3, "selective_rate"] == 0.5 and table.loc[3, "ineffectiveness"] == 0.0
    uneven = feature_entropy(np.array([[1], [2], [3], [0]]))
    assert uneven.loc[0, "ineffectiveness"] == pytest.approx(math.log(3) / (1 - 0.25))
    scores = entropy_ranking_scores(table)
    assert scores[0] == pytest.approx(-100 * math.log(100))  # |ineffectiveness| < 0.1 is mapped
    assert scores[2] == pytest.approx(-math.log(2))


def test_persistence_entropy_by_hand():
    # one row of pixels 0 5 1 6 3 (sublevel filtration): minima 0, 1, 3; the pixel 5 joins
    # {0} and {1} (bar 1 -> 5), the pixel 6 joins them with {3} (bar 3 -> 6); 0 lives forever.
    # Finite bars of lengths 4 and 3: entropy -(4/7 ln 4/7 + 3/7 ln 3/7).
    maps = np.array([0.0, 5, 1, 6, 3]).reshape(1, 1, 1, 5)
    expected = -(4 / 7 * math.log(4 / 7) + 3 / 7 * math.log(3 / 7))
    assert persistence_entropy(maps)[0, 0] == pytest.approx(expected)


# --- baseline criteria ----------------------------------------------------------------------------
def test_hrank_by_hand():
    u, v = np.arange(1.0, 6.0), np.arange(2.0, 7.0)
    maps = np.stack([np.zeros((5, 5)), np.outer(u, v), np.eye(5)])[None]
    np.testing.assert_allclose(hrank_scores(maps), [0, 1, 5])
    assert set(hrank_scores({"a": maps, "b": maps})) == {"a", "b"}


def test_chip_by_hand(rng):
    # rows of A (one image, C = 4, H·W = 4): r0 = 0; r1 orthogonal to the rest; r2 = r3 = r
    r = np.array([1.0, 2.0, 0.0, 0.0])
    r1 = np.array([0.0, 0.0, 3.0, 4.0])
    maps = np.stack([np.zeros(4), r1, r, r]).reshape(1, 4, 2, 2)
    expected = [0.0, 5.0, (math.sqrt(2) - 1) * np.linalg.norm(r), (math.sqrt(2) - 1) * np.linalg.norm(r)]
    for route in ("gram", "svd"):
        np.testing.assert_allclose(chip_scores(maps, route=route), expected, atol=1e-6)
    F = rng.normal(size=(3, 6, 4, 4))
    np.testing.assert_allclose(chip_scores(F, route="gram"), chip_scores(F, route="svd"), atol=1e-6)


class ConvBN(nn.Module):
    def __init__(self, bn_first=False):
        super().__init__()
        self.bn_first = bn_first
        self.conv = nn.Conv2d(1, 2, 2, bias=False)
        self.bn = nn.BatchNorm2d(1 if bn_first else 2)

    def forward(self, x):
        return self.conv(self.bn(x)) if self.bn_first else self.bn(self.conv(x))


def test_clp_worked_example():
    model = ConvBN()
    with torch.no_grad():
        model.conv.weight[0, 0] = torch.tensor([[3.0, 0.0], [4.0, 0.0]])  # (C_in=1, 4): sigma_max = 5
        model.conv.weight[1, 0] = torch.tensor([[1.0, 1.0], [1.0, 1.0]])  # sigma_max = 2
        model.bn.weight.copy_(torch.tensor([2.0, -0.5]))
        model.bn.running_var.copy_(torch.tensor([4.0 - 1e-5, 1.0 - 1e-5]))  # sqrt(var + eps) = 2, 1
    scores = clp_scores(model, example_input=torch.zeros(1, 1, 4, 4))
    np.testing.assert_allclose(scores["conv"], [5 * 2 / 2, 2 * 0.5 / 1], rtol=1e-6)
    with torch.no_grad():
        model.bn.weight.neg_()  # the sign of gamma does not matter
    np.testing.assert_allclose(clp_scores(model, example_input=torch.zeros(1, 1, 4, 4))["conv"],
                               [5.0, 1.0], rtol=1e-6)
    assert set(scores.flagged) == {"conv"}
    with pytest.raises(ValueError, match=r"\['bn'\] do not take a conv's output"):
        clp_scores(ConvBN(bn_first=True), example_input=torch.zeros(1, 1, 4, 4))
    with pytest.raises(ValueError, match="no conv -> BN pair"):
        clp_scores(nn.Sequential(nn.Conv2d(1, 2, 3)), example_input=torch.zeros(1, 1, 4, 4))


def test_l1_by_hand():
    conv = nn.Conv2d(1, 2, 2, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([[[[1.0, -2.0], [0.0, 3.0]]], [[[0.5, 0.5], [-0.5, 0.0]]]]))
    np.testing.assert_allclose(l1_scores(nn.Sequential(conv))["0"], [6.0, 1.5])
    with pytest.raises(ValueError, match="no conv"):
        l1_scores(nn.Sequential(nn.Linear(2, 2)))


def test_filter_bad_input(rng):
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        filter_similarity(rng.normal(size=(3, 4, 5)))
    with pytest.raises(ValueError, match="at least 2"):
        filter_similarity(rng.normal(size=(3, 1, 4, 4)))
    with pytest.raises(ValueError, match="square maps"):
        birth_points(rng.normal(size=(2, 3, 4, 5)))
    bad = rng.normal(size=(2, 3, 4, 4))
    bad[0, 1, 2, 2] = np.nan
    for fn in (filter_similarity, birth_points, hrank_scores, chip_scores):
        with pytest.raises(ValueError, match="NaN or Inf"):
            fn(bad)
    with pytest.raises(ValueError, match="layer 'x'"):
        hrank_scores({"x": rng.normal(size=(3, 4))})
    with pytest.raises(ValueError, match="kind"):
        closeness_centrality(np.eye(3), kind="betweenness")
