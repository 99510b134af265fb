"""The MNIST-1D recipes shared by benchmarks/mnist1d_findings.py and notebook 05."""
import math

import numpy as np
import pandas as pd
import pytest
import torch

from repgraph import capture_activations, count_params_flops, train
from repgraph.hooks import Activations
from repgraph.models import get_model, resnet1d
from repgraph.workflows import mnist1d as recipes

pytest.importorskip("mnist1d.data")


def test_splits_and_snapshot_epochs():
    train_set, test_set = recipes.mnist1d_splits(n_train=300, n_test=50)
    full_train, full_test = recipes.mnist1d_splits()
    assert (len(train_set), len(test_set), len(full_train), len(full_test)) == (300, 50, 4000, 1000)
    assert torch.equal(train_set.data, full_train.data[:300]) and torch.equal(test_set.targets, full_test.targets[:50])
    for bad in (0, 4001, 2.5, True):
        with pytest.raises(ValueError, match="n_train"):
            recipes.mnist1d_splits(n_train=bad)
    # 0, the powers of two below `epochs`, and `epochs`
    assert recipes.snapshot_epochs(40) == [0, 1, 2, 4, 8, 16, 32, 40]
    assert recipes.snapshot_epochs(2) == [0, 1, 2]
    assert recipes.snapshot_epochs(3) == [0, 1, 2, 3]
    assert recipes.snapshot_epochs(1) == [0, 1]
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="epochs"):
            recipes.snapshot_epochs(bad)


def test_run_keeps_the_weights_of_a_plain_training_and_reuses_its_cache(tmp_path):
    run = recipes.mnist1d_run("cnn1d", seed=3, epochs=2, n_train=200, cache=tmp_path, progress=False)
    assert run.source == "trained now" and sorted(run.states) == [0, 1, 2]
    # the same training written out by hand: seeded init, train() with the recipe's settings
    torch.manual_seed(3)
    untrained = get_model("cnn1d", num_classes=10, in_channels=1)
    plain = get_model("cnn1d", num_classes=10, in_channels=1)
    plain.load_state_dict(untrained.state_dict())
    train_set, test_set = recipes.mnist1d_splits(n_train=200)
    history = train(plain, train_set, epochs=2, seed=3, eval_data=test_set, progress=False, **recipes.TRAINING)
    for name, value in plain.state_dict().items():
        assert torch.equal(run.model().state_dict()[name], value), name
        assert torch.equal(run.model(0).state_dict()[name], untrained.state_dict()[name]), name
    assert not torch.equal(run.states[1]["conv1.weight"], run.states[0]["conv1.weight"])
    assert not torch.equal(run.states[1]["conv1.weight"], run.states[2]["conv1.weight"])
    assert run.accuracy == history["test_accuracy"].iloc[-1]
    assert not run.model().training
    with pytest.raises(ValueError, match="kept epochs"):
        run.model(5)
    with pytest.raises(ValueError, match="sequence"):
        recipes.mnist1d_run("resnet20", epochs=1, n_train=200, progress=False)

    cached = recipes.mnist1d_run("cnn1d", seed=3, epochs=2, n_train=200, cache=tmp_path, progress=False)
    assert cached.source.startswith("cache") and cached.accuracy == run.accuracy
    for epoch, state in run.states.items():
        for name, value in state.items():
            assert torch.equal(cached.states[epoch][name], value)
    path = next(tmp_path.glob("*.pt"))
    stored = torch.load(path, weights_only=True)
    stored["settings"]["lr"] = 0.1  # a file made with other settings is not reused
    torch.save(stored, path)
    again = recipes.mnist1d_run("cnn1d", seed=3, epochs=2, n_train=200, cache=tmp_path, progress=False)
    assert again.source == "trained now"
    assert torch.load(path, weights_only=True)["settings"]["lr"] == recipes.TRAINING["lr"]


def test_capture_with_input_and_without_input():
    _, test_set = recipes.mnist1d_splits(n_test=40)
    torch.manual_seed(0)
    model = resnet1d().eval()
    acts = recipes.capture_with_input(model, test_set, progress=False)
    plain = capture_activations(model, test_set, layers="modularity", progress=False)
    assert acts.layers == ["input"] + plain.layers
    np.testing.assert_array_equal(acts["input"], test_set.data.numpy().reshape(40, 40))
    np.testing.assert_array_equal(acts["layer3.2"], plain["layer3.2"])
    np.testing.assert_array_equal(acts.labels, test_set.targets.numpy())
    rest = recipes.without_input(acts)
    assert rest.layers == plain.layers and np.array_equal(rest.labels, acts.labels)


REMOVABLE = ["layer1.0", "layer1.1", "layer1.2", "layer2.1", "layer2.2", "layer3.1", "layer3.2"]  # not 2.0, 3.0


