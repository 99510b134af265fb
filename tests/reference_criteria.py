"""Test oracles for the baseline filter criteria, each as its authors' code computes it, re-written
with numpy from reading it:

- HRank (github.com/lmbxmu/HRank ``rank_generation.py``, commit c03ac851): the mean over images of
  ``torch.matrix_rank`` of each channel's map, on the float32 maps: singular values greater than
  ``σ_max·max(H, W)·eps(float32)`` (strict), a zero map has rank 0.
- CLP (github.com/rkteddy/channel-Lipschitzness-based-pruning ``defense.py``, commit 5209c837):
  ``UCLC_k = σ_max(W_k reshaped (C_in, kh·kw) · |γ_k / sqrt(running_var_k)|)`` (no eps), flagged
  when ``UCLC > mean + u·std`` with ``torch.std`` (unbiased, ddof = 1), u = 3.
- CHIP (github.com/Eclipsess/CHIP_NeurIPS2021 ``calculate_ci.py``, commit 418041b7):
  ``CI_c = ‖A‖_* − ‖A with row c zeroed‖_*`` per image, A = (C, H·W), averaged; the reference first
  rounds the saved maps to 4 decimals and works in float32 (``round_decimals``, ``dtype``).
"""
import numpy as np


def matrix_rank(M):
    """Rank of one 2-D map with torch.matrix_rank's default tolerance, in the map's own dtype."""
    M = np.asarray(M)
    s = np.linalg.svd(M, compute_uv=False)
    return int((s > s.max(initial=0) * max(M.shape) * np.finfo(M.dtype).eps).sum())


def hrank(fmaps):
    """(N, C, H, W) maps -> (C,) mean rank, one map at a time."""
    f = np.asarray(fmaps)
    return np.array([np.mean([matrix_rank(f[i, c]) for i in range(f.shape[0])]) for c in range(f.shape[1])])


def uclc(conv_weight, bn_weight, bn_running_var, eps=0.0):
    W = np.asarray(conv_weight, dtype=np.float64)
    out = []
    for k in range(W.shape[0]):
        scale = abs(bn_weight[k] / np.sqrt(bn_running_var[k] + eps))
        out.append(np.linalg.svd(W[k].reshape(W.shape[1], -1) * scale, compute_uv=False).max())
    return np.array(out)


def clp_flags(values, u=3.0):
    values = np.asarray(values, dtype=np.float64)
    return np.flatnonzero(values > values.mean() + u * values.std(ddof=1))


def chip(fmaps, round_decimals=None, dtype=np.float64):
    """(N, C, ...) maps -> (C,) mean channel independence, one zeroed row at a time."""
    f = np.asarray(fmaps, dtype=np.float64)
    if round_decimals is not None:
        f = np.round(f, round_decimals)
    f = f.reshape(f.shape[0], f.shape[1], -1).astype(dtype)
    n, c = f.shape[:2]
    total = np.zeros(c)
    for i in range(n):
        full = np.linalg.svd(f[i], compute_uv=False).sum()
        for j in range(c):
            g = f[i].copy()
            g[j] = 0
            total[j] += full - np.linalg.svd(g, compute_uv=False).sum()
    return total / n
