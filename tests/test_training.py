import pytest
import torch
from torch import nn

from repgraph import evaluate, train
from repgraph.datasets import digits
from repgraph.models import small_cnn


def test_training_learns_digits_and_is_deterministic():
    train_set, test_set = digits("train", size=8), digits("test", size=8)
    runs = []
    for _ in range(2):
        torch.manual_seed(0)
        model = small_cnn(in_channels=1)
        history = train(model, train_set, epochs=5, lr=0.05, seed=1, eval_data=test_set, progress=False)
        runs.append(model)
    assert list(history.columns) == ["epoch", "loss", "train_accuracy", "test_accuracy"]
    assert history["loss"].iloc[-1] < history["loss"].iloc[0]
    assert evaluate(runs[0], test_set) > 0.7  # chance is 0.1
    for a, b in zip(runs[0].state_dict().values(), runs[1].state_dict().values()):
        assert torch.equal(a, b)


def test_evaluate_restores_mode():
    model = small_cnn(in_channels=1).train()
    evaluate(model, digits("test", size=8))
    assert model.training


def test_on_epoch_end_sees_every_epoch_and_leaves_training_unchanged():
    train_set = digits("train", size=8)
    seen, weights = [], []

    def snapshot(epoch, model):
        seen.append(epoch)
        torch.rand(5)  # a callback that draws random numbers must not shift the seeded training
        evaluate(model, train_set, progress=False)

    for callback in (None, snapshot):
        torch.manual_seed(0)  # dropout draws from the global generator: what the callback must not shift
        model = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Dropout(0.5), nn.Linear(32, 10))
        train(model, train_set, epochs=3, seed=2, on_epoch_end=callback, progress=False)
        weights.append(model.state_dict())
    assert seen == [1, 2, 3]
    for name, value in weights[0].items():
        assert torch.equal(value, weights[1][name]), name


def test_train_bad_input_and_global_random_state():
    model = small_cnn(in_channels=1)
    empty = (torch.zeros(0, 1, 8, 8), torch.zeros(0, dtype=torch.long))
    with pytest.raises(ValueError, match="data is empty"):
        train(model, empty, epochs=1, progress=False)
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    train(model, digits("test", size=8), epochs=1, seed=5, progress=False)
    assert torch.equal(torch.rand(3), expected)  # the caller's random stream is where it was
