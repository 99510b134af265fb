import importlib
import random
import sys

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import Subset

from repgraph import clp_scores, evaluate, train
from repgraph.datasets import mnist1d
from repgraph.hooks import select_layers
from repgraph.models import BasicBlock1d, cnn1d, example_input, get_model, resnet1d

mnist1d_data = pytest.importorskip("mnist1d.data")
generator = importlib.import_module("repgraph.datasets.mnist1d")  # the module; the name is the function


@pytest.fixture(scope="module")
def published():
    # Independent oracle: the mnist1d package itself, with its own published default arguments.
    return mnist1d_data.make_dataset(mnist1d_data.get_dataset_args())


def test_shapes_dtypes_split_sizes_and_labels():
    train, test, full = mnist1d("train"), mnist1d("test"), mnist1d("all")
    # Greydanus & Kobak: 5000 signals of length 40, 4000 train / 1000 test, 10 digits
    assert train.data.shape == (4000, 1, 40) and test.data.shape == (1000, 1, 40)
    assert full.data.shape == (5000, 1, 40)
    for ds in (train, test, full):
        assert ds.data.dtype == torch.float32 and ds.targets.dtype == torch.int64
        assert set(ds.targets.tolist()) == set(range(10)) and ds.classes == list(range(10))
    counts = np.bincount(full.targets.numpy(), minlength=10)
    assert counts.tolist() == [500] * 10  # 500 signals per digit before the split
    train_counts = np.bincount(train.targets.numpy(), minlength=10)
    assert train_counts.min() >= 350 and train_counts.max() <= 450  # shuffled, so only roughly 400
    assert torch.equal(full.data[:4000], train.data) and torch.equal(full.data[4000:], test.data)


def test_equals_what_the_package_generates(published):
    train, test = mnist1d("train"), mnist1d("test")
    np.testing.assert_array_equal(train.data[:, 0].numpy(), published["x"].astype(np.float32))
    np.testing.assert_array_equal(test.data[:, 0].numpy(), published["x_test"].astype(np.float32))
    np.testing.assert_array_equal(train.targets.numpy(), published["y"])
    np.testing.assert_array_equal(test.targets.numpy(), published["y_test"])


def test_deterministic_fresh_tensors_and_seed():
    a, b = mnist1d("test"), mnist1d("test")
    assert torch.equal(a.data, b.data) and torch.equal(a.targets, b.targets)
    a.data.add_(1.0)  # the caller owns its tensors: the cache is not touched
    assert torch.equal(mnist1d("test").data, b.data)
    other = mnist1d("test", seed=1)
    assert other.data.shape == (1000, 1, 40) and not torch.equal(other.data, b.data)


def test_generation_leaves_the_global_generators_alone():
    generator._generate.cache_clear()
    random.seed(123)
    np.random.seed(123)
    mnist1d("test")
    # the package reseeds both global generators; the loader restores them
    assert random.random() == random.Random(123).random()
    assert np.random.rand() == np.random.RandomState(123).rand()


def test_normalize_uses_the_training_statistics():
    raw, norm = mnist1d("train"), mnist1d("train", normalize=True)
    assert abs(float(norm.data.mean())) < 1e-5 and abs(float(norm.data.std(unbiased=False)) - 1) < 1e-5
    mean, std = raw.data.double().mean(), raw.data.double().std(unbiased=False)
    expected = ((mnist1d("test").data.double() - mean) / std).float()
    torch.testing.assert_close(mnist1d("test", normalize=True).data, expected)


def test_bad_arguments_and_missing_package(monkeypatch):
    with pytest.raises(ValueError, match="split must be 'train', 'test' or 'all'"):
        mnist1d("val")
    for seed in (-1, 2**32, 1.5, True):
        with pytest.raises(ValueError, match="seed"):
            mnist1d(seed=seed)
    monkeypatch.setitem(sys.modules, "mnist1d.data", None)  # makes the import fail
    generator._generate.cache_clear()
    with pytest.raises(ImportError, match=r"pip install repgraph\[mnist1d\]"):
        mnist1d("train")


def _seeded(factory, seed=0, **kwargs):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return factory(**kwargs)


