"""The spline (max-affine spline operator) view of pruning: a criterion from the partition
boundaries of each unit, and early-bird detection from the distance between consecutive masks."""
from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import nn

from .._arrays import check_count, check_ratio
from ..hooks.trace import conv_bn_pairs, run_with_hooks
from .lottery import PRUNABLE, magnitude_masks

CRITERIA = ("bn", "magnitude", "partition")


def _hyperplanes(module: nn.Module, bn: nn.Module | None) -> tuple[np.ndarray, np.ndarray]:
    """(w, b) of every output unit's boundary ``⟨w_k, x⟩ + b_k = 0`` (w flattened over the unit's
    inputs), the BatchNorm that follows folded into b."""
    w = module.weight.detach().cpu().to(torch.float64).reshape(module.weight.shape[0], -1).numpy()
    b = (module.bias.detach().cpu().to(torch.float64).numpy() if module.bias is not None
         else np.zeros(w.shape[0]))
    if bn is not None:
        gamma = bn.weight.detach().cpu().to(torch.float64).numpy() if bn.weight is not None else np.ones(w.shape[0])
        beta = bn.bias.detach().cpu().to(torch.float64).numpy() if bn.bias is not None else np.zeros(w.shape[0])
        mean = bn.running_mean.detach().cpu().to(torch.float64).numpy()
        std = np.sqrt(bn.running_var.detach().cpu().to(torch.float64).numpy() + bn.eps)
        with np.errstate(divide="ignore", invalid="ignore"):
            # γ(z − μ)/σ + β = 0  ⇔  z = μ − βσ/γ: the boundary ⟨w, x⟩ + b − μ + βσ/γ = 0
            b = b - mean + beta * std / gamma
        w = np.where((gamma == 0)[:, None], 0.0, w)  # γ = 0: a constant unit draws no boundary
        b = np.where(gamma == 0, 0.0, b)
    return w, b


