"""A small, seeded training loop (SGD or Adam with a cosine schedule) and accuracy evaluation."""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset
from tqdm.auto import tqdm

from .._arrays import resolve_device
from .._results import described
from ..hooks.modes import evaluating


def _dataset(data) -> Dataset:
    if isinstance(data, Dataset):
        return data
    if isinstance(data, tuple) and len(data) == 2:
        X, y = (torch.as_tensor(np.asarray(v)) if not isinstance(v, torch.Tensor) else v for v in data)
        return TensorDataset(X.float(), y.long())
    raise TypeError(f"data must be a Dataset or a tuple (X, y), got {type(data).__name__}.")


def evaluate(model: nn.Module, data, *, batch_size: int = 512, device=None, progress: bool = True) -> float:
    """Top-1 accuracy of ``model`` on ``data``: ``(1/N) Σ_n [argmax_c model(x_n)_c = y_n]``.

    Runs in eval mode under ``torch.no_grad()``; every submodule's own train/eval flag is restored
    afterwards. Ties in the logits go to the lowest class (``argmax``).

    Parameters
    ----------
    model : nn.Module
        A classifier returning logits (N, classes).
    data : Dataset or tuple (X, y)
        A Dataset of ``(x, y)`` pairs, or inputs X and integer labels y (arrays or tensors; X is
        cast to float32, y to int64).
    batch_size : int
        Samples per forward pass: memory only, the result does not depend on it.
    device : str or torch.device, optional
        Where the batches go; default the device of the model's first parameter (CPU for a
        model without parameters).
    progress : bool
        Show a progress bar over the batches.

    Returns
    -------
    float
        The accuracy, in [0, 1].

    Raises
    ------
    TypeError
        If ``data`` is neither a Dataset nor a tuple (X, y).
    ValueError
        If ``data`` is empty, or ``device`` is CUDA without a GPU.

    Examples
    --------
    With the inputs as their own logits, the predictions are 0, 1, 0, 0 against labels 0, 1, 1, 0:

    >>> import torch
    >>> from torch import nn
    >>> from repgraph import evaluate
    >>> X = torch.tensor([[2.0, 1.0], [0.0, 3.0], [5.0, 4.0], [1.0, 0.0]])
    >>> evaluate(nn.Identity(), (X, torch.tensor([0, 1, 1, 0])), progress=False)
    0.75
    """
    device = resolve_device(device, like=model)
    loader = DataLoader(_dataset(data), batch_size=batch_size, shuffle=False)
    correct = total = 0
    with evaluating(model), torch.no_grad():
        for x, y in tqdm(loader, desc="evaluate", disable=not progress, leave=False):
            correct += int((model(x.to(device)).argmax(1) == y.to(device)).sum())
            total += len(y)
    if total == 0:
        raise ValueError("evaluate: data is empty.")
    return correct / total


