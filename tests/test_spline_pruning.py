"""The spline criterion and early-bird detection, against values worked out by hand: Hamming
distances of constructed masks, the detection epoch of a constructed sequence, and the boundary
distances of a tiny layer (the BatchNorm fold checked against the layer's own zero crossing)."""
import math

import numpy as np
import pytest
import torch
from torch import nn

from repgraph import EarlyBirdDetector, early_bird, magnitude_masks, mask_distance, spline_scores


def test_hamming_distance_of_constructed_masks():
    assert mask_distance(np.array([1, 1, 0, 0], bool), np.array([1, 0, 1, 0], bool)) == 0.5
    assert mask_distance(torch.ones(3, 2, dtype=torch.bool), torch.ones(3, 2, dtype=torch.bool)) == 0.0
    # pooled over layers, not averaged: layer a (2 entries) agrees, layer b differs in 3 of 6: 3/8
    a = {"a": np.array([1, 0], bool), "b": np.array([1, 1, 1, 0, 0, 0], bool)}
    b = {"a": np.array([1, 0], bool), "b": np.array([0, 0, 0, 0, 0, 0], bool)}
    assert mask_distance(a, b) == 3 / 8


def _sequence(changes, size=10):
    """Masks where mask t flips ``changes[t-1]`` entries of mask t−1 (the first ones): distances
    changes/size."""
    masks = [np.zeros(size, bool)]
    for k in changes:
        m = masks[-1].copy()
        m[:k] = ~m[:k]
        masks.append(m)
    return masks


def test_detection_epoch_of_a_constructed_sequence():
    masks = _sequence([5, 3, 0, 2, 0, 0, 0])  # distances 0.5, 0.3, 0, 0.2, 0, 0, 0 (epochs 1..7)
    assert [mask_distance(masks[t], masks[t - 1]) for t in range(1, 8)] == [0.5, 0.3, 0.0, 0.2, 0.0, 0.0, 0.0]
    assert early_bird(masks, threshold=0.1, window=3) == 7  # zeros at epochs 5, 6, 7
    assert early_bird(masks, threshold=0.25, window=3) == 5  # 0, 0.2, 0 at epochs 3, 4, 5
    assert early_bird(masks, threshold=0.1, window=4) is None
    assert early_bird(masks, threshold=0.1, window=1) == 3
    # strictly below: a distance equal to the threshold breaks the run
    assert early_bird(_sequence([1, 1, 1]), threshold=0.1, window=1) is None
    assert early_bird(_sequence([1, 1, 1]), threshold=0.11, window=3) == 3


def test_detector_matches_early_bird_on_the_same_masks():
    masks = _sequence([5, 3, 0, 2, 0, 0, 0])
    feed = iter(masks)
    detector = EarlyBirdDetector(threshold=0.25, window=3, criterion=lambda model: next(feed))
    flags = [detector.update(None) for _ in masks]
    assert flags == [False] * 5 + [True] * 3
    assert detector.epoch == early_bird(masks, threshold=0.25, window=3) == 5
    assert detector.distances == pytest.approx([0.5, 0.3, 0.0, 0.2, 0.0, 0.0, 0.0])


def test_bn_criterion_prunes_the_smallest_scales_over_all_layers():
    model = nn.Sequential(nn.Linear(2, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 2), nn.BatchNorm1d(2))
    with torch.no_grad():
        model[1].weight.copy_(torch.tensor([0.1, -3.0, 0.5, 2.0]))
        model[4].weight.copy_(torch.tensor([-0.2, 1.0]))
    mask = EarlyBirdDetector(sparsity=0.5, criterion="bn")._mask(model)
    # |γ| = 0.1, 3, 0.5, 2, 0.2, 1: the ⌊0.5·6⌋ = 3 smallest (0.1, 0.2, 0.5) go
    assert {k: v.tolist() for k, v in mask.items()} == {"1": [False, True, False, True], "4": [False, True]}


def test_magnitude_criterion_is_magnitude_masks():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    detector = EarlyBirdDetector(sparsity=0.4, criterion="magnitude")
    expected = magnitude_masks(model, 0.4)
    got = detector._mask(model)
    assert all(torch.equal(got[k], expected[k]) for k in expected)


