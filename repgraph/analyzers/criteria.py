"""Filter criteria used as pruning baselines: HRank (Lin et al., CVPR 2020), CHIP (Sui et al.,
NeurIPS 2021), CLP (Zheng et al., ECCV 2022, channel Lipschitz upper bound) and the L1 norm
(Li et al., ICLR 2017). Map-based criteria take one layer's (N, C, H, W) or (N, C, L) maps or an Activations
(then a dict layer -> scores); L1 takes a model (a dict conv name -> scores); CLP's bounds take one
conv's and BN's weights (``repgraph.workflows.clp_scores`` pairs them in a model)."""
from __future__ import annotations


import numpy as np
import torch
from torch import nn

from .._arrays import as_feature_maps
from ..execution.row_sums import mean_over_rows
from ..execution.runner import planning
from ..execution.sources import feature_map_sources


def _mean_scores(fmaps, kernel, args_of, desc: str, client):
    """Per-channel means over images of ``kernel``'s sums (one task per range of images and layer,
    ``mean_over_rows``): a (C,) array for one layer's maps, a dict layer -> (C,) for a mapping."""
    with planning(client) as runner:
        sources, per_layer = feature_map_sources(fmaps, runner, one_d=True)
        means = mean_over_rows(runner, sources, kernel, args_of, desc=desc)
    return {s.layer: m for s, m in zip(sources, means)} if per_layer else means[0]


def hrank_sum(fmaps, name="fmaps", device=None, chunk: int = 64) -> tuple[torch.Tensor, int]:
    """``(Σ_images rank, N)``: each channel's map rank summed over images (float64), and N."""
    A = as_feature_maps(fmaps, name=name, device=device, dtype=None, one_d=True)
    if A.ndim == 3:
        A = A[:, :, None, :]  # a 1-D map is a 1 × L matrix
    rtol = torch.finfo(A.dtype).eps * max(A.shape[-2:])  # the maps' own precision
    if A.dtype not in (torch.float32, torch.float64):
        A = A.float()  # no half-precision SVD; the tolerance stays that of the maps' dtype
    total = torch.zeros(A.shape[1], dtype=torch.float64, device=A.device)
    for start in range(0, A.shape[0], chunk):
        total += torch.linalg.matrix_rank(A[start:start + chunk], rtol=rtol).double().sum(dim=0)
    return total, A.shape[0]


def hrank_scores(fmaps, *, device=None, client=None):
    """HRank: the mean over images of the rank of each channel's map (Lin et al., CVPR 2020).

    ``rank`` counts the singular values of the H×W map above ``σ_max·max(H, W)·eps``, with ``eps``
    of the maps' own dtype (float32 maps: 2⁻²³, as ``torch.linalg.matrix_rank`` on the float32 maps
    in the reference), so float32 rounding noise is not rank. One batched ``matrix_rank`` call per
    chunk of images. A 1-D map (N, C, L) is a 1 × L matrix: its rank is 1 when it is non-zero, so
    the score is the fraction of images in which the filter responds.

    Parameters
    ----------
    fmaps : array or tensor (N, C, H, W) or (N, C, L), or a mapping layer -> such maps
        Post-ReLU maps (the reference hooks the ReLUs). float16/bfloat16 maps are decomposed in
        float32 with their own, coarser tolerance.
    device : str or torch.device, optional
        Where to compute.
    client : distributed.Client, optional
        Compute on this Dask cluster; default: an enclosing ``repgraph.parallel`` block's, else here.

    Returns
    -------
    ndarray (C,) of float64 mean ranks (higher = more informative), or a dict layer -> (C,).

    Raises
    ------
    ValueError
        For another shape or NaN/Inf in the maps (naming the layer for a mapping).

    References
    ----------
    Lin et al., "HRank: Filter Pruning using High-Rank Feature Map", CVPR 2020; github.com/lmbxmu/HRank
    ``rank_generation.py``.

    Examples
    --------
    >>> import numpy as np
    >>> from repgraph import hrank_scores
    >>> u = np.arange(1, 9, dtype=np.float32) / 7
    >>> maps = np.stack([np.outer(u, u[::-1]), np.eye(8), np.zeros((8, 8))]).astype(np.float32)[None]
    >>> hrank_scores(maps)    # a float32 rank-1 product has rank 1, not "rank 4" from rounding
    array([1., 8., 0.])
    """
    return _mean_scores(fmaps, hrank_sum, lambda s: (s.name, device), "HRank", client)


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


def chip_sum(fmaps, name="fmaps", device=None, route: str = "auto", chunk: int = 8) -> tuple[torch.Tensor, int]:
    """``(Σ_images CI, N)``: each channel's independence summed over images (float64), and N."""
    A = as_feature_maps(fmaps, name=name, device=device, min_channels=1, one_d=True)
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
    return total, n


