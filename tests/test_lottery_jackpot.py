"""Lottery jackpots (issue 22 item 7): the frozen-weights mask search of Zhang et al. Expected
values come from a step worked by hand, from enumerating every mask of a 4-weight layer, and from
a line-for-line port of the authors' search (tests/reference_lottery_jackpot.py)."""
import itertools

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import reference_lottery_jackpot as reference
from repgraph import lottery_jackpot, magnitude_masks, sparsity

W = torch.tensor([[0.5, 2.0], [1.0, -3.0]])


def line(weights=W):
    model = nn.Sequential(nn.Linear(weights.shape[1], weights.shape[0], bias=False))
    with torch.no_grad():
        model[0].weight.copy_(weights)
    return model


def search(model, data, **kwargs):
    return lottery_jackpot(model, data, **{"progress": False, **kwargs})


def test_one_step_by_hand():
    # x = (1, 0.5), class 1. The magnitude mask keeps 2 and -3 (column 1): z = (1, -1.5),
    # softmax = (0.924142, 0.075858), dL/dz = (0.924142, -0.924142), dL/dW' = dz xᵀ =
    # [[0.924142, 0.462071], [-0.924142, -0.462071]]; ⊙ W: grad s = [[0.462071, 0.924142],
    # [-0.924142, 1.386213]]. One SGD step of lr 0.1 (momentum's first step is the gradient, no
    # decay) from s = [[0.99, 1], [0.99, 1]]: s = [[0.943793, 0.907586], [1.082414, 0.861379]].
    # The 2nd smallest is t = 0.907586: both pruned score above t, both kept at most t: swap both.
    data = (torch.tensor([[1.0, 0.5]]), torch.tensor([1]))
    masks, ticket = search(line(), data, sparsity=0.5, epochs=1, weight_decay=0.0)
    assert masks["0"].tolist() == [[True, False], [True, False]]
    assert ticket[0].weight.tolist() == [[0.5, 0.0], [1.0, 0.0]]
    # swap_fraction 0.5: ceil(2·0.5) = 1 pair, the pruned of highest score (1.082414, weight 1.0)
    # for the kept of lowest (0.861379, weight -3)
    masks, _ = search(line(), data, sparsity=0.5, epochs=1, weight_decay=0.0, swap_fraction=0.5)
    assert masks["0"].tolist() == [[False, True], [True, False]]


def test_a_tie_at_the_threshold_blocks_the_swap():
    # x = (1, 0), class 0: z = (0, 0), dL/dz = (-0.5, 0.5), grad s = [[-0.25, 0], [0.5, 0]];
    # lr 0.1: s = [[1.015, 1], [0.94, 1]]. t = 1 (2nd smallest) is the score of both kept weights:
    # one pruned weight scores above t but two kept ones at most t, so, as in the authors' code,
    # nothing changes although 1.015 > 1.
    data = (torch.tensor([[1.0, 0.0]]), torch.tensor([0]))
    masks, _ = search(line(), data, sparsity=0.5, epochs=1, weight_decay=0.0)
    assert masks["0"].tolist() == [[False, True], [False, True]]


def enumerated_best(weights, X, y, keep):
    """The mask keeping ``keep`` of the weights with the lowest cross-entropy of ``X (W ⊙ m)ᵀ``."""
    losses = {}
    for kept in itertools.combinations(range(weights.numel()), keep):
        mask = torch.zeros(weights.numel())
        mask[list(kept)] = 1.0
        mask = mask.reshape(weights.shape)
        losses[kept] = nn.functional.cross_entropy(X @ (weights * mask).T, y).item()
    best = min(losses, key=losses.get)
    mask = torch.zeros(weights.numel(), dtype=torch.bool)
    mask[list(best)] = True
    return mask.reshape(weights.shape), sorted(losses.values())


@pytest.mark.parametrize("init", ["magnitude", "random"])
@pytest.mark.parametrize("epochs, batch_size", [(1, 8), (5, 8), (10, 32)])
def test_the_search_finds_the_best_of_all_six_masks(init, epochs, batch_size):
    # The class is the sign of x0. The magnitude mask (2, -3: column 1, the noise input) is the
    # 5th of the 6 masks; the best keeps 0.5 and 1 (column 0), found by enumeration.
    X = torch.randn(32, 2, generator=torch.Generator().manual_seed(0))
    y = (X[:, 0] > 0).long()
    best, losses = enumerated_best(W, X, y, keep=2)
    assert best.tolist() == [[True, False], [True, False]] and losses[0] < losses[1] - 0.5
    masks, _ = search(line(), (X, y), sparsity=0.5, epochs=epochs, batch_size=batch_size, init=init)
    assert torch.equal(masks["0"], best)


