"""Central-Filter similarity of a conv layer's filters (Duan et al., arXiv 2112.05493, §3.1)."""
from __future__ import annotations

import torch

from .._arrays import as_tensor


def as_feature_maps(fmaps, *, name: str = "fmaps", device=None, dtype=torch.float32,
                    min_channels: int = 1, square: bool = False) -> torch.Tensor:
    """Validate a layer's feature maps: 4-D (N, C, H, W), finite, enough channels, square if asked."""
    t = as_tensor(fmaps, name=name, device=device, dtype=dtype)
    if t.ndim != 4:
        raise ValueError(f"{name} must be feature maps of shape (N, C, H, W), got shape {tuple(t.shape)}; "
                         "capture the layer with reduce=None.")
    n, c, h, w = t.shape
    if n < 1:
        raise ValueError(f"{name} holds no images.")
    if c < min_channels:
        raise ValueError(f"{name} has {c} channel(s); at least {min_channels} are needed.")
    if square and h != w:
        raise ValueError(f"{name} has {h}x{w} maps; this measure needs square maps (H = W).")
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} contains NaN or Inf; check the layer's inputs or the model.")
    return t


def filter_similarity(fmaps, *, device=None, chunk: int = 16):
    """S[i, j] = mean over images of the Pearson correlation of maps i and j (flattened H·W).

    Per image, in this order: both maps constant (including both all-zero) → +1; exactly one map
    all-zero → −1; one map constant non-zero and the other varying → undefined (NaN, which
    propagates into the mean, so S[i, j] is NaN and never becomes an edge); otherwise Pearson.
    ``S[i, i] = 1``. One standardised (C × C) product per image, ``chunk`` images at a time, float64
    sums. Returns a numpy array (torch tensor for torch input). Duan et al., arXiv 2112.05493.
    """
    A = as_feature_maps(fmaps, device=device, min_channels=2, dtype=torch.float64)
    n, c = A.shape[:2]
    A = A.reshape(n, c, -1)
    total = torch.zeros(c, c, dtype=torch.float64, device=A.device)
    eye = torch.eye(c, dtype=torch.bool, device=A.device)
    for start in range(0, n, chunk):
        a = A[start:start + chunk].double()
        centred = a - a.mean(dim=2, keepdim=True)
        std = centred.norm(dim=2, keepdim=True)
        constant = (a.amax(dim=2) == a.amin(dim=2))
        zero = (a == 0).all(dim=2)
        z = centred / torch.where(constant[..., None], torch.ones_like(std), std)
        r = z @ z.transpose(1, 2)
        both_constant = constant[:, :, None] & constant[:, None, :]
        one_zero = zero[:, :, None] | zero[:, None, :]
        one_constant = constant[:, :, None] | constant[:, None, :]
        r = torch.where(one_constant, torch.full_like(r, torch.nan), r)
        r = torch.where(one_zero, torch.full_like(r, -1.0), r)
        r = torch.where(both_constant, torch.ones_like(r), r)
        total += r.sum(dim=0)
    S = total / n
    S = (S + S.T) / 2  # the batched product is not bit-symmetric; NaN stays NaN
    S[eye] = 1.0
    return S if isinstance(fmaps, torch.Tensor) else S.cpu().numpy()
