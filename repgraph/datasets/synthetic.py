"""Synthetic labelled clusters with a known class structure, for tests and benchmarks."""
from __future__ import annotations

import numpy as np


def synthetic_clusters(n_samples: int = 500, n_classes: int = 10, n_features: int = 64, *,
                       separation: float = 3.0, noise: float = 1.0, seed: int = 0, shuffle: bool = True):
    """Gaussian clusters: class centres drawn from N(0, separation²·I), samples = centre + N(0, noise²·I).

    Returns ``(X, y)``: float32 array (n_samples, n_features) and int64 labels; classes are as
    balanced as ``n_samples`` allows. Larger ``separation / noise`` gives better-separated classes.
    """
    if n_classes < 1 or n_samples < n_classes:
        raise ValueError(f"need n_samples >= n_classes >= 1, got n_samples={n_samples}, n_classes={n_classes}.")
    rng = np.random.default_rng(seed)
    centres = rng.normal(0.0, separation, size=(n_classes, n_features))
    y = np.arange(n_samples) % n_classes
    if shuffle:
        y = rng.permutation(y)
    X = centres[y] + rng.normal(0.0, noise, size=(n_samples, n_features))
    return X.astype(np.float32), y.astype(np.int64)