def test_block_removal_picks_budgets_and_sizes():
    train_set, test_set = recipes.mnist1d_splits(n_train=64, n_test=64)
    torch.manual_seed(0)
    model = resnet1d().eval()
    layers = ["input", "conv1", "layer1.0", "layer1.1", "layer1.2", "layer2.0", "layer2.1", "layer2.2", "layer3.0",
              "layer3.1", "layer3.2"]
    q = [0.2, 0.25, 0.4, 0.41, 0.5, 0.55, 0.54, 0.7, 0.8, 0.85, 0.852]
    # delta Q by hand: layer1.1 +0.01, layer2.1 -0.01 (a drop), layer3.2 +0.002 are the three smallest
    # among the removable blocks (layer2.0 and layer3.0 change the shape and cannot go)
    curve = pd.DataFrame({"layer": layers, "depth": range(len(layers)), "modularity": q})
    table = recipes.block_removal(model, curve, train_set, test_set, n_blocks=3, random_draws=2, finetune_epochs=0,
                                  seed=1, progress=False)
    assert table["method"].tolist() == ["smallest delta Q", "random", "random", "last"]
    picks = [row.split(", ") for row in table["blocks"]]
    assert picks[0] == ["layer1.1", "layer2.1", "layer3.2"]
    assert picks[3] == ["layer2.2", "layer3.1", "layer3.2"]
    assert all(len(set(p)) == 3 and set(p) <= set(REMOVABLE) for p in picks)
    modules = dict(model.named_modules())
    params, _ = count_params_flops(model, test_set.data[:1])
    for row, pick in zip(table.itertuples(), picks):
        # a removed block becomes an identity: exactly its own parameters go
        assert row.params_after == params - sum(p.numel() for b in pick for p in modules[b].parameters())
        assert row.accuracy_pruned == row.accuracy_finetuned  # no fine-tuning asked for
    with pytest.raises(ValueError, match="removable blocks"):
        recipes.block_removal(model, curve, train_set, test_set, n_blocks=8, progress=False)


def test_filter_pruning_takes_the_same_budget_under_every_criterion():
    train_set, test_set = recipes.mnist1d_splits(n_train=64, n_test=64)
    torch.manual_seed(0)
    model = resnet1d().eval()
    table = recipes.filter_pruning(model, train_set, test_set, ratio=0.25, finetune_epochs=0, max_samples=32,
                                   progress=False)
    assert table["criterion"].tolist() == list(recipes.FILTER_CRITERIA)
    # each block's conv1 (C_in -> C, kernel 3) loses p = ceil(C/4) filters: p·C_in·3 weights, its BN's
    # 2p, and p input channels of conv2 (C -> C, kernel 3): p·C·3
    blocks = [(16, 16)] * 3 + [(16, 32)] + [(32, 32)] * 2 + [(32, 64)] + [(64, 64)] * 2
    removed = sum(math.ceil(c / 4) * (c_in * 3 + 2 + c * 3) for c_in, c in blocks)
    assert removed == 22440
    assert (table["params_before"] - table["params_after"] == removed).all()
    assert table["flops_after"].nunique() == 1


def test_correspondence_over_seed_pairs():
    rng = np.random.default_rng(0)
    layers = {f"l{i}": rng.normal(size=(30, 8)) for i in range(4)}
    acts = {seed: Activations(layers) for seed in (0, 1, 2)}
    table = recipes.correspondence(acts)
    assert list(zip(table["seed_a"], table["seed_b"]))[::4] == [(0, 1), (0, 2), (1, 2)]
    assert table["measure"].tolist()[:4] == list(recipes.SIMILARITY_MEASURES)
    # identical networks: every layer is most similar to itself under every measure
    assert (table["correspondence"] == 1.0).all()
    shifted = {0: Activations(layers), 1: Activations({f"l{i}": layers[f"l{(i + 1) % 4}"] for i in range(4)})}
    # network 1's layer i holds network 0's layer i+1: no layer matches its own index
    assert (recipes.correspondence(shifted)["correspondence"] == 0.0).all()
    with pytest.raises(ValueError, match="different seeds"):
        recipes.correspondence({0: acts[0]})


def test_mean_curve_over_seeds():
    curves = pd.DataFrame({"seed": [0, 0, 1, 1, 2, 2], "layer": ["b", "a"] * 3, "depth": [0, 1] * 3,
                           "modularity": [0.1, 0.5, 0.3, 0.6, 0.2, 0.7]})
    out = recipes.mean_curve(curves)
    assert out["layer"].tolist() == ["b", "a"]  # the input's order, not sorted
    # layer b: 0.1, 0.3, 0.2 -> mean 0.2, sample std 0.1; layer a: 0.5, 0.6, 0.7 -> 0.6, 0.1
    np.testing.assert_allclose(out["modularity"], [0.2, 0.6])
    np.testing.assert_allclose(out["std"], [0.1, 0.1])
    assert out["n_seeds"].tolist() == [3, 3]
    with pytest.raises(ValueError, match="seed"):
        recipes.mean_curve(curves.drop(columns="seed"))
