"""Filter criteria used as pruning baselines: HRank (Lin et al., CVPR 2020), CHIP (Sui et al.,
NeurIPS 2021), CLP (Chen et al., ECCV 2022, channel Lipschitz upper bound) and the L1 norm
(Li et al., ICLR 2017). Map-based criteria take one layer's (N, C, H, W) maps or an Activations
(then a dict layer -> scores); L1 takes a model (a dict conv name -> scores); CLP's bounds take one
conv's and BN's weights (``repgraph.workflows.clp_scores`` pairs them in a model)."""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from torch import nn

from .._arrays import as_feature_maps


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
           for name, m in model.named_modules() if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d))}
    if not out:
        raise ValueError(f"{type(model).__name__} has no conv layer to score.")
    return out


def clp_upper_bounds(conv_weight, bn_weight, bn_running_var, bn_eps: float):
    """CLP's channel Lipschitz upper bounds of one conv followed by its BN (Chen et al., ECCV 2022):
    ``UCLC_k = σ_max(W_k reshaped (C_in, kh·kw)) · |γ_k / sqrt(running_var_k + eps)|``.

    ``sqrt(running_var + eps)`` is the BN's own divisor (the reference omits eps). Works for conv
    weights of any dimensionality (Conv1d/2d/3d). Returns a float64 numpy array (C_out,).
    """
    W = torch.as_tensor(conv_weight).detach().double()
    sigma_max = torch.linalg.matrix_norm(W.reshape(W.shape[0], W.shape[1], -1), ord=2)
    gamma = torch.as_tensor(bn_weight).detach().double()
    var = torch.as_tensor(bn_running_var).detach().double()
    return (sigma_max * (gamma / torch.sqrt(var + bn_eps)).abs()).cpu().numpy()


def clp_outliers(uclc, u: float = 3.0):
    """Channels whose upper bound exceeds ``mean + u·std`` of their layer (CLP's flagging rule)."""
    uclc = np.asarray(uclc, dtype=np.float64)
    return uclc > uclc.mean() + u * uclc.std()
