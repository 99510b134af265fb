"""SNF (searching the number of filters): how many filters each layer keeps so that the pruned
model meets a global FLOPs or parameter budget, for any criterion's filter scores."""
from __future__ import annotations

import math
import numbers
from collections.abc import Mapping

import numpy as np
import torch
from torch import nn

from .._arrays import check_ratio
from .._warnings import warn_user
from ..hooks.trace import run_with_hooks
from .filter_pruning import prune_filters
from .flops import count_params_flops
from .groups import CONV, combine_scores, coupled_convs, dependency_graph

NORMALIZE = ("max", "rank")


def _target(value, total: int, name: str) -> int:
    """An absolute budget from ``value``: an int count, or a float in (0, 1) = that fraction of ``total``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a count (int) or a fraction of the model's in (0, 1), got {value!r}.")
    if isinstance(value, numbers.Integral):
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}.")
        return int(value)
    if not 0.0 < value < 1.0:
        raise ValueError(f"{name}={value!r}: a float is a fraction of the model's {name[7:]} and must lie in "
                         "(0, 1); pass an int for an absolute count.")
    return int(math.floor(value * total))


def _batch(example_input) -> int:
    first = example_input if not isinstance(example_input, Mapping) else next(
        (v for v in example_input.values() if isinstance(v, torch.Tensor)), None)
    return first.shape[0] if isinstance(first, torch.Tensor) and first.ndim > 0 else 1


class _CostModel:
    """Params and MACs of the model as a function of each group's kept channels: every Conv/Linear's
    MACs and every parameter tensor scale with the kept fraction of the group pruning its output
    dimension and of the group pruning its input dimension (1 where none does)."""

    def __init__(self, model, example_input, groups):
        self.channels = np.array([g["channels"] for g in groups], dtype=np.float64)
        where = {}  # module -> {"out": group index, "in": group index}
        for index, group in enumerate(groups):
            for module, side in group["touches"]:
                where.setdefault(module, {})[side] = index
        macs = {}

        def hook(module, inputs, output):
            per_output = module.in_features if isinstance(module, nn.Linear) else (
                (module.in_channels // module.groups) * int(np.prod(module.kernel_size)))
            macs[module] = macs.get(module, 0) + output.numel() * per_output

        run_with_hooks(model, example_input, [(m, hook) for m in model.modules() if isinstance(m, (CONV, nn.Linear))])
        batch = _batch(example_input)
        none = len(groups)  # the index of the constant fraction 1
        flops, params = [], []
        for module in model.modules():
            sides = where.get(module, {})
            out, inp = sides.get("out", none), sides.get("in", none)
            if module in macs:
                flops.append((macs[module] / batch, out, inp))
            for p in module.parameters(recurse=False):
                # a weight (ndim >= 2) spans both dimensions; a bias or norm parameter only the output
                params.append((float(p.numel()), out, inp if p.ndim >= 2 else none))
        self.terms = {"flops": np.array(flops, dtype=np.float64).reshape(-1, 3),
                      "params": np.array(params, dtype=np.float64).reshape(-1, 3)}

    def cost(self, kind: str, dropped: np.ndarray) -> float:
        fractions = np.append((self.channels - dropped) / self.channels, 1.0)
        terms = self.terms[kind]
        index = terms[:, 1:].astype(int)
        return float(terms[:, 0] @ (fractions[index[:, 0]] * fractions[index[:, 1]]))


def snf_ratios(model: nn.Module, scores: Mapping, *, target_flops=None, target_params=None, example_input,
               max_ratio: float = 0.9, normalize: str = "max", verify: bool = True) -> dict:
    """Per-conv pruning ratios that bring the model to a FLOPs (or parameter) budget, searched filter
    by filter with each removal's cost and score: a ``ratio_dict`` for ``prune_filters``.

    The search (a greedy knapsack over the channel groups ``prune_filters`` prunes together):
    within group g the filters go lowest combined score first (``prune_filters``' order), the
    score of its next filter being u_g (``normalize="max"``: score / max ``|score|`` of the group, the
    rule ``prune_filters`` combines coupled convs by; ``"rank"``: its within-group quantile
    ``(rank + 1)/C_g``). Removing it saves ``ΔF_g = F(n) − F(n + e_g)``, F the cost of the model
    with ``n_g`` filters removed from each group, from a cost model in which every Conv/Linear's
    MACs (``count_params_flops``' definition) and every parameter scale with the kept fractions
    of the groups pruning their input and output channels. Each step removes the filter with the
    least score per unit saved, ``argmin_g u_g / ΔF_g`` (ties: the earlier group), until
    ``F ≤ target``; no group loses more than ``floor(max_ratio·C_g)`` filters. With
    ``verify=True`` the ratios are then applied with ``prune_filters`` and the true count from
    ``count_params_flops`` checked; where it is still above the target (a structure the cost model
    misses), the search goes on one filter at a time on the true counts.

    The result meets the target from below: its count is at most the target, and above it minus
    the saving of the last filter removed (one filter's cost, the granularity of the search).

    Parameters
    ----------
    model : nn.Module
        The network; not modified.
    scores : mapping
        conv name -> (C_out,) scores (any repgraph criterion, e.g. ``filter_scores``; higher =
        keep). Only the groups of scored convs are pruned.
    target_flops : int or float, optional
        The budget of multiply-accumulates per example: an int count, or a float in (0, 1), the
        fraction of the model's to keep.
    target_params : int or float, optional
        The same for the parameter count. Exactly one of the two targets is given.
    example_input : tensor or dict
        One input batch, to trace the model (and count its FLOPs).
    max_ratio : float
        The largest fraction of any group's filters removed, in (0, 1).
    normalize : {"max", "rank"}
        How scores compare across groups, see above; ``"max"`` needs scores >= 0.
    verify : bool
        Check (and if needed complete) the result on the really pruned model.

    Returns
    -------
    dict
        conv name -> ratio ``n_g / C_g`` (every scored conv, 0.0 where nothing goes); passed as
        ``ratio_dict`` to ``prune_filters`` it removes exactly ``n_g`` filters of each group.

    Raises
    ------
    ValueError
        Without exactly one target, for an unknown ``normalize``, negative scores with
        ``normalize="max"``, scores that ``prune_filters`` refuses, or a target that cannot be met
        within ``max_ratio`` (the message gives the smallest reachable count).
    TypeError
        For a target that is neither an int nor a float.

    References
    ----------
    Liu, Yue, Guo, Tao & Zhou, "SNF: Filter Pruning via Searching the Proper Number of Filters",
    arXiv:2112.07282 (2021), code github.com/pk-l/SNF: search how many filters each layer keeps for
    a FLOPs budget, then prune by a criterion. Only the abstract was findable; the greedy,
    cost-aware search above is repgraph's, faithful to the abstract's problem, not the paper's rule.

    Examples
    --------
    Conv a (2 filters) → conv b (3) → linear: 2 + 6 + 3 = 11 MACs. One filter of a saves 1 + 3
    (its own and b's input), one of b saves 2 + 1. With L1-like scores a: (1, 2), b: (2, 3, 4),
    u = 0.5 for both first filters, so a goes first (0.5/4 < 0.5/3): 7 MACs, then b's (now saving
    1 + 1): 5 MACs:

    >>> import numpy as np, torch
    >>> from torch import nn
    >>> from repgraph import snf_ratios
    >>> model = nn.Sequential(nn.Conv1d(1, 2, 1), nn.Conv1d(2, 3, 1), nn.Flatten(), nn.Linear(3, 1))
    >>> scores = {"0": np.array([1.0, 2.0]), "1": np.array([2.0, 3.0, 4.0])}
    >>> x = torch.zeros(1, 1, 1)
    >>> snf_ratios(model, scores, target_flops=8, example_input=x)
    {'0': 0.5, '1': 0.0}
    >>> {k: round(v, 4) for k, v in snf_ratios(model, scores, target_flops=6, example_input=x).items()}
    {'0': 0.5, '1': 0.3333}
    """
    if (target_flops is None) == (target_params is None):
        raise ValueError("Pass exactly one of target_flops= or target_params= (a count, or a fraction in (0, 1)).")
    if normalize not in NORMALIZE:
        raise ValueError(f"normalize must be one of {NORMALIZE}, got {normalize!r}.")
    max_ratio = check_ratio(max_ratio, name="max_ratio", allow_zero=False)
    kind = "flops" if target_flops is not None else "params"
    params0, flops0 = count_params_flops(model, example_input)
    target = _target(target_flops if kind == "flops" else target_params, flops0 if kind == "flops" else params0,
                     f"target_{kind}")
    modules = dict(model.named_modules())
    unknown = [n for n in scores if n not in modules or not isinstance(modules[n], CONV)]
    if unknown:
        raise ValueError(f"scores name {unknown}, which are not convs of the model; key scores by conv names "
                         "(see list_layers(model, x)).")
    for name, value in scores.items():
        value = np.asarray(value, dtype=np.float64)
        if value.shape != (modules[name].out_channels,) or not np.isfinite(value).all():
            raise ValueError(f"scores[{name!r}] must be {modules[name].out_channels} finite values (one per "
                             f"filter), got shape {value.shape}.")
        if normalize == "max" and (value < 0).any():
            raise ValueError(f"scores[{name!r}] has negative values; normalize='max' compares score/max|score| "
                             "across layers and needs scores >= 0. Pass normalize='rank' (within-layer "
                             "quantiles) or shift the scores.")
    names = {m: n for n, m in modules.items()}
    graph = dependency_graph(model, example_input)
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    groups = []
    for group in graph.get_all_groups(ignored_layers=linears[-1:], root_module_types=[CONV]):
        members = coupled_convs(group, names)
        scored = [m for m in members if m in scores]
        touches = []
        for dep, _ in group:
            side = {"prune_out_channels": "out", "prune_in_channels": "in"}.get(
                getattr(dep.handler, "__name__", ""))
            module = dep.target.module
            if side is not None and isinstance(module, nn.Module) and (module, side) not in touches:
                touches.append((module, side))
        channels = modules[members[0]].out_channels if members else 0
        entry = {"members": members, "scored": scored, "channels": channels, "touches": touches}
        if scored:
            combined = combine_scores([np.asarray(scores[m], dtype=np.float64) for m in scored])
            order = np.argsort(combined, kind="stable")
            if normalize == "max":
                entry["next"] = combined[order]
            else:
                entry["next"] = (np.arange(channels) + 1.0) / channels
            entry["limit"] = min(channels - 1, math.floor(round(max_ratio * channels, 9)))
        groups.append(entry)
    costs = _CostModel(model, example_input, groups)
    dropped = np.zeros(len(groups))
    active = [i for i, g in enumerate(groups) if g["scored"]]

    def step(cost_of):
        """Remove the filter with the least score per unit saved; False when none can go."""
        current = cost_of(dropped)
        best, best_key = None, None
        for i in active:
            n = int(dropped[i])
            if n >= groups[i]["limit"]:
                continue
            trial = dropped.copy()
            trial[i] += 1
            saving = current - cost_of(trial)
            if saving <= 0:
                continue
            key = groups[i]["next"][n] / saving
            if best_key is None or key < best_key:
                best, best_key = i, key
        if best is None:
            return False
        dropped[best] += 1
        return True

    model_cost = lambda d: costs.cost(kind, d)  # noqa: E731
    while model_cost(dropped) > target + 1e-9:
        if not step(model_cost):
            break

    position = {n: i for i, n in enumerate(modules)}

    def ratios():
        found = {m: float(dropped[i] / groups[i]["channels"]) for i in active for m in groups[i]["scored"]}
        return dict(sorted(found.items(), key=lambda item: position[item[0]]))

    def true_cost(d):
        saved = dropped.copy()
        dropped[:] = d
        try:
            pruned = prune_filters(model, scores, ratio_dict=ratios(), example_input=example_input)
        finally:
            dropped[:] = saved
        return float(count_params_flops(pruned, example_input)[1 if kind == "flops" else 0])

    reached = model_cost(dropped)
    if verify:
        modelled, reached = reached, true_cost(dropped)
        if reached > target and modelled <= target + 1e-9:
            warn_user(f"snf_ratios: the cost model misses part of {type(model).__name__}'s structure "
                      f"({reached:.0f} {kind} after the search, target {target}); continuing on the true counts.")
            while reached > target and step(true_cost):
                reached = true_cost(dropped)
    if reached > target:
        raise ValueError(f"target_{kind}={target} cannot be met with max_ratio={max_ratio} on the scored convs: "
                         f"the smallest reachable count is {reached:.0f}. Score more convs or raise max_ratio.")
    return ratios()
