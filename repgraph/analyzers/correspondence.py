"""The layer-correspondence sanity check (Kornblith et al., ICML 2019, §6.1; Chen et al. 2021)."""
from __future__ import annotations

import numpy as np
import pandas as pd


def layer_correspondence(matrix) -> float:
    """Fraction of layers i of model A whose most similar layer of model B (argmax over row i of
    the (L, L) similarity ``matrix``) is layer i: ``(1/L) Σ_i [argmax_j M[i, j] = i]``. Networks of
    one architecture trained from different seeds should score near 1 under a good similarity
    index.

    Parameters
    ----------
    matrix : DataFrame or array (L, L)
        Similarities between the L layers of model A (rows) and those of model B (columns), in
        depth order, e.g. ``gbs_matrix(acts_a, acts_b)`` or ``cka_matrix(acts_a, acts_b)``. Ties
        in a row go to the lowest column.

    Returns
    -------
    float
        In [0, 1].

    Raises
    ------
    ValueError
        If ``matrix`` is not square or holds NaN/Inf.

    References
    ----------
    Kornblith et al., "Similarity of Neural Network Representations Revisited", ICML 2019, §6.1;
    Chen et al., "Graph-Based Similarity of Neural Network Representations", arXiv 2111.11165
    (2021).

    Examples
    --------
    Rows 0 and 1 peak on the diagonal, row 2 on column 1: two of three layers correspond.

    >>> import numpy as np
    >>> from repgraph import layer_correspondence
    >>> M = np.array([[0.9, 0.2, 0.1], [0.3, 0.8, 0.7], [0.1, 0.9, 0.6]])
    >>> round(layer_correspondence(M), 4)
    0.6667
    """
    values = matrix.to_numpy() if isinstance(matrix, pd.DataFrame) else np.asarray(matrix)
    if values.ndim != 2 or values.shape[0] != values.shape[1]:
        raise ValueError(f"matrix must be square (L layers of A × L layers of B), got shape {values.shape}.")
    if not np.isfinite(values).all():
        raise ValueError("matrix contains NaN or Inf.")
    return float(np.mean(values.argmax(axis=1) == np.arange(values.shape[0])))
