"""Almost-regular RGP graphs for sparsities that leave fractional degrees: the edge count is the
nearest whole number to (1 − s)·n_in·n_out, degrees on each side differ by at most 1, swaps keep
the degrees and never raise the ASPL (networkx as the oracle), and the masks of 16-channel layers
at 80 and 90 % prune the counts worked out by hand. Where the degrees are whole, the graphs are the
ones the biregular construction gave before the almost-regular one existed (frozen below)."""
import networkx as nx
import pytest
import torch
from torch import nn

from repgraph import apply_masks, rgp_graph, rgp_masks, sparsity

# Computed with main's rgp.py at 2ee8283, before the almost-regular construction: per output
# channel (in order), its sorted input channels.
FROZEN_GRAPHS = {
    (6, 9, 4, 40, 3): [[2, 3, 4, 5], [0, 2, 3, 5], [0, 1, 3, 4], [1, 2, 4, 5], [0, 1, 3, 5], [0, 2, 4, 5],
                       [1, 3, 4, 5], [0, 1, 2, 3], [0, 1, 2, 4]],
    (16, 16, 4, 50, 5): [[8, 9, 14, 15], [4, 8, 13, 14], [1, 13, 14, 15], [4, 7, 10, 11], [1, 4, 10, 12],
                         [1, 3, 7, 9], [5, 6, 8, 10], [0, 5, 12, 15], [2, 8, 11, 12], [2, 9, 10, 11],
                         [0, 5, 6, 11], [0, 3, 4, 13], [6, 7, 9, 13], [2, 3, 6, 15], [0, 7, 12, 14],
                         [1, 2, 3, 5]],
    (8, 16, 2, 0, 2): [[1, 4], [0, 5], [1, 4], [1, 4], [1, 4], [3, 7], [2, 6], [0, 5], [3, 7], [2, 6], [0, 5],
                       [2, 6], [0, 5], [3, 7], [3, 7], [2, 6]],
}
# rgp_masks(_frozen_model(), 0.75, swaps=20, seed=4) at the same commit, layer "4" (16 -> 32)
FROZEN_MASK_4 = [[4, 5, 7, 14], [0, 1, 3, 13], [4, 7, 9, 14], [2, 6, 8, 11], [2, 8, 12, 15], [4, 6, 8, 11],
                 [9, 10, 12, 13], [0, 1, 5, 9], [0, 1, 3, 13], [2, 6, 8, 11], [5, 10, 12, 15], [0, 1, 3, 13],
                 [0, 1, 3, 13], [1, 3, 12, 13], [9, 10, 12, 15], [4, 5, 7, 14], [2, 6, 10, 11], [6, 9, 10, 15],
                 [4, 5, 7, 9], [10, 12, 14, 15], [2, 5, 7, 14], [0, 8, 9, 15], [2, 4, 8, 11], [0, 1, 8, 11],
                 [4, 5, 7, 14], [2, 3, 6, 7], [2, 6, 8, 11], [10, 12, 13, 15], [9, 10, 11, 12], [3, 4, 7, 14],
                 [3, 5, 6, 15], [0, 1, 13, 14]]


def _frozen_model():
    return nn.Sequential(nn.Conv1d(1, 16, 3), nn.ReLU(), nn.Conv1d(16, 16, 3), nn.ReLU(), nn.Conv1d(16, 32, 3),
                         nn.ReLU(), nn.Conv1d(32, 4, 1))


def _neighbours(g, n_in):
    return [sorted(g.neighbors(o)) for o in range(n_in, g.number_of_nodes())]


@pytest.mark.parametrize("key", list(FROZEN_GRAPHS))
def test_whole_degrees_give_the_biregular_graphs_of_before(key):
    n_in, n_out, degree, swaps, seed = key
    assert _neighbours(rgp_graph(n_in, n_out, degree, swaps=swaps, seed=seed), n_in) == FROZEN_GRAPHS[key]
    # the same graph asked for by its edge count
    assert _neighbours(rgp_graph(n_in, n_out, edges=n_out * degree, swaps=swaps, seed=seed),
                       n_in) == FROZEN_GRAPHS[key]


def test_whole_degrees_give_the_masks_of_before():
    mask = rgp_masks(_frozen_model(), 0.75, swaps=20, seed=4)["4"][:, :, 0]
    assert [torch.nonzero(row).reshape(-1).tolist() for row in mask] == FROZEN_MASK_4


def _degree_sets(g, n_in):
    ins = [g.degree(v) for v in range(n_in)]
    outs = [g.degree(v) for v in range(n_in, g.number_of_nodes())]
    return ins, outs


@pytest.mark.parametrize("n_in, n_out, edges", [(16, 16, 51), (16, 16, 26), (16, 32, 102), (16, 32, 51),
                                                (7, 5, 12), (5, 7, 7), (3, 4, 7), (4, 4, 16), (6, 9, 35)])
