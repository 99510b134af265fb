"""Regular graph pruning (RGP): the graphs are biregular and bipartite, edge swaps never raise the
average shortest path length (networkx as the oracle), the 4×4 graphs are the ones worked out by
hand, and the masks prune exactly the stated fraction of every layer as true zeros."""
import networkx as nx
import pytest
import torch
from torch import nn

from repgraph import apply_masks, rgp_graph, rgp_masks, sparsity
from repgraph.models import resnet20


def _sides(g, n_in):
    return list(range(n_in)), list(range(n_in, g.number_of_nodes()))


@pytest.mark.parametrize("n_in, n_out, degree", [(4, 4, 2), (8, 16, 3), (16, 8, 4), (6, 9, 4), (5, 5, 5)])
@pytest.mark.parametrize("swaps", [0, 60])
def test_every_node_has_its_degree_and_edges_only_cross(n_in, n_out, degree, swaps):
    g = rgp_graph(n_in, n_out, degree, swaps=swaps, seed=3)
    ins, outs = _sides(g, n_in)
    assert g.number_of_nodes() == n_in + n_out
    assert all(g.degree(o) == degree for o in outs)
    assert all(g.degree(i) == n_out * degree // n_in for i in ins)
    assert all((u < n_in) != (v < n_in) for u, v in g.edges)  # bipartite: inputs only meet outputs
    assert {d["bipartite"] for _, d in g.nodes(data=True)} == {0, 1}


def _key(g):
    """(components, ASPL over the largest component) by networkx; ASPL only when connected."""
    parts = nx.number_connected_components(g)
    return parts, (nx.average_shortest_path_length(g) if parts == 1 else None)


@pytest.mark.parametrize("n_in, n_out, degree", [(12, 12, 3), (8, 16, 2), (16, 16, 4)])
def test_swaps_never_raise_the_aspl(n_in, n_out, degree):
    # one seed draws the same swap sequence, so swaps=k is a prefix of swaps=k+10
    keys = [_key(rgp_graph(n_in, n_out, degree, swaps=k, seed=1)) for k in range(0, 201, 10)]
    components = [c for c, _ in keys]
    assert components == sorted(components, reverse=True)
    connected = [a for c, a in keys if c == 1]
    assert connected, "never connected: nothing to compare"
    assert all(b <= a + 1e-12 for a, b in zip(connected, connected[1:])), connected


def test_max_direction_never_lowers_the_aspl_once_connected():
    keys = [_key(rgp_graph(12, 12, 3, swaps=k, seed=2, direction="max")) for k in range(0, 201, 20)]
    connected = [a for c, a in keys if c == 1]
    assert connected and all(b >= a - 1e-12 for a, b in zip(connected, connected[1:]))
    assert connected[-1] > nx.average_shortest_path_length(rgp_graph(12, 12, 3, swaps=200, seed=2))


def test_four_by_four_graphs_worked_out_by_hand():
    # degree 2: a connected 2-regular graph is a cycle, here the 8-cycle. From any node the others
    # lie at 1, 1, 2, 2, 3, 3, 4: ASPL = 16/7.
    g2 = rgp_graph(4, 4, 2, swaps=100, seed=0)
    assert nx.is_isomorphic(g2, nx.cycle_graph(8))
    assert nx.average_shortest_path_length(g2) == pytest.approx(16 / 7)
    # degree 3: K_{4,4} minus a perfect matching. From an input: 3 outputs at 1, the other 3
    # inputs at 2 (two shared outputs), its unmatched output at 3: 12/7.
    g3 = rgp_graph(4, 4, 3, swaps=100, seed=0)
    complement = nx.complete_bipartite_graph(4, 4)
    complement.remove_edges_from([(i, 4 + i) for i in range(4)])
    assert nx.is_isomorphic(g3, complement)
    assert nx.average_shortest_path_length(g3) == pytest.approx(12 / 7)
    # degree 4: K_{4,4}: 4 nodes at 1, 3 at 2: 10/7.
    assert nx.average_shortest_path_length(rgp_graph(4, 4, 4)) == pytest.approx(10 / 7)
    # degree 1: a perfect matching, and no swap can join its 4 components
    g1 = rgp_graph(4, 4, 1, swaps=50)
    assert nx.number_connected_components(g1) == 4 and g1.number_of_edges() == 4


def test_the_same_seed_gives_the_same_graph_and_another_seed_another():
    edges = lambda s: sorted(rgp_graph(16, 16, 4, swaps=50, seed=s).edges)  # noqa: E731
    assert edges(5) == edges(5)
    assert edges(5) != edges(6)


@pytest.mark.parametrize("target", [0.5, 0.75])
def test_masks_prune_exactly_the_stated_sparsity_as_true_zeros(target):
    torch.manual_seed(0)
    model = resnet20()
    before = [v.clone() for v in model.state_dict().values()]
    masks = rgp_masks(model, target, swaps=5)
    convs = [n for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert list(masks) == convs[1:-1]  # first and last layers stay dense
    pruned = apply_masks(model, masks)
    assert sparsity(pruned, list(masks)) == target
    for name, mask in masks.items():
        assert sparsity(pruned, [name]) == target
        flat = mask.reshape(mask.shape[0], mask.shape[1], -1)
        assert (flat.all(dim=2) == flat.any(dim=2)).all()  # a kept edge keeps the whole kernel
        kept = flat[:, :, 0]
        assert set(kept.sum(dim=1).tolist()) == {round((1 - target) * mask.shape[1])}
        assert set(kept.sum(dim=0).tolist()) == {round((1 - target) * mask.shape[0])}
    assert sparsity(pruned, [convs[0], convs[-1]]) == 0.0
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), before))  # model untouched


def test_mask_matches_the_graph_of_a_linear_layer():
    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(6, 6), nn.ReLU(), nn.Linear(6, 2))
    model[0] = nn.Linear(4, 6)
    masks = rgp_masks(model, 0.5, layers=["2"], swaps=40, seed=7)
    mask = masks["2"]
    g = nx.Graph()
    g.add_edges_from((j, 6 + i) for i in range(6) for j in range(6) if mask[i, j])
    assert all(d == 3 for _, d in g.degree)
    assert nx.is_connected(g)


def test_errors_name_the_argument_and_the_fix():
    model = resnet20()
    with pytest.raises(ValueError, match=r"sparsity=0.95 keeps .* fewer than its 16 outputs.*1 − 1/16"):
        rgp_masks(model, 0.95)  # 0.05·256 = 12.8 -> 13 connections for 16 outputs
    with pytest.raises(ValueError, match="sparsity must be a fraction"):
        rgp_masks(model, 1.0)
    with pytest.raises(ValueError, match="not Conv1d/2d/3d or Linear"):
        rgp_masks(model, 0.5, layers=["bn1"])
    with pytest.raises(ValueError, match="direction"):
        rgp_masks(model, 0.5, direction="up")
    with pytest.raises(ValueError, match="fewer than three"):
        rgp_masks(nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2)), 0.5)
    with pytest.raises(ValueError, match="multiple of n_in.*edges=6"):
        rgp_graph(4, 6, 1)
    with pytest.raises(ValueError, match="degree=5 exceeds n_in=4"):
        rgp_graph(4, 4, 5)
    with pytest.raises(ValueError, match="swaps"):
        rgp_graph(4, 4, 2, swaps=-1)
    with pytest.raises(ValueError, match="grouped"):
        rgp_masks(nn.Sequential(nn.Conv2d(4, 4, 1), nn.Conv2d(4, 4, 1, groups=2), nn.Conv2d(4, 4, 1)), 0.5)
