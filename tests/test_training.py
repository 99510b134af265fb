import torch

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