def conv_net(conv=nn.Conv2d, seed=0):
    """conv-BN-ReLU twice, pooling and a 1×1-conv classifier named ``fc`` (as the authors' CIFAR
    models end); BatchNorm with non-trivial affine parameters and statistics."""
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = conv(3, 8, 3, padding=1, bias=False)
            self.bn1 = nn.BatchNorm2d(8)
            self.conv2 = conv(8, 8, 3, padding=1, bias=False)
            self.bn2 = nn.BatchNorm2d(8)
            self.fc = conv(8, 4, 1, bias=True)

        def forward(self, x):
            x = torch.relu(self.bn1(self.conv1(x)))
            x = torch.relu(self.bn2(self.conv2(x)))
            return self.fc(nn.functional.adaptive_avg_pool2d(x, 1)).flatten(1)

    torch.manual_seed(seed)
    net = Net()
    with torch.no_grad():
        for bn in (net.bn1, net.bn2):
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.2, 0.2)
            bn.running_mean.uniform_(-0.1, 0.1)
            bn.running_var.uniform_(0.5, 1.5)
    return net.eval()


def images(n=48, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, 6, 6, generator=g), torch.randint(0, 4, (n,), generator=g)


@pytest.mark.parametrize("scope", ["global", "layer"])
def test_counts_per_layer_are_exact_and_the_weights_bit_identical(scope):
    model = conv_net()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    p = 0.7
    start = magnitude_masks(model, p, scope=scope)
    masks, ticket = search(model, images(), sparsity=p, epochs=3, batch_size=16, scope=scope)
    for k, v in before.items():  # the user's model is untouched
        assert torch.equal(model.state_dict()[k], v), k
    assert set(masks) == {"conv1", "conv2", "fc"}
    assert any(not torch.equal(masks[n], start[n]) for n in masks)  # the search moved the mask
    modules = dict(ticket.named_modules())
    for n, mask in masks.items():
        assert mask.dtype == torch.bool and mask.shape == start[n].shape
        assert int(mask.sum()) == int(start[n].sum())  # each layer's count is the initial one
        weight = modules[n].weight.detach()
        assert torch.equal(weight[mask], before[f"{n}.weight"][mask])  # kept: bit-identical
        assert bool((weight[~mask] == 0).all())
    pruned = [int((~masks[n]).sum()) for n in ("conv1", "conv2", "fc")]
    if scope == "layer":  # ceil(0.7·216) = 152, ceil(0.7·576) = 404, ceil(0.7·32) = 23
        assert pruned == [152, 404, 23]
    else:  # ceil(0.7·824) = 577 over the 216 + 576 + 32 weights
        assert sum(pruned) == 577
    assert sparsity(ticket) == sum(pruned) / 824  # true zeros
    state = ticket.state_dict()
    for k in ("fc.bias", "bn1.weight", "bn1.bias", "bn2.weight", "bn2.bias"):  # never tuned
        assert torch.equal(state[k], before[k]), k
    # the search runs in train mode, as the authors' does: BatchNorm tracked the masked network
    assert not torch.equal(state["bn2.running_mean"], before["bn2.running_mean"])
    assert int(state["bn1.num_batches_tracked"]) == 3 * 3  # 48 samples in batches of 16, 3 epochs
    assert [m.training for m in ticket.modules()] == [m.training for m in model.modules()]


