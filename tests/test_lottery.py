"""Lottery tickets (issue 22): magnitude masks, IMP with rewinding, COLT's overlap, permanent masks
and true zero counts. The "training" in most tests is a fixed update, so every mask is worked out
by hand."""
import pytest
import torch
from torch import nn

from repgraph import apply_masks, colt_masks, lottery_imp, magnitude_masks, sparsity, train

INIT = torch.tensor([[0.1, 0.2, 0.3, 0.4]])


def line(weights=INIT):
    model = nn.Sequential(nn.Linear(weights.shape[1], 1, bias=False))
    with torch.no_grad():
        model[0].weight.copy_(weights)
    return model


def two_layers():
    model = nn.Sequential(nn.Linear(3, 2), nn.Linear(2, 1))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[0.5, -3.0, 1.0], [-0.1, 2.0, 0.2]]))
        model[1].weight.copy_(torch.tensor([[0.05, -0.3]]))
    return model


def test_global_magnitude_masks_keep_exactly_the_largest():
    # 8 weights, sparsity 0.5 -> the 4 smallest |w|: 0.05, 0.1, 0.2, 0.3
    masks = magnitude_masks(two_layers(), 0.5)
    assert masks["0"].tolist() == [[True, True, True], [False, True, False]]
    assert masks["1"].tolist() == [[False, False]]
    # ceil(0.3·8) = 3 -> 0.05, 0.1, 0.2
    masks = magnitude_masks(two_layers(), 0.3)
    assert masks["1"].tolist() == [[False, True]] and masks["0"].tolist() == [[True, True, True], [False, True, False]]


def test_layer_scope_and_previous_masks():
    # per layer half: layer 0 drops 0.1, 0.2, 0.5; layer 1 drops 0.05
    masks = magnitude_masks(two_layers(), 0.5, scope="layer")
    assert masks["0"].tolist() == [[False, True, True], [False, True, False]]
    assert masks["1"].tolist() == [[False, True]]
    # an earlier mask that pruned the largest weight (-3) keeps it pruned and counts it
    earlier = {"0": torch.tensor([[True, False, True], [True, True, True]]), "1": torch.ones(1, 2, dtype=torch.bool)}
    masks = magnitude_masks(two_layers(), 0.25, masks=earlier)  # 2 of 8: -3 and then 0.05
    assert masks["0"].tolist() == [[True, False, True], [True, True, True]] and masks["1"].tolist() == [[False, True]]
    with pytest.raises(ValueError, match="already prune 1 of 8"):
        magnitude_masks(two_layers(), 0.0, masks=earlier)  # ceil(0·8) = 0 < 1


def test_ties_go_to_the_lower_index_and_layers_can_be_chosen():
    model = line(torch.tensor([[1.0, -1.0, 1.0, 2.0]]))
    assert magnitude_masks(model, 0.5)["0"].tolist() == [[False, False, True, True]]
    masks = magnitude_masks(two_layers(), 0.5, layers=["1"])
    assert set(masks) == {"1"} and masks["1"].tolist() == [[False, True]]


def test_apply_masks_makes_true_zeros_and_sparsity_counts_them():
    model = two_layers()
    masks = magnitude_masks(model, 0.5)
    masked = apply_masks(model, masks)
    assert sparsity(masked) == 0.5 and sparsity(model) == 0.0
    assert masked[0].weight.tolist() == [[0.5, -3.0, 1.0], [0.0, 2.0, 0.0]]
    assert torch.equal(masked[0].bias, model[0].bias)  # biases untouched
    assert sparsity(masked, ["1"]) == 1.0
    assert not masked[0]._forward_pre_hooks and not hasattr(masked[0], "weight_orig")
    with pytest.raises(ValueError, match="has shape"):
        apply_masks(model, {"0": torch.ones(2, 2, dtype=torch.bool)})
    with pytest.raises(ValueError, match="not modules of the model"):
        apply_masks(model, {"9": torch.ones(1)})


def fake_train(net):
    """A fixed update (1, −0.05, 0, −2): trained weights = rewound + update where kept."""
    with torch.no_grad():
        net[0].weight.add_(torch.tensor([[1.0, -0.05, 0.0, -2.0]]))


def test_imp_by_hand_and_rewinding_restores_the_initial_values():
    # round 1 of 2: sparsity 1 − 0.25^{1/2} = 0.5 of |(1.1, 0.15, 0.3, −1.6)| -> drop 1, 2;
    # round 2: rewound (0.1, 0, 0, 0.4) trains to (1.1, 0, 0, −1.6), sparsity 0.75 -> drop 0
    model = line()
    masks, ticket = lottery_imp(model, fake_train, sparsity=0.75, rounds=2)
    assert masks["0"].tolist() == [[False, False, False, True]]
    assert ticket[0].weight[0, 3] == INIT[0, 3]  # the survivor holds exactly its initial value
    assert sparsity(ticket) == 0.75
    assert torch.equal(model[0].weight, INIT)  # the user's model is untouched
    # one-shot: sparsity 0.75 of the once-trained weights -> keep only −1.6
    masks, _ = lottery_imp(model, fake_train, sparsity=0.5, rounds=1)
    assert masks["0"].tolist() == [[True, False, False, True]]


