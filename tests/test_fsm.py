"""FSM, feature shift minimisation (Duan et al., ACCV 2022): hand-worked scores, equality with a
port of the authors' code (tests/reference_fsm.py), the data-flow tracing and the criterion."""
import numpy as np
import pytest
import torch
from scipy.stats import norm
from torch import nn

import repgraph as rg
from repgraph.analyzers import fsm_scores, relu_normal_mean
from repgraph.models import VGG, resnet20
from repgraph.workflows import fsm_model_scores

from reference_fsm import reference_effects

# E[max(N(mu, s^2), 0)] = mu Phi(mu/s) + s phi(mu/s), with Phi, phi from tables (scipy below
# confirms the digits): (0, 1) -> phi(0) = 0.3989422804; (1, 2) -> Phi(0.5) + 2 phi(0.5) =
# 0.6914624613 + 0.7041306535 = 1.3955931149; (0.3, 0.5) -> 0.3 Phi(0.6) + 0.5 phi(0.6) =
# 0.2177240647 + 0.1666123015 = 0.3843363661.
E_01, E_12, E_03_05 = 0.3989422804, 1.3955931149, 0.3843363661


def test_table_values():
    for (mu, s), value in {(0.0, 1.0): E_01, (1.0, 2.0): E_12, (0.3, 0.5): E_03_05}.items():
        assert mu * norm.cdf(mu / s) + s * norm.pdf(mu / s) == pytest.approx(value, abs=1e-10)


def test_relu_normal_mean_by_hand():
    got = relu_normal_mean([0.0, 1.0, 0.3, 0.7, -0.7], [1.0, 2.0, 0.5, 0.0, 0.0])
    np.testing.assert_allclose(got, [E_01, E_12, E_03_05, 0.7, 0.0], atol=1e-10)
    # far tails: ~mu for mu >> s, ~0 (not negative, not NaN) for mu << -s
    np.testing.assert_allclose(relu_normal_mean([50.0, -50.0], [1.0, 1.0]), [50.0, 0.0], atol=1e-12)
    with pytest.raises(ValueError, match="std must be >= 0"):
        relu_normal_mean([0.0], [-1.0])


def hand_conv() -> np.ndarray:
    """A next conv with 2 outputs over 3 channels, 3x3 kernels whose sums are chosen:
    channel 0 sums [1, -3] (mean |.| 2), channel 1 [0.5, 0.5] (0.5), channel 2 [2, 0] (1)."""
    W = np.zeros((2, 3, 3, 3))
    sums = np.array([[1.0, 0.5, 2.0], [-3.0, 0.5, 0.0]])
    W[:, :, 0, 0] = 2 * sums
    W[:, :, 2, 1] = -sums  # the sum over the kernel is 2s - s = s
    return W


def test_fsm_scores_by_hand():
    gamma, beta = [1.0, 2.0, -0.5], [0.0, 1.0, 0.3]
    # clamp (the reference): sigma = 1e-5 for gamma < 0, so E_2 = 0.3 (Phi(3e4) = 1, phi = 0)
    np.testing.assert_allclose(fsm_scores(gamma, beta, hand_conv()), [2 * E_01, 0.5 * E_12, 1 * 0.3], atol=1e-9)
    np.testing.assert_allclose(fsm_scores(gamma, beta, hand_conv(), negative_gamma="abs"),
                               [2 * E_01, 0.5 * E_12, 1 * E_03_05], atol=1e-9)
    # no next conv (the classifier follows): E itself; several next convs: the effects add up
    np.testing.assert_allclose(fsm_scores(gamma, beta), [E_01, E_12, 0.3], atol=1e-9)
    np.testing.assert_allclose(fsm_scores(gamma, beta, [hand_conv(), hand_conv()[:1]]),
                               [(2 + 1) * E_01, (0.5 + 0.5) * E_12, (1 + 2) * 0.3], atol=1e-9)


def test_fsm_scores_errors_name_the_argument():
    with pytest.raises(ValueError, match="negative_gamma"):
        fsm_scores([1.0], [0.0], negative_gamma="zero")
    with pytest.raises(ValueError, match="bn_weight and bn_bias"):
        fsm_scores([1.0, 1.0], [0.0])
    with pytest.raises(ValueError, match=r"next_weights\[0\].*\(N, 3, ...\)"):
        fsm_scores([1.0] * 3, [0.0] * 3, np.zeros((2, 4, 1, 1)))
    with pytest.raises(ValueError, match="finite"):
        fsm_scores([np.nan], [0.0])


