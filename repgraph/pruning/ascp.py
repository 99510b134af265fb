"""Asymptotic soft cluster pruning (ASCP; Niu, Teng & Zou, arXiv 2206.08186): cluster each conv's
filters, pull every cluster toward its centre during training with a strength that grows
asymptotically to 1, then merge each cluster into one filter by channel addition in the next
layer."""
from __future__ import annotations

import copy
import math
from collections.abc import Mapping

import numpy as np
import torch
import torch_pruning as tp
from torch import nn

from .._arrays import prune_count
from ..analyzers.central_filters import CentralFilters
from ..hooks.trace import conv_bn_pairs
from .filter_pruning import prune_filters
from .groups import CONV, coupled_convs, dependency_graph

KINDS = ("exponential", "linear", "constant")
BN_TENSORS = ("weight", "bias", "running_mean", "running_var")


def _convs(model: nn.Module, layers) -> dict:
    modules = dict(model.named_modules())
    if layers is None:
        return {n: m for n, m in modules.items() if isinstance(m, CONV) and not isinstance(
            m, nn.modules.conv._ConvTransposeNd)}
    layers = [layers] if isinstance(layers, str) else list(layers)
    bad = [n for n in layers if not isinstance(modules.get(n), CONV)]
    if bad:
        raise ValueError(f"layers {bad} are not convolutions of the model; pass conv names from "
                         "list_layers(model, x).")
    return {n: modules[n] for n in layers}


def _kmeans(X: np.ndarray, k: int, rng: np.random.Generator, max_iter: int) -> np.ndarray:
    """Lloyd's k-means with k-means++ seeding on the rows of X (float64); the assignment."""
    n = len(X)
    chosen = [int(rng.integers(n))]
    for _ in range(1, k):
        d2 = np.min([((X - X[c]) ** 2).sum(1) for c in chosen], axis=0)
        total = d2.sum()
        # identical filters everywhere: the lowest index not yet a centre
        pick = int(rng.choice(n, p=d2 / total)) if total > 0 else min(set(range(n)) - set(chosen))
        chosen.append(pick)
    C = X[chosen]
    assign = None
    for _ in range(max_iter):
        d2 = ((X[:, None, :] - C[None, :, :]) ** 2).sum(-1)
        new = d2.argmin(1)
        for j in range(k):  # an empty cluster takes the point farthest from its centre
            if not (new == j).any():
                far = d2[np.arange(n), new].argmax()
                new[far] = j
                d2[far] = 0.0
        if assign is not None and (new == assign).all():
            break
        assign = new
        C = np.array([X[assign == j].mean(0) for j in range(k)])
    return assign


def ascp_clusters(model: nn.Module, ratio: float, *, layers=None, seed: int = 0, max_iter: int = 100) -> dict:
    """The filter clusters of ASCP: k-means on each conv's flattened filters, with
    ``k = C − ceil(C·ratio)`` clusters so that merging each cluster into one filter removes
    ``ceil(C·ratio)`` of the C filters.

    Each filter ``W_i`` (its weight flattened, in float64) is a point; k-means++ seeding from a
    generator seeded by ``seed``, then Lloyd iterations (assign each filter to the nearest centre
    in Euclidean distance, centres = means) until the assignment is stable or ``max_iter``. An
    empty cluster takes the filter farthest from its centre.

    Parameters
    ----------
    model : nn.Module
        Read only.
    ratio : float
        Fraction in [0, 1) of each layer's filters to remove by merging.
    layers : list of str, optional
        The convs to cluster; default every Conv1d/2d/3d. To merge them later (``ascp_merge``)
        their output channels must feed convs or Linear layers only, not a residual addition
        (``uncoupled_convs(model, x)``).
    seed : int
        Seed of the k-means++ seeding.
    max_iter : int
        The most Lloyd iterations.

    Returns
    -------
    dict
        conv name -> list of clusters, each a sorted list of filter indices, ordered by their
        first index; together they partition ``range(C)``.

    Raises
    ------
    ValueError
        For a ratio outside [0, 1) or one that would remove every filter (``ceil(C·ratio) = C``),
        ``max_iter`` < 1, or an unknown layer.

    References
    ----------
    Niu, Teng & Zou, "Asymptotic Soft Cluster Pruning for Deep Neural Networks", arXiv 2206.08186
    (2022): filters distinguished by clustering on their similarity. Only the abstract was
    available here; the paper's clustering guidelines are not reproduced, k-means on the
    weights is repgraph's choice.

    Examples
    --------
    Five filters of two weights: two near (1, 0), two near (0, 1) and one apart; removing
    ``ceil(5·0.4) = 2`` leaves three clusters:

    >>> import torch
    >>> from torch import nn
    >>> from repgraph import ascp_clusters
    >>> conv = nn.Conv1d(1, 5, 2, bias=False)
    >>> with torch.no_grad():
    ...     _ = conv.weight.copy_(torch.tensor([[[1.0, 0]], [[1.1, 0]], [[0, 1.0]], [[0, 1.1]], [[5.0, 5]]]))
    >>> ascp_clusters(nn.Sequential(conv), 0.4)
    {'0': [[0, 1], [2, 3], [4]]}
    """
    if isinstance(max_iter, bool) or not isinstance(max_iter, int) or max_iter < 1:
        raise ValueError(f"max_iter must be an integer >= 1, got {max_iter!r}.")
    found = {}
    for name, conv in _convs(model, layers).items():
        C = conv.out_channels
        k = C - prune_count(C, ratio, name=f"ratio (for {name!r}, {C} filters)")
        X = conv.weight.detach().cpu().double().reshape(C, -1).numpy()
        rng = np.random.default_rng(seed)
        assign = np.arange(C) if k == C else _kmeans(X, k, rng, max_iter)
        clusters = [sorted(np.flatnonzero(assign == j).tolist()) for j in np.unique(assign)]
        found[name] = sorted(clusters, key=lambda c: c[0])
    return found


