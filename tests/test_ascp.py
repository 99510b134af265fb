"""ASCP (ascp_clusters, ascp_schedule, AscpRegulariser, ascp_merge) on hand-worked cases: identical
filters merge with the next layer's channels summed and the network's output unchanged (exactly,
with integer weights and inputs, where every float sum is exact), the pull toward the centre by
the stated rate, and the schedule's values."""
import math

import pytest
import torch
from torch import nn

from repgraph import AscpRegulariser, ascp_clusters, ascp_merge, ascp_schedule
from repgraph.models import resnet20


def integer_(tensor, generator, low=-2, high=3):
    with torch.no_grad():
        tensor.copy_(torch.randint(low, high, tensor.shape, generator=generator).to(tensor.dtype))


def conv_relu_conv():
    g = torch.Generator().manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.Conv2d(3, 2, 3))
    for p in model.parameters():
        integer_(p, g)
    with torch.no_grad():  # filter 2 = filter 0
        model[0].weight[2] = model[0].weight[0]
        model[0].bias[2] = model[0].bias[0]
    x = torch.randint(-3, 4, (5, 1, 6, 6), generator=g).float()
    return model, x


def test_two_identical_filters_merge_into_one_with_exactly_the_same_output():
    model, x = conv_relu_conv()
    merged = ascp_merge(model, {"0": [[0, 2], [1]]}, x)
    assert merged[0].out_channels == 2 and merged[2].in_channels == 2
    # the next layer's channels of the cluster are summed onto the representative's
    W = model[2].weight.detach()
    assert torch.equal(merged[2].weight.detach(), torch.stack([W[:, 0] + W[:, 2], W[:, 1]], dim=1))
    assert torch.equal(merged[0].weight.detach(), model[0].weight.detach()[[0, 1]])
    assert torch.equal(merged(x), model(x))
    assert model[0].out_channels == 3  # untouched


def test_merge_through_flatten_into_a_linear_sums_each_channels_block():
    g = torch.Generator().manual_seed(1)
    model = nn.Sequential(nn.Conv1d(1, 3, 3), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 8, 2))
    for p in model.parameters():
        integer_(p, g)
    with torch.no_grad():
        model[0].weight[1] = model[0].weight[0]
        model[0].bias[1] = model[0].bias[0]
    x = torch.randint(-3, 4, (4, 1, 10), generator=g).float()
    merged = ascp_merge(model, {"0": [[0, 1], [2]]}, x)
    assert merged[0].out_channels == 2 and merged[3].in_features == 16
    W = model[3].weight.detach()
    assert torch.equal(merged[3].weight.detach(), torch.cat([W[:, 0:8] + W[:, 8:16], W[:, 16:24]], dim=1))
    assert torch.equal(merged(x), model(x))


def test_merge_with_batchnorm_needs_and_keeps_the_shared_statistics():
    g = torch.Generator().manual_seed(2)
    model = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4), nn.ReLU(),
                          nn.Conv2d(4, 3, 3)).eval()
    integer_(model[0].weight, g)
    integer_(model[3].weight, g)
    with torch.no_grad():
        model[0].weight[3] = model[0].weight[1]
        model[1].weight.copy_(torch.tensor([1.0, 2.0, 0.5, 2.0]))
        model[1].bias.copy_(torch.tensor([0.0, 1.0, -1.0, 1.0]))
        model[1].running_mean.copy_(torch.tensor([0.5, -1.0, 0.0, -1.0]))
        model[1].running_var.copy_(torch.tensor([1.0, 4.0, 2.0, 4.0]))
    x = torch.randn(3, 2, 5, 5, generator=g)
    merged = ascp_merge(model, {"0": [[0], [1, 3], [2]]}, x)
    assert merged[0].out_channels == 3 and merged[1].num_features == 3
    assert merged[1].running_var.tolist() == [1.0, 4.0, 2.0]
    assert torch.allclose(merged(x), model(x), atol=1e-5)


def test_the_pull_moves_each_filter_toward_its_cluster_centre_by_the_rate():
    model = nn.Sequential(nn.Conv1d(1, 3, 2))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[[0.0, 0.0]], [[2.0, 2.0]], [[10.0, 10.0]]]))
        model[0].bias.copy_(torch.tensor([4.0, 0.0, 7.0]))
    reg = AscpRegulariser(model, {"0": [[0, 1], [2]]}, epochs=4, k=4 * math.log(2))
    assert reg(2) == pytest.approx(0.8)  # (1 − 1/4)/(1 − 1/16)
    # centre 1: 0 + 0.8·(1 − 0) = 0.8, 2 + 0.8·(1 − 2) = 1.2; the singleton stays; bias centre 2
    assert model[0].weight.flatten().tolist() == pytest.approx([0.8, 0.8, 1.2, 1.2, 10.0, 10.0])
    assert model[0].bias.tolist() == pytest.approx([4.0 - 0.8 * 2, 0.0 + 0.8 * 2, 7.0])
    reg(4)  # the last epoch: α = 1, identical filters
    assert model[0].weight.flatten().tolist() == pytest.approx([1.0, 1.0, 1.0, 1.0, 10.0, 10.0])


