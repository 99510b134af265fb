"""Filter criteria used as pruning baselines: HRank (Lin et al., CVPR 2020), CHIP (Sui et al.,
NeurIPS 2021), CLP (Chen et al., ECCV 2022, channel Lipschitz upper bound) and the L1 norm
(Li et al., ICLR 2017). Map-based criteria take one layer's (N, C, H, W) maps or an Activations
(then a dict layer -> scores); weight-based ones take a model (a dict conv name -> scores)."""
from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from .filter_similarity import as_feature_maps

_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def _per_layer(fn, fmaps, **kwargs):
    if isinstance(fmaps, Mapping):
        return {name: fn(fmaps[name], name=f"layer {name!r}", **kwargs) for name in fmaps}
    return fn(fmaps, **kwargs)


def _hrank(fmaps, *, name="fmaps", device=None, chunk: int = 64):
    A = as_feature_maps(fmaps, name=name, device=device)
    total = torch.zeros(A.shape[1], dtype=torch.float64, device=A.device)
    for start in range(0, A.shape[0], chunk):
        total += torch.linalg.matrix_rank(A[start:start + chunk].double()).double().sum(dim=0)
    return (total / A.shape[0]).cpu().numpy()


def hrank_scores(fmaps, *, device=None):
    """HRank: mean over images of the rank of each channel's H×W map (one batched
    ``matrix_rank`` call per chunk of images). Higher = more informative filter."""
    return _per_layer(_hrank, fmaps, device=device)


