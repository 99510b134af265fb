import math
import warnings

import networkx as nx
import numpy as np
import pytest
import torch
from torch import nn

import reference_central_filter
import reference_criteria
from repgraph import (birth_points, central_filters, chip_scores, closeness_centrality, clp_scores,
                      compensate_next_layer, feature_entropy, filter_similarity, hrank_scores, l1_scores,
                      persistence_entropy)
from repgraph.analyzers import clp_outliers
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


# --- central filters ---------------------------------------------------------------------------
def _chain():
    """4 filters, S01 = .9, S12 = .8, S23 = .7, every other pair .1."""
    S = np.full((4, 4), 0.1)
    np.fill_diagonal(S, 1.0)
    for (i, j), v in {(0, 1): 0.9, (1, 2): 0.8, (2, 3): 0.7}.items():
        S[i, j] = S[j, i] = v
    return S


def test_central_filters_on_the_hand_worked_chain():
    # ratio .5 -> ceil(4 * .5) = 2 prunes. Bisection (rank.py): lo = .1 - 1e-7, hi = 1 + 1e-7
    #   m1 = .55: edges 01, 12, 23 -> 4 nodes - 1 component = 3 > 2 -> lo = .55 + 1e-7
    #   m2 = (.5500001 + 1.0000001) / 2 = .7750001: edges 01, 12 -> 3 - 1 = 2: t = .7750001
    # scores 1/1023.1 (node 0) > 2/2046.3 (node 1) > 1/1023.2 (node 2) > 0 (node 3, isolated)
    # visit 0: central, prunes 1; visit 1 (already pruned): still prunes 2 -> kept [0, 3]
    sel = central_filters(_chain(), 0.5)
    assert sel.threshold == pytest.approx(0.7750001, abs=1e-12)
    assert (sel.kept, sel.pruned, sel.central) == ([0, 3], [1, 2], [0])
    assert sel.delegates == {0: [1, 2]}  # both stand under the central filter of their component
    ref = reference_central_filter.select(_chain(), 0.5)
    assert (ref["kept"], ref["threshold"]) == (sel.kept, sel.threshold)
    assert ref["filed"] == {0: [1], 1: [2]}  # rank.py files 2 under the pruned 1
    np.testing.assert_allclose(sel.scores, ref["scores"], rtol=1e-15)


def test_central_filters_without_an_exact_bisection_hit():
    # {0, 1, 2} pairwise .9, filter 3 at .1 from all; ratio .25 -> 1 prune. The count is 2 for every
    # t < .9 and 0 above, never 1: rank.py keeps the lower bound from before its last raise (a graph
    # with the triangle), where the tied scores go lower index first: 0 is central and prunes 1.
    S = np.full((4, 4), 0.1)
    S[:3, :3] = 0.9
    np.fill_diagonal(S, 1.0)
    sel = central_filters(S, 0.25)
    ref = reference_central_filter.select(S, 0.25)
    assert 0.8875 < sel.threshold < 0.9 and sel.threshold == ref["threshold"]
    assert (sel.kept, sel.pruned, sel.delegates) == ([0, 2, 3], [1], {0: [1]}) and ref["kept"] == sel.kept


