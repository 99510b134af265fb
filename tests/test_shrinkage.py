"""Selective weight shrinkage (shrink_step, SelectiveShrinkage, shrink_prune) on a linear model
with one irrelevant weight, whose trajectory is worked out by hand:

loss (w·x − 3)² at x = (1, 0): the gradient is (2(w₁ − 3), 0). With SGD of step η = 0.1 the
relevant weight follows plain gradient descent, w₁ ← w₁ − 0.2(w₁ − 3), so w₁(t) = 3 − 2·0.8ᵗ from
w₁(0) = 1; the irrelevant one only shrinks, w₂ ← (1 − ηλ)·w₂, so w₂(t) = 0.5·(1 − 0.1λ)ᵗ."""
import pytest
import torch
from torch import nn

from repgraph import SelectiveShrinkage, apply_masks, shrink_prune, shrink_step, sparsity

X = torch.tensor([[1.0, 0.0]])


def linear(w=(1.0, 0.5)):
    model = nn.Sequential(nn.Linear(2, 1, bias=False))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([w]))
    return model


def sgd_steps(model, steps, shrink=None, lr=0.1):
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        ((model(X) - 3.0) ** 2).sum().backward()
        if shrink is not None:
            shrink()
        opt.step()


def test_the_irrelevant_weight_shrinks_at_the_stated_rate_and_the_relevant_follows_gradient_descent():
    lam = 2.0
    model, plain = linear(), linear()
    shrink = SelectiveShrinkage(model, decay=lam)
    sgd_steps(model, 5, shrink)
    sgd_steps(plain, 5)  # no regulariser: the relevant weight's path must be the same
    w1, w2 = model[0].weight[0].tolist()
    assert w1 == pytest.approx(3 - 2 * 0.8 ** 5, rel=1e-6)
    assert w1 == pytest.approx(plain[0].weight[0, 0].item(), rel=1e-7)
    assert w2 == pytest.approx(0.5 * (1 - 0.1 * lam) ** 5, rel=1e-6)
    assert plain[0].weight[0, 1].item() == 0.5  # plain SGD leaves the irrelevant weight alone
    assert shrink.calls == 5 and shrink.last["0"].tolist() == [[False, True]]


def test_shrink_step_adds_lambda_w_to_the_gradient_of_the_irrelevant_weights_only():
    # w = (1, 0.1) and a gradient g = (−4, −0.2) set by hand
    model = nn.Sequential(nn.Linear(2, 1, bias=False))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[1.0, 0.1]]))
    model[0].weight.grad = torch.tensor([[-4.0, -0.2]])
    # sensitivities |w·g| = (4, 0.02): 0.02 < 0.1·4, irrelevant; with τ = 0.001 both are relevant
    masks = shrink_step(model, decay=3.0, relevance=0.1)
    assert masks["0"].tolist() == [[False, True]]
    assert model[0].weight.grad.tolist()[0] == pytest.approx([-4.0, -0.2 + 3.0 * 0.1])
    model[0].weight.grad = torch.tensor([[-4.0, -0.2]])
    assert shrink_step(model, decay=3.0, relevance=0.001)["0"].tolist() == [[False, False]]
    assert model[0].weight.grad.tolist()[0] == pytest.approx([-4.0, -0.2])


def test_a_layer_with_zero_sensitivity_everywhere_is_left_alone():
    model = linear()
    model[0].weight.grad = torch.zeros(1, 2)
    assert shrink_step(model, decay=1.0)["0"].tolist() == [[False, False]]
    assert model[0].weight.grad.tolist() == [[0.0, 0.0]]


def test_shrink_prune_removes_the_shrunk_weight_and_keeps_the_model():
    model = linear()

    def train_fn(net, shrink):
        sgd_steps(net, 10, shrink)

    masks, pruned = shrink_prune(model, train_fn, threshold=1e-3, decay=5.0)  # w₂ halves per step: 0.5·2⁻¹⁰
    assert masks["0"].tolist() == [[True, False]]
    assert pruned[0].weight[0].tolist() == pytest.approx([3 - 2 * 0.8 ** 10, 0.0], rel=1e-6)
    assert sparsity(pruned) == 0.5 and sparsity(apply_masks(model, masks)) == 0.5
    assert model[0].weight[0].tolist() == [1.0, 0.5]  # untouched


def test_shrink_prune_rounds_hold_pruned_weights_at_zero():
    # round 1 prunes w₂ (0.5·0.5⁴ = 0.03125 < 0.05); round 2 trains on, w₂ stays exactly 0
    seen = []

    def train_fn(net, shrink):
        seen.append(net[0].weight[0, 1].item())
        sgd_steps(net, 4, shrink)

    masks, pruned = shrink_prune(linear(), train_fn, threshold=0.05, decay=5.0, rounds=2)
    assert seen[0] == 0.5 and seen[1] == 0.0
    assert masks["0"].tolist() == [[True, False]]
    assert pruned[0].weight[0].tolist() == pytest.approx([3 - 2 * 0.8 ** 8, 0.0], rel=1e-6)


def test_errors_name_the_argument():
    model = linear()
    with pytest.raises(ValueError, match="after loss.backward"):
        shrink_step(model, decay=1.0)
    with pytest.raises(ValueError, match="decay"):
        SelectiveShrinkage(model, decay=-1.0)
    with pytest.raises(ValueError, match="relevance"):
        shrink_step(model, decay=1.0, relevance=2.0)
    with pytest.raises(ValueError, match="layers"):
        SelectiveShrinkage(model, decay=1.0, layers=["nope"])
    with pytest.raises(ValueError, match="threshold"):
        shrink_prune(model, lambda net, s: None, threshold=0.0, decay=1.0)
    with pytest.raises(ValueError, match="rounds"):
        shrink_prune(model, lambda net, s: None, threshold=0.1, decay=1.0, rounds=0)
    with pytest.raises(TypeError, match="train_fn"):
        shrink_prune(model, None, threshold=0.1, decay=1.0)