@pytest.mark.parametrize("swaps", [0, 60])
def test_almost_regular_degrees_differ_by_at_most_one(n_in, n_out, edges, swaps):
    g = rgp_graph(n_in, n_out, edges=edges, swaps=swaps, seed=1)
    assert isinstance(g, nx.Graph) and not g.is_multigraph()
    assert g.number_of_edges() == edges  # a repeated edge would collapse and lose one
    assert all((u < n_in) != (v < n_in) for u, v in g.edges)
    ins, outs = _degree_sets(g, n_in)
    # E = q·n + r: r nodes of degree q + 1, n − r of degree q (hand-counted per side)
    q_out, r_out = divmod(edges, n_out)
    q_in, r_in = divmod(edges, n_in)
    assert sorted(outs) == [q_out] * (n_out - r_out) + [q_out + 1] * r_out
    assert sorted(ins) == [q_in] * (n_in - r_in) + [q_in + 1] * r_in
    assert min(outs) >= 1


@pytest.mark.parametrize("n_in, n_out, edges", [(16, 16, 51), (16, 32, 51), (7, 5, 12)])
def test_swaps_keep_every_degree(n_in, n_out, edges):
    # one seed draws the same relabelling, so every node's degree must match the unswapped graph
    start = rgp_graph(n_in, n_out, edges=edges, swaps=0, seed=4)
    swapped = rgp_graph(n_in, n_out, edges=edges, swaps=150, seed=4)
    assert dict(swapped.degree) == dict(start.degree)
    assert sorted(swapped.edges) != sorted(start.edges)  # the swaps did change the graph


def _key(g):
    parts = nx.number_connected_components(g)
    return parts, (nx.average_shortest_path_length(g) if parts == 1 else None)


# (16 x 16 at 90 % keeps 26 edges, fewer than the 31 that join 32 nodes: never connected)
@pytest.mark.parametrize("n_in, n_out, edges", [(16, 16, 51), (12, 12, 30), (8, 12, 20)])
def test_swaps_never_raise_the_aspl_of_an_almost_regular_graph(n_in, n_out, edges):
    # swaps=k replays a prefix of the swaps=k+10 sequence (same seed)
    keys = [_key(rgp_graph(n_in, n_out, edges=edges, swaps=k, seed=1)) for k in range(0, 201, 10)]
    components = [c for c, _ in keys]
    assert components == sorted(components, reverse=True)
    connected = [a for c, a in keys if c == 1]
    assert len(connected) >= 2, "never connected: nothing to compare"
    assert all(b <= a + 1e-12 for a, b in zip(connected, connected[1:])), connected
    assert connected[-1] < connected[0]  # the swaps did lower it on these sizes


def test_a_star_forest_worked_out_by_hand():
    # 2 inputs, 4 outputs, 4 edges: every output keeps one input, each input feeds two: two stars
    # K_{1,2}, which no swap can join (a swap keeps every degree and each output has one input).
    g = rgp_graph(2, 4, edges=4, swaps=30)
    assert nx.number_connected_components(g) == 2
    assert sorted(d for _, d in g.degree) == [1, 1, 1, 1, 2, 2]
    # 2 inputs, 3 outputs, 5 edges: input degrees (3, 2), output degrees (2, 2, 1): K_{2,3} less
    # one edge, connected; its ASPL by hand over the 5 nodes.
    g = rgp_graph(2, 3, edges=5)
    expected = nx.complete_bipartite_graph(2, 3)
    expected.remove_edge(0, 2)
    assert nx.is_isomorphic(g, expected)
    # distances: inputs 0–1: 2; each input to its outputs 1 (5 edges); the degree-1 output to the
    # far input 3, to the other two outputs 2; the two full outputs apart 2: sum over unordered
    # pairs = 2 + 5·1 + 3 + 2·2 + 2 = 16, over 10 pairs: 1.6
    assert nx.average_shortest_path_length(g) == pytest.approx(1.6)


def _sixteen_channel_model():
    # pruned (all but first and last): "2" 16 -> 16 and "4" 16 -> 32, kernel 3
    return nn.Sequential(nn.Conv1d(1, 16, 3), nn.ReLU(), nn.Conv1d(16, 16, 3), nn.ReLU(), nn.Conv1d(16, 32, 3),
                         nn.ReLU(), nn.Conv1d(32, 10, 1))


