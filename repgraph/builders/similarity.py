"""Sample-similarity (Gram) matrices, computed in float32 with torch on any device."""
from __future__ import annotations

import torch

from .._arrays import as_features

METRICS = ("cosine", "correlation", "linear", "rbf")
NORM_FLOOR = 1e-8  # rows are divided by max(‖x‖, 1e-8), as in Lu et al.'s reference


def normalized_rows(X: torch.Tensor, metric: str) -> torch.Tensor:
    """Rows prepared so that ``R Rᵀ`` is the similarity: cosine → ``x / max(‖x‖, 1e-8)``;
    correlation → the same after subtracting each row's mean; linear → ``x`` itself."""
    if metric == "correlation":
        X = X - X.mean(dim=1, keepdim=True)
    elif metric == "linear":
        return X
    elif metric != "cosine":
        raise ValueError(f"metric must be one of {METRICS[:3]} here, got {metric!r}.")
    return X / X.norm(dim=1, keepdim=True).clamp_min(NORM_FLOOR)


GRAM_PANELS = 4  # row panels of the block-triangular Gram product: 10/16 of the multiply-adds
MIN_PANEL_ROWS = 64  # below this a panel is too thin for an efficient matrix product


def gram(X: torch.Tensor) -> torch.Tensor:
    """``X Xᵀ`` computed from its upper block triangle only, then mirrored.

    The rows are split into ``GRAM_PANELS`` panels; panel i is multiplied with the rows from panel
    i onwards (``X_i X_{i:}ᵀ``); the blocks below the diagonal blocks are copied from their
    transposes. With 4 panels that is 10/16 of the multiply-adds of ``X @ X.T``. Outside the
    diagonal blocks ``s_ji`` is the same rounded number as ``s_ij``; inside them, as in ``X @ X.T``,
    the two may differ in the last bit. Small inputs, and inputs on a GPU (where the launches of the
    panel products and copies cost more than the saved work: 0.071 s against 0.051 s for 50 products
    of 500×4096 on an H100, ``benchmarks/bench_modularity.py --device cuda``), use ``X @ X.T``.
    """
    n = X.shape[0]
    if X.device.type != "cpu" or n < GRAM_PANELS * MIN_PANEL_ROWS:
        return X @ X.T
    edges = [round(i * n / GRAM_PANELS) for i in range(GRAM_PANELS + 1)]
    out = torch.empty(n, n, dtype=X.dtype, device=X.device)
    for a, z in zip(edges[:-1], edges[1:]):
        torch.mm(X[a:z], X[a:].T, out=out[a:z, a:])
    for a, z in zip(edges[1:-1], edges[2:]):
        out[a:z, :a] = out[:a, a:z].T
    return out


def median(t: torch.Tensor) -> torch.Tensor:
    """Median of all entries, averaging the two middle values for an even count (as numpy does)."""
    values = t.reshape(-1).sort().values
    mid = values.numel() // 2
    return values[mid] if values.numel() % 2 else (values[mid - 1] + values[mid]) / 2


def squared_distances(X: torch.Tensor) -> torch.Tensor:
    """``‖x_i − x_j‖²`` from the Gram matrix, clamped at 0 against rounding."""
    sq = (X * X).sum(dim=1)
    return (sq[:, None] + sq[None, :] - 2.0 * gram(X)).clamp_min(0.0)


def similarity_matrix(X, metric: str = "cosine", *, device=None, sigma: float | None = None):
    """(N, N) similarity of the rows of ``X`` (N, ...; flattened to (N, D)).

    - ``cosine``: ``x_i·x_j / (max(‖x_i‖,1e-8)·max(‖x_j‖,1e-8))``
    - ``correlation``: cosine of the row-centred rows (Pearson correlation between samples)
    - ``linear``: ``x_i·x_j``
    - ``rbf``: ``exp(−‖x_i−x_j‖²/(2σ²))``, σ = ``sigma`` or, if None, sqrt(median squared distance)

    Computed in float32 with torch (one Gram product); the diagonal is left as the metric gives it
    (1 for cosine, except 0 for an all-zero row); graph builders zero or skip it.

    Parameters
    ----------
    X : array or tensor (N, ...)
        N samples, flattened to (N, D); N ≥ 1.
    metric : {"cosine", "correlation", "linear", "rbf"}
        The similarity, as listed above.
    device : str or torch.device, optional
        Where to compute (default: where ``X`` is; CPU for numpy).
    sigma : float, optional
        The RBF width σ itself (not a fraction, unlike ``cka``'s ``sigma``); default
        sqrt(median of the squared distances, zero diagonal included). Ignored by the other
        metrics.

    Returns
    -------
    torch.Tensor or numpy.ndarray (N, N), float32
        A tensor on the computing device when ``X`` is a tensor, else a numpy array.

    Raises
    ------
    ValueError
        For an unknown ``metric``, fewer than 2 axes, no features, NaN/Inf in ``X``, or an RBF
        width of 0 (all samples identical, or ``sigma`` ≤ 0).
    TypeError
        If ``X`` is neither an array of numbers nor a tensor.

    References
    ----------
    Lu et al., "Understanding the Dynamics of DNNs Using Graph Modularity", ECCV 2022 (cosine,
    rows divided by ``max(‖x‖, 1e-8)``); Kornblith et al., "Similarity of Neural Network
    Representations Revisited", ICML 2019 (the RBF kernel with the median-distance width).

    Examples
    --------
    >>> import numpy as np
    >>> from repgraph import similarity_matrix
    >>> X = np.array([[1.0, 0.0], [1.0, 1.0], [0.0, 2.0]])
    >>> similarity_matrix(X).round(4)    # cos 45° = 0.7071
    array([[1.    , 0.7071, 0.    ],
           [0.7071, 1.    , 0.7071],
           [0.    , 0.7071, 1.    ]], dtype=float32)
    >>> similarity_matrix(X, "linear")
    array([[1., 1., 0.],
           [1., 2., 2.],
           [0., 2., 4.]], dtype=float32)
    """
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}.")
    Xt = as_features(X, name="X", device=device, min_samples=1)
    if metric == "rbf":
        d2 = squared_distances(Xt)
        if sigma is None:
            sigma = float(torch.sqrt(median(d2)))
        if not sigma > 0:
            raise ValueError("rbf similarity: sigma is 0 (all samples identical); pass sigma= explicitly.")
        S = torch.exp(-d2 / (2.0 * sigma ** 2))
    else:
        R = normalized_rows(Xt, metric)
        S = gram(R)
    return S if isinstance(X, torch.Tensor) else S.cpu().numpy()


__all__ = ["similarity_matrix", "gram", "normalized_rows", "median", "squared_distances", "METRICS"]
