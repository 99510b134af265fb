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
    many small steps, so a budget is often the useful question.

    Parameters
    ----------
    curve : DataFrame
        A modularity curve with columns ``layer`` and ``modularity`` in depth order (the output of
        ``modularity_curve``).
    tol : float
        The largest rise of modularity that still counts as a plateau.
    removable : iterable of str, optional
        The layers that may be removed; default every layer, which is right only for a curve of
        removable blocks. Pass ``removable_layers(model, x)`` to flag only what ``remove_layers``
        can take: for a plain VGG-style stack its conv groups are named by their conv, so a
        modularity curve over the convs (the ``"modularity"`` preset) is flagged only at the
        convs of shape-keeping groups, not at those that change channels or stride.
    max_layers : int, optional
        Flag at most this many layers (≥ 0), those with the smallest ``delta_q``.

    Returns
    -------
    DataFrame (layer, modularity, delta_q, removable, redundant)
        One row per point of the curve; ``attrs`` record ``tol`` and ``max_layers``.

    Raises
    ------
    ValueError
        If ``curve`` lacks a ``layer`` or ``modularity`` column, or ``max_layers`` < 0.

    References
    ----------
    Lu et al., "Understanding the Dynamics of DNNs Using Graph Modularity", ECCV 2022, §4
    (layers on a plateau or drop of the modularity curve are redundant and can be removed).

    Examples
    --------
    Modularity rises by 0.2, 0.005, 0.295 and −0.02: ``l2`` (plateau) and ``l4`` (drop) are
    redundant at ``tol=0.01``; with a budget of one layer only the drop stays:

    >>> import pandas as pd
    >>> from repgraph import redundant_layers
    >>> curve = pd.DataFrame({"layer": ["l0", "l1", "l2", "l3", "l4"],
    ...                       "modularity": [0.1, 0.3, 0.305, 0.6, 0.58]})
    >>> redundant_layers(curve)["redundant"].tolist()
    [False, False, True, False, True]
    >>> redundant_layers(curve, max_layers=1)["redundant"].tolist()
    [False, False, False, False, True]
    >>> redundant_layers(curve, removable=["l3", "l4"])["redundant"].tolist()
    [False, False, False, False, True]
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
    layer i to layer i−1, ``M[i, i−1]`` (a ``gbs_matrix`` or ``cka_matrix`` of one network, in
    depth order), is ≥ ``threshold``. The first layer's similarity is NaN (no predecessor) and it
    is never flagged.

    Parameters
    ----------
    matrix : DataFrame (L, L)
        Layer-by-layer similarities of one network, rows and columns in depth order, the index
        holding the layer names.
    threshold : float
        The similarity from which a layer counts as a repeat of its predecessor.
    removable : iterable of str, optional
        The layers that may be removed (e.g. ``removable_layers(model, x)``); default every layer.

    Returns
    -------
    DataFrame (layer, similarity_to_previous, removable, redundant)
        ``attrs`` record the measure and reference of ``matrix`` and ``threshold``.

    Raises
    ------
    ValueError
        If ``matrix`` is not a square DataFrame.

    References
    ----------
    Kornblith et al., "Similarity of Neural Network Representations Revisited", ICML 2019 (CKA);
    Chen et al., "Graph-Based Similarity of Neural Network Representations", arXiv 2111.11165
    (GBS); Nguyen et al., "Do Wide and Deep Networks Learn the Same Things?", ICLR 2021 (runs of
    highly similar consecutive layers, the "block structure").

    Examples
    --------
    >>> import pandas as pd
    >>> from repgraph import redundant_by_similarity
    >>> M = pd.DataFrame([[1.0, 0.97, 0.4], [0.97, 1.0, 0.5], [0.4, 0.5, 1.0]],
    ...                  index=["a", "b", "c"], columns=["a", "b", "c"])
    >>> redundant_by_similarity(M)[["layer", "redundant"]].values.tolist()
    [['a', False], ['b', True], ['c', False]]
    """
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


def blocks_to_remove(table: pd.DataFrame, n: int, *, by: str = "block_influence", removable=None) -> list[str]:
    """The ``n`` blocks a criterion of a block table would remove, in depth order.

    ``by="angular_distance"`` (Gromov et al. 2024): the span of n consecutive blocks whose
    ``angular_distance_n`` is smallest (ties: the earlier start). ``by="last"``: the last n
    candidate blocks, the reverse-order baseline (no criterion; any table with a ``block``
    column in depth order). Any other criterion column (the table's ``attrs["redundant_when"]``:
    ``block_influence``, ``relative_update_norm`` and ``delta_q``, low = redundant; ``gbs_in_out``
    and ``cka_in_out``, high = redundant; a single span column such as ``angular_distance_1``;
    ``loss``/``perplexity`` of ``block_removal_loss``, ``taylor``/``magnitude`` of
    ``block_taylor_scores``, low = redundant): the n blocks with the most redundant values (ties:
    the earlier block), as ShortGPT removes the n blocks of lowest Block Influence. Blocks outside
    ``removable`` (default: every block), blocks whose ``removable`` column is False (the "+" rule
    of ``block_taylor_scores(plus=True)``) and blocks whose value is NaN are never chosen; a span
    must lie wholly inside the candidates.

    Parameters
    ----------
    table : pandas.DataFrame
        The output of ``layer_redundancy``, ``block_removal_loss`` or ``block_taylor_scores``, one
        row per block in depth order.
    n : int
        How many blocks to remove (≥ 1).
    by : str, default "block_influence"
        ``"angular_distance"``, ``"last"`` or a criterion column of ``table``.
    removable : list of str, optional
        The blocks that may be removed (e.g. ``removable_layers(model, x)``).

    Returns
    -------
    list of str

    Raises
    ------
    ValueError
        For an unknown criterion, ``n < 1``, a span longer than the table's ``n_max``, or fewer
        than n candidates.

    References
    ----------
    Men et al. 2024 (ShortGPT; its reverse-order baseline removes the last blocks); Gromov et al.
    2024; Kim et al. 2024 (Shortened LLaMA).

    Examples
    --------
    >>> import pandas as pd
    >>> table = pd.DataFrame({"block": ["h.0", "h.1", "h.2"], "block_influence": [0.3, 0.1, 0.2],
    ...                       "angular_distance_2": [0.4, 0.2, float("nan")]})
    >>> table.attrs["redundant_when"] = {"block_influence": "low", "angular_distance_2": "low"}
    >>> blocks_to_remove(table, 2), blocks_to_remove(table, 2, by="angular_distance")
    (['h.1', 'h.2'], ['h.1', 'h.2'])
    >>> blocks_to_remove(table, 2, by="last"), blocks_to_remove(table, 1, by="last", removable=["h.0", "h.1"])
    (['h.1', 'h.2'], ['h.1'])
    """
    orientation = table.attrs.get("redundant_when")
    if "block" not in table.columns or (by != "last" and not isinstance(orientation, dict)):
        raise ValueError("table must be the output of layer_redundancy, block_removal_loss or block_taylor_scores "
                         "(a 'block' column and attrs['redundant_when']).")
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}.")
    names = table["block"].astype(str).tolist()
    allowed = set(names) if removable is None else set(removable)
    if "removable" in table.columns:
        allowed &= {name for name, ok in zip(names, table["removable"].astype(bool)) if ok}
    if by == "last":
        candidates = [name for name in names if name in allowed]
        if len(candidates) < n:
            raise ValueError(f"Only {len(candidates)} removable blocks; cannot choose the last {n}.")
        return candidates[len(candidates) - n:]
    span = by == "angular_distance"
    column = f"angular_distance_{n}" if span else by
    if column not in orientation or column not in table.columns:
        if span:
            raise ValueError(f"The table has no {column!r}: its spans go up to n_max="
                             f"{table.attrs.get('n_max')}; recompute layer_redundancy with n_max >= {n}.")
        raise ValueError(f"Unknown criterion {by!r}; choose 'angular_distance', 'last' or one of "
                         f"{sorted(orientation)}.")
    values = table[column].to_numpy(dtype=np.float64)
    if span:
        starts = [i for i in range(len(names) - n + 1)
                  if not np.isnan(values[i]) and all(b in allowed for b in names[i:i + n])]
        if not starts:
            raise ValueError(f"No span of {n} removable blocks has an angular distance.")
        best = min(starts, key=lambda i: values[i])  # min keeps the first of equal values
        return names[best:best + n]
    candidates = [i for i in range(len(names)) if not np.isnan(values[i]) and names[i] in allowed]
    if len(candidates) < n:
        raise ValueError(f"Only {len(candidates)} removable blocks have a {column!r} value; cannot choose {n}.")
    sign = 1.0 if orientation[column] == "low" else -1.0
    chosen = sorted(candidates, key=lambda i: (sign * values[i], i))[:n]
    return [names[i] for i in sorted(chosen)]
