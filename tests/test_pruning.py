import math
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
import torch_pruning as tp
from torch import nn

from repgraph import (central_filters, count_params_flops, filter_scores, filter_similarity, l1_scores,
                      layer_filter_report, prune_experiment, prune_filters, redundant_by_similarity)
from repgraph.datasets import digits
from repgraph.models import resnet20, small_cnn, vgg11
from repgraph.workflows.digits import digits_model, digits_splits


def test_flops_by_hand_and_against_torch_pruning():
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 4, 3, stride=2, padding=1, groups=2),
                          nn.Flatten(), nn.Linear(4 * 4 * 4, 10))
    x = torch.zeros(2, 3, 8, 8)
    # conv1: 8*8*8 outputs * 3*9 = 13824; conv2: 4*4*4 outputs * (8/2)*9 = 2304; linear: 10 * 64 = 640
    params, flops = count_params_flops(model, x)
    assert flops == 13824 + 2304 + 640
    assert params == (8 * 3 * 9 + 8) + (4 * 4 * 9 + 4) + (640 + 10)
    # Torch-Pruning's counter also counts bias additions and ReLUs, so compare without them
    plain = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.Conv2d(8, 4, 3, stride=2, padding=1, groups=2, bias=False),
                          nn.Flatten(), nn.Linear(4 * 4 * 4, 10, bias=False))
    tp_macs, tp_params = tp.utils.count_ops_and_params(plain, x[:1])
    assert count_params_flops(plain, x) == (tp_params, tp_macs)
    r = resnet20()
    tp_macs, _ = tp.utils.count_ops_and_params(r, torch.zeros(1, 3, 32, 32))
    ours = count_params_flops(r, torch.zeros(1, 3, 32, 32))[1]
    assert ours < tp_macs < 1.02 * ours  # BN, ReLU and additions are the small remainder


