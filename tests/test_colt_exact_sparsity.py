"""COLT at exactly the target sparsity (issue 22: mask methods compared at equal sparsity).

Expected values are worked by hand or counted directly from the masks; the fake ``train_fn``
writes known weights, so every rank is known."""
import math

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


def test_ties_in_the_min_rank_go_to_the_smaller_rank_sum_then_the_position():
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
