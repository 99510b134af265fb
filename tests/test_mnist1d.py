import importlib
import random
import sys

import numpy as np
import pytest
import torch

from repgraph.datasets import mnist1d

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