def _nuclear_norms_by_gram(A: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """‖A‖_* and, for every c, ‖A with row c zeroed‖_*, from the C×C Gram G = AAᵀ:
    ‖A‖_* = Σ sqrt(eig(G)); zeroing row c zeroes row and column c of G."""
    G = A @ A.transpose(-1, -2)
    full = torch.linalg.eigvalsh(G).clamp_min(0).sqrt().sum(-1)
    c = G.shape[-1]
    keep = 1.0 - torch.eye(c, dtype=G.dtype, device=G.device)
    per_channel = G[..., 0, 0].numel() * c * c * 8  # bytes of one masked Gram per image batch
    step = max(1, min(c, (256 * 2**20) // max(1, per_channel)))
    parts = []
    for start in range(0, c, step):  # channel blocks keep the (..., block, C, C) stack bounded
        k = keep[start:start + step]
        masked = G[..., None, :, :] * k[:, :, None] * k[:, None, :]
        parts.append(torch.linalg.eigvalsh(masked).clamp_min(0).sqrt().sum(-1))
    return full, torch.cat(parts, dim=-1)


def _chip(fmaps, *, name="fmaps", device=None, route: str = "auto", chunk: int = 8):
    A = as_feature_maps(fmaps, name=name, device=device, min_channels=1)
    n, c = A.shape[:2]
    A = A.reshape(n, c, -1).double()
    use_gram = (A.shape[2] > c) if route == "auto" else route == "gram"
    total = torch.zeros(c, dtype=torch.float64, device=A.device)
    for start in range(0, n, chunk):
        a = A[start:start + chunk]
        if use_gram:
            full, without = _nuclear_norms_by_gram(a)
        else:
            full = torch.linalg.matrix_norm(a, ord="nuc")
            zeroed = a[:, None].repeat(1, c, 1, 1)
            zeroed[:, torch.arange(c), torch.arange(c)] = 0.0
            without = torch.linalg.matrix_norm(zeroed, ord="nuc")
        total += (full[:, None] - without).sum(dim=0)
    return (total / n).cpu().numpy()


def chip_scores(fmaps, *, device=None, route: str = "auto"):
    """CHIP channel independence: per image A = (C, H·W),
    ``CI_c = ‖A‖_* − ‖A with row c zeroed‖_*``, averaged over images. ``route``: ``gram``
    (eigenvalues of the C×C Gram, cheaper when H·W > C), ``svd`` (C + 1 SVDs per image) or
    ``auto``; both give the same values. Higher = more independent (keep)."""
    if route not in ("auto", "gram", "svd"):
        raise ValueError(f"route must be 'auto', 'gram' or 'svd', got {route!r}.")
    return _per_layer(_chip, fmaps, device=device, route=route)


def l1_scores(model: nn.Module) -> dict:
    """L1 norm of each output filter's weights, for every conv layer: dict name -> (C_out,)."""
    out = {name: m.weight.detach().abs().reshape(m.weight.shape[0], -1).sum(dim=1).double().cpu().numpy()
           for name, m in model.named_modules() if isinstance(m, _CONVS)}
    if not out:
        raise ValueError(f"{type(model).__name__} has no conv layer to score.")
    return out


class LayerScores(dict):
    """dict conv name -> (C_out,) scores; ``flagged`` maps each name to a boolean mask (CLP)."""

    flagged: dict


def conv_bn_pairs(model: nn.Module, example_input) -> list[tuple[str, str]]:
    """(conv, bn) pairs where the BN directly consumes the conv's output, found by tracing one
    forward (data flow, not registration order). A BN whose input is not a conv's output (e.g.
    BN before conv) raises ``ValueError`` naming it."""
    outputs, pairs, problems, handles = {}, [], [], []
    names = {m: n for n, m in model.named_modules()}
    for module in model.modules():
        if isinstance(module, _CONVS):
            handles.append(module.register_forward_hook(
                lambda m, i, o: outputs.__setitem__(id(o), names[m])))
        elif isinstance(module, _BATCH_NORMS):
            def pre(m, inputs):
                conv = outputs.get(id(inputs[0]))
                if conv is None:
                    problems.append(names[m])
                else:
                    pairs.append((conv, names[m]))
            handles.append(module.register_forward_pre_hook(pre))
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(example_input)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    if problems:
        raise ValueError(f"BatchNorm layer(s) {problems} do not take a conv's output (a BN before its "
                         "conv?); CLP needs conv -> BN pairs and will not guess a pairing.")
    return pairs


def clp_scores(model: nn.Module, u: float = 3.0, *, example_input=None) -> LayerScores:
    """CLP channel Lipschitz upper bound: for a conv W followed by its BN,
    ``UCLC_k = σ_max(W_k reshaped (C_in, kh·kw)) · |γ_k / sqrt(running_var_k + eps)|``; channels with
    UCLC > mean + u·std of their layer are flagged (``.flagged``). Conv–BN pairs come from the
    traced forward of ``example_input`` (default: zeros of 1×C_in×32×32, or 1×C_in×32 for Conv1d;
    pass ``example_input`` when the model needs another size). Conv1d/2d/3d with their BatchNorms."""
    convs = [m for m in model.modules() if isinstance(m, _CONVS)]
    if example_input is None:
        if not convs:
            raise ValueError(f"{type(model).__name__} has no conv layer; CLP needs conv -> BN pairs.")
        spatial = (32,) * (convs[0].weight.ndim - 2)
        example_input = torch.zeros(1, convs[0].in_channels, *spatial, device=convs[0].weight.device)
    pairs = conv_bn_pairs(model, example_input)
    if not pairs:
        raise ValueError(f"{type(model).__name__} has no conv -> BN pair; CLP needs BatchNorm after convs.")
    modules = dict(model.named_modules())
    scores, flagged = LayerScores(), {}
    for conv_name, bn_name in pairs:
        W = modules[conv_name].weight.detach().double()
        bn = modules[bn_name]
        sigma_max = torch.linalg.matrix_norm(W.reshape(W.shape[0], W.shape[1], -1), ord=2)
        gain = (bn.weight.detach().double() / torch.sqrt(bn.running_var.double() + bn.eps)).abs()
        uclc = (sigma_max * gain).cpu().numpy()
        scores[conv_name] = uclc
        flagged[conv_name] = uclc > uclc.mean() + u * uclc.std()
    scores.flagged = flagged
    return scores
