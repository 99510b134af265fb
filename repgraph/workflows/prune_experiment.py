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
    """Measure ``model`` (test accuracy, params, FLOPs), apply ``prune`` (a function returning a new,
    smaller model), measure again, fine-tune a copy of the pruned model for ``finetune_epochs``
    (inheriting its weights; cosine schedule from ``lr``) and measure once more. Returns one row:
    name, params/flops before and after, their reductions, accuracy before, after pruning and after
    fine-tuning. ``model`` itself is not modified."""
    params0, flops0 = count_params_flops(model, example_input)
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
