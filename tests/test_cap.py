"""CAP (Wang, Ma & Yu, arXiv 2209.03534): complexity weights by hand, a useless channel's gate
falls below a useful one's, training is seeded, the model given is untouched,
and the registered criterion prunes."""
import math

import numpy as np
import pytest
import torch
from torch import nn

import repgraph as rg
from repgraph.models import resnet20
from repgraph.pruning import cap_complexity_weights, cap_mask_scores


def test_complexity_weights_by_hand():
    # true-class probabilities 1/2, 3/4, 1/4 (softmax of (0, 0), (ln 3, 0), (0, ln 3))
    logits = np.array([[0.0, 0.0], [math.log(3), 0.0], [0.0, math.log(3)]])
    labels = [0, 0, 0]
    # gamma = 2: (1/2)^2, (1/4)^2, (3/4)^2 = 4/16, 1/16, 9/16 -> 4/14, 1/14, 9/14
    np.testing.assert_allclose(cap_complexity_weights(logits, labels), [4 / 14, 1 / 14, 9 / 14], atol=1e-12)
    # gamma = 1: 1/2, 1/4, 3/4 -> 2/6, 1/6, 3/6; gamma = 0: uniform
    np.testing.assert_allclose(cap_complexity_weights(logits, labels, gamma=1.0), [2 / 6, 1 / 6, 3 / 6], atol=1e-12)
    np.testing.assert_allclose(cap_complexity_weights(logits, labels, gamma=0.0), [1 / 3] * 3, atol=1e-12)
    # every sample certain (p = 1 in float64): uniform, not 0/0
    np.testing.assert_allclose(cap_complexity_weights([[1000.0, 0.0], [0.0, 1000.0]], [0, 1]), [0.5, 0.5])


def test_complexity_weights_errors_name_the_argument():
    with pytest.raises(ValueError, match="logits must be"):
        cap_complexity_weights(np.zeros(3), [0, 0, 0])
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 2\)"):
        cap_complexity_weights(np.zeros((2, 2)), [0, 2])
    with pytest.raises(ValueError, match="gamma"):
        cap_complexity_weights(np.zeros((2, 2)), [0, 1], gamma=-1.0)


def two_channel_toy() -> tuple[nn.Module, tuple]:
    """conv(1 -> 2, 1x1) - BN (identity in eval mode) - ReLU - mean - linear. Both channels copy
    the input (x = +1 for class 1, -1 for class 0; after the ReLU 1 or 0), but the classifier reads
    channel 0 only (logit margin 4 h0 - 2): channel 1 is useless, channel 0 is needed."""
    model = nn.Sequential(nn.Conv2d(1, 2, 1), nn.BatchNorm2d(2), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                          nn.Linear(2, 2))
    with torch.no_grad():
        model[0].weight.fill_(1.0)
        model[0].bias.zero_()
        model[5].weight.copy_(torch.tensor([[0.0, 0.0], [4.0, 0.0]]))
        model[5].bias.copy_(torch.tensor([0.0, -2.0]))
    model.eval()
    y = torch.arange(32) % 2
    X = (2.0 * y - 1.0).reshape(-1, 1, 1, 1).expand(-1, 1, 3, 3).contiguous()
    return model, (X, y)


def test_a_useless_channels_gate_falls_below_the_useful_ones():
    model, data = two_channel_toy()
    scores = cap_mask_scores(model, data, epochs=30, lr=0.1, lam=1.0, batch_size=8)
    assert list(scores) == ["0"]
    useful, useless = scores["0"]
    # the useless gate closes for every sample; the useful one stays open for the class-1 samples
    # that read channel 0 (the class-0 ones, zero after the ReLU, close theirs): about 1/2
    assert useless < 0.1 and useful > useless + 0.3, scores


def test_no_training_gives_the_initial_masks():
    model, data = two_channel_toy()
    scores = cap_mask_scores(model, data, epochs=0)
    np.testing.assert_allclose(scores["0"], [1 / (1 + math.exp(-3.0))] * 2, atol=1e-6)  # sigmoid(3) = 0.9526


def test_the_same_seed_gives_the_same_scores():
    model, data = two_channel_toy()
    a = cap_mask_scores(model, data, epochs=3, seed=1, batch_size=8)
    b = cap_mask_scores(model, data, epochs=3, seed=1, batch_size=8)
    np.testing.assert_array_equal(a["0"], b["0"])


def hook_table(model):
    return [(n, attr, k, v) for n, m in model.named_modules() for attr, d in sorted(vars(m).items())
            if "hooks" in attr and isinstance(d, dict) for k, v in d.items()]


@pytest.mark.parametrize("train_weights", [False, True])
def test_the_model_given_is_untouched(train_weights):
    model, data = two_channel_toy()
    model[1].train()  # mixed modes
    calls = []
    model[2].register_forward_hook(lambda *a: calls.append(1))
    model[5].weight.requires_grad_(False)
    before = ({k: v.clone() for k, v in model.state_dict().items()}, [m.training for m in model.modules()],
              [p.requires_grad for p in model.parameters()], hook_table(model))
    cap_mask_scores(model, data, epochs=2, batch_size=8, train_weights=train_weights)
    after = (model.state_dict(), [m.training for m in model.modules()], [p.requires_grad for p in model.parameters()],
             hook_table(model))
    assert before[0].keys() == after[0].keys()
    assert all(torch.equal(before[0][k], after[0][k]) for k in before[0])
    assert before[1:] == after[1:]
    assert calls  # the user's hook ran (on the traced forward and on the copy)


def test_errors_name_the_argument():
    model, data = two_channel_toy()
    for kwargs, match in [({"epochs": -1}, "epochs"), ({"lam": -1.0}, "lam"), ({"polar": 1.0}, "polar"),
                          ({"convs": ["5"]}, r"convs \['5'\]")]:
        with pytest.raises(ValueError, match=match):
            cap_mask_scores(model, data, **kwargs)
    with pytest.raises(TypeError, match="data must be"):
        cap_mask_scores(model, data[0])
    with pytest.raises(ValueError, match="criterion 'cap'.*data="):
        rg.filter_scores(model, "cap", example_input=data[0][:1])


def test_the_cap_criterion_prunes_resnet20():
    torch.manual_seed(0)
    model = resnet20().eval()
    X = torch.randn(8, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    y = torch.arange(8) % 10
    scores = rg.filter_scores(model, "cap", example_input=X[:1], data=(X, y))
    assert list(scores) == rg.uncoupled_convs(model, X[:1])
    assert all(s.shape == (model.get_submodule(c).out_channels,) for c, s in scores.items())
    pruned = rg.prune_filters(model, scores, ratio=0.25, example_input=X[:1])
    assert pruned.get_submodule("layer1.0.conv1").out_channels == 12
