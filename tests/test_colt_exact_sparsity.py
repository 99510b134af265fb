"""COLT at exactly the target sparsity (issue 22: mask methods compared at equal sparsity).

Expected values are worked by hand or counted directly from the masks; the fake ``train_fn``
writes known weights, so every rank is known."""
import math

import numpy as np
import pytest
import torch
from torch import nn

from repgraph import colt_masks


def _model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 5, bias=False), nn.ReLU(), nn.Linear(5, 3, bias=False))


def _random_train(net, seed):
    """Writes weights drawn from the split's own seed: the splits disagree everywhere."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.Linear):
                m.weight.mul_(0).add_(torch.randn(m.weight.shape, generator=g))


@pytest.mark.parametrize("p", [0.2, 0.5, 0.7, 0.9])
def test_global_scope_prunes_exactly_ceil_p_n_weights(p):
    masks, ticket = colt_masks(_model(), _random_train, [1, 2, 3], sparsity=p, rate=0.3)
    total = 6 * 5 + 5 * 3
    zeros = sum(int((~m).sum()) for m in masks.values())
    assert zeros == math.ceil(p * total)
    ticket_zeros = sum(int((m.weight == 0).sum()) for m in ticket.modules() if isinstance(m, nn.Linear))
    assert ticket_zeros == zeros


@pytest.mark.parametrize("p", [0.4, 0.8])
def test_layer_scope_prunes_exactly_per_layer(p):
    masks, _ = colt_masks(_model(), _random_train, [4, 5], sparsity=p, rate=0.5, scope="layer")
    assert int((~masks["0"]).sum()) == math.ceil(p * 30)
    assert int((~masks["2"]).sum()) == math.ceil(p * 15)


def test_plain_overlap_overshoots_where_the_exact_rule_does_not():
    # one 4-weight layer; splits write (4, 3, 2, 1) and (1, 4, 3, 2): ranks (3, 2, 1, 0) and
    # (0, 3, 2, 1); at c = 2 the plain overlap prunes every weight with a rank < 2 in some split:
    # weights 0, 2, 3 (75 %); the exact rule prunes the two of smallest min rank (0, 0) with sums
    # 3 and 1: weights 0 and 3 (50 %)
    model = nn.Sequential(nn.Linear(4, 1, bias=False))
    values = {0: [4.0, 3.0, 2.0, 1.0], 1: [1.0, 4.0, 3.0, 2.0]}

    def train(net, split):
        with torch.no_grad():
            net[0].weight.copy_(torch.tensor([values[split]]))

    exact, _ = colt_masks(model, train, [0, 1], sparsity=0.5, rate=0.5)
    plain, _ = colt_masks(model, train, [0, 1], sparsity=0.5, rate=0.5, exact=False)
    assert exact["0"].int().tolist() == [[0, 1, 1, 0]]
    assert plain["0"].int().tolist() == [[0, 1, 0, 0]]


def _writer(values):
    """A fake train_fn writing ``values[split]`` into the single layer."""
    def train(net, split):
        with torch.no_grad():
            net[0].weight.copy_(torch.tensor([values[split]]))
    return train


def test_three_splits_by_hand():
    # splits write A (6, 5, 4, 3, 2, 1), B (1, 6, 5, 4, 3, 2), C (2, 1, 6, 5, 4, 3); ascending ranks
    # A (5, 4, 3, 2, 1, 0), B (0, 5, 4, 3, 2, 1), C (1, 0, 5, 4, 3, 2):
    # min (0, 0, 3, 2, 1, 0), sum (6, 9, 12, 9, 6, 3). One round (rate 0.9 > p).
    train = _writer({0: [6.0, 5, 4, 3, 2, 1], 1: [1.0, 6, 5, 4, 3, 2], 2: [2.0, 1, 6, 5, 4, 3]})
    model = nn.Sequential(nn.Linear(6, 1, bias=False))
    # p = 1/2, c = 3: the three of min rank 0 (weights 0, 1, 5). Plain: A drops 3, 4, 5, B 0, 4, 5,
    # C 0, 1, 5 -> only weight 2 survives (5 of 6 pruned)
    exact, _ = colt_masks(model, train, [0, 1, 2], sparsity=0.5, rate=0.9)
    plain, _ = colt_masks(model, train, [0, 1, 2], sparsity=0.5, rate=0.9, exact=False)
    assert exact["0"].int().tolist() == [[0, 0, 1, 1, 1, 0]]
    assert plain["0"].int().tolist() == [[0, 0, 1, 0, 0, 0]]
    # p = 1/3, c = 2 of the three with min rank 0: by the rank sum, 3 (weight 5) and 6 (weight 0)
    # go, 9 (weight 1) stays, though weight 1 has the lower index than weight 5. Plain: A drops 4, 5,
    # B 0, 5, C 0, 1 -> 4 of 6 pruned
    exact, _ = colt_masks(model, train, [0, 1, 2], sparsity=1 / 3, rate=0.9)
    plain, _ = colt_masks(model, train, [0, 1, 2], sparsity=1 / 3, rate=0.9, exact=False)
    assert exact["0"].int().tolist() == [[0, 1, 1, 1, 1, 0]]
    assert plain["0"].int().tolist() == [[0, 0, 1, 1, 0, 0]]


def test_equal_min_and_sum_go_to_the_lower_index():
    # mirrored splits A (1, 2, 3, 4), B (4, 3, 2, 1): ranks (0, 1, 2, 3) and (3, 2, 1, 0), min
    # (0, 1, 1, 0), every sum 3. c = 1: weight 0 before weight 3. c = 3: weights 0 and 3, then of
    # the min-1 pair the lower index, weight 1; the plain overlap would prune all four
    train = _writer({0: [1.0, 2, 3, 4], 1: [4.0, 3, 2, 1]})
    model = nn.Sequential(nn.Linear(4, 1, bias=False))
    assert colt_masks(model, train, [0, 1], sparsity=0.25, rate=0.9)[0]["0"].int().tolist() == [[0, 1, 1, 1]]
    assert colt_masks(model, train, [0, 1], sparsity=0.75, rate=0.9)[0]["0"].int().tolist() == [[0, 0, 1, 0]]
    plain, _ = colt_masks(model, train, [0, 1], sparsity=0.75, rate=0.9, exact=False)
    assert plain["0"].int().tolist() == [[0, 0, 0, 0]]


def test_exact_prunes_a_lowest_min_rank_subset_of_the_plain_overlap():
    # one round at p = 0.6 (rate 0.9 caps at p) over 45 weights; ranks recomputed here from the
    # weights the fake training writes (numpy, stable ascending |w| over the two layers in order)
    model, seeds, p = _model(), [7, 8, 9], 0.6
    exact, _ = colt_masks(model, _random_train, seeds, sparsity=p, rate=0.9)
    plain, _ = colt_masks(model, _random_train, seeds, sparsity=p, rate=0.9, exact=False)
    ranks = []
    for seed in seeds:
        g = torch.Generator().manual_seed(seed)
        w = torch.cat([torch.randn(5, 6, generator=g).reshape(-1), torch.randn(3, 5, generator=g).reshape(-1)])
        order = np.argsort(w.abs().numpy(), kind="stable")
        r = np.empty(len(w), dtype=int)
        r[order] = np.arange(len(w))
        ranks.append(r)
    low = np.min(ranks, axis=0)
    pruned_exact = ~torch.cat([exact["0"].reshape(-1), exact["2"].reshape(-1)]).numpy()
    pruned_plain = ~torch.cat([plain["0"].reshape(-1), plain["2"].reshape(-1)]).numpy()
    c = math.ceil(p * 45)  # 27
    assert pruned_exact.sum() == c and pruned_plain.sum() > c
    assert np.array_equal(pruned_plain, low < c)  # the plain overlap is the min-rank threshold at c
    assert not (pruned_exact & ~pruned_plain).any()
    assert low[pruned_exact].max() <= low[~pruned_exact].min()


def test_layer_scope_keeps_going_until_every_layer_reaches_p():
    # layers of 3, 3, 3, 3 and 100 weights, p = 0.5: per layer ceil(1.5) = 2 and 50, 58 in all.
    # Round 1 at rate 0.48 prunes 2, 2, 2, 2, 48 = 56 = 0.5·112: the overall sparsity is reached
    # but the big layer is short of 50, so a second round (target 0.5) must run
    model = nn.Sequential(*[nn.Linear(3, 1, bias=False) for _ in range(4)], nn.Linear(100, 1, bias=False))
    masks, _ = colt_masks(model, _random_train, [1, 2], sparsity=0.5, rate=0.48, scope="layer")
    assert [int((~masks[str(i)]).sum()) for i in range(5)] == [2, 2, 2, 2, 50]


def test_agreeing_splits_reduce_to_magnitude_pruning_and_equal_magnitudes_to_position():
    # three splits, all writing the same weights (1, 2, 3, 4, 5, 6): every weight has equal ranks
    # in all splits, so min and sum order alike and the exact rule equals plain magnitude pruning
    model = nn.Sequential(nn.Linear(6, 1, bias=False))

    def train(net, split):
        with torch.no_grad():
            net[0].weight.copy_(torch.tensor([[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]]))

    masks, _ = colt_masks(model, train, [0, 1, 2], sparsity=0.5, rate=0.5)
    assert masks["0"].int().tolist() == [[0, 0, 0, 1, 1, 1]]
    # equal magnitudes everywhere: the tie goes to the lower position
    def flat(net, split):
        with torch.no_grad():
            net[0].weight.fill_(1.0)

    masks, _ = colt_masks(model, flat, [0, 1], sparsity=0.5, rate=0.5)
    assert masks["0"].int().tolist() == [[0, 0, 0, 1, 1, 1]]


def test_exact_must_be_a_bool():
    with pytest.raises(TypeError, match="exact"):
        colt_masks(_model(), _random_train, [1, 2], sparsity=0.5, exact="yes")


def test_non_finite_trained_weights_are_refused_naming_the_split():
    def diverge(net, split):
        with torch.no_grad():
            net[0].weight.fill_(float("nan"))

    with pytest.raises(ValueError, match=r"splits\[0\]"):
        colt_masks(_model(), diverge, [1, 2], sparsity=0.5)
