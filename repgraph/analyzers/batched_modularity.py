"""Modularity of the label partition on the kNN graph of every batch of one layer at once: the
GPU path of the modularity curve (Lu et al., ECCV 2022, §3)."""
from __future__ import annotations

import numpy as np

from .._arrays import as_label_codes, as_tensor
from ..builders.knn import knn_edges_batched
from .modularity import edge_modularity


def batch_modularities(X, labels, k: int = 3, *, device=None, name: str = "X") -> np.ndarray:
    """Modularity ``Q_b`` of the label partition on the cosine kNN graph of each batch b of ``X``.

    For each of the B batches of n samples: cosine kNN graph with ``k`` neighbours (ties → lowest
    index), ``A = (A + Aᵀ)/2``, then ``Q = tr(YᵀAY)/(2m) − ‖Yᵀk‖²/(2m)²`` (Y the one-hot labels of
    the batch, k the weighted degrees, 2m = Σk), exactly as ``modularity_curve`` computes one batch.
    The kNN edges of all batches come from ``knn_edges_batched`` (one batched Gram product and one
    batched top-k per group of batches within the working-memory budget, float64 re-scoring of
    near-tied rows); the modularity of each batch from ``edge_modularity`` in float64.

    Parameters
    ----------
    X : array-like or torch.Tensor
        (B, n, ...) activations: B batches of n samples, flattened to (B, n, D).
    labels : array-like
        (B, n) labels of the samples, any hashable values.
    k : int
        Neighbours per node, 1 <= k < n.
    device : str or torch.device, optional
        Where the Gram products run (default: where ``X`` is, CPU for numpy).
    name : str
        Name of ``X`` in error messages (e.g. the layer).

    Returns
    -------
    numpy.ndarray
        (B,) float64 modularity of each batch.

    Raises
    ------
    ValueError
        If ``X`` has fewer than 3 axes or is empty, ``labels`` is not (B, n), ``k`` is not in [1, n), ``X`` holds
        NaN/Inf (the message names the batch) or a batch's graph has total weight 0.

    References
    ----------
    Lu et al., "Understanding the Dynamics of DNNs Using Graph Modularity", ECCV 2022, §3.

    Examples
    --------
    Two batches, each of two classes whose samples point along orthogonal axes: with k = 3 every
    node's neighbours are its 3 classmates (cosine 1, the others 0), so each graph is two disjoint
    4-cliques and ``Q = 1 − 2·(1/2)² = 0.5``.

    >>> import numpy as np
    >>> X = np.repeat(np.eye(2), 4, axis=0)[None].repeat(2, axis=0)
    >>> labels = np.repeat([[0, 1]], 4, axis=1).repeat(2, axis=0)
    >>> batch_modularities(X, labels, k=3).tolist()
    [0.5, 0.5]
    """
    if not isinstance(k, (int, np.integer)) or isinstance(k, bool):
        raise ValueError(f"k must be a positive integer, got {k!r}.")
    Xt = as_tensor(X, name=name, device=device)
    if Xt.ndim < 3:
        raise ValueError(f"{name} must be batches of samples (B, n, ...), got shape {tuple(Xt.shape)}.")
    n_batches, n = Xt.shape[:2]
    if Xt.numel() == 0:
        raise ValueError(f"{name} is empty (shape {tuple(Xt.shape)}): no batches, samples or features.")
    labels = np.asarray(labels.detach().cpu().numpy() if hasattr(labels, "detach") else labels)
    if labels.shape != (n_batches, n):
        raise ValueError(f"labels must have shape (B, n) = {(n_batches, n)} to match {name}, "
                         f"got {labels.shape}.")
    codes = as_label_codes(labels.reshape(-1), n_batches * n).reshape(n_batches, n)
    edges = knn_edges_batched(Xt.reshape(n_batches, n, -1), int(k), "cosine", name=name)
    return np.array([edge_modularity(rows, cols, weights, codes[b])
                     for b, (rows, cols, weights) in enumerate(edges)])