def ascp_schedule(epoch: int, epochs: int, *, final: float = 1.0, k: float = 4.0, kind: str = "exponential") -> float:
    """The pull strength α_e of ASCP's asymptotic schedule at ``epoch`` e of E = ``epochs``.

    ``exponential`` (default): ``α_e = final · (1 − exp(−k·e/E)) / (1 − exp(−k))``, so α_0 = 0 and
    α_E = ``final``, fast at first and levelling off: the remaining share of each filter's distance
    to its cluster centre decays exponentially, as the asymptotic pruning rate of ASFP
    (``P_e = a·exp(−k·e) + b``). ``linear``: ``final · e/E``. ``constant``: ``final`` at every
    epoch (hard reconstruction when ``final = 1``).

    Parameters
    ----------
    epoch : int
        e, in 0..E.
    epochs : int
        E ≥ 1, the epochs of the pruning phase.
    final : float
        α_E in (0, 1]; 1 makes every cluster's filters identical at the last epoch, so the merge
        is exact.
    k : float
        The rate of the exponential schedule (> 0).
    kind : {"exponential", "linear", "constant"}
        The schedule.

    Returns
    -------
    float
        α_e in [0, final].

    Raises
    ------
    ValueError
        For an epoch outside 0..E, E < 1, ``final`` outside (0, 1], ``k`` ≤ 0 or an unknown ``kind``.

    References
    ----------
    Niu, Teng & Zou, "Asymptotic Soft Cluster Pruning for Deep Neural Networks", arXiv 2206.08186
    (2022) (decaying strategies of the pruning rate; from the abstract, the exact schedules are
    not reproduced); He, Dong, Kang, Fu, Yan & Yang, "Asymptotic Soft Filter Pruning for Deep
    Convolutional Neural Networks", IEEE T-Cybernetics 2019 (the exponential asymptotic schedule).

    Examples
    --------
    With k = 4·ln 2 and E = 4, ``exp(−k·e/E) = 2^−e``: α_1 = (1 − 1/2)/(1 − 1/16) = 8/15:

    >>> import math
    >>> from repgraph import ascp_schedule
    >>> [round(ascp_schedule(e, 4, k=4 * math.log(2)), 4) for e in (0, 1, 2, 4)]
    [0.0, 0.5333, 0.8, 1.0]
    """
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be an integer >= 1, got {epochs!r}.")
    if isinstance(epoch, bool) or not isinstance(epoch, (int, np.integer)) or not 0 <= epoch <= epochs:
        raise ValueError(f"epoch must be an integer in 0..{epochs} (epochs), got {epoch!r}.")
    if not (isinstance(final, (int, float)) and 0 < final <= 1):
        raise ValueError(f"final must be in (0, 1] (the pull strength at the last epoch), got {final!r}.")
    if not (isinstance(k, (int, float)) and math.isfinite(k) and k > 0):
        raise ValueError(f"k must be a number > 0 (the rate of the exponential schedule), got {k!r}.")
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}.")
    if kind == "constant":
        return float(final)
    if kind == "linear":
        return float(final * epoch / epochs)
    return float(final * (1.0 - math.exp(-k * epoch / epochs)) / (1.0 - math.exp(-k)))