def test_cnn1d_is_the_papers_cnn_with_batch_norm():
    model = cnn1d().eval()
    # ConvBase of Greydanus & Kobak: 25 channels, kernels 5/3/3, stride 2, padding 1; 40 -> 19 -> 10 -> 5
    assert [(m.kernel_size, m.stride, m.padding) for m in (model.conv1, model.conv2, model.conv3)] == \
        [((5,), (2,), (1,)), ((3,), (2,), (1,)), ((3,), (2,), (1,))]
    assert model.fc.in_features == 25 * 5
    # their 5210 parameters, less the 75 conv biases, plus 3 BNs of 2 * 25: 5285
    assert sum(p.numel() for p in model.parameters()) == 5210 - 75 + 150
    assert model(torch.zeros(3, 1, 40)).shape == (3, 10)
    assert cnn1d(length=64).fc.in_features == 25 * 8  # 64 -> 31 -> 16 -> 8
    relus = [m for m in model.modules() if isinstance(m, nn.ReLU)]
    assert len(relus) == len(set(map(id, relus))) == 3
    with pytest.raises(ValueError, match="length"):
        cnn1d(length=2)


def test_resnet1d_blocks_shortcuts_and_lengths():
    model = get_model("resnet1d", num_classes=7, in_channels=1).eval()
    blocks = [m for m in model.modules() if isinstance(m, BasicBlock1d)]
    assert len(blocks) == 9  # ResNet-20: 3 stages of 3 blocks
    convs = [m for m in model.modules() if isinstance(m, nn.Conv1d) and m.kernel_size == (3,)]
    assert len(convs) + 1 == 20  # 3-tap convs + the classifier
    for block in blocks:
        assert block.is_residual_block and isinstance(block.bn1, nn.BatchNorm1d)
        assert isinstance(block.relu1, nn.ReLU) and isinstance(block.relu2, nn.ReLU) and block.relu1 is not block.relu2
    # identity when the shape is kept, 1x1 projection at the two stage transitions (16->32, 32->64)
    projections = [b for b in blocks if not isinstance(b.shortcut, nn.Identity)]
    assert [(b.shortcut[0].in_channels, b.shortcut[0].out_channels, b.shortcut[0].kernel_size)
            for b in projections] == [(16, 32, (1,)), (32, 64, (1,))]
    for length in (40, 17, 64):
        assert model(torch.zeros(2, 1, length)).shape == (2, 7)
    block = BasicBlock1d(16, 32, stride=2, shortcut="A").eval()  # zero-padding shortcut, no weights
    x = torch.randn(2, 16, 40)
    assert block(x).shape == (2, 32, 20)
    torch.testing.assert_close(block.shortcut(x)[:, 8:24], x[:, :, ::2])
    assert block.shortcut(x)[:, :8].abs().sum() == 0 and block.shortcut(x)[:, 24:].abs().sum() == 0
    assert select_layers(model, "modularity") == ["conv1"] + [f"layer{s}.{i}" for s in (1, 2, 3) for i in range(3)]


def test_clp_applies_to_the_1d_models():
    model = _seeded(cnn1d)
    with torch.no_grad():
        for bn in (model.bn1, model.bn2, model.bn3):
            bn.weight.uniform_(0.5, 2.0)
            bn.running_var.uniform_(0.5, 2.0)
    scores = clp_scores(model, example_input=example_input("cnn1d", in_channels=1))
    assert set(scores) == {"conv1", "conv2", "conv3"}
    for i in (1, 2, 3):
        conv, bn = getattr(model, f"conv{i}"), getattr(model, f"bn{i}")
        W = conv.weight.detach().double().numpy()  # (C_out, C_in, k): each filter a C_in x k matrix
        gain = np.abs(bn.weight.detach().double().numpy()) / np.sqrt(bn.running_var.double().numpy() + bn.eps)
        expected = np.array([np.linalg.svd(w, compute_uv=False)[0] for w in W]) * gain
        np.testing.assert_allclose(scores[f"conv{i}"], expected, rtol=1e-10)
    resnet_scores = clp_scores(resnet1d(), example_input=example_input("resnet1d", in_channels=1))
    assert len(resnet_scores) == 1 + 18 + 2  # stem, two convs per block, two projections


@pytest.mark.parametrize("name, n_train, epochs", [("cnn1d", 4000, 3), ("resnet1d", 2000, 2)])
def test_a_short_training_run_is_far_above_chance(name, n_train, epochs):
    # chance is 10 %; logistic regression on the raw signals reaches 32 % (Greydanus & Kobak)
    train_set, test_set = mnist1d("train"), mnist1d("test")
    model = _seeded(get_model, name=name, num_classes=10, in_channels=1)
    history = train(model, Subset(train_set, range(n_train)), epochs=epochs, lr=1e-2, optimizer="adam",
                    weight_decay=0.0, batch_size=100, seed=0, progress=False)
    assert len(history) == epochs
    assert evaluate(model, test_set, progress=False) > 0.5
