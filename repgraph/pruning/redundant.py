"""Redundant layers from a modularity curve (Lu et al., ECCV 2022, §4: plateaus and drops)."""
from __future__ import annotations

import numpy as np
import pandas as pd

from .._results import described


def redundant_layers(curve: pd.DataFrame, *, tol: float = 0.01, removable=None,
                     max_layers: int | None = None) -> pd.DataFrame:
    """Flag the layers whose modularity rises by at most ``tol`` over the previous point.

    ``delta_q[i] = Q[i] − Q[i−1]`` (NaN for the first point, which has no predecessor and is never
    flagged). A layer is ``redundant`` when ``delta_q ≤ tol`` (a plateau or a drop) and it is
    ``removable``: listed in ``removable`` (e.g. ``removable_layers(model, x)``); with
    ``removable=None`` every layer counts as removable. ``max_layers`` keeps only that many
    candidates, those with the smallest ``delta_q`` (ties: the earlier layer) — deep networks have
    many small steps, so a budget is often the useful question. Returns (layer, modularity,
    delta_q, removable, redundant); ``attrs`` record ``tol`` and ``max_layers``.
    """
    missing = {"layer", "modularity"} - set(curve.columns)
    if missing:
        raise ValueError(f"curve lacks column(s) {sorted(missing)}; pass the output of modularity_curve.")
    q = curve["modularity"].to_numpy(dtype=np.float64)
    delta = np.concatenate([[np.nan], np.diff(q)])
    names = curve["layer"].astype(str).tolist()
    allowed = set(names) if removable is None else set(removable)
    is_removable = np.array([n in allowed for n in names])
    with np.errstate(invalid="ignore"):
        flat = np.concatenate([[False], delta[1:] <= tol])
    redundant = flat & is_removable
    if max_layers is not None:
        if max_layers < 0:
            raise ValueError(f"max_layers must be >= 0, got {max_layers}.")
        candidates = np.flatnonzero(redundant)
        keep = candidates[np.argsort(delta[candidates], kind="stable")[:max_layers]]
        redundant = np.isin(np.arange(len(names)), keep)
    out = pd.DataFrame({"layer": names, "modularity": q, "delta_q": delta,
                        "removable": is_removable, "redundant": redundant})
    return described(out, "redundant layers: delta_q <= tol (a plateau or drop of modularity)",
                     "Lu et al., ECCV 2022, §4", tol=tol, max_layers=max_layers)


def redundant_by_similarity(matrix: pd.DataFrame, *, threshold: float = 0.95, removable=None) -> pd.DataFrame:
    """Flag layers whose representation is almost that of the previous layer: the similarity of
    layer i to layer i−1 (a ``gbs_matrix`` or ``cka_matrix`` of one network, in depth order) is
    ≥ ``threshold``. Returns (layer, similarity_to_previous, removable, redundant); the first
    layer's similarity is NaN (no predecessor) and it is never flagged."""
    if not isinstance(matrix, pd.DataFrame) or matrix.shape[0] != matrix.shape[1]:
        raise ValueError("matrix must be a square DataFrame from gbs_matrix or cka_matrix of one network.")
    values = matrix.to_numpy(dtype=np.float64)
    names = [str(n) for n in matrix.index]
    previous = np.concatenate([[np.nan], values[np.arange(1, len(names)), np.arange(len(names) - 1)]])
    allowed = set(names) if removable is None else set(removable)
    is_removable = np.array([n in allowed for n in names])
    with np.errstate(invalid="ignore"):
        similar = np.concatenate([[False], previous[1:] >= threshold])
    out = pd.DataFrame({"layer": names, "similarity_to_previous": previous,
                        "removable": is_removable, "redundant": similar & is_removable})
    return described(out, f"redundant layers: {matrix.attrs.get('measure', 'similarity')} to the previous "
                     "layer >= threshold", matrix.attrs.get("reference"), threshold=threshold)
