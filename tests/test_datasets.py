import pickle

import numpy as np
import pytest
import torch

from repgraph.datasets import DatasetNotFoundError, cifar10, digits, synthetic_clusters


def test_digits_split_is_stratified_deterministic_and_disjoint():
    train, test = digits("train"), digits("test")
    assert len(train) + len(test) == 1797  # sklearn's digits
    assert train.data.shape[1:] == (1, 16, 16) and train.data.dtype == torch.float32
    counts_train = np.bincount(train.targets.numpy()) / len(train)
    counts_test = np.bincount(test.targets.numpy()) / len(test)
    np.testing.assert_allclose(counts_train, counts_test, atol=0.01)
    again = digits("test")
    assert torch.equal(again.data, test.data) and torch.equal(again.targets, test.targets)
    assert not torch.equal(digits("test", seed=1).targets, test.targets)
    # normalised with the training split's statistics
    assert abs(float(train.data.mean())) < 1e-5 and abs(float(train.data.std()) - 1) < 1e-4


def test_digits_original_pixels():
    from sklearn.datasets import load_digits
    full = digits("all", size=8, normalize=False)
    np.testing.assert_allclose(full.data[:, 0].numpy(), load_digits().images / 16.0, atol=1e-7)
    assert digits("train", size=32).data.shape[2:] == (32, 32)
    with pytest.raises(ValueError, match="split"):
        digits("val")
    with pytest.raises(ValueError, match="size"):
        digits(size=4)


def _write_fake_cifar(folder, n_per_batch=4):
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for name in names:
        batch = {b"data": rng.integers(0, 256, size=(n_per_batch, 3072), dtype=np.uint8),
                 b"labels": list(range(n_per_batch))}
        with open(folder / name, "wb") as fh:
            pickle.dump(batch, fh)
    return folder


def test_cifar10_reads_local_pickles(tmp_path):
    root = _write_fake_cifar(tmp_path / "cifar-10-batches-py")
    with open(root / "test_batch", "rb") as fh:
        raw = pickle.load(fh, encoding="bytes")[b"data"]
    test = cifar10(tmp_path, normalize=False)  # found in the standard subfolder
    assert test.data.shape == (4, 3, 32, 32) and test.targets.tolist() == [0, 1, 2, 3]
    np.testing.assert_allclose(test.data.numpy().reshape(4, -1), raw / 255.0, atol=1e-7)
    assert len(cifar10(root, train=True)) == 20


def test_cifar10_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="never downloads"):
        cifar10(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError):
        cifar10(tmp_path)
    assert issubclass(DatasetNotFoundError, ValueError)


def test_synthetic_clusters():
    X, y = synthetic_clusters(100, 4, 8, seed=0)
    assert X.shape == (100, 8) and X.dtype == np.float32 and np.bincount(y).tolist() == [25] * 4
    X2, y2 = synthetic_clusters(100, 4, 8, seed=0)
    assert np.array_equal(X, X2) and np.array_equal(y, y2)
    with pytest.raises(ValueError, match="n_samples"):
        synthetic_clusters(3, 4)
