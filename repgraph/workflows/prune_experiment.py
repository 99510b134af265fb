"""Baseline → prune → fine-tune → compare, as one table row."""
from __future__ import annotations

import copy
from typing import Callable

import pandas as pd
from torch import nn

from ..pruning import count_params_flops, evaluate, train


def prune_experiment(model: nn.Module, prune: Callable[[nn.Module], nn.Module], train_data, test_data, *,
                     example_input, finetune_epochs: int = 5, lr: float = 0.01, seed: int = 0,
                     name: str = "", progress: bool = True) -> pd.Series:
    """Measure ``model`` (test accuracy, params, FLOPs), apply ``prune`` to a deep copy of it,
    measure again, fine-tune the pruned model for ``finetune_epochs`` (inheriting its weights;
    ``train`` with a cosine schedule from ``lr``) and measure once more. ``model`` itself is not
    modified. Reductions are ``1 − after/before``.

    Parameters
    ----------
    model : nn.Module
        The trained baseline.
    prune : callable
        ``prune(model_copy) -> pruned model`` (e.g. ``lambda m: prune_filters(m, scores,
        ratio=0.5, example_input=x)`` or ``lambda m: remove_layers(m, names)``).
    train_data : Dataset or tuple (X, y)
        Fine-tuning data (``train``).
    test_data : Dataset or tuple (X, y)
        Where accuracy is measured (``evaluate``).
    example_input : tensor, array, dict or any data form of ``capture_activations``
        One input for ``count_params_flops``.
    finetune_epochs : int
        Epochs of fine-tuning; 0 skips it (then ``accuracy_finetuned`` = ``accuracy_pruned``).
    lr : float
        Initial learning rate of the fine-tuning (SGD, the defaults of ``train`` otherwise).
    seed : int
        Seed of the fine-tuning.
    name : str
        A label for the row (e.g. the criterion).
    progress : bool
        Show progress bars.

    Returns
    -------
    pandas.Series
        ``name``, ``params_before``, ``params_after``, ``params_reduction``, ``flops_before``,
        ``flops_after``, ``flops_reduction``, ``accuracy_before``, ``accuracy_pruned``,
        ``accuracy_finetuned`` and ``finetune_epochs``; ``attrs`` record ``lr`` and ``seed``.

    Raises
    ------
    TypeError
        For data that is neither a Dataset nor a tuple (X, y).
    ValueError
        For empty test data, a model with no convolution or linear layer (0 FLOPs), or whatever
        ``prune`` raises (e.g. ``prune_filters``' errors).

    References
    ----------
    Blalock et al., "What is the State of Neural Network Pruning?", MLSys 2020 (report the
    compression, the FLOPs and the accuracy before and after, of one baseline).

    Examples
    --------
    Half the filters of a conv with 8 filters: its 8·9 + 8 parameters and 8·36·9 MACs halve, and
    the classifier loses 4·2 weights and 4·2 MACs:

    >>> import torch
    >>> from torch import nn
    >>> import repgraph as rg
    >>> _ = torch.manual_seed(0)
    >>> X = torch.randn(32, 1, 8, 8)
    >>> y = (X.mean(dim=(1, 2, 3)) > 0).long()
    >>> model = nn.Sequential(nn.Conv2d(1, 8, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
    ...                       nn.Linear(8, 2))
    >>> x = X[:1]
    >>> prune = lambda m: rg.prune_filters(m, rg.l1_scores(m), ratio=0.5, example_input=x)
    >>> row = rg.prune_experiment(model, prune, (X, y), (X, y), example_input=x, finetune_epochs=1,
    ...                           progress=False)
    >>> row[["params_before", "params_after", "flops_before", "flops_after"]].tolist()
    [98, 50, 2608, 1304]
    """
    params0, flops0 = count_params_flops(model, example_input)
    if flops0 == 0:
        raise ValueError(f"{type(model).__name__} has no convolution or linear layer that runs on example_input "
                         "(0 FLOPs counted): there is nothing for filter or layer pruning to reduce.")
    acc0 = evaluate(model, test_data, progress=progress)
    pruned = prune(copy.deepcopy(model))
    params1, flops1 = count_params_flops(pruned, example_input)
    acc_pruned = evaluate(pruned, test_data, progress=progress)
    if finetune_epochs > 0:
        train(pruned, train_data, epochs=finetune_epochs, lr=lr, seed=seed, progress=progress)
    acc_ft = evaluate(pruned, test_data, progress=progress)
    row = pd.Series({"name": name, "params_before": params0, "params_after": params1,
                     "params_reduction": 1 - params1 / params0, "flops_before": flops0, "flops_after": flops1,
                     "flops_reduction": 1 - flops1 / flops0, "accuracy_before": acc0,
                     "accuracy_pruned": acc_pruned, "accuracy_finetuned": acc_ft,
                     "finetune_epochs": finetune_epochs})
    row.attrs.update({"measure": "pruning experiment: before, after pruning, after fine-tuning", "reference": None,
                      "lr": lr, "seed": seed})
    return row