def _random_similarity(rng, c, grid=None):
    """A symmetric similarity with block structure (so components form), diagonal 1; ``grid``
    rounds to multiples of 1/grid, which makes ties (and exact float sums) common."""
    groups = rng.integers(0, max(1, c // 3), size=c)
    S = np.where(groups[:, None] == groups[None, :], rng.uniform(0.3, 1.0, (c, c)), rng.uniform(-1.0, 0.6, (c, c)))
    S = np.triu(S, 1)
    S = S + S.T
    if grid:
        S = np.round(S * grid) / grid
    np.fill_diagonal(S, 1.0)
    return S


@pytest.mark.parametrize("grid", [None, 16])
def test_central_filters_equal_the_reference_selection(rng, grid):
    for _ in range(60):
        c = int(rng.integers(4, 40))
        ratio = float(rng.choice([0.2, 0.3, 0.5, 0.6, 0.7]))
        if math.ceil(c * ratio) != math.ceil(round(c * ratio, 9)) or math.ceil(c * ratio) >= c:
            continue  # the reference's math.ceil(c * ratio) would count one float error more
        S = _random_similarity(rng, c, grid)
        sel = central_filters(S, ratio)
        ref = reference_central_filter.select(S, ratio)
        assert sel.threshold == ref["threshold"]
        assert (sel.kept, sel.pruned, sel.central) == (ref["kept"], ref["pruned"], ref["central"])
        # DESIGN's delegates: every pruned filter under the central filter of its component
        central_of = {ref["roots"][k]: k for k in ref["central"]}
        expected = {}
        for p in ref["pruned"]:
            expected.setdefault(central_of[ref["roots"][p]], []).append(p)
        assert sel.delegates == dict(sorted(expected.items()))


def test_central_filters_prune_the_requested_count_on_structured_layers(rng):
    # chains and stars of near-duplicates: a node pruned early must still prune its neighbours
    for _ in range(40):
        c = int(rng.integers(8, 64))
        S = _random_similarity(rng, c)
        for ratio in (0.2, 0.4, 0.6):
            with warnings.catch_warnings():
                warnings.simplefilter("error")  # no "allows only ..." warning
                sel = central_filters(S, ratio)
            assert len(sel.pruned) == math.ceil(round(c * ratio, 9)) == sel.requested


def test_central_filters_treat_nan_as_no_edge_where_the_reference_prunes_nothing():
    S = _chain()
    S[0, 3] = S[3, 0] = np.nan  # undefined in every image: never an edge
    assert reference_central_filter.select(S, 0.5)["pruned"] == []  # rank.py's threshold becomes NaN
    sel = central_filters(S, 0.5)
    assert sel.kept == [0, 3] and sel.threshold == pytest.approx(0.7750001, abs=1e-12)


def test_central_filters_accept_matrices_symmetric_up_to_rounding(rng):
    F = rng.normal(size=(12, 30))
    R = np.corrcoef(F)  # symmetric only up to ~1e-16
    sel = central_filters(R, 0.5)
    assert len(sel.pruned) == 6
    np.testing.assert_array_equal(sel.similarity, (R + R.T) / 2)
    assert closeness_centrality(R).shape == (12,)
    S = _chain()
    S[0, 1] += 1e-15  # a rounding-level difference is averaged away
    assert central_filters(S, 0.5).kept == [0, 3]
    S[2, 3] += 0.05  # a real asymmetry is refused, naming the largest |S - S.T| and where it is
    with pytest.raises(ValueError, match=r"largest \|S − Sᵀ\| is 0.05 at \(2, 3\)"):
        central_filters(S, 0.5)
    S = _chain()
    S[1, 3] = np.nan
    with pytest.raises(ValueError, match=r"S\[1, 3\] = nan but S\[3, 1\] = 0.1"):
        central_filters(S, 0.5)


def test_central_filters_bad_input():
    with pytest.raises(ValueError, match="ratio"):
        central_filters(_chain(), ratio=1.0)
    with pytest.raises(ValueError, match="ratio"):
        central_filters(_chain(), ratio=0.0)
    with pytest.raises(ValueError, match="no finite off-diagonal"):
        central_filters(np.where(np.eye(3) > 0, 1.0, np.nan), 0.5)
    # one defined pair, 2 prunes asked: no threshold reaches the count, so the lowest bound (every
    # finite pair an edge) prunes what it can (rank.py: nothing, its threshold is NaN), with a warning
    S = np.where(np.eye(4) > 0, 1.0, np.nan)
    S[0, 1] = S[1, 0] = 0.9
    with pytest.warns(UserWarning, match="allows only 1 of the 2"):
        sel = central_filters(S, 0.5)
    assert sel.pruned == [1] and sel.threshold == pytest.approx(0.9 - 1e-7)


def test_compensation_adds_every_pruned_filter_of_the_component_to_its_central_filter():
    # the chain: 1 and 2 are pruned, both delegated to 0. rank.py files 2 under the pruned 1, so its
    # in-place, index-ordered compensation never brings filter 2's column to filter 0.
    sel = central_filters(_chain(), 0.5)
    conv = nn.Conv2d(4, 3, 1, bias=False)
    W = conv.weight.detach()[:, :, 0, 0].double().numpy()
    new = compensate_next_layer(conv, sel)
    np.testing.assert_allclose(new.weight.detach()[:, :, 0, 0].numpy(), np.c_[W[:, 0] + W[:, 1] + W[:, 2], W[:, 3]],
                               rtol=1e-6)
    reference = reference_central_filter.compensate(W, reference_central_filter.select(_chain(), 0.5)["filed"])
    np.testing.assert_allclose(reference[:, 0], W[:, 0] + W[:, 1])


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
    with pytest.raises(TypeError, match="Conv1d/2d/3d"):
        compensate_next_layer(nn.Linear(5, 2), sel)


# --- 1-D convolutions: (N, C, L) maps ---------------------------------------------------------------
def test_filter_criteria_on_one_dimensional_maps(rng):
    torch.manual_seed(0)
    conv1, conv2 = nn.Conv1d(2, 6, 5, padding=2), nn.Conv1d(6, 3, 3, padding=1)
    with torch.no_grad():
        conv1.weight[4] = conv1.weight[0]  # filter 4 copies filter 0
        conv1.bias[4] = conv1.bias[0]
    x = torch.randn(10, 2, 24)
    maps = torch.relu(conv1(x)).detach()  # (N, C, L)
    S = filter_similarity(maps)
    np.testing.assert_allclose(S.numpy(), brute_force_filter_similarity(maps.numpy()), atol=1e-10)
    sel = central_filters(S, 1 / 6)
    assert set(sel.pruned) in ({0}, {4})
    new_conv2 = compensate_next_layer(conv2, sel)
    assert isinstance(new_conv2, nn.Conv1d) and new_conv2.in_channels == 5
    torch.testing.assert_close(new_conv2(maps[:, sel.kept]), conv2(maps), atol=1e-5, rtol=1e-5)
    # CHIP: the (C, L) matrix of each image; HRank: a 1 x L matrix has rank 1 unless it is zero
    F = np.maximum(rng.normal(size=(5, 4, 9)), 0).astype(np.float32)
    F[2, 1] = 0.0
    np.testing.assert_allclose(chip_scores(F), reference_criteria.chip(F), atol=1e-9)
    np.testing.assert_array_equal(hrank_scores(F), reference_criteria.hrank(F[:, :, None, :]))
    assert hrank_scores(F)[1] == pytest.approx(4 / 5)
    np.testing.assert_allclose(l1_scores(nn.Sequential(conv1))["0"],
                               conv1.weight.detach().abs().sum(dim=(1, 2)).double().numpy(), rtol=1e-6)
    for fn in (birth_points, feature_entropy):
        with pytest.raises(ValueError, match=r"1-D maps .* needs square 2-D maps"):
            fn(F)
    row = np.array([0.0, 5, 1, 6, 3])  # the 1-D cubical complex of a row equals the 1 x 5 image's
    assert persistence_entropy(row.reshape(1, 1, 5))[0, 0] == pytest.approx(persistence_entropy(row.reshape(1, 1, 1, 5))[0, 0])
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


def test_hrank_uses_the_precision_of_the_maps(rng):
    # an 8 x 8 float32 rank-1 outer product: its float32 rounding noise (~1e-7 relative) is above
    # float64's tolerance but below float32's sigma_max * 8 * 2**-23, so the reference counts rank 1
    u, v = rng.random(8).astype(np.float32), rng.random(8).astype(np.float32)
    M = np.outer(u, v).astype(np.float32)
    assert reference_criteria.matrix_rank(M) == 1 and reference_criteria.matrix_rank(M.astype(np.float64)) > 1
    assert hrank_scores(M[None, None]).tolist() == [1.0]
    assert hrank_scores(torch.from_numpy(M)[None, None]).tolist() == [1.0]
    assert hrank_scores(M.astype(np.float64)[None, None]).tolist() == [float(reference_criteria.matrix_rank(
        M.astype(np.float64)))]  # float64 maps get float64's tolerance
    # post-ReLU float32 maps with low-rank channels, a dead channel and a partly dead one
    F = rng.normal(size=(12, 5, 8, 8)).astype(np.float32)
    F[:, 1] = np.einsum("nhk,nkw->nhw", F[:, 1, :, :2], F[:, 2, :2, :])  # rank 2
    F[:, 3] = 0.0
    F = np.maximum(F, 0)
    np.testing.assert_array_equal(hrank_scores(F), reference_criteria.hrank(F))
    np.testing.assert_array_equal(hrank_scores(F), torch.linalg.matrix_rank(torch.from_numpy(F)).double().mean(0))


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


def test_chip_equals_the_reference_computation(rng):
    F = np.maximum(rng.normal(size=(6, 7, 5, 5)), 0)
    np.testing.assert_allclose(chip_scores(F), reference_criteria.chip(F), atol=1e-9)
    # the reference rounds its saved maps to 4 decimals and works in float32 (not emulated): the
    # scores then agree only to about 1e-4 of the nuclear norm
    rounded = reference_criteria.chip(F, round_decimals=4, dtype=np.float32)
    assert 0 < np.abs(chip_scores(F) - rounded).max() < 1e-3


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


def test_clp_flags_with_the_unbiased_std():
    # 20 channels with UCLC 1 and one with 10 (channel 3): mean 1.45; unbiased std
    # sqrt(81 * 0.95 / 19) = 2.0125 -> threshold(u = 4.3) = 10.10 (not flagged); the population std
    # 1.9615 would give 9.88 and flag it
    values = np.ones(20)
    values[3] = 10.0
    assert reference_criteria.clp_flags(values, u=4.3).tolist() == []
    assert not clp_outliers(values, 4.3).any()
    assert clp_outliers(values, 4.2).nonzero()[0].tolist() == [3] == reference_criteria.clp_flags(values, 4.2).tolist()
    assert not clp_outliers(np.array([5.0]), 3.0).any()  # one channel: std undefined, nothing flagged
    # a whole model: bounds equal the reference's once its sqrt(var) is given the BN's eps
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 16, 3), nn.BatchNorm2d(16))
    with torch.no_grad():
        model[1].weight.copy_(torch.rand(16) + 0.1)
        model[1].weight[9] = 8.0
        model[1].running_var.copy_(torch.rand(16) + 0.5)
    scores = clp_scores(model, example_input=torch.zeros(1, 3, 5, 5))
    bn = model[1]
    expected = reference_criteria.uclc(model[0].weight.detach().numpy(), bn.weight.detach().numpy(),
                                       bn.running_var.numpy(), eps=bn.eps)
    np.testing.assert_allclose(scores["0"], expected, rtol=1e-6)
    assert scores.flagged["0"].nonzero()[0].tolist() == reference_criteria.clp_flags(expected).tolist() == [9]


def test_l1_by_hand():
    conv = nn.Conv2d(1, 2, 2, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([[[[1.0, -2.0], [0.0, 3.0]]], [[[0.5, 0.5], [-0.5, 0.0]]]]))
    np.testing.assert_allclose(l1_scores(nn.Sequential(conv))["0"], [6.0, 1.5])
    with pytest.raises(ValueError, match="no conv"):
        l1_scores(nn.Sequential(nn.Linear(2, 2)))


def test_filter_bad_input(rng):
    with pytest.raises(ValueError, match=r"\(N, C, H, W\) or \(N, C, L\), got shape \(3, 4\)"):
        filter_similarity(rng.normal(size=(3, 4)))
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
