"""Whether redundancy criteria agree with each other and with the damage of removing a block:
Spearman rank correlations oriented by which end of each criterion means "redundant"."""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

ORIENTATIONS = ("low", "high")


def _orientation(redundant_when: Mapping, column: str) -> float:
    """+1 when a high value of ``column`` means redundant, −1 when a low one does."""
    if column not in redundant_when:
        raise ValueError(f"redundant_when has no entry for column {column!r}; give 'low' or 'high' for every "
                         f"criterion (got entries for {sorted(redundant_when)}).")
    side = redundant_when[column]
    if side not in ORIENTATIONS:
        raise ValueError(f"redundant_when[{column!r}] must be 'low' or 'high', got {side!r}.")
    return 1.0 if side == "high" else -1.0


def _criterion_columns(table: pd.DataFrame, redundant_when: Mapping, columns) -> list[str]:
    columns = [c for c in redundant_when if c in table.columns] if columns is None else list(columns)
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise ValueError(f"table has no column {missing}; its columns are {list(table.columns)}.")
    return columns


def oriented_rank_correlation(table: pd.DataFrame, redundant_when: Mapping, *, columns=None,
                              min_periods: int = 3) -> pd.DataFrame:
    """Spearman ρ between every two criteria, signed so that +1 means they rank the blocks alike.

    ``ρ̃(a, b) = o_a · o_b · ρ(a, b)`` with ``o_c = +1`` when a high value of c means redundant
    (``redundant_when[c] == "high"``, e.g. CKA) and ``−1`` when a low one does (e.g. Block
    Influence): two criteria that name the same blocks redundant have ρ̃ = +1 whichever way each is
    read. Each pair uses the rows where both are defined; NaN with fewer than ``min_periods``.

    Parameters
    ----------
    table : pandas.DataFrame
        One row per block, a column per criterion.
    redundant_when : mapping
        Column → ``"low"`` or ``"high"``: which end means redundant.
    columns : list of str, optional
        The criteria to correlate; default every column of ``table`` named in ``redundant_when``.
    min_periods : int, default 3
        Fewest rows with both values for a defined ρ.

    Returns
    -------
    pandas.DataFrame
        The symmetric matrix of ρ̃, indexed and labelled by the criteria.

    Raises
    ------
    ValueError
        For a column missing from ``table`` or ``redundant_when``, or an orientation other than
        ``"low"``/``"high"``.

    References
    ----------
    Spearman, "The proof and measurement of association between two things", 1904; the
    orientations are those of the criteria's papers (Men et al. 2024: low Block Influence is
    redundant; Kornblith et al. 2019: high CKA between a block's input and output is).

    Examples
    --------
    Block Influence (low = redundant) and CKA (high = redundant) naming the same block redundant:

    >>> import pandas as pd
    >>> t = pd.DataFrame({"block_influence": [0.1, 0.5, 0.3], "cka_in_out": [0.9, 0.2, 0.6]})
    >>> oriented_rank_correlation(t, {"block_influence": "low", "cka_in_out": "high"}).round(3)
                     block_influence  cka_in_out
    block_influence              1.0         1.0
    cka_in_out                   1.0         1.0
    """
    columns = _criterion_columns(table, redundant_when, columns)
    signs = np.array([_orientation(redundant_when, c) for c in columns])
    rho = table[columns].astype(float).corr(method="spearman", min_periods=min_periods)
    return rho * np.outer(signs, signs)


def damage_correlation(table: pd.DataFrame, damage, redundant_when: Mapping, *, columns=None,
                       min_periods: int = 3) -> dict[str, float]:
    """How well each criterion predicts the damage of removing each block: Spearman ρ with the
    damage, signed so that +1 means "ranks the blocks the way their damage does".

    ``d(c) = −o_c · ρ(c, damage)`` with ``o_c`` as in ``oriented_rank_correlation``: the damage is
    high for a block that must stay, so a criterion that calls the harmless blocks redundant has
    d = +1, one that calls the harmful ones redundant d = −1, and 0 is no better than chance. Each
    criterion uses the blocks where it and the damage are defined; NaN with fewer than
    ``min_periods``.

    Parameters
    ----------
    table : pandas.DataFrame
        One row per block, a column per criterion.
    damage : str or array-like
        A column of ``table``, or one value per row: the loss (or loss increase, or perplexity —
        any increasing function of it) of the model without that block.
    redundant_when : mapping
        Column → ``"low"`` or ``"high"``.
    columns : list of str, optional
        The criteria; default every column of ``table`` named in ``redundant_when`` (except a
        ``damage`` column).
    min_periods : int, default 3
        Fewest blocks with both values for a defined correlation.

    Returns
    -------
    dict
        Criterion → d(c).

    Raises
    ------
    ValueError
        For a damage of the wrong length or with NaN/Inf where blocks are scored, a column missing
        from ``table`` or ``redundant_when``, or a bad orientation.

    References
    ----------
    Kim et al. 2024 (Shortened LLaMA: the perplexity without each block as the damage);
    "Rethinking Layer Relevance in Large Language Models Beyond Cosine Similarity", 2026.

    Examples
    --------
    >>> import pandas as pd
    >>> t = pd.DataFrame({"block_influence": [0.1, 0.5, 0.3, 0.4], "cka_in_out": [0.9, 0.2, 0.6, 0.1]})
    >>> d = damage_correlation(t, [2.0, 9.0, 4.0, 7.0], {"block_influence": "low", "cka_in_out": "high"})
    >>> {c: round(v, 6) for c, v in d.items()}
    {'block_influence': 1.0, 'cka_in_out': 0.8}
    """
    if isinstance(damage, str):
        if damage not in table.columns:
            raise ValueError(f"damage={damage!r} is not a column of table ({list(table.columns)}).")
        name, values = damage, table[damage].to_numpy(dtype=float)
    else:
        name, values = None, np.asarray(damage, dtype=float)
        if values.shape != (len(table),):
            raise ValueError(f"damage must hold one value per row of table ({len(table)}), got shape {values.shape}.")
    defined = ~np.isnan(values)
    if not np.isfinite(values[defined]).all():
        raise ValueError("damage holds an infinite value; give finite losses (a model that diverges has no rank).")
    columns = [c for c in _criterion_columns(table, redundant_when, columns) if c != name]
    series = pd.Series(values, index=table.index)
    out = {}
    for c in columns:
        rho = table[c].astype(float).corr(series, method="spearman", min_periods=min_periods)
        out[c] = float(-_orientation(redundant_when, c) * rho) + 0.0  # + 0.0: no −0.0
    return out