def test_prune_filters_keeps_the_highest_scored_channels_on_a_hand_scored_layer():
    torch.manual_seed(0)
    model = vgg11(num_classes=10, in_channels=3)
    x = torch.zeros(1, 3, 32, 32)
    conv = model.features[0]
    scores = {"features.0": np.array([5.0, 1.0, 7.0] + [0.5] * 60 + [9.0])}  # 64 filters
    original = conv.weight.detach().clone()
    pruned = prune_filters(model, scores, ratio=0.5, example_input=x)
    kept_weights = pruned.features[0].weight.detach()
    assert kept_weights.shape[0] == 32
    # the 32 best: 9.0 (63), 7.0 (2), 5.0 (0), 1.0 (1), then 28 of the 0.5s (ties: lower index dropped first)
    expected = sorted([0, 1, 2, 63] + list(range(35, 63)))
    torch.testing.assert_close(kept_weights, original[expected])
    assert pruned.features[1].num_features == 32 and pruned.features[4].in_channels == 32  # [3] is a pool
    assert model.features[0].out_channels == 64  # the original is untouched
    p0, f0 = count_params_flops(model, x)
    p1, f1 = count_params_flops(pruned, x)
    assert p1 < p0 and f1 < f0
    assert pruned(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_prune_filters_respects_residual_coupling_on_resnet20():
    model = resnet20()
    x = torch.zeros(1, 3, 32, 32)
    pruned = prune_filters(model, l1_scores(model), ratio=0.25, example_input=x)
    assert pruned(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    # every conv writing into stage 3's residual stream loses the same channels: 64 -> 48
    for name in ("layer3.0.conv2", "layer3.1.conv2", "layer3.2.conv2", "layer3.0.shortcut.0"):
        assert pruned.get_submodule(name).out_channels == 48
    assert pruned.fc.in_features == 48 and pruned.fc.out_features == 10
    p0, f0 = count_params_flops(model, x)
    p1, f1 = count_params_flops(pruned, x)
    assert p1 < p0 and f1 < f0


def test_central_filter_compensation_holds_through_prune_filters():
    torch.manual_seed(0)
    model = small_cnn(num_classes=3, in_channels=1).eval()
    with torch.no_grad():  # filter 5 becomes an exact copy of filter 2 (conv, BN and all)
        model.conv1.weight[5] = model.conv1.weight[2]
        for p in (model.bn1.weight, model.bn1.bias, model.bn1.running_mean, model.bn1.running_var):
            p[5] = p[2]
    x = torch.randn(16, 1, 8, 8)
    maps = model.relu1(model.bn1(model.conv1(x))).detach()
    selection = central_filters(filter_similarity(maps), ratio=1 / 16)  # ceil(16/16) = 1 prune
    assert set(selection.pruned) in ({2}, {5})
    pruned = prune_filters(model, {"conv1": selection}, example_input=x[:1]).eval()
    assert pruned.conv1.out_channels == 15 and pruned.conv2.in_channels == 15
    torch.testing.assert_close(pruned(x), model(x), atol=1e-5, rtol=1e-5)


def test_central_filter_prunes_the_requested_count_in_every_layer_of_the_digits_resnet20():
    # the shipped checkpoint, its post-ReLU maps of 256 training images, ratio 0.4: each of the 9
    # uncoupled convs loses exactly ceil(C * 0.4) filters, so criteria compare at equal budgets
    model, _ = digits_model(progress=False)
    train_set, test_set = digits_splits()
    x = test_set.data[:1]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "allows only ..." warning
        scores = filter_scores(model, "central_filter", example_input=x, data=train_set, ratio=0.4,
                               max_samples=256, progress=False)
    modules = dict(model.named_modules())
    assert len(scores) == 9
    for conv, selection in scores.selections.items():
        assert len(selection.pruned) == math.ceil(modules[conv].out_channels * 0.4), conv
    pruned = prune_filters(model, scores.for_pruning(), example_input=x)
    l1 = prune_filters(model, {c: l1_scores(model)[c] for c in scores}, ratio=0.4, example_input=x)
    assert count_params_flops(pruned, x) == count_params_flops(l1, x)  # the same budget as any ranking


class Net1d(nn.Module):
    """A 1-D CNN (as for MNIST-1D): conv -> BN -> ReLU twice, pooled, linear."""

    def __init__(self):
        super().__init__()
        self.conv1, self.bn1, self.relu1 = nn.Conv1d(1, 8, 5, padding=2), nn.BatchNorm1d(8), nn.ReLU()
        self.conv2, self.bn2, self.relu2 = nn.Conv1d(8, 12, 3, padding=1), nn.BatchNorm1d(12), nn.ReLU()
        self.pool, self.fc = nn.AdaptiveAvgPool1d(1), nn.Linear(12, 3)

    def forward(self, x):
        x = self.relu1(self.bn1(self.conv1(x)))
        x = self.relu2(self.bn2(self.conv2(x)))
        return self.fc(self.pool(x).flatten(1))


def test_filter_pruning_and_report_on_a_conv1d_model():
    torch.manual_seed(0)
    model = Net1d().eval()
    with torch.no_grad():  # filter 6 of conv1 copies filter 1, BN included
        model.conv1.weight[6], model.conv1.bias[6] = model.conv1.weight[1], model.conv1.bias[1]
        for p in (model.bn1.weight, model.bn1.bias, model.bn1.running_mean, model.bn1.running_var):
            p[6] = p[1]
    x, y = torch.randn(24, 1, 40), torch.arange(24) % 3
    pruned = prune_filters(model, l1_scores(model), ratio=0.25, example_input=x[:1])
    assert (pruned.conv1.out_channels, pruned.conv2.in_channels, pruned.conv2.out_channels) == (6, 6, 9)
    assert pruned(x).shape == (24, 3)
    maps = model.relu1(model.bn1(model.conv1(x))).detach()
    selection = central_filters(filter_similarity(maps), 1 / 8)
    assert set(selection.pruned) in ({1}, {6})
    compensated = prune_filters(model, {"conv1": selection}, example_input=x[:1]).eval()
    assert compensated.conv1.out_channels == 7
    torch.testing.assert_close(compensated(x), model(x), atol=1e-5, rtol=1e-5)
    table = layer_filter_report(model, (x, y), "relu1", ratio=0.25, max_samples=24, progress=False)
    assert list(table.columns) == ["filter", "hrank", "chip", "l1", "cf_local", "closeness", "cf_pruned", "clp"]
    assert table["cf_pruned"].sum() == 2 and len(table) == 8  # ceil(8 * 0.25); no entropy for 1-D maps
    np.testing.assert_allclose(table["l1"], l1_scores(model)["conv1"])


def test_zero_padding_shortcuts_are_refused_clearly_but_uncoupled_convs_prune():
    from repgraph.pruning import uncoupled_convs
    model = resnet20(shortcut="A")
    x = torch.zeros(1, 3, 32, 32)
    with pytest.raises(ValueError, match="different widths"):
        prune_filters(model, l1_scores(model), ratio=0.25, example_input=x)
    inner = {c: s for c, s in l1_scores(model).items() if c in uncoupled_convs(model, x)}
    assert set(inner) == {f"layer{s}.{b}.conv1" for s in (1, 2, 3) for b in range(3)}
    pruned = prune_filters(model, inner, ratio=0.25, example_input=x)
    assert pruned.layer1[0].conv1.out_channels == 12 and pruned(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_prune_filters_bad_input():
    model = resnet20()
    x = torch.zeros(1, 3, 32, 32)
    with pytest.raises(ValueError, match="length 3 but it has 16 filters"):
        prune_filters(model, {"conv1": np.ones(3)}, ratio=0.5, example_input=x)
    with pytest.raises(ValueError, match=r"ratio must be a fraction in \[0, 1\), got 1.0"):
        prune_filters(model, l1_scores(model), ratio=1.0, example_input=x)
    with pytest.raises(ValueError, match=r"ratio_dict\['conv1'\] must be a fraction"):
        prune_filters(model, l1_scores(model), ratio_dict={"conv1": -0.1}, example_input=x)
    with pytest.raises(ValueError, match="'conv1' contain NaN"):
        prune_filters(model, {"conv1": np.full(16, np.nan)}, ratio=0.5, example_input=x)
    with pytest.raises(ValueError, match="Unknown layer"):
        prune_filters(model, {"conv9": np.ones(16)}, ratio=0.5, example_input=x)
    with pytest.raises(ValueError, match="ratio="):
        prune_filters(model, l1_scores(model), example_input=x)

    class Untraceable(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)

        def forward(self, x):
            raise RuntimeError("no forward for you")

    with pytest.raises(ValueError, match="could not trace Untraceable"):
        prune_filters(Untraceable(), {"conv": np.ones(4)}, ratio=0.5, example_input=x)


def test_redundant_by_similarity():
    M = pd.DataFrame([[1.0, 0.97, 0.5], [0.97, 1.0, 0.6], [0.5, 0.6, 1.0]], index=["a", "b", "c"],
                     columns=["a", "b", "c"])
    flags = redundant_by_similarity(M, threshold=0.95)
    assert flags["redundant"].tolist() == [False, True, False]
    np.testing.assert_allclose(flags["similarity_to_previous"].iloc[1:], [0.97, 0.6])
    assert not redundant_by_similarity(M, threshold=0.95, removable=["c"])["redundant"].any()


def test_prune_experiment_row():
    torch.manual_seed(0)
    train_set, test_set = digits("train", size=8), digits("test", size=8)
    model = small_cnn(in_channels=1)
    from repgraph import evaluate, train
    train(model, train_set, epochs=3, progress=False)
    x = test_set.data[:1]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    row = prune_experiment(model, lambda m: prune_filters(m, l1_scores(m), ratio=0.5, example_input=x),
                           train_set, test_set, example_input=x, finetune_epochs=1, name="l1 50%", progress=False)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # the model is untouched
    assert row["accuracy_before"] == evaluate(model, test_set, progress=False)
    pruned = prune_filters(model, l1_scores(model), ratio=0.5, example_input=x)
    assert row["accuracy_pruned"] == evaluate(pruned, test_set, progress=False)
    params, flops = count_params_flops(pruned, x)
    assert (row["params_after"], row["flops_after"]) == (params, flops)
    assert row["flops_reduction"] == pytest.approx(1 - flops / count_params_flops(model, x)[1])
    train(pruned, train_set, epochs=1, lr=0.01, seed=0, progress=False)  # the same fine-tuning, done here
    assert row["accuracy_finetuned"] == evaluate(pruned, test_set, progress=False)


def test_flops_are_per_example_for_dict_inputs_too():
    class Keyword(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(6, 3)

        def forward(self, features, mask=None):
            return self.lin(features)

    # one example: 3 outputs × 6 inputs = 18 multiply-accumulates, whatever the batch size
    for batch in (1, 4):
        assert count_params_flops(Keyword(), {"features": torch.zeros(batch, 6)})[1] == 18