def test_the_pull_covers_the_following_batchnorm_when_given_an_input():
    model = nn.Sequential(nn.Conv2d(1, 2, 1, bias=False), nn.BatchNorm2d(2))
    with torch.no_grad():
        model[1].weight.copy_(torch.tensor([1.0, 3.0]))
        model[1].running_var.copy_(torch.tensor([2.0, 4.0]))
    AscpRegulariser(model, {"0": [[0, 1]]}, epochs=1, kind="constant", final=0.5,
                    example_input=torch.zeros(1, 1, 2, 2))(1)
    assert model[1].weight.tolist() == [1.5, 2.5] and model[1].running_var.tolist() == [2.5, 3.5]


def test_schedule_values_at_chosen_epochs():
    k = 4 * math.log(2)  # exp(−k·e/4) = 2^−e
    assert [ascp_schedule(e, 4, k=k) for e in (0, 1, 2, 3, 4)] == pytest.approx(
        [0.0, 8 / 15, 12 / 15, 14 / 15, 1.0])
    assert [ascp_schedule(e, 4, k=k, final=0.5) for e in (1, 4)] == pytest.approx([4 / 15, 0.5])
    assert [ascp_schedule(e, 5, kind="linear") for e in (0, 2, 5)] == pytest.approx([0.0, 0.4, 1.0])
    assert ascp_schedule(0, 5, kind="constant", final=0.3) == 0.3


def test_clusters_partition_the_filters_and_are_seeded():
    conv = nn.Conv1d(1, 5, 2, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([[[5.0, 5]], [[1.0, 0]], [[0, 1.0]], [[1.1, 0]], [[0, 1.1]]]))
    assert ascp_clusters(nn.Sequential(conv), 0.4) == {"0": [[0], [1, 3], [2, 4]]}
    assert ascp_clusters(nn.Sequential(conv), 0.0) == {"0": [[0], [1], [2], [3], [4]]}
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 16, 3), nn.ReLU(), nn.Conv2d(16, 8, 3))
    first = ascp_clusters(model, 0.5, seed=3)
    assert first == ascp_clusters(model, 0.5, seed=3)
    assert [len(first["0"]), len(first["2"])] == [8, 4]
    assert sorted(i for c in first["0"] for i in c) == list(range(16))


def test_train_pull_merge_end_to_end_keeps_the_pulled_function():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 6, 3),
                          nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 2))
    x = torch.randn(8, 3, 8, 8)
    clusters = ascp_clusters(model, 0.5, layers=["0", "3"])
    reg = AscpRegulariser(model, clusters, epochs=2, example_input=x[:1])
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    for epoch in (1, 2):
        model.train()
        opt.zero_grad()
        model(x).sum().backward()
        opt.step()
        reg(epoch)
    model.eval()
    merged = ascp_merge(model, reg.clusters, x[:1])
    assert [merged[0].out_channels, merged[3].out_channels, merged[7].in_features] == [4, 3, 3]
    assert torch.allclose(merged(x), model(x), atol=1e-5)


def test_errors_name_the_argument():
    model, x = conv_relu_conv()
    with pytest.raises(ValueError, match="partition"):
        ascp_merge(model, {"0": [[0, 1]]}, x)
    with pytest.raises(ValueError, match="not convolutions"):
        ascp_merge(model, {"1": [[0]]}, x)
    with pytest.raises(TypeError, match="clusters"):
        ascp_merge(model, [[0, 2], [1]], x)
    with pytest.raises(ValueError, match="no conv or Linear"):
        ascp_merge(model, {"2": [[0, 1]]}, x)
    with pytest.raises(ValueError, match="ratio"):
        ascp_clusters(model, 1.0)
    with pytest.raises(ValueError, match="epoch"):
        ascp_schedule(5, 4)
    with pytest.raises(ValueError, match="kind"):
        ascp_schedule(1, 4, kind="cosine")
    net = resnet20()
    with pytest.raises(ValueError, match="residual"):
        ascp_merge(net, {"conv1": [[0, 1]] + [[i] for i in range(2, 16)]}, torch.zeros(1, 3, 32, 32))
