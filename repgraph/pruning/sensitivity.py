"""Sensitivity-based layer importance (SBPF): damage one layer at a time, measure how much the loss
rises, and give the layers that matter less a larger share of a pruning budget."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.utils.data import DataLoader

from .._arrays import check_count, check_ratio, resolve_device
from .._results import described
from ..hooks.modes import evaluating
from .training import _dataset

REFERENCE = ("Lu, Gong, Zhao, Feng & Li, \"SBPF: Sensitiveness Based Pruning Framework for Convolutional "
             "Neural Network on Image Classification\", arXiv:2208.04588 (2022)")
DAMAGES = ("gaussian", "zero_fraction")
PRUNABLE = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


def _mean_loss(model, loader, loss, device) -> float:
    """``(1/N) Σ_batches n_b · loss(model(x_b), y_b)``, accumulated in float64."""
    total, seen = 0.0, 0
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        value = loss(model(x), y)
        total += float(value.detach().double()) * len(y)
        seen += len(y)
    return total / seen


def layer_sensitivity(model: nn.Module, data, *, layers=None, damage: str = "gaussian", scale: float = 0.5,
                      repeats: int = 3, seed: int = 0, loss=None, batch_size: int = 512,
                      device=None) -> pd.DataFrame:
    """How much the loss on ``data`` rises when one layer's weights are damaged, layer by layer.

    For layer l with weight W_l (its bias is left alone) and repeat r = 1..R, the damaged weight is

    * ``damage="gaussian"``: ``W̃ = W + ε``, ``ε_ij ~ N(0, (scale·ρ_l)²)`` with
      ``ρ_l = sqrt(mean(W_l²))`` the root mean square of the layer's entries, so the damage is
      relative to each layer's own scale (and nonzero for a constant layer);
    * ``damage="zero_fraction"``: ``W̃ = W ⊙ M``, M zeroing ``ceil(scale·|W_l|)`` entries drawn
      uniformly without replacement (``scale=1`` zeroes the layer);

    and ``Δ_l,r = L(W̃) − L(W)``, L the mean loss over ``data`` with every other layer intact. The
    table gives ``loss_change`` = mean_r Δ_l,r and ``std`` = their sample standard deviation (0 for
    R = 1). A large loss change marks a sensitive (important) layer. The losses are accumulated in
    float64; each damage draws from a generator seeded by ``seed`` and the layer's position, so the
    result does not depend on which other layers are measured.

    The model runs in eval mode under ``torch.no_grad()`` (BatchNorm uses its running statistics);
    each layer's weight is restored bit for bit after its measurement, and every submodule's mode
    afterwards: ``model`` is left as it was.

    Parameters
    ----------
    model : nn.Module
        A classifier (or any model ``loss`` can score).
    data : Dataset or tuple (X, y)
        The samples the loss is measured on: a Dataset of ``(x, y)`` pairs, or inputs X and integer
        labels y (X cast to float32, y to int64), as for ``train``.
    layers : list of str, optional
        Names of the layers to damage; default every Conv1d/2d/3d and Linear module, in
        registration order.
    damage : {"gaussian", "zero_fraction"}
        The kind of damage, see above.
    scale : float
        The noise level relative to ρ_l (> 0) for ``"gaussian"``; the fraction of entries zeroed,
        in (0, 1], for ``"zero_fraction"``.
    repeats : int
        Damages drawn per layer (R ≥ 1).
    seed : int
        Seed of the damage draws.
    loss : callable, optional
        ``loss(output, y) -> scalar tensor``, the mean loss of a batch; default cross-entropy.
    batch_size : int
        Samples per forward pass: memory only, the result does not depend on it (up to float
        rounding of the per-batch means).
    device : str or torch.device, optional
        Where the batches go; default the device of the model's first parameter.

    Returns
    -------
    DataFrame
        One row per layer: ``layer``, ``loss_change``, ``std``, ``filters`` (the layer's output
        channels or features, the weights ``sensitivity_ratios`` averages by); ``attrs`` record the
        baseline loss (``base_loss``), ``damage``, ``scale``, ``repeats`` and ``seed``.

    Raises
    ------
    ValueError
        For an unknown ``damage``, a ``scale`` outside its range, ``repeats`` < 1, empty ``data``,
        or a name in ``layers`` that is not a Conv or Linear module of ``model``.
    TypeError
        If ``data`` is neither a Dataset nor a tuple (X, y).

    References
    ----------
    Lu, Gong, Zhao, Feng & Li, "SBPF: Sensitiveness Based Pruning Framework for Convolutional Neural
    Network on Image Classification", arXiv:2208.04588 (2022): the importance of each layer from the
    loss of inference accuracy when extra damage is added to it, robust to imperfect training. The
    paper's exact damage was not findable (only its abstract); the two damages here are repgraph's.

    Examples
    --------
    ``out = a(x) + 0·b(x)``: damaging ``b`` cannot change the loss; zeroing ``a`` turns the outputs
    (1, 2) into (0, 0), a mean squared error of (1 + 4)/2 = 2.5:

    >>> import torch
    >>> from torch import nn
    >>> from repgraph import layer_sensitivity
    >>> class Two(nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.a, self.b = nn.Linear(1, 1, bias=False), nn.Linear(1, 1, bias=False)
    ...         nn.init.ones_(self.a.weight); nn.init.ones_(self.b.weight)
    ...     def forward(self, x):
    ...         return self.a(x) + 0 * self.b(x)
    >>> X = torch.tensor([[1.0], [2.0]])
    >>> table = layer_sensitivity(Two(), (X, X), damage="zero_fraction", scale=1.0, repeats=1,
    ...                           loss=nn.functional.mse_loss)
    >>> table[["layer", "loss_change"]].values.tolist()
    [['a', 2.5], ['b', 0.0]]
    """
    if damage not in DAMAGES:
        raise ValueError(f"damage must be one of {DAMAGES}, got {damage!r}.")
    if damage == "gaussian" and not (isinstance(scale, (int, float)) and scale > 0 and math.isfinite(scale)):
        raise ValueError(f"scale must be a positive noise level (relative to each layer's weight RMS) for "
                         f"damage='gaussian', got {scale!r}.")
    if damage == "zero_fraction" and not (isinstance(scale, (int, float)) and 0 < scale <= 1):
        raise ValueError(f"scale must be the fraction of weights to zero, in (0, 1], for "
                         f"damage='zero_fraction', got {scale!r}.")
    repeats = check_count(repeats, "repeats")
    modules = dict(model.named_modules())
    if layers is None:
        layers = [n for n, m in modules.items() if isinstance(m, PRUNABLE)]
    else:
        layers = list(layers)
        bad = [n for n in layers if not isinstance(modules.get(n), PRUNABLE)]
        if bad:
            raise ValueError(f"layers {bad} are not Conv or Linear modules of the model; pass names from "
                             "list_layers(model, x) whose modules have a weight to damage.")
    device = resolve_device(device, like=model)
    dataset = _dataset(data)
    if len(dataset) == 0:
        raise ValueError("layer_sensitivity: data is empty; pass at least one (input, label) sample.")
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False)
    loss = nn.functional.cross_entropy if loss is None else loss
    order = {n: i for i, n in enumerate(modules)}
    rows = []
    with evaluating(model), torch.no_grad():
        base = _mean_loss(model, loader, loss, device)
        for name in layers:
            weight = modules[name].weight
            original = weight.detach().clone()
            generator = torch.Generator().manual_seed(int(seed) * 1_000_003 + order[name])
            changes = []
            try:
                for _ in range(repeats):
                    if damage == "gaussian":
                        sigma = float(original.double().pow(2).mean().sqrt())
                        noise = torch.randn(original.shape, generator=generator, dtype=torch.float64)
                        weight.copy_((original.double() + scale * sigma * noise.to(original.device)).to(weight.dtype))
                    else:
                        n_zero = math.ceil(round(scale * original.numel(), 9))
                        drop = torch.randperm(original.numel(), generator=generator)[:n_zero]
                        damaged = original.clone().reshape(-1)
                        damaged[drop.to(original.device)] = 0
                        weight.copy_(damaged.reshape(original.shape))
                    changes.append(_mean_loss(model, loader, loss, device) - base)
            finally:
                weight.copy_(original)
            module = modules[name]
            filters = module.out_channels if hasattr(module, "out_channels") else module.out_features
            rows.append({"layer": name, "loss_change": float(np.mean(changes)),
                         "std": float(np.std(changes, ddof=1)) if repeats > 1 else 0.0, "filters": int(filters)})
    frame = pd.DataFrame(rows, columns=["layer", "loss_change", "std", "filters"])
    return described(frame, "loss change under damage", REFERENCE, base_loss=base, damage=damage, scale=scale,
                     repeats=repeats, seed=seed)


def sensitivity_ratios(sensitivity, target_ratio: float, *, min_ratio: float = 0.0,
                       max_ratio: float = 0.9) -> dict:
    """Per-layer pruning ratios from layer sensitivities: each layer keeps a share of its filters
    proportional to its sensitivity, and the filter-weighted mean ratio equals ``target_ratio``.

    With s_l the loss change of layer l (``layer_sensitivity``) and C_l its filter count,

        ``r_l(λ) = clip(1 − λ·s_l, min_ratio, max_ratio)``,

    and λ ≥ 0 is the one value with ``Σ_l C_l·r_l(λ) / Σ_l C_l = target_ratio`` (found by
    bisection in float64; the mean is continuous and non-increasing in λ). A layer whose damage
    raised the loss most keeps the most filters; one whose damage did not raise it (s_l ≤ 0) gets
    ``max_ratio``. ``prune_filters`` removes ``ceil(C_l·r_l)`` filters, so the counts it removes
    average at least the target.

    Parameters
    ----------
    sensitivity : DataFrame
        ``layer_sensitivity``'s table: columns ``layer``, ``loss_change`` and ``filters``.
    target_ratio : float
        The filter-weighted mean ratio, in [min_ratio, max_ratio].
    min_ratio, max_ratio : float
        Bounds of every layer's ratio, 0 ≤ min_ratio ≤ max_ratio < 1.

    Returns
    -------
    dict
        layer name -> ratio, a ``ratio_dict`` for ``prune_filters``.

    Raises
    ------
    ValueError
        For missing columns, NaN sensitivities, non-positive filter counts, bounds out of order,
        or a target that the bounds (and the layers with s_l ≤ 0, which sit at ``max_ratio``)
        cannot reach.

    References
    ----------
    Lu, Gong, Zhao, Feng & Li, "SBPF: Sensitiveness Based Pruning Framework for Convolutional Neural
    Network on Image Classification", arXiv:2208.04588 (2022): filters are removed from each layer
    in proportion to its quantified sensitiveness. The paper's formula was not findable (only its
    abstract); the linear rule above, kept fraction ∝ sensitivity, is repgraph's reading of it.

    Examples
    --------
    Sensitivities 2 and 1 with 10 and 30 filters: ``(10·(1 − 2λ) + 30·(1 − λ))/40 = 0.5`` gives
    λ = 0.4, so the ratios are 0.2 and 0.6:

    >>> import pandas as pd
    >>> from repgraph import sensitivity_ratios
    >>> table = pd.DataFrame({"layer": ["a", "b"], "loss_change": [2.0, 1.0], "filters": [10, 30]})
    >>> {k: round(v, 12) for k, v in sensitivity_ratios(table, 0.5).items()}
    {'a': 0.2, 'b': 0.6}
    """
    if not isinstance(sensitivity, pd.DataFrame) or not {"layer", "loss_change", "filters"} <= set(sensitivity):
        raise ValueError("sensitivity must be layer_sensitivity's DataFrame, with columns 'layer', "
                         "'loss_change' and 'filters'.")
    min_ratio = check_ratio(min_ratio, name="min_ratio")
    max_ratio = check_ratio(max_ratio, name="max_ratio")
    if min_ratio > max_ratio:
        raise ValueError(f"min_ratio={min_ratio} exceeds max_ratio={max_ratio}; pass min_ratio <= max_ratio.")
    target_ratio = check_ratio(target_ratio, name="target_ratio")
    s = sensitivity["loss_change"].to_numpy(dtype=np.float64)
    counts = sensitivity["filters"].to_numpy(dtype=np.float64)
    if not np.isfinite(s).all():
        raise ValueError("sensitivity['loss_change'] contains NaN or Inf; measure every layer again.")
    if len(s) == 0 or (counts <= 0).any():
        raise ValueError("sensitivity needs at least one layer, each with filters >= 1.")
    weights = counts / counts.sum()

    def mean(lam):
        return float(weights @ np.clip(1.0 - lam * s, min_ratio, max_ratio))

    floor = float(weights @ np.where(s > 0, min_ratio, max_ratio))  # the mean as λ → ∞
    if not floor - 1e-12 <= target_ratio <= max_ratio + 1e-12:
        raise ValueError(f"target_ratio={target_ratio} is out of reach: with min_ratio={min_ratio}, "
                         f"max_ratio={max_ratio} (and the layers whose damage did not raise the loss at "
                         f"max_ratio) the mean ratio lies in [{floor:.6g}, {max_ratio}]. Change the bounds "
                         "or the target.")
    low, high = 0.0, 1.0
    positive = s[s > 0]
    if len(positive):
        high = (1.0 - min_ratio) / positive.min() + 1.0  # every positive layer at min_ratio beyond this
    for _ in range(200):
        middle = 0.5 * (low + high)
        if mean(middle) > target_ratio:
            low = middle
        else:
            high = middle
    lam = 0.5 * (low + high)
    ratios = np.clip(1.0 - lam * s, min_ratio, max_ratio)
    return {str(name): float(r) for name, r in zip(sensitivity["layer"], ratios)}