def _check_clusters(model: nn.Module, clusters) -> dict:
    if not isinstance(clusters, Mapping) or not clusters:
        raise TypeError(f"clusters must be a non-empty dict conv name -> list of clusters (ascp_clusters), got "
                        f"{type(clusters).__name__}.")
    convs = _convs(model, list(clusters))
    checked = {}
    for name, groups in clusters.items():
        groups = [sorted(int(i) for i in g) for g in groups]
        flat = sorted(i for g in groups for i in g)
        C = convs[name].out_channels
        if flat != list(range(C)) or any(not g for g in groups):
            raise ValueError(f"clusters[{name!r}] must partition the {C} filters 0..{C - 1} into non-empty clusters "
                             "(each filter in exactly one); use ascp_clusters(model, ratio).")
        checked[name] = groups
    return checked


def _bn_of(model: nn.Module, example_input) -> dict:
    if example_input is None:
        return {}
    modules = dict(model.named_modules())
    return {conv: modules[bn] for conv, bn in conv_bn_pairs(model, example_input)}


def _cluster_tensors(conv: nn.Module, bn) -> list[torch.Tensor]:
    """The per-filter tensors a cluster's filters must share: the conv's weight and bias, and the
    BatchNorm's affine parameters and running statistics that follow it."""
    tensors = [conv.weight] + ([conv.bias] if conv.bias is not None else [])
    if bn is not None:
        tensors += [t for t in (getattr(bn, a, None) for a in BN_TENSORS) if isinstance(t, torch.Tensor)]
    return tensors


def _pull(convs: dict, bns: dict, clusters: dict, alpha: float) -> None:
    """``t_i ← t_i + α·(mean_{j ∈ cluster} t_j − t_i)`` for every filter's tensors (float64 mean)."""
    with torch.no_grad():
        for name, groups in clusters.items():
            for t in _cluster_tensors(convs[name], bns.get(name)):
                for group in groups:
                    if len(group) < 2:
                        continue
                    idx = torch.tensor(group, device=t.device)
                    rows = t.index_select(0, idx)
                    centre = rows.double().mean(0, keepdim=True)
                    t.index_copy_(0, idx, (rows.double() + alpha * (centre - rows.double())).to(t.dtype))


