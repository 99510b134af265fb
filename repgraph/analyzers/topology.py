"""Topological feature entropy of units (Zhao & Zhang, arXiv 2103.09716 / ICLR 2022), computed
in-process and exactly; and persistence entropy of cubical complexes as a separate spatial measure."""
from __future__ import annotations

import math
import os
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import pandas as pd
import torch

from .._arrays import as_feature_maps, as_label_classes, check_feature_map_shape
from .._results import described
from .._warnings import warn_user
from ..execution.row_sums import row_ranges
from ..execution.runner import planning
from ..execution.sources import array_source

REFERENCE = "Zhao & Zhang, arXiv 2103.09716 / ICLR 2022"


def edge_levels(maps: np.ndarray):
    """Edges (u, v), u < v, of each symmetrised map ``max(M, Mᵀ)`` of ``maps`` (..., H, H), and
    their levels: the number of distinct off-diagonal values strictly larger than the edge's own
    (0 = the largest value; ties share a level). Returns u, v (E,) and levels (..., E)."""
    h = maps.shape[-1]
    u, v = np.triu_indices(h, 1)
    values = np.maximum(maps[..., u, v], maps[..., v, u])
    flat = values.reshape(-1, len(u))
    order = np.argsort(-flat, axis=1, kind="stable")
    ranked = np.take_along_axis(-flat, order, axis=1)
    dense = np.concatenate([np.zeros((len(flat), 1), dtype=np.int64),
                            np.cumsum(np.diff(ranked, axis=1) != 0, axis=1)], axis=1)
    levels = np.empty_like(dense)
    np.put_along_axis(levels, order, dense, axis=1)
    return u, v, levels.reshape(values.shape)


def check_filtration(max_level, max_edge_density) -> None:
    """``ValueError`` unless ``max_level`` is an integer ≥ 1 (level 0 holds only the largest value,
    where no 1-cycle can be born, so every birth point would be 0) and ``max_edge_density`` a
    fraction in (0, 1]."""
    if isinstance(max_level, bool) or not isinstance(max_level, (int, np.integer)) or max_level < 1:
        raise ValueError(f"max_level must be an integer >= 1 (the highest level at which a birth counts), "
                         f"got {max_level!r}.")
    if isinstance(max_edge_density, bool) or not isinstance(max_edge_density, (int, float, np.integer, np.floating)) \
            or not 0.0 < max_edge_density <= 1.0:
        raise ValueError(f"max_edge_density must be a fraction in (0, 1] (of the C(H, 2) edges that may enter the "
                         f"filtration), got {max_edge_density!r}.")