def test_rewinding_to_a_given_state():
    late = {"0.weight": torch.tensor([[1.0, 1.0, 1.0, 1.0]])}
    # round 1 trains (2, 0.95, 1, −1) -> sparsity 0.5 drops 0.95 and 1 (index 2; |−1| ties, lower index 1 first
    # then 2); the ticket is the late state masked
    masks, ticket = lottery_imp(line(), fake_train, sparsity=0.5, rounds=1, rewind_to=late)
    assert masks["0"].tolist() == [[True, False, False, True]]
    assert ticket[0].weight.tolist() == [[1.0, 0.0, 0.0, 1.0]]
    with pytest.raises(ValueError, match="rewind_to lacks"):
        lottery_imp(line(), fake_train, sparsity=0.5, rounds=1, rewind_to={})


def test_masked_weights_stay_zero_through_real_training():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))
    X, y = torch.randn(48, 6), torch.arange(48) % 3
    seen = []

    def fit(net):
        train(net, (X, y), epochs=2, lr=0.1, batch_size=8, weight_decay=1e-3, progress=False)
        seen.append(sparsity(net))  # the zeros survive the optimizer (momentum, weight decay)

    masks, ticket = lottery_imp(model, fit, sparsity=0.8, rounds=3)
    total = 6 * 8 + 8 * 3
    # round sparsities 1 − 0.2^{r/3}: before round 2 and 3 the net holds those zeros (ceil of the counts)
    expected = [0.0] + [-(-round((1 - 0.2 ** (r / 3)) * total, 9) // 1) / total for r in (1, 2)]
    assert seen == pytest.approx(expected)
    assert sparsity(ticket) == pytest.approx(-(-0.8 * total // 1) / total)
    assert all(int(m.sum()) > 0 for m in masks.values())


def test_colt_plain_overlap_keeps_the_intersection():
    # exact=False (the authors' plain overlap): the splits "train" to (4, 3, 2, 1) and (1, 4, 3, 2);
    # a quarter each: index 3 and index 0
    def set_to(net, split):
        with torch.no_grad():
            net[0].weight.copy_(split)

    splits = [torch.tensor([[4.0, 3.0, 2.0, 1.0]]), torch.tensor([[1.0, 4.0, 3.0, 2.0]])]
    masks, ticket = colt_masks(line(), set_to, splits, sparsity=0.5, rate=0.25, exact=False)
    assert masks["0"].tolist() == [[False, True, True, False]]
    assert ticket[0].weight.tolist() == [[0.0, INIT[0, 1].item(), INIT[0, 2].item(), 0.0]]
    # two rounds at rate 0.125 of 8 weights: round 1 each drops 1 (A: idx 7, B: idx 0) -> 2/8;
    # round 2 targets 1 − 0.75·0.875 = 0.34375 -> ceil(2.75) = 3 each: A drops idx 6, B idx 1 -> 4/8
    splits = [torch.tensor([[8.0, 7, 6, 5, 4, 3, 2, 1]]), torch.tensor([[1.0, 2, 3, 4, 5, 6, 7, 8]])]
    masks, _ = colt_masks(line(torch.ones(1, 8)), set_to, splits, sparsity=0.4, rate=0.125, exact=False)
    assert masks["0"].tolist() == [[False, False, True, True, True, True, False, False]]


def test_colt_warns_when_the_rounds_run_out_and_checks_arguments():
    def agree(net, split):
        with torch.no_grad():
            net[0].weight.copy_(torch.tensor([[4.0, 3.0, 2.0, 1.0]]))

    with pytest.warns(RuntimeWarning, match="1 rounds reached sparsity 0.2500"):
        colt_masks(line(), agree, [0, 1], sparsity=0.5, rate=0.25, max_rounds=1)
    with pytest.raises(ValueError, match="at least two"):
        colt_masks(line(), agree, [0], sparsity=0.5)
    with pytest.raises(ValueError, match="rate must be a fraction in"):
        colt_masks(line(), agree, [0, 1], sparsity=0.5, rate=0.0)
    with pytest.raises(ValueError, match="sparsity must be a fraction"):
        lottery_imp(line(), fake_train, sparsity=1.0, rounds=1)
    with pytest.raises(ValueError, match="rounds must be"):
        lottery_imp(line(), fake_train, sparsity=0.5, rounds=0)
    with pytest.raises(TypeError, match="train_fn must be callable"):
        lottery_imp(line(), None, sparsity=0.5, rounds=1)