class AscpRegulariser:
    """ASCP's soft reconstruction, applied once per epoch: ``reg(epoch)`` pulls every cluster's
    filters toward their centre by the schedule's strength, ``W_i ← W_i + α_e·(c − W_i)`` with
    ``c = mean_{j ∈ cluster} W_j`` and ``α_e = ascp_schedule(epoch, epochs, …)``, in place.

    The filters keep training between the pulls (soft: a filter that was clustered wrongly can
    move away again); with ``final = 1`` the last epoch makes each cluster's filters identical,
    and ``ascp_merge`` then removes them without changing the network's function. The pull covers
    each filter's weight and bias and, when ``example_input`` is given, the BatchNorm that follows
    its conv (affine parameters and running statistics), which must match too for the merged
    channels to be equal. ``recluster`` re-runs ``ascp_clusters`` before each pull (the number of
    clusters stays); ``clusters`` holds the current ones. Call it after each epoch of the user's
    loop (``train``'s ``on_epoch_end`` must not change the model: train one epoch at a time).

    Parameters
    ----------
    model : nn.Module
        The network being trained; changed in place by each call.
    clusters : dict
        conv name -> list of clusters (``ascp_clusters``).
    epochs : int
        E, the epochs of the pruning phase (the schedule reaches ``final`` at E).
    final : float
        α_E in (0, 1].
    k : float
        Rate of the exponential schedule.
    kind : {"exponential", "linear", "constant"}
        The schedule (``ascp_schedule``).
    example_input : tensor or array, optional
        One input batch, to find the conv → BatchNorm pairs (needed for BN models).
    recluster : bool
        Recompute the clusters from the current filters before each pull.
    seed : int
        Seed of the re-clustering.

    References
    ----------
    Niu, Teng & Zou, "Asymptotic Soft Cluster Pruning for Deep Neural Networks", arXiv 2206.08186
    (2022) (reconstruction toward the clusters, filters still updated, decaying schedule); from the
    abstract: the pull ``α_e(c − W_i)`` is repgraph's form of the reconstruction.

    Examples
    --------
    Two filters (0, 0) and (2, 2) in one cluster, centre (1, 1); a constant strength of 0.25:

    >>> import torch
    >>> from torch import nn
    >>> from repgraph import AscpRegulariser
    >>> model = nn.Sequential(nn.Conv1d(1, 2, 2, bias=False))
    >>> with torch.no_grad():
    ...     _ = model[0].weight.copy_(torch.tensor([[[0.0, 0.0]], [[2.0, 2.0]]]))
    >>> reg = AscpRegulariser(model, {"0": [[0, 1]]}, epochs=3, final=0.25, kind="constant")
    >>> reg(1)
    0.25
    >>> model[0].weight.flatten().tolist()
    [0.25, 0.25, 1.75, 1.75]
    """

    def __init__(self, model: nn.Module, clusters: dict, epochs: int, *, final: float = 1.0, k: float = 4.0,
                 kind: str = "exponential", example_input=None, recluster: bool = False, seed: int = 0):
        ascp_schedule(0, epochs, final=final, k=k, kind=kind)  # checks the settings now
        self.model, self.clusters = model, _check_clusters(model, clusters)
        self.epochs, self.final, self.k, self.kind = epochs, final, k, kind
        self.recluster, self.seed = recluster, seed
        self._convs = _convs(model, list(self.clusters))
        self._bns = _bn_of(model, example_input)

    def __call__(self, epoch: int) -> float:
        alpha = ascp_schedule(epoch, self.epochs, final=self.final, k=self.k, kind=self.kind)
        if self.recluster:
            for name, groups in list(self.clusters.items()):
                C = self._convs[name].out_channels
                ratio = (C - len(groups)) / C
                fresh = ascp_clusters(self.model, ratio, layers=[name], seed=self.seed)[name]
                if len(fresh) == len(groups):
                    self.clusters[name] = fresh
        _pull(self._convs, self._bns, self.clusters, alpha)
        return alpha

    def __repr__(self):
        sizes = {n: len(g) for n, g in self.clusters.items()}
        return f"AscpRegulariser(clusters per layer={sizes}, epochs={self.epochs}, kind={self.kind!r})"


def _consumers(graph, conv: nn.Module, name: str, names: dict) -> list:
    """(module, kind) of the layers whose input channels are ``conv``'s output channels; refuses
    couplings where channel addition is undefined."""
    group = graph.get_pruning_group(conv, tp.prune_conv_out_channels, idxs=list(range(conv.out_channels)))
    members = coupled_convs(group, names)
    if len(members) > 1:
        raise ValueError(f"clusters[{name!r}]: its channels are coupled with {members} by a residual addition, "
                         "where merging a cluster by channel addition is undefined; cluster only "
                         "uncoupled_convs(model, x).")
    found = []
    for dep, _ in group:
        module, handler = dep.target.module, dep.handler
        if handler == tp.prune_conv_in_channels and isinstance(module, CONV):
            if module.groups != 1:
                raise ValueError(f"clusters[{name!r}]: it feeds the grouped conv {names.get(module)!r} "
                                 f"(groups={module.groups}), where input channels cannot be summed.")
            found.append((module, "conv"))
        elif handler == tp.prune_linear_in_channels and isinstance(module, nn.Linear):
            if module.in_features % conv.out_channels:
                raise ValueError(f"clusters[{name!r}]: the Linear {names.get(module)!r} has {module.in_features} "
                                 f"inputs, not a multiple of the {conv.out_channels} channels; cannot merge.")
            found.append((module, "linear"))
        elif "in_channels" in getattr(handler, "__name__", "") and module is not conv:
            raise ValueError(f"clusters[{name!r}]: its channels feed {type(module).__name__} "
                             f"{names.get(module)!r}, which ascp_merge cannot compensate.")
    if not found:
        raise ValueError(f"clusters[{name!r}]: no conv or Linear consumes its channels; nothing to add merged "
                         "channels onto.")
    return found