def chip_scores(fmaps, *, device=None, route: str = "auto", client=None):
    """CHIP channel independence (Sui et al., NeurIPS 2021): per image A = (C, H·W) (or (C, L)),
    ``CI_c = ‖A‖_* − ‖A with row c zeroed‖_*``, averaged over images, in float64.

    Parameters
    ----------
    fmaps : array or tensor (N, C, H, W) or (N, C, L), or a mapping layer -> such maps
        Post-ReLU maps (as the reference).
    device : str or torch.device, optional
        Where to compute.
    route : {"auto", "gram", "svd"}
        ``gram``: eigenvalues of the C×C Gram (cheaper when H·W > C); ``svd``: C + 1 SVDs per
        image; ``auto`` picks; both give the same values.
    client : distributed.Client, optional
        Compute on this Dask cluster; default: an enclosing ``repgraph.parallel`` block's, else here.

    Returns
    -------
    ndarray (C,) of float64 scores (higher = more independent: keep), or a dict layer -> (C,).

    Raises
    ------
    ValueError
        For an unknown ``route``, another shape, or NaN/Inf in the maps.

    Notes
    -----
    The reference (github.com/Eclipsess/CHIP_NeurIPS2021, ``calculate_ci.py``) rounds the saved
    maps to 4 decimals and works in float32, an artefact of storing them; not emulated here, so its
    values agree with these to about 1e-4·‖A‖_*.

    References
    ----------
    Sui et al., "CHIP: CHannel Independence-based Pruning for Compact Neural Networks", NeurIPS 2021.

    Examples
    --------
    >>> import numpy as np
    >>> from repgraph import chip_scores
    >>> maps = np.array([[[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]]])    # (1, 3, 2): rows e1, e1, e2
    >>> chip_scores(maps).round(4)    # sqrt(2) - 1 for each copy of e1; 1 for the unique e2
    array([0.4142, 0.4142, 1.    ])
    """
    if route not in ("auto", "gram", "svd"):
        raise ValueError(f"route must be 'auto', 'gram' or 'svd', got {route!r}.")
    return _mean_scores(fmaps, chip_sum, lambda s: (s.name, device, route), "CHIP", client)


def l1_scores(model: nn.Module) -> dict:
    """L1 norm of each output filter's weights, ``Σ |W_k|``, for every Conv1d/2d/3d of ``model``.

    Parameters
    ----------
    model : nn.Module

    Returns
    -------
    dict conv name -> (C_out,) float64 array (higher = keep).

    Raises
    ------
    ValueError
        If the model has no convolution.

    References
    ----------
    Li et al., "Pruning Filters for Efficient ConvNets", ICLR 2017.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from repgraph import l1_scores
    >>> conv = nn.Conv1d(1, 2, 2, bias=False)
    >>> with torch.no_grad():
    ...     _ = conv.weight.copy_(torch.tensor([[[1.0, -2.0]], [[0.5, 0.0]]]))
    >>> l1_scores(nn.Sequential(conv))["0"]
    array([3. , 0.5])
    """
    out = {name: m.weight.detach().abs().reshape(m.weight.shape[0], -1).sum(dim=1).double().cpu().numpy()
           for name, m in model.named_modules() if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d))}
    if not out:
        raise ValueError(f"{type(model).__name__} has no conv layer to score.")
    return out


def clp_upper_bounds(conv_weight, bn_weight, bn_running_var, bn_eps: float):
    """CLP's channel Lipschitz upper bounds of one conv followed by its BN (Zheng et al., ECCV 2022):
    ``UCLC_k = σ_max(W_k reshaped (C_in, kh·kw)) · |γ_k / sqrt(running_var_k + eps)|``.

    Parameters
    ----------
    conv_weight : tensor or array (C_out, C_in, ...)
        The conv's weight (Conv1d/2d/3d).
    bn_weight, bn_running_var : tensor or array (C_out,)
        The BN's γ and running variance.
    bn_eps : float
        The BN's eps: ``sqrt(running_var + eps)`` is the BN's own divisor (the reference omits eps,
        which matters only for running variances near eps).

    Returns
    -------
    ndarray (C_out,) of float64 upper bounds.

    References
    ----------
    Zheng et al., "Data-free Backdoor Removal based on Channel Lipschitzness", ECCV 2022;
    github.com/rkteddy/channel-Lipschitzness-based-pruning ``defense.py``.

    Examples
    --------
    >>> import numpy as np
    >>> from repgraph.analyzers import clp_upper_bounds
    >>> W = np.array([[[3.0, 0.0], [4.0, 0.0]], [[1.0, 1.0], [1.0, 1.0]]])[:, None]    # sigma_max 5 and 2
    >>> clp_upper_bounds(W, [2.0, -0.5], [4.0, 1.0], 0.0)
    array([5., 1.])
    """
    W = torch.as_tensor(conv_weight).detach().double()
    sigma_max = torch.linalg.matrix_norm(W.reshape(W.shape[0], W.shape[1], -1), ord=2)
    gamma = torch.as_tensor(bn_weight).detach().double()
    var = torch.as_tensor(bn_running_var).detach().double()
    return (sigma_max * (gamma / torch.sqrt(var + bn_eps)).abs()).cpu().numpy()


def clp_outliers(uclc, u: float = 3.0):
    """CLP's flagging rule: channels whose upper bound exceeds ``mean + u·std`` of their layer, with
    the unbiased std (ddof = 1, ``torch.std`` in the reference).

    Parameters
    ----------
    uclc : array (C,)
        One layer's upper bounds (``clp_upper_bounds``).
    u : float
        Threshold in standard deviations (the reference's default 3).

    Returns
    -------
    ndarray (C,) of bool. A layer with one channel flags nothing (its std is undefined; the
    reference's NaN threshold flags nothing either).

    Examples
    --------
    >>> import numpy as np
    >>> from repgraph.analyzers import clp_outliers
    >>> uclc = np.ones(10); uclc[7] = 10.0    # mean 1.9, unbiased std sqrt(8.1) = 2.846
    >>> clp_outliers(uclc, 3.0).any(), clp_outliers(uclc, 2.5).nonzero()[0]    # thresholds 10.44, 9.02
    (np.False_, array([7]))
    """
    uclc = np.asarray(uclc, dtype=np.float64)
    if uclc.size < 2:
        return np.zeros(uclc.shape, dtype=bool)
    return uclc > uclc.mean() + u * uclc.std(ddof=1)