def train(model: nn.Module, data, *, epochs: int = 20, lr: float = 0.05, optimizer: str = "sgd",
          momentum: float = 0.9, weight_decay: float = 5e-4, batch_size: int = 64, seed: int = 0,
          eval_data=None, device=None, on_epoch_end=None, progress: bool = True) -> pd.DataFrame:
    """Train ``model`` in place with cross-entropy; the learning rate follows a cosine schedule from
    ``lr`` to 0 over all steps: ``lr_s = lr·(1 + cos(π·s/S))/2`` after step s of S =
    ``epochs``·batches per epoch. Shuffling uses a generator seeded by ``seed`` and the training
    runs under ``torch.manual_seed(seed)`` inside a fork of the CPU and CUDA random states
    (restored afterwards), so the same inputs give the same weights on CPU.

    ``on_epoch_end(epoch, model)``, if given, is called after each epoch (1-based, after its
    evaluation), e.g. to save snapshots for training dynamics. It runs on a forked random state,
    so random numbers drawn in it do not change the training; it must not change the model itself
    (weights, BatchNorm statistics).

    What changes, in place: the parameters with ``requires_grad`` and the BatchNorm running
    statistics; every submodule is left in eval mode (``model.eval()``), whatever mode it was in
    before. The ``requires_grad`` flags, the module structure and the model's hooks are not
    touched (its own hooks run in every forward, as in the user's loop).

    Parameters
    ----------
    model : nn.Module
        A classifier returning logits (N, classes); trained in place, on its own device.
    data : Dataset or tuple (X, y)
        The training set: a Dataset of ``(x, y)`` pairs, or inputs X and integer labels y
        (X cast to float32, y to int64).
    epochs : int
        Passes over the data (≥ 1).
    lr : float
        The initial learning rate.
    optimizer : {"sgd", "adam"}
        SGD with Nesterov momentum ``momentum``, or Adam; both with ``weight_decay``.
    momentum : float
        SGD momentum (ignored by Adam).
    weight_decay : float
        L2 penalty of the optimizer.
    batch_size : int
        The minibatch size of each optimizer step: part of the training (it changes the
        result), not a memory setting; the last batch of an epoch may be shorter.
    seed : int
        Seed of the shuffling and of the random state inside the call (dropout, ...).
    eval_data : Dataset or tuple (X, y), optional
        Evaluated with ``evaluate`` after each epoch (column ``test_accuracy``).
    device : str or torch.device, optional
        Where the batches go; default the device of the model's first parameter.
    on_epoch_end : callable, optional
        ``on_epoch_end(epoch, model)``, see above.
    progress : bool
        Show a progress bar over the epochs.

    Returns
    -------
    DataFrame
        One row per epoch: ``epoch``, ``loss`` and ``train_accuracy`` (running means over the
        epoch's batches), and ``test_accuracy`` when ``eval_data`` is given; ``attrs`` record
        ``epochs``, ``lr``, ``optimizer``, ``batch_size`` and ``seed``.

    Raises
    ------
    ValueError
        For an unknown ``optimizer``, ``epochs`` < 1, empty ``data``, or a CUDA ``device`` without a
        GPU.
    TypeError
        If ``data`` is neither a Dataset nor a tuple (X, y).

    References
    ----------
    Loshchilov & Hutter, "SGDR: Stochastic Gradient Descent with Warm Restarts", ICLR 2017 (the
    cosine schedule, here one cycle without restarts, as ``torch.optim.lr_scheduler.
    CosineAnnealingLR``).

    Examples
    --------
    A linear classifier learns the sign of the first input (classes 1 apart):

    >>> import torch
    >>> from torch import nn
    >>> from repgraph import evaluate, train
    >>> _ = torch.manual_seed(0)
    >>> X = torch.randn(64, 2)
    >>> y = (X[:, 0] > 0).long()
    >>> X[:, 0] += 2 * y - 1
    >>> model = nn.Linear(2, 2)
    >>> history = train(model, (X, y), epochs=5, lr=0.5, batch_size=16, progress=False)
    >>> list(history.columns), len(history), evaluate(model, (X, y), progress=False)
    (['epoch', 'loss', 'train_accuracy'], 5, 1.0)
    """
    if optimizer not in ("sgd", "adam"):
        raise ValueError(f"optimizer must be 'sgd' or 'adam', got {optimizer!r}.")
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}.")
    device = resolve_device(device, like=model)
    dataset = _dataset(data)
    if len(dataset) == 0:
        raise ValueError("train: data is empty; pass at least one (input, label) sample.")
    generator = torch.Generator().manual_seed(seed)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, generator=generator)
    params = [p for p in model.parameters() if p.requires_grad]
    if optimizer == "sgd":
        opt = torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=True)
    else:
        opt = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs * len(loader))
    loss_fn = nn.CrossEntropyLoss()
    history = []
    # torch.manual_seed also seeds every CUDA device: fork all of them so that no global state changes
    cuda_devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=cuda_devices):
        torch.manual_seed(seed)
        bar = tqdm(range(1, epochs + 1), desc="train", disable=not progress, leave=False)
        for epoch in bar:
            model.train()
            total_loss = correct = seen = 0.0
            for x, y in loader:
                x, y = x.to(device), y.to(device)
                opt.zero_grad(set_to_none=True)
                out = model(x)
                loss = loss_fn(out, y)
                loss.backward()
                opt.step()
                schedule.step()
                total_loss += loss.item() * len(y)
                correct += float((out.argmax(1) == y).sum())
                seen += len(y)
            row = {"epoch": epoch, "loss": total_loss / seen, "train_accuracy": correct / seen}
            if eval_data is not None:
                row["test_accuracy"] = evaluate(model, eval_data, device=device, progress=False)
            history.append(row)
            bar.set_postfix({k: round(v, 4) for k, v in row.items() if k != "epoch"})
            if on_epoch_end is not None:
                with torch.random.fork_rng(devices=cuda_devices):
                    on_epoch_end(epoch, model)
    model.eval()
    return described(pd.DataFrame(history), "training history", None, epochs=epochs, lr=lr, optimizer=optimizer,
                     batch_size=batch_size, seed=seed)
