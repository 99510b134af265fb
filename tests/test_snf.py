"""SNF's budget search (issue 22): snf_ratios' per-layer filter counts, worked out by hand on a tiny
model, and the budget met on real models as ``prune_filters`` and ``count_params_flops`` see it."""
import numpy as np
import pytest
import torch
from torch import nn

from repgraph import count_params_flops, l1_scores, prune_filters, snf_ratios
from repgraph.models import resnet20, small_cnn

X1 = torch.zeros(1, 1, 1)
SCORES = {"0": np.array([1.0, 2.0]), "1": np.array([2.0, 3.0, 4.0])}


def tiny():
    # conv a (2 filters) -> conv b (3) -> linear: MACs 2 + 6 + 3 = 11; params (2 + 2) + (6 + 3) + (3 + 1) = 17
    return nn.Sequential(nn.Conv1d(1, 2, 1), nn.Conv1d(2, 3, 1), nn.Flatten(), nn.Linear(3, 1))


def measured(model, ratios, x, scores):
    return count_params_flops(prune_filters(model, scores, ratio_dict=ratios, example_input=x), x)


def test_tiny_flops_search_by_hand():
    # one filter of a saves 1 + 3 MACs, one of b 2 + 1; both first u = 0.5: a goes (0.125 < 0.167) -> 7;
    # then a is at its limit (1 of 2) and b's next saves 1 + 1 -> 5
    model = tiny()
    assert count_params_flops(model, X1) == (17, 11)
    first = snf_ratios(model, SCORES, target_flops=8, example_input=X1)
    assert first == {"0": 0.5, "1": 0.0}
    assert measured(model, first, X1, SCORES)[1] == 7
    second = snf_ratios(model, SCORES, target_flops=6, example_input=X1)
    assert second == pytest.approx({"0": 0.5, "1": 1 / 3})
    assert measured(model, second, X1, SCORES)[1] == 5
    assert snf_ratios(model, SCORES, target_flops=11, example_input=X1) == {"0": 0.0, "1": 0.0}


def test_tiny_params_search_by_hand():
    # a's filter saves weight 1 + bias 1 + b's input column 3 = 5 params, b's 2 + 1 + fc's 1 = 4:
    # a first (0.5/5 < 0.5/4) -> 12; then b's next saves 1 + 1 + 1 -> 9
    model = tiny()
    first = snf_ratios(model, SCORES, target_params=12, example_input=X1)
    assert first == {"0": 0.5, "1": 0.0} and measured(model, first, X1, SCORES)[0] == 12
    second = snf_ratios(model, SCORES, target_params=10, example_input=X1)
    assert second == pytest.approx({"0": 0.5, "1": 1 / 3}) and measured(model, second, X1, SCORES)[0] == 9


def test_scores_decide_between_layers_of_equal_cost():
    # b's first filter now has score 0.2/4 = 0.05 of its max: 0.05/3 < 0.5/4, so b goes first
    scores = {"0": np.array([1.0, 2.0]), "1": np.array([0.2, 3.0, 4.0])}
    assert snf_ratios(tiny(), scores, target_flops=8, example_input=X1) == pytest.approx({"0": 0.0, "1": 1 / 3})


def test_small_cnn_meets_half_the_flops_within_one_filter():
    torch.manual_seed(0)
    model = small_cnn(num_classes=10, in_channels=1)
    x = torch.zeros(1, 1, 8, 8)
    # conv1 16·64·9 = 9216, conv2 32·16·144 = 73728 (4×4 after the pool), fc 320
    params, flops = count_params_flops(model, x)
    assert flops == 83264
    scores = l1_scores(model)
    target = flops // 2
    ratios = snf_ratios(model, scores, target_flops=0.5, example_input=x)
    reached = measured(model, ratios, x, scores)[1]
    # one filter costs at most 64·9 + 32·16·9 = 5184 (conv1's) or 16·16·9 + 10 = 2314 (conv2's)
    assert target - 5184 < reached <= target
    assert set(ratios) == {"conv1", "conv2"} and all(0 <= r <= 0.9 for r in ratios.values())


def test_resnet_coupled_groups_meet_a_params_target():
    torch.manual_seed(0)
    model = resnet20(num_classes=10, in_channels=1)
    x = torch.zeros(1, 1, 8, 8)
    scores = l1_scores(model)
    params, _ = count_params_flops(model, x)
    ratios = snf_ratios(model, scores, target_params=0.6, example_input=x)
    reached = measured(model, ratios, x, scores)[0]
    # the largest filter of resnet20: a 64-wide residual channel, 9·64 params in each of the ~7 convs
    # it feeds or leaves, plus norms — well under 2 % of the model
    assert 0.6 * params - 0.02 * params < reached <= int(0.6 * params)
    # coupled convs share one ratio
    assert ratios["layer3.0.conv2"] == ratios["layer3.1.conv2"] == ratios["layer3.2.conv2"]


def test_rank_normalisation_takes_negative_scores():
    scores = {"0": np.array([-1.0, 2.0]), "1": np.array([-2.0, 3.0, 4.0])}
    with pytest.raises(ValueError, match="normalize='rank'"):
        snf_ratios(tiny(), scores, target_flops=8, example_input=X1)
    # rank: u = 1/2 (a) vs 1/3 (b): 0.5/4 = 0.125 > 0.333/3 = 0.111, so b goes first -> 8
    assert snf_ratios(tiny(), scores, target_flops=8, example_input=X1, normalize="rank") == pytest.approx(
        {"0": 0.0, "1": 1 / 3})


def test_errors_name_the_argument():
    model = tiny()
    with pytest.raises(ValueError, match="exactly one of"):
        snf_ratios(model, SCORES, example_input=X1)
    with pytest.raises(ValueError, match="exactly one of"):
        snf_ratios(model, SCORES, target_flops=5, target_params=5, example_input=X1)
    # a keeps 1 of 2, b 1 of 3 (max_ratio 0.9 allows 2): 1 + 1 + 1 = 3 MACs at the least
    with pytest.raises(ValueError, match="smallest reachable count is 3"):
        snf_ratios(model, SCORES, target_flops=2, example_input=X1)
    assert snf_ratios(model, SCORES, target_flops=3, example_input=X1) == pytest.approx({"0": 0.5, "1": 2 / 3})
    with pytest.raises(ValueError, match="not convs"):
        snf_ratios(model, {"3": np.ones(1)}, target_flops=5, example_input=X1)
    with pytest.raises(ValueError, match="must be 2 finite values"):
        snf_ratios(model, {"0": np.ones(3)}, target_flops=5, example_input=X1)
    with pytest.raises(ValueError, match="fraction of the model's flops"):
        snf_ratios(model, SCORES, target_flops=1.5, example_input=X1)
    with pytest.raises(ValueError, match="normalize must be"):
        snf_ratios(model, SCORES, target_flops=5, example_input=X1, normalize="l2")
