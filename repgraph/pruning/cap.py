"""CAP, instance complexity-aware differentiable pruning (Wang, Ma & Yu, arXiv 2209.03534): soft
channel masks trained with the task loss and a sparsity regulariser on each channel's importance,
the complexity-weighted sum of its sample-specific masks, so hard samples decide what is kept."""
from __future__ import annotations

import copy

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from .._arrays import resolve_device
from ..hooks.trace import conv_bn_pairs
from .training import _dataset

# The gates' initial logit: every mask starts at sigmoid(3) = 0.953, nearly open.
INITIAL_LOGIT = 3.0


def _weights(logits: torch.Tensor, labels: torch.Tensor, gamma: float) -> torch.Tensor:
    """Unnormalised complexity ``(1 - p_{n, y_n})^gamma`` of each sample, without gradient."""
    with torch.no_grad():
        p_true = F.softmax(logits.double(), dim=1).gather(1, labels.long()[:, None])[:, 0]
        return (1.0 - p_true).clamp_min(0.0) ** gamma


def _normalised(w: torch.Tensor) -> torch.Tensor:
    total = w.sum()
    return w / total if total > 0 else torch.full_like(w, 1.0 / len(w))


def cap_complexity_weights(logits, labels, *, gamma: float = 2.0) -> np.ndarray:
    """CAP's instance-complexity weights of a batch: hard samples (a low predicted probability of
    their own class) weigh more, and the weights sum to 1.

    ``w_n = (1 − p_n)^γ / Σ_m (1 − p_m)^γ`` with ``p_n = softmax(logits_n)[y_n]``; uniform
    (``1/N``) when every sample is predicted with certainty (all ``(1 − p)^γ`` are 0).

    Parameters
    ----------
    logits : array_like (N, classes)
        The model's outputs on the batch.
    labels : array_like (N,) of int
        The samples' classes.
    gamma : float
        The focusing exponent (≥ 0): 0 weighs every sample alike; larger values concentrate the
        weight on the hardest samples.

    Returns
    -------
    ndarray (N,) of float64 weights, summing to 1.

    Raises
    ------
    ValueError
        If ``logits`` is not (N, classes) with N = len(labels), a label is outside [0, classes),
        or ``gamma`` < 0.

    Notes
    -----
    The CAP paper's exact definition of the complexity weight was not findable (only its abstract:
    "higher weights to hard samples"); this is the focal loss' modulating factor (Lin et al.),
    normalised over the batch, the choice stated by ``cap_mask_scores``.

    References
    ----------
    Wang, Ma & Yu, "CAP: instance complexity-aware network pruning", arXiv 2209.03534 (v2: "CWP:
    Instance complexity weighted channel-wise soft masks for network pruning"), 2022; Lin, Goyal,
    Girshick, He & Dollár, "Focal Loss for Dense Object Detection", ICCV 2017.

    Examples
    --------
    True-class probabilities 0.5, 0.75 and 0.25 give (1 - p)^2 = 1/4, 1/16, 9/16, i.e. 4/14, 1/14, 9/14:

    >>> import numpy as np
    >>> from repgraph.pruning import cap_complexity_weights
    >>> logits = np.array([[0.0, 0.0], [np.log(3), 0.0], [0.0, np.log(3)]])
    >>> (cap_complexity_weights(logits, [0, 0, 0]) * 14).round(6)
    array([4., 1., 9.])
    """
    z = torch.as_tensor(np.asarray(logits, dtype=np.float64))
    y = torch.as_tensor(np.asarray(labels)).long()
    if z.ndim != 2 or y.ndim != 1 or len(z) != len(y):
        raise ValueError(f"logits must be (N, classes) and labels (N,), got {tuple(z.shape)} and {tuple(y.shape)}.")
    if len(y) and (y.min() < 0 or y.max() >= z.shape[1]):
        raise ValueError(f"labels must lie in [0, {z.shape[1]}) (the logits' classes).")
    if gamma < 0:
        raise ValueError(f"gamma must be >= 0, got {gamma}.")
    return _normalised(_weights(z, y, gamma)).numpy()


class _Gate(nn.Module):
    """Sample-specific soft masks of one layer: ``m_n = sigmoid(θ + V·GAP(z_n))`` (V starts at 0)."""

    def __init__(self, channels: int):
        super().__init__()
        self.theta = nn.Parameter(torch.full((channels,), INITIAL_LOGIT))
        self.V = nn.Parameter(torch.zeros(channels, channels))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        pooled = z.flatten(2).mean(dim=2) if z.ndim > 2 else z
        return torch.sigmoid(self.theta + pooled @ self.V.T)