def level_limit(h: int, max_level: int, max_edge_density: float) -> int:
    """Highest level that can count: edges at level ≥ ceil(C(h, 2)·density) are excluded."""
    return min(max_level, math.ceil(h * (h - 1) // 2 * max_edge_density) - 1)


def _first_birth(pairs, order, levels_in_order, h: int, limit: int) -> int:
    """Edges ``pairs[order[i]]`` taken in order of level; see ``birth_point_of_map``."""
    parent = list(range(h))
    adjacency = [0] * h  # bitsets of neighbours
    edge_bit = {}
    basis = {}  # GF(2) echelon basis of triangle boundaries: pivot bit -> vector
    cycles = rank = 0

    def find(x):
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    n_edges = len(levels_in_order)
    for i in range(n_edges):
        current = levels_in_order[i]
        a, b = pairs[order[i]]
        if current > limit:
            break
        bit_ab = 1 << len(edge_bit)
        edge_bit[(a, b)] = bit_ab
        ra, rb = find(a), find(b)
        if ra == rb:
            cycles += 1
        else:
            parent[ra] = rb
        common = adjacency[a] & adjacency[b]
        while common:
            w = (common & -common).bit_length() - 1
            common &= common - 1
            vec = bit_ab | edge_bit[(a, w) if a < w else (w, a)] | edge_bit[(b, w) if b < w else (w, b)]
            while vec:
                pivot = vec.bit_length() - 1
                if pivot in basis:
                    vec ^= basis[pivot]
                else:
                    basis[pivot] = vec
                    rank += 1
                    break
        adjacency[a] |= 1 << b
        adjacency[b] |= 1 << a
        level_done = i + 1 == n_edges or levels_in_order[i + 1] != current
        if level_done and cycles > rank:
            return current
    return 0


def _birth_points_flat(maps: np.ndarray, max_level: int, max_edge_density: float) -> list:
    """Birth points of (M, H, H) maps: levels for all maps at once, then the incremental loop."""
    h = maps.shape[-1]
    limit = level_limit(h, max_level, max_edge_density)
    u, v, levels = edge_levels(maps)
    order = np.argsort(levels, axis=1, kind="stable")
    sorted_levels = np.take_along_axis(levels, order, axis=1).tolist()
    pairs = list(zip(u.tolist(), v.tolist()))
    return [_first_birth(pairs, row, lv, h, limit) for row, lv in zip(order.tolist(), sorted_levels)]


def birth_point_of_map(M: np.ndarray, max_level: int = 50, max_edge_density: float = 0.8) -> int:
    """First level at which the flag complex (up to triangles) of the rank filtration of one map has
    β1 > 0, or 0 if none at a level ≤ ``max_level``.

    Edges are added level by level and only up to the first level that can count; a union–find keeps
    the cycle rank ``E − V + #components`` and an incremental GF(2) elimination the rank of the
    triangles' boundaries; β1 = cycle rank − boundary rank, checked when a level is complete. Each
    triangle is found once, when its last edge arrives, so a 1-cycle born and filled at the same
    level (a zero-length bar) never counts.
    """
    check_filtration(max_level, max_edge_density)
    M = np.asarray(M, dtype=np.float64)
    if M.ndim != 2 or M.shape[0] != M.shape[1]:
        raise ValueError(f"A birth point needs a square H×H map, got shape {M.shape}.")
    return _birth_points_flat(M[None], max_level, max_edge_density)[0]


PARALLEL_MIN_MAPS = 20000  # below this, starting worker processes costs more than it saves


def _birth_points_chunk(args):
    return _birth_points_flat(*args)


def birth_points(fmaps, *, max_level: int = 50, max_edge_density: float = 0.8, n_jobs: int | None = None,
                 client=None) -> np.ndarray:
    """(N, C) integer birth points of every image's and unit's map (Zhao & Zhang, §3).

    Each H×H map (H = W required) is symmetrised ``max(A, Aᵀ)`` and read as a weighted graph on H
    vertices (diagonal ignored); the filtration adds edges by rank of value (level = number of
    distinct larger values; edges at level ≥ ceil(C(H,2)·``max_edge_density``) excluded); the birth
    point is the first level with β1 > 0 in the flag complex, 0 if none at a level ≤ ``max_level``.
    Depends only on the order of values. Exact and in-process (``birth_point_of_map``), in parallel
    over ``n_jobs`` processes for 20 000 maps or more (default: all cores; 1 = serial).

    Parameters
    ----------
    fmaps : array or tensor (N, C, H, H)
        Square 2-D maps; the 1-D maps (N, C, L) of a Conv1d have no such graph and are refused.
    max_level : int
        Highest level at which a birth counts.
    max_edge_density : float
        Fraction of the C(H, 2) edges that may enter the filtration.
    n_jobs : int, optional
        Worker processes for large inputs.
    client : distributed.Client, optional
        Compute on this Dask cluster; default: an enclosing ``repgraph.parallel`` block's, else here.

    Returns
    -------
    ndarray (N, C) of int64.

    Raises
    ------
    ValueError
        For maps that are not square 2-D (including 1-D maps), smaller than 3×3, or not finite;
        for ``max_level`` not an integer ≥ 1 or ``max_edge_density`` not in (0, 1].

    References
    ----------
    Zhao & Zhang, arXiv 2103.09716 / ICLR 2022 (feature entropy of units).

    Examples
    --------
    >>> import numpy as np
    >>> from repgraph import birth_points
    >>> M = np.zeros((4, 4))    # a 4-cycle with sides 10, 9, 8, 7 and diagonals 2, 1
    >>> M[0, 1], M[1, 2], M[2, 3], M[0, 3], M[0, 2], M[1, 3] = 10, 9, 8, 7, 2, 1
    >>> birth_points(M[None, None])
    array([[3]])
    """
    check_filtration(max_level, max_edge_density)
    with planning(client) as runner:
        source = array_source("fmaps", "fmaps", fmaps, runner)
        check_feature_map_shape(tuple(source.shape), name=source.name, square=True)
        if source.shape[2] < 3:
            raise ValueError(f"fmaps has {source.shape[2]}x{source.shape[2]} maps; a 1-cycle needs at least 3 "
                             "vertices (H >= 3).")
        # in process the maps of a task are shared among n_jobs processes; a cluster's workers
        # are its parallelism, each task serial
        jobs = ((os.cpu_count() or 1) if n_jobs is None else max(1, int(n_jobs))) if runner.in_process else 1
        tasks = [runner.submit(_birth_points_of, source.data, a, b, max_level, max_edge_density, jobs)
                 for a, b in row_ranges(source, runner)]
        return np.concatenate(runner.results(tasks, desc="birth points", progress=False))


def _birth_points_of(rows, start: int, stop: int, max_level: int, max_edge_density: float, jobs: int) -> np.ndarray:
    """Birth points (``birth_points``) of images ``start:stop`` of ``rows``, in ``jobs`` processes."""
    A = as_feature_maps(rows[start:stop], square=True, dtype=torch.float64)
    n, c, h, _ = A.shape
    maps = A.reshape(n * c, h, h).cpu().numpy()
    if jobs == 1 or len(maps) < PARALLEL_MIN_MAPS:
        flat = _birth_points_flat(maps, max_level, max_edge_density)
    else:
        chunks = np.array_split(maps, jobs)
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            parts = pool.map(_birth_points_chunk, [(ch, max_level, max_edge_density) for ch in chunks])
            flat = [b for part in parts for b in part]
    return np.asarray(flat, dtype=np.int64).reshape(n, c)


def entropy_of_birth_points(points: np.ndarray) -> pd.DataFrame:
    """Per unit (column) of an (N, C) birth-point array from the images of one class:
    ``selective_rate`` = fraction of zero birth points; p = distribution of the non-zero ones;
    ``entropy`` = −Σ p ln p; ``ineffectiveness`` = entropy/(1 − selective_rate) (= entropy when the
    rate is 1). Lower ineffectiveness = a more effective unit. ``points`` must be nonnegative
    integers (``birth_points``); ``ValueError`` otherwise."""
    points = np.asarray(points)
    if points.ndim != 2 or points.shape[0] < 1:
        raise ValueError(f"birth points must be an (N, C) array with N >= 1, got shape {points.shape}.")
    if points.dtype.kind not in "biuf" or not (np.isfinite(points).all() and (points >= 0).all()
                                                and (points == np.round(points)).all()):
        raise ValueError("birth points must be nonnegative integers (levels, as birth_points gives); got values "
                         "that are negative, fractional or not finite. Pass birth_points(fmaps), or the maps.")
    rows = []
    for unit in range(points.shape[1]):
        column = points[:, unit]
        rate = float(np.mean(column == 0))
        nonzero = column[column != 0]
        if nonzero.size:
            _, counts = np.unique(nonzero, return_counts=True)
            p = counts / counts.sum()
            entropy = max(0.0, float(-(p * np.log(p)).sum()))  # one value: 0, not −0.0
        else:
            entropy = 0.0
        rows.append({"unit": unit, "entropy": entropy, "selective_rate": rate,
                     "ineffectiveness": entropy if rate == 1.0 else entropy / (1.0 - rate)})
    return pd.DataFrame(rows, columns=["unit", "entropy", "selective_rate", "ineffectiveness"])


def entropy_table(points) -> pd.DataFrame:
    """``feature_entropy`` of (N, C) birth points, N ≥ 2 (one image has no distribution of birth
    points: its entropy would be 0 and its rate 0 or 1 whatever the unit)."""
    points = np.asarray(points)
    if points.ndim == 2 and points.shape[0] == 1:
        raise ValueError("feature_entropy got 1 image: the entropy of one birth point per unit is 0 whatever the "
                         "unit. Pass the maps (or birth points) of several images of the class.")
    out = entropy_of_birth_points(points)
    return described(out, "feature entropy", REFERENCE, n_images=int(points.shape[0]))


def feature_entropy(fmaps_or_birth_points, *, client=None, **birth_kwargs) -> pd.DataFrame:
    """Feature entropy per unit (Zhao & Zhang) of one class's images: ``selective_rate`` = fraction
    of zero birth points, p = distribution of the non-zero ones, ``entropy = −Σ p ln p``,
    ``ineffectiveness = entropy/(1 − selective_rate)`` (= entropy when the rate is 1).

    Parameters
    ----------
    fmaps_or_birth_points : array (N, C, H, H) of square 2-D maps, or (N, C) birth points
        Maps get their birth points first (``birth_points``, which refuses 1-D maps).
    client : distributed.Client, optional
        Compute the birth points on this Dask cluster; default: as ``birth_points``.
    **birth_kwargs
        Passed on to ``birth_points``.

    Returns
    -------
    DataFrame (unit, entropy, selective_rate, ineffectiveness); lower ineffectiveness = a more
    effective unit.

    Raises
    ------
    ValueError
        For maps that ``birth_points`` refuses, birth points that are not (N, C) nonnegative
        integers, or a single image (N = 1).

    References
    ----------
    Zhao & Zhang, arXiv 2103.09716 / ICLR 2022 (feature entropy of units).

    Examples
    --------
    >>> import numpy as np
    >>> from repgraph import feature_entropy
    >>> table = feature_entropy(np.array([[1], [2], [3], [0]]))    # ln 3 / (1 − 1/4)
    >>> round(float(table.loc[0, "ineffectiveness"]), 4)
    1.4648
    """
    data = fmaps_or_birth_points
    ndim = data.ndim if hasattr(data, "ndim") else np.asarray(data).ndim
    return entropy_table(birth_points(data, client=client, **birth_kwargs) if ndim >= 3 else data)


def class_feature_entropy(points, labels=None) -> pd.DataFrame:
    """Feature entropy per unit averaged over classes (Zhao & Zhang compute it per class).

    For each class c in ``labels``, on the rows of that class: ``selective_rate_c`` = fraction of
    zero birth points, p = distribution of the non-zero ones, ``entropy_c = −Σ p ln p``,
    ``ineffectiveness_c = entropy_c/(1 − selective_rate_c)`` (= entropy_c when the rate is 1), as
    ``feature_entropy``; each column is then the plain mean over the classes (every class
    counts once, whatever its size; ``ineffectiveness`` is the mean of the per-class values, not
    recomputed from the mean entropy and rate). ``labels=None`` treats all rows as one class.

    Parameters
    ----------
    points : array (N, C) of int
        Birth points of N images and C units (``birth_points``); not feature maps.
    labels : array (N,), optional
        The class of each image (numbers or strings; not NaN/None, not a mix of both).

    Returns
    -------
    DataFrame (unit, entropy, selective_rate, ineffectiveness)
        One row per unit; ``attrs`` record ``n_images`` and ``n_classes``. Lower ineffectiveness
        = a more effective unit.

    Raises
    ------
    ValueError
        If ``labels`` does not hold one label per row or holds NaN/None, or ``points`` is not a
        2-D (N, C) array of nonnegative integers with N ≥ 1.

    Warns
    -----
    UserWarning
        When a class holds a single image (its entropy is 0 whatever the unit).

    References
    ----------
    Zhao & Zhang, arXiv 2103.09716 / ICLR 2022 (feature entropy of units, per class).

    Examples
    --------
    Unit 0 has birth points 1, 2 in class 0 (rate 0, entropy ln 2) and 1, 0 in class 1 (rate 1/2,
    entropy 0): the means are ln 2 / 2 = 0.3466 and 0.25.

    >>> import numpy as np
    >>> from repgraph import class_feature_entropy
    >>> points = np.array([[1, 0], [2, 0], [1, 3], [0, 3]])
    >>> table = class_feature_entropy(points, labels=[0, 0, 1, 1])
    >>> table.round(4).values.tolist()
    [[0.0, 0.3466, 0.25, 0.3466], [1.0, 0.0, 0.5, 0.0]]
    """
    points = np.asarray(points)
    if points.ndim < 1:
        raise ValueError(f"birth points must be an (N, C) array, got shape {points.shape}.")
    if labels is None:
        labels = np.zeros(len(points), dtype=np.int64)
    classes, codes = as_label_classes(labels, len(points), name="labels (one per row of birth points)")
    sizes = np.bincount(codes, minlength=len(classes))
    if (sizes == 1).any():
        single = classes[sizes == 1].tolist()
        warn_user(f"class_feature_entropy: {len(single)} class(es) hold a single image ({single[:5]}"
                  f"{' ...' if len(single) > 5 else ''}): their entropy is 0 whatever the unit, and they "
                  "count as much as any class in the mean. Pass more images per class.")
    per_class = [entropy_of_birth_points(points[codes == c]) for c in range(len(classes))]
    out = pd.concat(per_class).groupby("unit", as_index=False).mean()
    return described(out, "feature entropy, mean over classes", REFERENCE, n_images=int(len(points)),
                     n_classes=len(per_class))


RANKING_FLOOR = 0.1  # the reference maps |ineffectiveness| below this to 100·ln 100


def entropy_ranking_scores(table) -> np.ndarray:
    """Importance per unit for pruning (higher = keep): −ineffectiveness, where an ineffectiveness
    with |value| < 0.1 first becomes 100·ln 100, as the reference ranking does. ``table``: the
    output of ``feature_entropy`` (or any mapping with an ``ineffectiveness`` column)."""
    ineff = np.asarray(table["ineffectiveness"], dtype=np.float64)
    return -np.where(np.abs(ineff) < RANKING_FLOOR, 100.0 * np.log(100.0), ineff)


def persistence_entropy(fmaps) -> np.ndarray:
    """(N, C) persistence entropy of each raw map's sublevel cubical complex (gudhi): finite bars of
    lengths l_i, p_i = l_i/Σl, −Σ p ln p (natural log); 0 when there is no finite bar of positive
    length. A spatial measure, different from the rank-filtration ``feature_entropy``.

    Parameters
    ----------
    fmaps : array or tensor (N, C, H, W) or (N, C, L)
        Raw maps (a 1-D map gives a 1-D cubical complex).

    Returns
    -------
    ndarray (N, C) of float64.

    Raises
    ------
    ValueError
        For another shape or NaN/Inf in the maps.

    References
    ----------
    Chintakunta, Gentimis, Gonzalez-Diaz, Jimenez & Krim, "An entropy-based persistence
    barcode", Pattern Recognition 48(2), 2015 (persistence entropy; here over the finite bars
    only); the GUDHI library's ``CubicalComplex`` (gudhi.inria.fr) for the sublevel-set
    persistence of the map.

    Examples
    --------
    >>> import numpy as np
    >>> from repgraph import persistence_entropy
    >>> row = np.array([0.0, 5, 1, 6, 3])    # finite bars 1 -> 5 and 3 -> 6: lengths 4 and 3
    >>> round(float(persistence_entropy(row.reshape(1, 1, 5))[0, 0]), 4)
    0.6829
    """
    import gudhi

    A = as_feature_maps(fmaps, one_d=True).double().cpu().numpy()
    n, c = A.shape[:2]
    out = np.zeros((n, c))
    for i in range(n):
        for j in range(c):
            complex_ = gudhi.CubicalComplex(top_dimensional_cells=A[i, j])
            bars = complex_.persistence()
            lengths = np.array([d - b for _, (b, d) in bars if np.isfinite(d) and d > b])
            if lengths.size:
                p = lengths / lengths.sum()
                out[i, j] = float(-(p * np.log(p)).sum())
    return out