def ascp_merge(model: nn.Module, clusters: dict, example_input) -> nn.Module:
    """A smaller copy of ``model`` with each cluster of filters merged into one: ASCP's channel
    addition.

    For each cluster K of a conv with representative r = min K: the representative's filter
    (weight, bias and the following BatchNorm's parameters and statistics) is set to the
    cluster's mean, the next layer's input channels of the cluster are added onto r's,
    ``W′[:, r] += Σ_{k ∈ K∖{r}} W′[:, k]`` (conv consumers; for a Linear after a flatten, the
    block of ``in_features/C`` inputs of each channel), and the other filters are removed with
    their channels (Torch-Pruning, ``prune_filters``). When the filters of each cluster are
    identical, their post-ReLU maps are identical and the merged network computes the same
    function (up to the order of float additions); after ``AscpRegulariser`` with ``final = 1``
    they are. ``model`` is untouched.

    Parameters
    ----------
    model : nn.Module
        The network; not modified.
    clusters : dict
        conv name -> list of clusters (``ascp_clusters``); each conv must feed only convs
        (groups = 1) or Linear layers, not a residual addition.
    example_input : tensor, array or any data form of ``capture_activations``
        One input batch, to trace the dependencies and the conv → BatchNorm pairs.

    Returns
    -------
    nn.Module
        The merged copy: each clustered conv has one filter per cluster.

    Raises
    ------
    TypeError
        If ``clusters`` is not a non-empty dict.
    ValueError
        For an unknown conv, clusters that do not partition its filters, a conv coupled by a
        residual addition or feeding a layer whose inputs cannot be summed, or a model
        Torch-Pruning cannot trace.

    References
    ----------
    Niu, Teng & Zou, "Asymptotic Soft Cluster Pruning for Deep Neural Networks", arXiv 2206.08186
    (2022) (removing identical filters by channel addition); Duan et al., "Network Compression via
    Central Filter", arXiv 2112.05493, §3.3 (the same compensation of the next layer).

    Examples
    --------
    Filters 0 and 2 of the first conv are identical; merging them leaves two filters and the
    same outputs:

    >>> import torch
    >>> from torch import nn
    >>> from repgraph import ascp_merge
    >>> _ = torch.manual_seed(0)
    >>> model = nn.Sequential(nn.Conv1d(1, 3, 3), nn.ReLU(), nn.Conv1d(3, 2, 3))
    >>> with torch.no_grad():
    ...     _ = model[0].weight[2].copy_(model[0].weight[0])
    ...     _ = model[0].bias[2].copy_(model[0].bias[0])
    >>> x = torch.randn(4, 1, 10)
    >>> merged = ascp_merge(model, {"0": [[0, 2], [1]]}, x)
    >>> merged[0].out_channels, torch.allclose(merged(x), model(x), atol=1e-6)
    (2, True)
    """
    checked = _check_clusters(model, clusters)
    work = copy.deepcopy(model)
    convs = _convs(work, list(checked))
    bns = _bn_of(work, example_input)
    names = {m: n for n, m in work.named_modules()}
    graph = dependency_graph(work, example_input)
    plans = {name: _consumers(graph, convs[name], name, names) for name in checked}
    with torch.no_grad():
        for name, groups in checked.items():
            C = convs[name].out_channels
            for t in _cluster_tensors(convs[name], bns.get(name)):  # representative := cluster mean
                for group in groups:
                    t[group[0]] = t[group].double().mean(0).to(t.dtype)
            for module, kind in plans[name]:
                W = module.weight
                block = 1 if kind == "conv" else module.in_features // C
                for group in groups:
                    r = group[0]
                    for other in group[1:]:
                        W[:, r * block:(r + 1) * block] += W[:, other * block:(other + 1) * block]
    selections = {}
    for name, groups in checked.items():
        C = convs[name].out_channels
        kept = sorted(g[0] for g in groups)
        pruned = sorted(i for g in groups for i in g[1:])
        if pruned:
            selections[name] = CentralFilters(kept=kept, pruned=pruned, delegates={}, threshold=float("nan"),
                                              scores=np.zeros(C), requested=len(pruned))
    if not selections:
        return work
    return prune_filters(work, selections, example_input=example_input)