def _nearest_boundary(w: np.ndarray, b: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(w, axis=1)
    alive = norms > 0
    scores = np.zeros(len(w))
    h = np.zeros((len(w), w.shape[1] + 1))
    h[alive] = np.concatenate([w[alive], b[alive, None]], axis=1) / norms[alive, None]
    if alive.sum() < 2:
        scores[alive] = np.inf
        return scores
    idx = np.flatnonzero(alive)
    sub = h[idx]
    sq = (sub ** 2).sum(1)
    gram = sub @ sub.T
    minus = np.sqrt(np.maximum(sq[:, None] + sq[None, :] - 2 * gram, 0.0))
    plus = np.sqrt(np.maximum(sq[:, None] + sq[None, :] + 2 * gram, 0.0))
    dist = np.minimum(minus, plus)
    np.fill_diagonal(dist, np.inf)
    scores[idx] = dist.min(axis=1)
    return scores


def spline_scores(model: nn.Module, *, layers=None, example_input=None) -> dict:
    """Spline (partition-boundary) redundancy of every output unit: how far its boundary lies from
    the nearest boundary of another unit of the same layer. Low = redundant = pruned first.

    In the max-affine spline view a unit k followed by a ReLU splits its layer's input space
    along the hyperplane ``H_k = {x : ⟨w_k, x⟩ + b_k = 0}`` (for a conv, x is one input patch and
    w_k the flattened filter). A BatchNorm after the conv moves it: ``γ(z − μ)/σ + β = 0`` at
    ``z = μ − βσ/γ``, so ``b_k ← b_k − μ_k + β_k σ_k/γ_k`` with ``σ_k = sqrt(var_k + ε)`` (running
    statistics). Each boundary is normalised, ``h_k = (w_k, b_k)/‖w_k‖`` (the same hyperplane
    for any positive scaling), and

    ``d(k, k′) = min(‖h_k − h_k′‖, ‖h_k + h_k′‖)``  (H_k and −H_k are the same boundary),
    ``score_k = min_{k′ ≠ k} d(k, k′)``.

    A unit that draws no boundary (``w_k = 0``, or ``γ_k = 0`` after its BatchNorm) scores 0; the only
    unit of its layer that draws one scores ``inf``. Two units sharing a boundary both score 0: the
    score ranks redundancy, it does not say which one of a pair to keep.

    Parameters
    ----------
    model : nn.Module
        Read only.
    layers : list of str, optional
        The Conv/Linear layers scored; default every Conv1d/2d/3d and Linear but the last (whose
        boundaries are the decision boundaries, not a partition a ReLU draws).
    example_input : tensor, optional
        One input batch; when given, the BatchNorm that takes each conv's output (traced by one
        forward, ``conv_bn_pairs``) is folded into the boundary. Without it BatchNorms are
        ignored.

    Returns
    -------
    dict
        layer name -> float64 array of one score per output unit (channel or neuron).

    Raises
    ------
    ValueError
        For a name in ``layers`` that is not a Conv/Linear module.

    References
    ----------
    You, Balestriero, Lu, Kou, Shi, Zhang, Wu, Lin & Baraniuk, "Max-Affine Spline Insights Into
    Deep Network Pruning", TMLR 2022 (arXiv:2101.02338): prune "groups of nodes that have a
    redundant contribution in the forming of the spline partition"; Balestriero & Baraniuk,
    "A Spline Theory of Deep Networks", ICML 2018 (units as max-affine splines, their
    boundaries as hyperplanes). Only the abstract and the authors' code (github.com/GATECH-EIC/Spline-EB,
    which holds the early-bird detection but not the criterion) were available: the distance and
    the nearest-boundary score above are repgraph's reading of "redundant contribution", not
    the paper's formula.

    Examples
    --------
    Units 0 and 1 draw the same line (x₁ = 1, unit 1 scaled by 2); unit 2 draws x₂ = 0, at
    distance ‖(1, 0, −1) − (0, 1, 0)‖ = √3 from them:

    >>> import torch
    >>> from torch import nn
    >>> from repgraph.pruning import spline_scores
    >>> layer = nn.Linear(2, 3)
    >>> with torch.no_grad():
    ...     _ = layer.weight.copy_(torch.tensor([[1.0, 0.0], [2.0, 0.0], [0.0, 1.0]]))
    ...     _ = layer.bias.copy_(torch.tensor([-1.0, -2.0, 0.0]))
    >>> model = nn.Sequential(layer, nn.ReLU(), nn.Linear(3, 1))
    >>> [round(float(s), 4) for s in spline_scores(model)["0"]]
    [0.0, 0.0, 1.7321]
    """
    modules = dict(model.named_modules())
    if layers is None:
        prunable = [n for n, m in modules.items() if isinstance(m, PRUNABLE)]
        names = prunable[:-1]
    else:
        names = [layers] if isinstance(layers, str) else list(layers)
        bad = [n for n in names if not isinstance(modules.get(n), PRUNABLE)]
        if bad:
            raise ValueError(f"layers {bad} are not Conv1d/2d/3d or Linear modules of the model; pass names "
                             "from model.named_modules().")
    bns = dict(conv_bn_pairs(model, example_input)) if example_input is not None else {}
    return {n: _nearest_boundary(*_hyperplanes(modules[n], modules[bns[n]] if n in bns else None)) for n in names}


def _flat(mask, where: str) -> torch.Tensor:
    if isinstance(mask, Mapping):
        if not mask:
            raise ValueError(f"{where} is an empty dict; pass masks with at least one layer.")
        return torch.cat([torch.as_tensor(np.asarray(mask[k]) if not isinstance(mask[k], torch.Tensor) else mask[k])
                          .detach().cpu().to(torch.bool).reshape(-1) for k in sorted(mask)])
    tensor = mask if isinstance(mask, torch.Tensor) else torch.as_tensor(np.asarray(mask))
    return tensor.detach().cpu().to(torch.bool).reshape(-1)


def _keys(mask):
    return sorted(mask) if isinstance(mask, Mapping) else None


def mask_distance(a, b) -> float:
    """Normalised Hamming distance between two masks: the fraction of entries where they differ,
    ``(1/N) Σ_i [a_i ≠ b_i]``, pooled over all layers of a dict.

    Parameters
    ----------
    a, b : dict or array
        Masks: bool arrays or tensors of one shape, or dicts layer name -> mask with the same keys
        and shapes (``magnitude_masks``, ``rgp_masks``).

    Returns
    -------
    float
        In [0, 1].

    Raises
    ------
    ValueError
        If the keys or the sizes differ.

    References
    ----------
    You, Li, Xu, Fu, Wang, Chen, Baraniuk, Wang & Lin, "Drawing Early-Bird Tickets: Towards More
    Efficient Training of Deep Networks", ICLR 2020 (the mask distance).

    Examples
    --------
    >>> import numpy as np
    >>> from repgraph.pruning import mask_distance
    >>> mask_distance(np.array([1, 1, 0, 0], bool), np.array([1, 0, 1, 0], bool))
    0.5
    """
    if _keys(a) != _keys(b):
        raise ValueError(f"the masks hold different layers ({_keys(a)} and {_keys(b)}); compare masks of the "
                         "same layers.")
    fa, fb = _flat(a, "a"), _flat(b, "b")
    if fa.numel() != fb.numel():
        raise ValueError(f"the masks have {fa.numel()} and {fb.numel()} entries; compare masks of the same shape.")
    if fa.numel() == 0:
        return 0.0
    return float((fa != fb).sum()) / fa.numel()


def _check_threshold_window(threshold, window):
    if isinstance(threshold, bool) or not isinstance(threshold, numbers.Real) or not 0 < threshold <= 1:
        raise ValueError(f"threshold must be a mask distance in (0, 1], got {threshold!r}; You et al. use 0.1.")
    return float(threshold), check_count(window, "window")


def early_bird(masks_by_epoch: Sequence, *, threshold: float = 0.1, window: int = 5):
    """The epoch at which the early-bird ticket is drawn: the first epoch t whose last ``window``
    consecutive mask distances are all below ``threshold``,

    ``t* = min{t : d_s < threshold for s = t − window + 1, …, t}``, ``d_s = mask_distance(m_s, m_{s−1})``,

    counting epochs from 0 (the first mask); ``d_s`` needs s ≥ 1, so ``t* ≥ window``.

    Parameters
    ----------
    masks_by_epoch : sequence
        One mask per epoch, in order (arrays, or dicts layer name -> mask as ``mask_distance``).
    threshold : float
        ε in (0, 1]: the largest mask distance that counts as settled (strictly below).
    window : int
        How many consecutive distances must stay below ε (the FIFO length).

    Returns
    -------
    int or None
        t*, or None when the masks never settle.

    Raises
    ------
    ValueError
        For a threshold outside (0, 1], ``window`` < 1, or masks of differing layers or sizes.

    References
    ----------
    You, Li, Xu, Fu, Wang, Chen, Baraniuk, Wang & Lin, "Drawing Early-Bird Tickets: Towards More
    Efficient Training of Deep Networks", ICLR 2020 (mask distances in a FIFO queue, ε = 0.1).
    Their code (github.com/GATECH-EIC/Early-Bird-Tickets) compares the newest of five masks with
    each of the four before it instead of consecutive pairs.

    Examples
    --------
    Distances 1, 0.5, 0, 0 between the five masks: with window 2 the ticket is drawn at epoch 4:

    >>> import numpy as np
    >>> from repgraph.pruning import early_bird
    >>> m = [np.array(v, bool) for v in ([1, 1, 0, 0], [0, 0, 1, 1], [0, 1, 1, 0], [0, 1, 1, 0], [0, 1, 1, 0])]
    >>> early_bird(m, threshold=0.1, window=2), early_bird(m, threshold=0.1, window=3)
    (4, None)
    """
    threshold, window = _check_threshold_window(threshold, window)
    masks = list(masks_by_epoch)
    run = 0
    for t in range(1, len(masks)):
        run = run + 1 if mask_distance(masks[t], masks[t - 1]) < threshold else 0
        if run >= window:
            return t
    return None


def _bn_mask(model: nn.Module, sparsity: float, layers) -> dict:
    bns = {n: m for n, m in model.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)}
    if layers is not None:
        bns = {n: bns[n] for n in layers if n in bns}
    bns = {n: m for n, m in bns.items() if m.weight is not None}
    if not bns:
        raise ValueError("criterion='bn' needs BatchNorm layers with a weight γ; use criterion='magnitude' "
                         "for a model without them.")
    gamma = torch.cat([m.weight.detach().cpu().abs().reshape(-1) for m in bns.values()])
    k = int(len(gamma) * sparsity)  # You et al.: the ⌊p·N⌋ smallest |γ| are pruned
    order = torch.argsort(gamma, stable=True)
    kept = torch.ones(len(gamma), dtype=torch.bool)
    kept[order[:k]] = False
    out, start = {}, 0
    for n, m in bns.items():
        out[n] = kept[start:start + m.weight.numel()].clone()
        start += m.weight.numel()
    return out


