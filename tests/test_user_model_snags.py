"""Snags of a user's own model: every function taking an example input takes what
capture_activations takes (numpy arrays, tensors, dict batches); filter_scores returns scores
under every criterion (central_filter too, its selections kept aside); ScoresImportance takes the
scores first. Expected values come from the tensor input, from central_filters on maps captured
here, and from hand-written scores."""
import warnings

import numpy as np
import pytest
import torch
import torch_pruning as tp
from torch import nn

import repgraph as rg
from repgraph.datasets import digits
from repgraph.hooks import trace
from repgraph.models import resnet20, small_cnn, vgg11

X = np.random.default_rng(0).normal(size=(2, 3, 16, 16)).astype(np.float32)


class FlatMLP(nn.Module):
    """A user's model that flattens with a tensor method: numpy's ``ndarray.flatten(1)`` would
    raise "order must be str, not int"."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3 * 16 * 16, 4)

    def forward(self, x):
        return self.fc(x.flatten(1))


class KeywordNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, image, scale):
        return self.conv(image * scale)


@pytest.mark.parametrize("example", [X[:1], X[:1].astype(np.float64), torch.from_numpy(X[:1]),
                                     (X[:1], np.zeros(1))], ids=["float32", "float64", "tensor", "(X, y)"])
def test_list_layers_takes_what_capture_takes(example):
    table = rg.list_layers(FlatMLP(), example)
    assert table.loc[0, "output_shape"] == (1, 4) and table.loc[0, "calls"] == 1
    dict_table = rg.list_layers(KeywordNet(), {"image": X[:1], "scale": np.ones((1, 1, 1, 1), np.float32)})
    assert dict_table.loc[0, "output_shape"] == (1, 4, 14, 14)


def _same(a, b):
    if isinstance(a, nn.Module):
        return all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values())) and \
            str(a) == str(b)
    return a == b


@pytest.mark.parametrize("call", [
    lambda m, x: rg.removable_layers(m, x),
    lambda m, x: rg.uncoupled_convs(m, x),
    lambda m, x: rg.count_params_flops(m, x),
    lambda m, x: rg.remove_layers(m, ["layer1.1"], example_input=x),
    lambda m, x: rg.prune_filters(m, {"layer1.0.conv1": np.arange(16.0)}, ratio=0.25, example_input=x),
    lambda m, x: sorted(rg.clp_scores(m, example_input=x)),
    lambda m, x: {c: s.tolist() for c, s in rg.filter_scores(m, "l1", example_input=x).items()},
    lambda m, x: trace.execution_order(m, x),
    lambda m, x: trace.conv_bn_pairs(m, x),
    lambda m, x: trace.producing_conv(m, "layer1.0.relu1", x),
], ids=["removable_layers", "uncoupled_convs", "count_params_flops", "remove_layers", "prune_filters",
        "clp_scores", "filter_scores", "execution_order", "conv_bn_pairs", "producing_conv"])
def test_every_example_input_takes_a_numpy_array_as_its_tensor(call):
    torch.manual_seed(0)
    model = resnet20()
    assert _same(call(model, X[:1]), call(model, torch.from_numpy(X[:1])))


def test_flops_divide_out_the_batch_of_a_numpy_input():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(4 * 14 * 14, 2))
    # by hand: 4·14·14 outputs of 3·9 MACs, then 784·2; parameters 4·27 + 4 and 784·2 + 2
    assert rg.count_params_flops(model, X) == (112 + 1570, 4 * 14 * 14 * 27 + 784 * 2)


# --- filter_scores' central_filter: scores like every criterion, the selections kept aside -------
@pytest.fixture(scope="module")
def cnn_and_maps():
    torch.manual_seed(0)
    model = small_cnn(num_classes=10, in_channels=1).eval()
    test = digits("test", size=8)
    maps = rg.capture_activations(model, test.data[:40], layers=["relu1"], reduce=None, progress=False)["relu1"]
    return model, test, maps


def test_central_filter_scores_are_arrays_and_the_selections_stay_reachable(cnn_and_maps):
    model, test, maps = cnn_and_maps
    x = test.data[:1]
    scores = rg.filter_scores(model, "central_filter", convs=["conv1"], data=test, example_input=x,
                              max_samples=40, ratio=0.25, progress=False)
    reference = rg.central_filters(rg.filter_similarity(maps), 0.25)
    assert isinstance(scores["conv1"], np.ndarray) and scores["conv1"].shape == (16,)
    assert scores["conv1"].tolist() == [0.0 if f in reference.pruned else 1.0 for f in range(16)]
    assert (scores.selections["conv1"].kept, scores.selections["conv1"].pruned) == (reference.kept, reference.pruned)
    assert rg.filter_scores(model, "l1", convs=["conv1"], example_input=x).selections == {}

    # for_pruning carries out Central Filter: its selection, compensated, as the selection itself gives
    expected = rg.prune_filters(model, {"conv1": reference}, example_input=x)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pruned = rg.prune_filters(model, scores.for_pruning(), example_input=x)
    assert all(torch.equal(a, b) for a, b in zip(pruned.state_dict().values(), expected.state_dict().values()))
    # the old call (the result straight into prune_filters) keeps its meaning for one release, warning
    with pytest.warns(FutureWarning, match=r"scores.for_pruning\(\).*dict\(scores\)"):
        old = rg.prune_filters(model, scores, example_input=x)
    assert all(torch.equal(a, b) for a, b in zip(old.state_dict().values(), expected.state_dict().values()))
    # as a ranking at the same ratio: exactly the selection's filters go, without compensation
    ranked = rg.prune_filters(model, dict(scores), ratio=0.25, example_input=x)
    torch.testing.assert_close(ranked.conv1.weight, model.conv1.weight[reference.kept], rtol=0, atol=0)
    torch.testing.assert_close(ranked.conv2.weight, model.conv2.weight[:, reference.kept], rtol=0, atol=0)


def test_criterion_importance_of_central_filter_ranks_by_the_selection(cnn_and_maps):
    model, test, maps = cnn_and_maps
    imp = rg.criterion_importance(model, "central_filter", convs=["conv1"], data=test, example_input=test.data[:1],
                                  max_samples=40, ratio=0.25, progress=False)
    reference = rg.central_filters(rg.filter_similarity(maps), 0.25)
    assert imp.scores["conv1"].tolist() == [0.0 if f in reference.pruned else 1.0 for f in range(16)]


# --- ScoresImportance: scores first, the model optional ------------------------------------------
HAND = {"features.0": np.array([5.0, 1.0, 7.0] + [0.5] * 60 + [9.0])}  # 64 filters, scored by hand


def _pruned_rows(make_importance):
    torch.manual_seed(0)
    model = vgg11(num_classes=10, in_channels=3)
    x = torch.zeros(1, 3, 32, 32)
    original = model.features[0].weight.detach().clone()
    pruner = tp.pruner.MetaPruner(model, x, importance=make_importance(model), pruning_ratio=0.5,
                                  ignored_layers=[model.classifier])
    pruner.step()
    kept = model.features[0].weight.detach()
    return model, {int(torch.nonzero((original == w).flatten(1).all(1))[0]) for w in kept}


def test_scores_importance_takes_the_scores_alone():
    model, rows = _pruned_rows(lambda m: rg.ScoresImportance(HAND))
    # the 32 kept include the four scored above the tied 0.5s; the unscored convs keep their width
    assert {0, 1, 2, 63} <= rows and len(rows) == 32 and model.features[4].out_channels == 128
    assert _pruned_rows(lambda m: rg.ScoresImportance(HAND, model=m))[1] == rows


def test_the_model_first_order_still_works_with_a_deprecation_warning():
    with pytest.warns(DeprecationWarning, match=r"ScoresImportance\(scores, model=model\)"):
        _, rows = _pruned_rows(lambda m: rg.ScoresImportance(m, HAND))
    assert _pruned_rows(lambda m: rg.ScoresImportance(HAND, model=m))[1] == rows


def test_scores_importance_checks_names_at_its_first_group_without_a_model():
    model = vgg11()
    x = torch.zeros(1, 3, 32, 32)
    group = tp.DependencyGraph().build_dependency(model, example_inputs=x).get_pruning_group(
        model.features[0], tp.prune_conv_out_channels, idxs=list(range(64)))
    with pytest.raises(ValueError, match="Unknown layer 'nope'"):
        rg.ScoresImportance({"nope": np.ones(3)})(group)
    with pytest.raises(ValueError, match="Unknown layer 'nope'"):
        rg.ScoresImportance({"nope": np.ones(3)}, model=model)
    imp = rg.ScoresImportance(HAND)
    assert imp(group).tolist() == pytest.approx((HAND["features.0"] / 9.0).tolist())
    other = vgg11()
    other_group = tp.DependencyGraph().build_dependency(other, example_inputs=x).get_pruning_group(
        other.features[0], tp.prune_conv_out_channels, idxs=[0])
    with pytest.raises(TypeError, match="another model"):
        imp(other_group)
    with pytest.raises(TypeError, match="scores must be a mapping"):
        rg.ScoresImportance([1.0, 2.0])
