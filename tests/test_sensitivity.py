"""SBPF's layer sensitivity (issue 22): layer_sensitivity and sensitivity_ratios. Every expected
value is worked out by hand from a model whose loss under damage is known in closed form."""
import math

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from repgraph import count_params_flops, layer_sensitivity, prune_filters, sensitivity_ratios

X = torch.tensor([[1.0], [2.0]])  # mean(x²) = 2.5
MSE = nn.functional.mse_loss


class Branches(nn.Module):
    """``out = 3·a(x) + b(x)`` with both weights 1: the target 4x is fitted exactly (loss 0)."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(1, 1, bias=False), nn.Linear(1, 1, bias=False)
        nn.init.ones_(self.a.weight)
        nn.init.ones_(self.b.weight)

    def forward(self, x):
        return 3 * self.a(x) + self.b(x)


def test_zeroing_a_layer_changes_the_loss_by_the_hand_worked_amount():
    # zero a: out = x, error 3x, MSE 9·2.5 = 22.5; zero b: out = 3x, error x, MSE 2.5
    table = layer_sensitivity(Branches(), (X, 4 * X), damage="zero_fraction", scale=1.0, repeats=2, loss=MSE)
    assert table["layer"].tolist() == ["a", "b"]
    assert table["loss_change"].tolist() == pytest.approx([22.5, 2.5], abs=1e-12)
    assert table["std"].tolist() == [0.0, 0.0]  # zeroing everything is the same damage every time
    assert table["filters"].tolist() == [1, 1]
    assert table.attrs["base_loss"] == 0.0 and table.attrs["damage"] == "zero_fraction"


def test_gaussian_damage_scales_quadratically():
    # a one-weight layer w = 1 (RMS 1) becomes 1 + s·z: the MSE against y = x is s²·z²·2.5, so the
    # same draws at twice the scale give four times the loss change
    model = nn.Linear(1, 1, bias=False)
    nn.init.ones_(model.weight)
    small = layer_sensitivity(model, (X, X), scale=0.1, repeats=4, loss=MSE)
    large = layer_sensitivity(model, (X, X), scale=0.2, repeats=4, loss=MSE)
    assert small["loss_change"][0] > 0
    # (the forward runs in float32)
    assert large["loss_change"][0] == pytest.approx(4 * small["loss_change"][0], rel=1e-5)
    assert large["std"][0] == pytest.approx(4 * small["std"][0], rel=1e-5)


def test_a_dead_layer_has_zero_sensitivity_and_the_ordering_follows_the_weights():
    class Dead(Branches):
        def forward(self, x):
            return self.a(x) + 0 * self.b(x)

    table = layer_sensitivity(Dead(), (X, X), scale=0.5, repeats=3, loss=MSE)
    assert table.set_index("layer")["loss_change"]["b"] == 0.0
    assert table.set_index("layer")["loss_change"]["a"] > 0


def test_model_is_left_as_it_was_and_results_repeat():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv1d(1, 4, 3), nn.BatchNorm1d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6, 3))
    model.eval()
    model[1].train()  # mixed modes, given back as they were
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x, y = torch.randn(12, 1, 8), torch.arange(12) % 3
    first = layer_sensitivity(model, (x, y), repeats=2, seed=3, batch_size=5)
    again = layer_sensitivity(model, (x, y), repeats=2, seed=3, batch_size=12)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert model[1].training and not model.training and not model[0].training
    np.testing.assert_allclose(first["loss_change"], again["loss_change"], rtol=1e-5, atol=1e-7)
    # a layer's draws do not depend on which other layers are measured
    alone = layer_sensitivity(model, (x, y), layers=["4"], repeats=2, seed=3, batch_size=5)
    assert alone["loss_change"][0] == pytest.approx(first["loss_change"][1], rel=1e-9)


def test_argument_errors_name_the_argument():
    model = Branches()
    with pytest.raises(ValueError, match="damage must be one of"):
        layer_sensitivity(model, (X, X), damage="dropout")
    with pytest.raises(ValueError, match="scale must be the fraction"):
        layer_sensitivity(model, (X, X), damage="zero_fraction", scale=1.5)
    with pytest.raises(ValueError, match="scale must be a positive"):
        layer_sensitivity(model, (X, X), scale=0)
    with pytest.raises(ValueError, match="repeats"):
        layer_sensitivity(model, (X, X), repeats=0)
    with pytest.raises(ValueError, match="are not Conv or Linear"):
        layer_sensitivity(model, (X, X), layers=["c"])


def test_ratios_hand_worked_with_and_without_clipping():
    # s = (2, 1), C = (10, 30): (10(1 − 2λ) + 30(1 − λ))/40 = 0.5 → λ = 0.4 → 0.2, 0.6
    table = pd.DataFrame({"layer": ["a", "b"], "loss_change": [2.0, 1.0], "filters": [10, 30]})
    assert sensitivity_ratios(table, 0.5) == pytest.approx({"a": 0.2, "b": 0.6}, abs=1e-12)
    # s = (4, 1): λ = 2/7 would give a −1/7 → clipped to 0, then 30(1 − λ) = 20 → λ = 1/3, b = 2/3
    table["loss_change"] = [4.0, 1.0]
    assert sensitivity_ratios(table, 0.5) == pytest.approx({"a": 0.0, "b": 2 / 3}, abs=1e-12)
    # layers whose damage did not raise the loss sit at max_ratio: 10·r + 10·0.9 + 10·0.9 = 21 → r = 0.3
    table = pd.DataFrame({"layer": ["a", "b", "c"], "loss_change": [1.0, 0.0, -1.0], "filters": [10, 10, 10]})
    assert sensitivity_ratios(table, 0.7) == pytest.approx({"a": 0.3, "b": 0.9, "c": 0.9}, abs=1e-12)
    # with min_ratio: s = (2, 1), C = (10, 30), target 0.5, min 0.3 → a = 0.3, 30·r_b = 20 − 3 → 17/30
    table = pd.DataFrame({"layer": ["a", "b"], "loss_change": [2.0, 1.0], "filters": [10, 30]})
    assert sensitivity_ratios(table, 0.5, min_ratio=0.3) == pytest.approx({"a": 0.3, "b": 17 / 30}, abs=1e-12)


def test_ratio_errors():
    table = pd.DataFrame({"layer": ["a", "b"], "loss_change": [1.0, 0.0], "filters": [10, 10]})
    with pytest.raises(ValueError, match="out of reach"):
        sensitivity_ratios(table, 0.2)  # b sits at 0.9, so the mean is >= 0.45
    with pytest.raises(ValueError, match="min_ratio=0.5 exceeds max_ratio=0.4"):
        sensitivity_ratios(table, 0.45, min_ratio=0.5, max_ratio=0.4)
    with pytest.raises(ValueError, match="columns"):
        sensitivity_ratios({"a": 1.0}, 0.5)
    with pytest.raises(ValueError, match="target_ratio"):
        sensitivity_ratios(table, 1.0)


def test_ratios_drive_prune_filters():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv1d(1, 8, 3), nn.ReLU(), nn.Conv1d(8, 10, 3), nn.ReLU(), nn.Flatten(),
                          nn.Linear(10 * 4, 3))
    x, y = torch.randn(16, 1, 8), torch.arange(16) % 3
    table = layer_sensitivity(model, (x, y), layers=["0", "2"], repeats=2)
    ratios = sensitivity_ratios(table, 0.4, max_ratio=0.8)
    weighted = sum(ratios[n] * c for n, c in zip(table["layer"], table["filters"])) / table["filters"].sum()
    assert weighted == pytest.approx(0.4, abs=1e-12)
    scores = {"0": model[0].weight.detach().abs().sum((1, 2)).numpy(),
              "2": model[2].weight.detach().abs().sum((1, 2)).numpy()}
    pruned = prune_filters(model, scores, ratio_dict=ratios, example_input=x[:1])
    assert pruned[0].out_channels == 8 - math.ceil(round(8 * ratios["0"], 9))
    assert pruned[2].out_channels == 10 - math.ceil(round(10 * ratios["2"], 9))
    assert count_params_flops(pruned, x[:1])[1] < count_params_flops(model, x[:1])[1]