def small_vgg(seed: int, negative: bool = False) -> nn.Module:
    """A small VGG (conv-BN-ReLU, max-pools between) with BN parameters of ordinary size."""
    torch.manual_seed(seed)
    model = VGG([8, "M", 12, 12, "M", 16], num_classes=3)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.copy_(0.2 + 1.3 * torch.rand(m.num_features, generator=g))
                m.bias.copy_(0.5 * torch.randn(m.num_features, generator=g))
                if negative:
                    m.weight[::3] *= -1
    return model.eval()


def test_equal_to_the_authors_code_on_a_small_vgg():
    model = small_vgg(0)
    ours = fsm_model_scores(model, example_input=torch.zeros(1, 3, 16, 16))
    convs = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    assert list(ours) == convs
    for conv, theirs in zip(convs, reference_effects(model)):
        np.testing.assert_allclose(ours[conv], theirs, rtol=1e-7, atol=1e-9)
        # the same ranking, as the reference's np.argsort(effects) keeps the top
        assert np.argsort(ours[conv]).tolist() == np.argsort(theirs).tolist()


def test_negative_gamma_follows_the_reference_without_changing_the_model():
    model = small_vgg(1, negative=True)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    ours = fsm_model_scores(model, example_input=torch.zeros(1, 3, 16, 16))
    for k, v in model.state_dict().items():  # the reference writes 1e-5 into the BN weights
        assert torch.equal(v, before[k]), k
    bn = model.features[1]
    beta = bn.bias.detach().double().numpy()[::3]
    W = model.features[4].weight.detach().double()
    mean_abs = W.sum(dim=(2, 3)).abs().mean(dim=0).numpy()[::3]
    # sigma = 1e-5: E = max(beta, 0) up to a 1e-5 * phi term
    np.testing.assert_allclose(ours["features.0"][::3], mean_abs * np.maximum(beta, 0), atol=1e-5)
    # where gamma > 0 the reference agrees (its quadrature is off at sigma = 1e-5 only)
    theirs = reference_effects(model)[0]
    keep = np.ones(8, bool)
    keep[::3] = False
    np.testing.assert_allclose(ours["features.0"][keep], theirs[keep], rtol=1e-7, atol=1e-9)


class Branching(nn.Module):
    """conv-BN-ReLU read by two convs (an Inception-like fork) and a conv whose BN goes to an
    addition; conv "c" has no BN."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 3, 1, bias=False)
        self.bn = nn.BatchNorm2d(3)
        self.relu = nn.ReLU(inplace=True)
        self.a = nn.Conv2d(3, 2, 3, padding=1, bias=False)
        self.b = nn.Conv2d(3, 1, 3, padding=1, bias=False)
        self.bn_a = nn.BatchNorm2d(2)
        self.c = nn.Conv2d(1, 2, 1)

    def forward(self, x):
        h = self.relu(self.bn(self.conv(x)))
        return self.bn_a(self.a(h)) + self.b(h) + self.c(x)


def test_a_fork_adds_both_next_convs_and_an_addition_is_refused():
    model = Branching().eval()
    W = hand_conv()
    with torch.no_grad():
        model.bn.weight.copy_(torch.tensor([1.0, 2.0, -0.5]))
        model.bn.bias.copy_(torch.tensor([0.0, 1.0, 0.3]))
        model.a.weight.copy_(torch.as_tensor(W))
        model.b.weight.copy_(torch.as_tensor(W[:1]))
    x = torch.zeros(1, 1, 4, 4)
    scores = fsm_model_scores(model, example_input=x)
    assert list(scores) == ["conv"]  # conv "a": its BN goes to the addition
    np.testing.assert_allclose(scores["conv"], [3 * E_01, 1.0 * E_12, 3 * 0.3], atol=1e-9)
    with pytest.raises(ValueError, match="'bn_a'.*not an nn.ReLU"):
        fsm_model_scores(model, example_input=x, convs=["a"])
    with pytest.raises(ValueError, match="'c' has no BatchNorm"):
        fsm_model_scores(model, example_input=x, convs=["c"])
    with pytest.raises(ValueError, match="did not run"):
        fsm_model_scores(model, example_input=x, convs=["nowhere"])


def test_the_fsm_criterion_scores_and_prunes_resnet20():
    torch.manual_seed(0)
    model = resnet20().eval()
    x = torch.zeros(1, 3, 32, 32)
    scores = rg.filter_scores(model, "fsm", example_input=x)
    assert list(scores) == rg.uncoupled_convs(model, x)
    np.testing.assert_array_equal(scores["layer1.0.conv1"],
                                  fsm_model_scores(model, example_input=x)["layer1.0.conv1"])
    pruned = rg.prune_filters(model, scores, ratio=0.5, example_input=x)
    assert pruned.get_submodule("layer1.0.conv1").out_channels == 8
    assert model.get_submodule("layer1.0.conv1").out_channels == 16  # prune_filters works on a copy