def cap_mask_scores(model: nn.Module, data, *, convs=None, epochs: int = 5, lr: float = 0.05, lam: float = 1.0,
                    polar: float = 0.0, gamma: float = 2.0, batch_size: int = 64, train_weights: bool = False,
                    seed: int = 0, device=None, progress: bool = False) -> dict:
    """CAP filter scores: learned soft channel masks, each channel's complexity-weighted mean mask.

    A gate on each conv's output channels (after its BatchNorm when one follows) gives every
    sample n its own soft mask ``m_n = sigmoid(θ + V·GAP(z_n)) ∈ (0, 1)^C`` (z the gated map, GAP
    its spatial mean; θ starts at 3, V at 0), multiplying the map channel-wise. The gates (and,
    with ``train_weights``, the weights of a copy) are trained with Adam on

    ``L = (1/B) Σ_n CE_n + lam · (1/L) Σ_layers [ mean_c s_c − polar · mean_c |s_c − mean(s)| ]``,

    ``s_c = Σ_n w_n m_{n,c}`` the channel's importance on the batch, weighted by the samples'
    complexity ``w_n ∝ (1 − p_n)^gamma`` (``cap_complexity_weights``, ``p_n`` the predicted
    probability of the sample's class, no gradient through w): hard samples weigh more, so the
    channels they need resist the sparsity pressure. The returned score of channel c is ``s_c``
    over all of ``data`` after training (eval mode, weights ``w_n`` of the trained masked model
    normalised over the data). Higher = keep.

    Parameters
    ----------
    model : nn.Module
        A classifier returning logits; not modified (a deep copy is gated and trained; its hooks
        are removed afterwards and the copy dropped).
    data : Dataset or tuple (X, y)
        Labelled training samples: a Dataset of ``(x, y)`` pairs, or inputs X and integer labels y
        (X cast to float32, y to int64). Its first sample also traces which BN follows which conv.
    convs : list of str, optional
        The convs to gate and score; default every Conv1d/2d/3d of the model.
    epochs : int
        Passes over ``data`` (≥ 0; 0 returns the initial masks' scores, sigmoid(3) = 0.9526).
    lr : float
        Adam's learning rate (gates and, with ``train_weights``, weights).
    lam : float
        Weight of the importance regulariser (≥ 0).
    polar : float
        Weight of the polarisation term ``mean_c |s_c − mean(s)|`` (≥ 0, < 1 keeps the regulariser
        a sparsity pressure): it pushes a layer's importances apart (Zhuang et al.'s polarisation
        regulariser on the masks); 0 (default) switches it off.
    gamma : float
        The complexity exponent of ``cap_complexity_weights`` (0: every sample alike).
    batch_size : int
        Samples per optimizer step: part of the training (it changes the result).
    train_weights : bool
        Also train the copy's weights (in train mode, BN statistics updating), as differentiable
        pruning does before fine-tuning; default False: the copy stays frozen in eval mode, so the
        scores describe the model as given.
    seed : int
        Seed of the shuffling and of the random state inside the call (restored afterwards).
    device : str or torch.device, optional
        Where to train; default the device of the model's first parameter.
    progress : bool
        Show a progress bar over the epochs.

    Returns
    -------
    dict
        conv name -> (C_out,) float64 scores in (0, 1) (higher = keep).

    Raises
    ------
    ValueError
        For ``epochs`` < 0, a negative ``lam``, ``polar`` or ``gamma``, ``polar`` ≥ 1, empty
        ``data``, a name in ``convs`` that is not a conv of the model, or a model without convs.
    TypeError
        If ``data`` is neither a Dataset nor a tuple (X, y).

    Notes
    -----
    Only the abstract of the CAP paper was findable (no code), so these are this implementation's
    choices, not the paper's formulas: the gate form (a static logit plus a linear map of the
    channels' spatial means, i.e. squeeze-and-excitation-like sample-specific masks), the focal
    complexity weight, the L1 penalty on the weighted importance, and the polarisation term of
    Zhuang et al. (NeurIPS 2020) in place of the paper's own (unknown) one.

    References
    ----------
    Wang, Ma & Yu, "CAP: instance complexity-aware network pruning", arXiv 2209.03534 (v2: "CWP:
    Instance complexity weighted channel-wise soft masks for network pruning"), 2022; Lin et al.,
    "Focal Loss for Dense Object Detection", ICCV 2017 (the weight); Zhuang et al., "Neuron-level
    Structured Pruning using Polarization Regularizer", NeurIPS 2020; Hu et al.,
    "Squeeze-and-Excitation Networks", CVPR 2018 (the gate's form).

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from repgraph.pruning import cap_mask_scores
    >>> _ = torch.manual_seed(0)
    >>> model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
    ...                       nn.Flatten(), nn.Linear(4, 2))
    >>> X, y = torch.randn(16, 1, 6, 6), torch.arange(16) % 2
    >>> scores = cap_mask_scores(model, (X, y), epochs=2, batch_size=8)
    >>> scores["0"].shape, bool(((scores["0"] > 0) & (scores["0"] < 1)).all())
    ((4,), True)
    """
    if epochs < 0:
        raise ValueError(f"epochs must be >= 0, got {epochs}.")
    for name, value in (("lam", lam), ("polar", polar), ("gamma", gamma)):
        if value < 0:
            raise ValueError(f"{name} must be >= 0, got {value}.")
    if polar >= 1:
        raise ValueError(f"polar must be < 1 (at 1 the polarisation cancels the sparsity pressure), got {polar}.")
    dataset = _dataset(data)
    if len(dataset) == 0:
        raise ValueError("cap_mask_scores: data is empty; pass labelled (input, label) samples.")
    modules = dict(model.named_modules())
    all_convs = [n for n, m in modules.items() if isinstance(m, nn.modules.conv._ConvNd)]
    if not all_convs:
        raise ValueError(f"{type(model).__name__} has no conv layer to gate.")
    convs = all_convs if convs is None else list(convs)
    unknown = [c for c in convs if c not in all_convs]
    if unknown:
        raise ValueError(f"convs {unknown} are not convs of the model; pick from {all_convs[:8]}"
                         f"{' ...' if len(all_convs) > 8 else ''}.")
    device = resolve_device(device, like=model)
    example = dataset[0][0][None]
    bn_of = dict(conv_bn_pairs(model, example))

    net = copy.deepcopy(model).to(device)
    for p in net.parameters():
        p.requires_grad_(train_weights)
    gated = {conv: net.get_submodule(bn_of.get(conv, conv)) for conv in convs}
    gates = {conv: _Gate(modules[conv].out_channels).to(device) for conv in convs}
    masks: dict = {}

    def gate_hook(conv):
        def hook(_module, _inputs, output):
            m = gates[conv](output)
            masks[conv] = m
            return output * m.reshape(*m.shape, *([1] * (output.ndim - 2))).to(output.dtype)
        return hook

    handles = [gated[conv].register_forward_hook(gate_hook(conv)) for conv in convs]
    params = [p for g in gates.values() for p in g.parameters()]
    if train_weights:
        params += [p for p in net.parameters()]
    cuda_devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    try:
        with torch.random.fork_rng(devices=cuda_devices):
            torch.manual_seed(seed)
            opt = torch.optim.Adam(params, lr=lr)
            loader = DataLoader(dataset, batch_size=batch_size, shuffle=True,
                                generator=torch.Generator().manual_seed(seed))
            net.train(train_weights)
            for _ in tqdm(range(epochs), desc="CAP masks", disable=not progress, leave=False):
                for x, y in loader:
                    x, y = x.to(device), y.to(device)
                    opt.zero_grad(set_to_none=True)
                    logits = net(x)
                    w = _normalised(_weights(logits, y, gamma)).to(logits.dtype)
                    reg = 0.0
                    for conv in convs:
                        s = (w[:, None] * masks[conv].to(w.dtype)).sum(dim=0)
                        reg = reg + s.mean() - polar * (s - s.mean()).abs().mean()
                    loss = F.cross_entropy(logits, y.long()) + lam * reg / len(convs)
                    loss.backward()
                    opt.step()
            net.eval()
            weighted = {conv: torch.zeros(modules[conv].out_channels, dtype=torch.float64) for conv in convs}
            plain = {conv: torch.zeros_like(v) for conv, v in weighted.items()}
            total, count = torch.zeros((), dtype=torch.float64), 0
            with torch.no_grad():
                for x, y in DataLoader(dataset, batch_size=max(batch_size, 256), shuffle=False):
                    x, y = x.to(device), y.to(device)
                    w = _weights(net(x), y, gamma).cpu()
                    total, count = total + w.sum(), count + len(w)
                    for conv in convs:
                        m = masks[conv].double().cpu()
                        weighted[conv] += (w[:, None] * m).sum(dim=0)
                        plain[conv] += m.sum(dim=0)
            if total > 0:
                return {conv: (v / total).numpy() for conv, v in weighted.items()}
            # every sample predicted with certainty: uniform weights, the plain mean mask
            return {conv: (v / count).numpy() for conv, v in plain.items()}
    finally:
        for handle in handles:
            handle.remove()