def _partition_mask(model: nn.Module, inputs, layers) -> dict:
    modules = dict(model.named_modules())
    if layers is None:
        names = [n for n, m in modules.items() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        if not names:
            names = [n for n, m in modules.items() if isinstance(m, PRUNABLE)][:-1]
    else:
        names = list(layers)
    if not names:
        raise ValueError("criterion='partition' found no BatchNorm or Conv/Linear layer to read; pass layers.")
    codes = {}

    def keep(name):
        def hook(module, args, output):
            codes[name] = (output.detach() > 0).cpu()
        return hook

    run_with_hooks(model, inputs, [(modules[n], keep(n)) for n in names])
    return codes


class EarlyBirdDetector:
    """Early-bird detection inside a training loop: call ``update(model)`` once per epoch; it
    returns True from the epoch the masks have settled (``early_bird`` on the masks seen so far).

    Each update draws the current mask with ``criterion`` and keeps only the previous one.

    - ``"bn"`` (You et al. 2020): channel masks from the BatchNorm scales, the ``⌊p·N⌋``
      channels of smallest ``|γ|`` over all BatchNorm layers pruned (network slimming's criterion).
    - ``"magnitude"``: ``magnitude_masks(model, sparsity)`` (unstructured, global).
    - ``"partition"`` (You, Balestriero et al. 2022, the spline early bird): the region codes
      ``[y > 0]`` of the outputs of every BatchNorm layer (else every Conv/Linear but the last)
      on the fixed batch ``inputs``: the distance is the fraction of (sample, unit) pairs whose
      side of the boundary changed.
    - a callable ``f(model) -> masks``.

    Parameters
    ----------
    sparsity : float
        The pruning ratio p of the "bn" and "magnitude" masks, in [0, 1).
    threshold : float
        ε, as in ``early_bird``.
    window : int
        Consecutive distances below ε needed, as in ``early_bird``.
    criterion : {"bn", "magnitude", "partition"} or callable
        How a mask is drawn from the model.
    layers : list of str, optional
        Restrict the masks to these layers (BatchNorms for "bn", Conv/Linear for "magnitude",
        any modules whose output is read for "partition").
    inputs : tensor, optional
        The fixed batch for "partition" (the paper's "canvas"); required there.

    Attributes
    ----------
    distances : list of float
        ``d_t`` for every update after the first.
    epoch : int or None
        The update (from 0) at which the ticket was drawn, None before.

    Raises
    ------
    ValueError
        For an unknown criterion, "partition" without ``inputs``, or a threshold, window or
        sparsity out of range.

    References
    ----------
    You, Li, Xu, Fu, Wang, Chen, Baraniuk, Wang & Lin, "Drawing Early-Bird Tickets: Towards More
    Efficient Training of Deep Networks", ICLR 2020; You, Balestriero, Lu, Kou, Shi, Zhang, Wu,
    Lin & Baraniuk, "Max-Affine Spline Insights Into Deep Network Pruning", TMLR 2022 (the
    partition early bird; their code averages the per-layer distances and compares with each of
    the last three epochs, threshold 0.16, where repgraph pools the units and uses consecutive
    epochs).

    Examples
    --------
    A "training" that leaves the weights alone: the masks never change, so with window 2 the
    ticket is drawn at the third update (distances 0, 0):

    >>> import torch
    >>> from torch import nn
    >>> from repgraph.pruning import EarlyBirdDetector
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> model = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 2))
    >>> detector = EarlyBirdDetector(sparsity=0.5, window=2)
    >>> [detector.update(model) for epoch in range(4)], detector.epoch
    ([False, False, True, True], 2)
    """

    def __init__(self, *, sparsity: float = 0.5, threshold: float = 0.1, window: int = 5, criterion="bn",
                 layers=None, inputs=None):
        self.sparsity = check_ratio(sparsity, name="sparsity")
        self.threshold, self.window = _check_threshold_window(threshold, window)
        if not callable(criterion) and criterion not in CRITERIA:
            raise ValueError(f"criterion must be one of {CRITERIA} or a callable model -> masks, got {criterion!r}.")
        if criterion == "partition" and inputs is None:
            raise ValueError("criterion='partition' compares region codes on a fixed batch: pass inputs=<a batch "
                             "of inputs>, e.g. 100 test samples.")
        self.criterion, self.layers, self.inputs = criterion, layers, inputs
        self.distances: list[float] = []
        self.epoch: int | None = None
        self._previous = None
        self._run = 0

    def _mask(self, model: nn.Module):
        if callable(self.criterion):
            return self.criterion(model)
        if self.criterion == "bn":
            return _bn_mask(model, self.sparsity, self.layers)
        if self.criterion == "magnitude":
            return magnitude_masks(model, self.sparsity, layers=self.layers)
        return _partition_mask(model, self.inputs, self.layers)

    def update(self, model: nn.Module) -> bool:
        """Draw this epoch's mask from ``model`` (read only) and say whether the ticket is drawn.

        Parameters
        ----------
        model : nn.Module
            The network being trained, as it is after this epoch.

        Returns
        -------
        bool
            True from the update at which the last ``window`` distances are all below ε.
        """
        mask = self._mask(model)
        if self._previous is not None:
            distance = mask_distance(mask, self._previous)
            self.distances.append(distance)
            self._run = self._run + 1 if distance < self.threshold else 0
            if self.epoch is None and self._run >= self.window:
                self.epoch = len(self.distances)
        self._previous = mask
        return self.epoch is not None