def test_partition_criterion_reads_region_codes_and_leaves_the_model_alone():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 2))
    model.train()
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0], [2.0, -1.0]])
    detector = EarlyBirdDetector(window=2, criterion="partition", inputs=x)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert [detector.update(model) for _ in range(3)] == [False, False, True]
    assert detector.distances == [0.0, 0.0]
    assert model.training and all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    # flipping unit 0's boundary (w, b -> −w, −b) flips its code on every sample with a nonzero
    # pre-activation: 4 of the 4·3 = 12 (sample, unit) pairs
    codes = (model[0](x) > 0)
    with torch.no_grad():
        model[0].weight[0].neg_()
        model[0].bias[0].neg_()
    detector.update(model)
    flipped = int((codes[:, 0] != (model[0](x)[:, 0] > 0)).sum())
    assert flipped == 4 and detector.distances[-1] == 4 / 12


def test_criterion_on_a_hand_computable_layer():
    layer = nn.Linear(2, 4)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[3.0, 4.0], [0.0, 1.0], [0.0, -2.0], [-3.0, -4.0]]))
        layer.bias.copy_(torch.tensor([5.0, 1.0, 2.0, -5.0]))
    scores = spline_scores(nn.Sequential(layer, nn.ReLU(), nn.Linear(4, 1)))["0"]
    # h = (w, b)/‖w‖: (0.6, 0.8, 1), (0, 1, 1), (0, −1, 1), (−0.6, −0.8, −1) = −h0 (the same line)
    # d(0, 1) = ‖(0.6, −0.2, 0)‖ = √0.4; d(0, 2) = min(√3.6, √4.4) = √3.6; d(1, 2) = min(2, 2) = 2
    assert scores == pytest.approx([0.0, math.sqrt(0.4), math.sqrt(3.6), 0.0])
    named = spline_scores(nn.Sequential(layer, nn.ReLU(), nn.Linear(4, 1)), layers=["0"])["0"]
    assert named == pytest.approx(scores)


def test_batchnorm_moves_the_boundary_to_its_zero_crossing():
    conv = nn.Conv1d(1, 2, 1, bias=False)
    bn = nn.BatchNorm1d(2)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([[[1.0]], [[1.0]]]))
        bn.weight.copy_(torch.tensor([1.0, 2.0]))
        bn.bias.copy_(torch.tensor([1.0, 0.5]))
        bn.running_mean.copy_(torch.tensor([0.0, 1.0]))
        bn.running_var.copy_(torch.tensor([1.0, 1.0]) - bn.eps)  # σ = 1
    model = nn.Sequential(conv, bn, nn.ReLU(), nn.Flatten(), nn.Linear(2, 1)).eval()
    # unit 0: b = 0 − 0 + 1·1/1 = 1, boundary x = −1; unit 1: b = −1 + 0.5·1/2 = −0.75, x = 0.75
    for unit, x0 in ((0, -1.0), (1, 0.75)):
        with torch.no_grad():
            assert abs(float(bn(conv(torch.tensor([[[x0]]])))[0, unit, 0])) < 1e-6  # the model's own zero
    x = torch.zeros(1, 1, 1)
    scores = spline_scores(model, example_input=x)["0"]
    assert scores == pytest.approx([1.75, 1.75])  # h = (1, 1), (1, −0.75): min(1.75, ‖(2, 0.25)‖)
    assert spline_scores(model)["0"] == pytest.approx([0.0, 0.0])  # BN ignored: both x = 0
    with torch.no_grad():
        bn.weight[1] = 0.0  # a constant unit draws no boundary
    assert spline_scores(model, example_input=x)["0"].tolist() == [math.inf, 0.0]


def test_errors_name_the_argument_and_the_fix():
    a = np.zeros(4, bool)
    with pytest.raises(ValueError, match="threshold"):
        early_bird([a, a], threshold=0)
    with pytest.raises(ValueError, match="window"):
        early_bird([a, a], window=0)
    with pytest.raises(ValueError, match="entries"):
        mask_distance(a, np.zeros(5, bool))
    with pytest.raises(ValueError, match="different layers"):
        mask_distance({"x": a}, {"y": a})
    with pytest.raises(ValueError, match="criterion must be one of"):
        EarlyBirdDetector(criterion="hrank")
    with pytest.raises(ValueError, match="pass inputs="):
        EarlyBirdDetector(criterion="partition")
    with pytest.raises(ValueError, match="sparsity"):
        EarlyBirdDetector(sparsity=1.5)
    with pytest.raises(ValueError, match="criterion='magnitude'"):
        EarlyBirdDetector().update(nn.Sequential(nn.Linear(2, 2)))
    with pytest.raises(ValueError, match="not Conv1d/2d/3d or Linear"):
        spline_scores(nn.Sequential(nn.Linear(2, 2), nn.ReLU()), layers=["1"])
