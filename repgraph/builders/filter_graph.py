"""The Central-Filter filter graph (Duan et al., arXiv 2112.05493, §3.1–3.2): the similarity of a
conv layer's filters and its threshold graph."""
from __future__ import annotations

import numpy as np
import torch

from .._arrays import as_feature_maps, as_square_matrix, resolve_device
from ..execution.row_sums import sum_over_rows
from ..execution.runner import planning
from ..execution.sources import feature_map_sources

# The Central-Filter reference code turns a similarity into an edge length as 1024 − S (rank.py,
# get_closeness_2), the length behind the cf_local closeness.
CF_OFFSET = 1024.0


def similarity_sum(fmaps, device=None, chunk: int = 16) -> tuple[torch.Tensor, int]:
    """``(Σ_images r, N)``: the sum over images of the per-image correlation matrices (C, C) of
    ``filter_similarity`` (float64, where computed), and the number of images."""
    A = as_feature_maps(fmaps, device=device, min_channels=2, dtype=torch.float64, one_d=True)
    n, c = A.shape[:2]
    A = A.reshape(n, c, -1)
    total = torch.zeros(c, c, dtype=torch.float64, device=A.device)
    for start in range(0, n, chunk):
        a = A[start:start + chunk]
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
    return total, n


def mean_similarity(total: torch.Tensor, n: int) -> torch.Tensor:
    """``S`` from ``similarity_sum``: the mean, symmetrised exactly, with ``S[i, i] = 1``."""
    S = total / n
    S = (S + S.T) / 2  # the batched product is not bit-symmetric; NaN stays NaN
    S[torch.eye(len(S), dtype=torch.bool, device=S.device)] = 1.0
    return S


def source_similarities(runner, sources, device=None, chunk: int = 16, progress: bool = False) -> list[np.ndarray]:
    """``filter_similarity`` of each ``LayerSource``'s maps (checked already), by ``runner``: one
    ``similarity_sum`` task per range of images, the sums added in range order, then
    ``mean_similarity``."""
    totals = sum_over_rows(runner, sources, similarity_sum, lambda s: (device, chunk), desc="filter similarity",
                           progress=progress)
    return [mean_similarity(torch.from_numpy(total), s.n).numpy() for s, total in zip(sources, totals)]


def filter_similarity(fmaps, *, device=None, chunk: int = 16, client=None):
    """Central-Filter similarity of a layer's filters: ``S[i, j]`` = mean over images of the
    Pearson correlation of maps i and j (each flattened).

    Per image, in this order: both maps constant (including both all-zero) → +1; exactly one map
    all-zero → −1; one map constant non-zero and the other varying → undefined (NaN, which
    propagates into the mean, so ``S[i, j]`` is NaN and never becomes an edge); otherwise Pearson.
    ``S[i, i] = 1``. One standardised (C × C) product per image, ``chunk`` images at a time, float64
    sums; the result is exactly symmetric.

    Parameters
    ----------
    fmaps : array or tensor (N, C, H, W) or (N, C, L), or a mapping / store of such layers
        The layer's (post-ReLU) maps; (N, C, L) are the maps of a 1-D convolution. A mapping
        (``Activations``, ``open_store(path)``) or a store's path gives a dict layer -> S.
    device : str or torch.device, optional
        Where to compute (default: where ``fmaps`` are).
    chunk : int
        Images per batched product: memory only (the result changes at most by float64 rounding
        of the sum's order).
    client : distributed.Client, optional
        Compute on this Dask cluster; default: an enclosing ``repgraph.parallel`` block's, else here.
        One task per range of images (in process: all that fit the working memory at float64)
        sums the per-image correlations; the sums are added in range order, divided by N and
        finished (symmetrised, unit diagonal), so a cluster's result equals the in-process one up
        to the order of float64 sums (~1e-16).

    Returns
    -------
    S : ndarray (C, C), a float64 tensor (on the computation device) for tensor input, or a dict
        layer -> S for a mapping

    Raises
    ------
    ValueError
        For another shape, fewer than 2 channels, or NaN/Inf in ``fmaps``.

    Notes
    -----
    The authors' ``rank.py`` tests "sums to 0" where this tests "all zero" (the same for post-ReLU
    maps) and computes (i, j) and (j, i) separately, so its saved matrices are symmetric only up to
    ~1e-16; ``central_filters`` accepts those.

    References
    ----------
    Duan et al., "Network Compression via Central Filter", arXiv 2112.05493, §3.1.

    Examples
    --------
    >>> import numpy as np
    >>> from repgraph import filter_similarity
    >>> maps = np.array([[[1.0, 2.0, 3.0], [2.0, 4.0, 6.0], [3.0, 2.0, 1.0], [0.0, 0.0, 0.0]]])  # (1, 4, 3)
    >>> filter_similarity(maps).round(3)
    array([[ 1.,  1., -1., -1.],
           [ 1.,  1., -1., -1.],
           [-1., -1.,  1., -1.],
           [-1., -1., -1.,  1.]])
    """
    with planning(client) as runner:
        sources, per_layer = feature_map_sources(fmaps, runner, min_channels=2, one_d=True)
        out = dict(zip([s.layer for s in sources], source_similarities(runner, sources, device, chunk, False)))
    if per_layer:
        return out
    S = out["fmaps"]
    return torch.from_numpy(S).to(resolve_device(device, like=fmaps)) if isinstance(fmaps, torch.Tensor) else S


def similarity_graph(S, threshold: float | None = None) -> np.ndarray:
    """Boolean adjacency of the filter graph: edge (i, j) when i ≠ j, ``S[i, j]`` is finite and,
    if ``threshold`` is given, ``S[i, j] > threshold``.

    Parameters
    ----------
    S : array or tensor (C, C)
        A filter-similarity matrix, symmetric up to rounding (``as_square_matrix(symmetric=True)``:
        ``|S − Sᵀ| ≤ 1e-12·max|S|`` is averaged away).
    threshold : float, optional
        Keep only pairs more similar than this.

    Returns
    -------
    ndarray of bool (C, C), symmetric, with a False diagonal.

    Raises
    ------
    ValueError
        If ``S`` is not square, has fewer than 2 rows, or is asymmetric beyond rounding (the
        message names the largest ``|S − Sᵀ|``).

    References
    ----------
    Duan et al., "Network Compression via Central Filter", arXiv 2112.05493, §3.2;
    github.com/8ubpshLR23/Central-Filter ``rank.py``.

    Examples
    --------
    >>> import numpy as np
    >>> from repgraph import similarity_graph
    >>> S = np.array([[1.0, 0.9, np.nan], [0.9, 1.0, 0.2], [np.nan, 0.2, 1.0]])
    >>> similarity_graph(S, 0.5).astype(int)
    array([[0, 1, 0],
           [1, 0, 0],
           [0, 0, 0]])
    """
    S = as_square_matrix(S, symmetric=True)
    with np.errstate(invalid="ignore"):
        edges = np.isfinite(S) & ~np.eye(len(S), dtype=bool)
        if threshold is not None:
            edges &= S > threshold
    return edges
