"""Redundant layers from a modularity curve (Lu et al., ECCV 2022, §4: plateaus and drops)."""
from __future__ import annotations

import numpy as np
import pandas as pd


def redundant_layers(curve: pd.DataFrame, *, tol: float = 0.01, removable=None) -> pd.DataFrame:
    """Flag the layers whose modularity rises by at most ``tol`` over the previous point.

    ``delta_q[i] = Q[i] − Q[i−1]`` (NaN for the first point, which has no predecessor and is never
    flagged). A layer is ``redundant`` when ``delta_q ≤ tol`` (a plateau or a drop) and it is
    ``removable``: listed in ``removable`` (e.g. ``removable_layers(model, x)``); with
    ``removable=None`` every layer counts as removable. Returns (layer, modularity, delta_q,
    removable, redundant); ``attrs`` record ``tol``.
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
    out = pd.DataFrame({"layer": names, "modularity": q, "delta_q": delta,
                        "removable": is_removable, "redundant": flat & is_removable})
    out.attrs.update({"criterion": "delta_q <= tol (plateau or drop of modularity)", "tol": tol})
    return out