def zero_gradient_model():
    """Linear-ReLU-Linear with zero biases: on zero inputs every activation is 0, so every score
    gradient is 0 and only the (uniform) weight decay moves the scores."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 3))
    with torch.no_grad():
        model[0].bias.zero_()
        model[2].bias.zero_()
    return model


def test_magnitude_init_is_magnitude_masks_and_a_zero_gradient_keeps_it():
    model = zero_gradient_model()
    data = (torch.zeros(8, 5), torch.arange(8) % 3)
    for scope in ("global", "layer"):
        masks, _ = search(model, data, sparsity=0.6, epochs=2, batch_size=4, scope=scope)
        expected = magnitude_masks(model, 0.6, scope=scope)
        assert masks.keys() == expected.keys()
        assert all(torch.equal(masks[n], expected[n]) for n in masks)


def test_random_init_has_the_magnitude_counts_and_is_seeded():
    model = zero_gradient_model()
    data = (torch.zeros(8, 5), torch.arange(8) % 3)
    magnitude = magnitude_masks(model, 0.6)
    a, _ = search(model, data, sparsity=0.6, epochs=1, init="random", seed=3)
    b, _ = search(model, data, sparsity=0.6, epochs=1, init="random", seed=3)
    c, _ = search(model, data, sparsity=0.6, epochs=1, init="random", seed=4)
    assert all(torch.equal(a[n], b[n]) for n in a)
    assert any(not torch.equal(a[n], c[n]) for n in a)
    assert any(not torch.equal(a[n], magnitude[n]) for n in a)
    assert [int(a[n].sum()) for n in a] == [int(magnitude[n].sum()) for n in a]


def test_unchosen_layers_stay_dense():
    model = conv_net()
    masks, ticket = search(model, images(), sparsity=0.5, epochs=1, batch_size=16, layers=["conv1", "conv2"])
    assert set(masks) == {"conv1", "conv2"}
    assert torch.equal(ticket.fc.weight, model.fc.weight)


@pytest.mark.parametrize("swap_fraction", [1.0, 0.5])
def test_port_of_the_authors_search_gives_the_same_masks_and_statistics(swap_fraction):
    """Three epochs of the authors' search (PretrainConv, final_pop_up after every step, SGD with
    momentum and decay on the scores, cosine per epoch) against ``lottery_jackpot`` with the
    classifier left dense, as the authors leave it, on the same batches. lr 1 instead of their
    0.1: this random network's score gradients are too small to swap anything in 9 steps at 0.1."""
    ours = conv_net()
    theirs = conv_net(conv=reference.PretrainConv)
    theirs.load_state_dict(ours.state_dict(), strict=False)  # the authors' extra mask parameters stay
    X, y = images()
    p, epochs, batch = 0.75, 3, 16
    loader = DataLoader(TensorDataset(X, y), batch_size=batch, shuffle=True,
                        generator=torch.Generator().manual_seed(0))
    swaps = reference.search(theirs, loader, prune_rate=p, num_epochs=epochs, lr=1.0, rate=swap_fraction)
    # the authors' initial mask (set_prune_rate with the 'l1' layer rates) is magnitude_masks'
    start = magnitude_masks(ours, p, layers=["conv1", "conv2"])
    pristine = conv_net(conv=reference.PretrainConv)
    pristine.load_state_dict(ours.state_dict(), strict=False)
    reference.set_model_prune_rate(pristine, reference.generate_pr_cfg(pristine, p))
    for n in ("conv1", "conv2"):
        assert torch.equal(getattr(pristine, n).b_mask.bool(), start[n]), n
    assert sum(sum(s) for s in swaps) > 0  # the search changed the mask: the comparison is not vacuous
    masks, ticket = search(ours, (X, y), sparsity=p, epochs=epochs, batch_size=batch, layers=["conv1", "conv2"],
                           lr=1.0, swap_fraction=swap_fraction)
    for n in ("conv1", "conv2"):
        assert torch.equal(masks[n], getattr(theirs, n).b_mask.bool()), n
    for k in ("bn1.running_mean", "bn1.running_var", "bn2.running_mean", "bn2.running_var"):
        assert torch.equal(ticket.state_dict()[k], theirs.state_dict()[k]), k


def test_bad_input_says_which_argument_and_how_to_fix_it():
    model, data = line(), (torch.ones(2, 2), torch.tensor([0, 1]))
    cases = [
        (dict(sparsity=1.0), ValueError, "sparsity must be a fraction in"),
        (dict(epochs=0), ValueError, "epochs must be an integer >= 1"),
        (dict(epochs=1.5), TypeError, "epochs must be an integer"),
        (dict(batch_size=0), ValueError, "batch_size must be an integer >= 1"),
        (dict(lr=0.0), ValueError, r"lr must be a number in \(0, inf\)"),
        (dict(momentum=1.0), ValueError, r"momentum must be a number in \[0, 1\)"),
        (dict(weight_decay=-1.0), ValueError, "weight_decay must be a number in"),
        (dict(swap_fraction=0.0), ValueError, r"swap_fraction must be a number in \(0, 1\]"),
        (dict(init="snip"), ValueError, "init must be one of"),
        (dict(scope="net"), ValueError, "scope must be one of"),
        (dict(layers=["nope"]), ValueError, "not modules of the model with a weight"),
        (dict(seed=-1), ValueError, "seed must be an integer >= 0"),
    ]
    for change, error, message in cases:
        kwargs = {"sparsity": 0.5, "epochs": 1, **change}
        with pytest.raises(error, match=message):
            search(model, data, **kwargs)
    with pytest.raises(TypeError, match="data must be a Dataset or a tuple"):
        search(model, [1, 2], sparsity=0.5, epochs=1)
    with pytest.raises(ValueError, match="data is empty"):
        search(model, (torch.zeros(0, 2), torch.zeros(0)), sparsity=0.5, epochs=1)
    with pytest.raises(ValueError, match="no Conv1d/2d/3d or Linear layer"):
        search(nn.Sequential(nn.ReLU()), data, sparsity=0.5, epochs=1)