# Hand-worked, E = N − ⌊s·N + 1/2⌋ connections kept of N = n_in·n_out, each a kernel of 3 weights:
#   s = 0.8: "2": N = 256, s·N = 204.8 -> 205 pruned, E = 51 = 3·16 + 3 (outputs 13 × 3, 3 × 4;
#            inputs the same), zeros 615 of 768; "4": N = 512, s·N = 409.6 -> 410 pruned, E = 102
#            = 3·32 + 6 (outputs 26 × 3, 6 × 4) = 6·16 + 6 (inputs 10 × 6, 6 × 7), zeros 1230 of
#            1536. Together 1845 of 2304 (80.08 %).
#   s = 0.9: "2": s·N = 230.4 -> 230 pruned, E = 26 = 1·16 + 10 (outputs and inputs 6 × 1, 10 × 2),
#            zeros 690; "4": s·N = 460.8 -> 461 pruned, E = 51 = 1·32 + 19 (outputs 13 × 1,
#            19 × 2) = 3·16 + 3 (inputs 13 × 3, 3 × 4), zeros 1383. Together 2073 of 2304 (89.97 %).
HAND = {0.8: {"2": (615, [3] * 13 + [4] * 3, [3] * 13 + [4] * 3), "4": (1230, [3] * 26 + [4] * 6, [6] * 10 + [7] * 6)},
        0.9: {"2": (690, [1] * 6 + [2] * 10, [1] * 6 + [2] * 10), "4": (1383, [1] * 13 + [2] * 19, [3] * 13 + [4] * 3)}}


@pytest.mark.parametrize("target", [0.8, 0.9])
def test_sixteen_channel_masks_prune_the_hand_counted_zeros(target):
    torch.manual_seed(0)
    model = _sixteen_channel_model()
    masks = rgp_masks(model, target, swaps=30, seed=2)
    assert list(masks) == ["2", "4"]
    pruned = apply_masks(model, masks)
    modules = dict(pruned.named_modules())
    for name, (zeros, out_degrees, in_degrees) in HAND[target].items():
        weight, mask = modules[name].weight, masks[name]
        assert int((weight == 0).sum()) == zeros
        assert abs(zeros - target * weight.numel()) <= weight[0, 0].numel()  # within one kernel
        assert (mask.all(dim=2) == mask.any(dim=2)).all()  # a kept edge keeps the whole kernel
        kept = mask[:, :, 0]
        assert sorted(kept.sum(dim=1).tolist()) == out_degrees
        assert sorted(kept.sum(dim=0).tolist()) == in_degrees
    total = sum(z for z, _, _ in HAND[target].values())
    assert sparsity(pruned, ["2", "4"]) == pytest.approx(total / 2304)


def test_a_tie_prunes_the_larger_count():
    # a 3 -> 3 layer at 50 %: s·N = 4.5, so 5 of the 9 connections go and 4 stay
    model = nn.Sequential(nn.Linear(2, 3), nn.Linear(3, 3), nn.Linear(3, 1))
    kept = rgp_masks(model, 0.5, swaps=0)["1"]
    assert int(kept.sum()) == 4
    assert sorted(kept.sum(dim=1).tolist()) == [1, 1, 2] and sorted(kept.sum(dim=0).tolist()) == [1, 1, 2]
    # a 5 -> 9 layer at 70 %: s·N = 0.7·45 = 31.5 (31.499999999999996 in floats), a tie: 32 go, 13
    # stay; outputs 13 = 1·9 + 4 (5 × 1, 4 × 2), inputs 13 = 2·5 + 3 (2 × 2, 3 × 3)
    model = nn.Sequential(nn.Linear(2, 5), nn.Linear(5, 9), nn.Linear(9, 1))
    kept = rgp_masks(model, 0.7, swaps=0)["1"]
    assert int(kept.sum()) == 13
    assert sorted(kept.sum(dim=1).tolist()) == [1] * 5 + [2] * 4
    assert sorted(kept.sum(dim=0).tolist()) == [2] * 2 + [3] * 3


def test_errors_name_the_argument_and_the_fix():
    model = _sixteen_channel_model()
    # 0.95 keeps 0.05·256 = 12.8 -> 13 connections of layer "2", fewer than its 16 outputs
    with pytest.raises(ValueError, match=r"sparsity=0.95 keeps 13 of the 16·16 = 256 connections of layer '2'"
                                         r".*1 − 1/16"):
        rgp_masks(model, 0.95)
    rgp_masks(model, 0.9375, swaps=0)  # (1 − s)·16 = 1: one input per output is still allowed
    with pytest.raises(ValueError, match="exactly one of degree .* and edges"):
        rgp_graph(4, 4)
    with pytest.raises(ValueError, match="exactly one of degree .* and edges"):
        rgp_graph(4, 4, 2, edges=8)
    with pytest.raises(ValueError, match=r"edges=3 is fewer than n_out=4.*pass edges >= 4"):
        rgp_graph(4, 4, edges=3)
    with pytest.raises(ValueError, match=r"edges=17 exceeds n_in·n_out = 4·4 = 16"):
        rgp_graph(4, 4, edges=17)
    with pytest.raises(ValueError, match=r"not a multiple of n_in=4.*or edges=6 for an almost-regular graph"):
        rgp_graph(4, 6, 1)
    with pytest.raises(TypeError, match="edges must be an integer"):
        rgp_graph(4, 4, edges=5.0)
