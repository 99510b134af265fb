"""The layer-correspondence sanity check (Kornblith et al., ICML 2019, §6.1; Chen et al. 2021)."""
from __future__ import annotations

import numpy as np
import pandas as pd


def layer_correspondence(matrix) -> float:
    """Fraction of layers i of model A whose most similar layer of model B (argmax over row i of
    the (L, L) similarity ``matrix``) is layer i. Networks of one architecture trained from
    different seeds should score near 1 under a good similarity index."""
    values = matrix.to_numpy() if isinstance(matrix, pd.DataFrame) else np.asarray(matrix)
    if values.ndim != 2 or values.shape[0] != values.shape[1]:
        raise ValueError(f"matrix must be square (L layers of A × L layers of B), got shape {values.shape}.")
    if not np.isfinite(values).all():
        raise ValueError("matrix contains NaN or Inf.")
    return float(np.mean(values.argmax(axis=1) == np.arange(values.shape[0])))
