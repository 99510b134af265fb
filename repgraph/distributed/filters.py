"""Filter analyses on a Dask cluster: the in-process kernels on chunks of images (one task per
chunk, per layer), their sums over images added here in chunk order and finished as in process.
Feature maps are (N, C, H, W) or the (N, C, L) of a 1-D convolution, e.g. a layer captured with
``reduce=None`` into a store."""
from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import pandas as pd
import torch

from .._arrays import check_feature_map_shape, prune_count, resolve_device
from ..analyzers.central_filters import central_filters
from ..analyzers.criteria import _chip_sum, _hrank_sum
from ..analyzers.topology import _entropy_table
from ..analyzers.topology import birth_points as _birth_points
from ..builders.filter_graph import _mean_similarity, _similarity_sum
from .runner import runner_for, task_rows
from .sources import array_source, as_store, layer_sources


def _chunk_sum(kernel, rows, start: int, stop: int, *args) -> np.ndarray:
    """The in-process sum over images (``kernel``: ``_similarity_sum``, ``_hrank_sum``,
    ``_chip_sum``) of images ``start:stop``, as float64 numpy."""
    total, _ = kernel(rows[start:stop], *args)
    return total.cpu().numpy()


def _birth_kernel(rows, start, stop, max_level, max_edge_density):
    return _birth_points(rows[start:stop], max_level=max_level, max_edge_density=max_edge_density, n_jobs=1)


def _image_chunks(source, runner):
    """(start, stop) ranges of images per task: within the working memory at float64."""
    rows = task_rows(source.n, 8 * 4 * math.prod(source.shape[1:]), runner)
    return [(a, min(source.n, a + rows)) for a in range(0, source.n, rows)]


def _sum_over_images(runner, sources, kernel, args_of, desc, progress) -> list[np.ndarray]:
    """For each source: Σ over its image chunks of ``_chunk_sum(kernel, ...)``, in chunk order."""
    tasks, plan = [], []
    for source in sources:
        chunks = _image_chunks(source, runner)
        plan.append((len(tasks), len(chunks)))
        tasks += [runner.submit(_chunk_sum, kernel, source.data, a, b, *args_of(source)) for a, b in chunks]
    parts = runner.results(tasks, desc=desc, progress=progress)
    out = []
    for first, count in plan:
        total = parts[first]
        for part in parts[first + 1:first + count]:
            total = total + part
        out.append(total)
    return out


def _means_over_images(runner, sources, kernel, args_of, desc):
    """Per source: the in-process kernel's sum over all images, divided by N (as in process)."""
    return [total / source.n for source, total in
            zip(sources, _sum_over_images(runner, sources, kernel, args_of, desc, False))]


def _similarities(runner, sources, device, chunk, progress) -> list[np.ndarray]:
    """Each source's filter similarity: the summed per-image correlations finished as in process."""
    totals = _sum_over_images(runner, sources, _similarity_sum, lambda s: (device, chunk), "filter similarity",
                              progress)
    return [_mean_similarity(torch.from_numpy(total), s.n).numpy() for s, total in zip(sources, totals)]


def _maps_sources(fmaps, runner, **shape_rules):
    """``(sources, per_layer)``: one source for one layer's maps, or one per layer of a mapping/store,
    each shape checked here as in process (``check_feature_map_shape`` with ``shape_rules``), so a
    wrong shape is one clear error before any task runs."""
    fmaps = as_store(fmaps)
    per_layer = isinstance(fmaps, Mapping)
    sources = layer_sources(fmaps, runner, what="fmaps")[0] if per_layer else [array_source("fmaps", "fmaps", fmaps,
                                                                                             runner)]
    for source in sources:
        check_feature_map_shape(tuple(source.shape), name=source.name, **shape_rules)
    return sources, per_layer


def filter_similarity(fmaps, *, device=None, chunk: int = 16, client=None):
    """``repgraph.filter_similarity`` on a cluster: one task per chunk of images.

    ``S[i, j]`` = mean over images of the Pearson correlation of maps i and j (flattened H·W; both
    constant → +1, exactly one all-zero → −1, one constant non-zero → NaN); ``S[i, i] = 1``
    (Duan et al.). Each task sums its images' correlation matrices with the in-process kernel; the
    sums are added here in chunk order, divided by N and finished (symmetrised, unit diagonal) as in
    process (equal to in process up to the order of float64 sums, ~1e-16).

    Parameters
    ----------
    fmaps : array (N, C, H, W) or (N, C, L), store layer, or a mapping / StoreArrays / store path
        One layer's maps (a store layer is a ``LayerFile``), or every layer of a mapping (then a
        dict layer -> S).
    device, chunk
        As in ``repgraph.filter_similarity`` (per task).
    client : distributed.Client, optional
        Default: the client of the enclosing ``repgraph.parallel`` block; else in this process.

    Returns
    -------
    numpy.ndarray (C, C), or a dict layer -> (C, C)

    Raises
    ------
    ValueError
        For maps that are not (N, C, H, W) or (N, C, L), fewer than 2 channels, NaN/Inf.

    References
    ----------
    Duan et al., "Network Pruning via Feature Shift Minimization"/Central Filter, arXiv 2112.05493.

    Examples
    --------
    >>> import numpy as np
    >>> from repgraph.distributed import filter_similarity
    >>> maps = np.random.default_rng(0).random((4, 3, 5, 5))
    >>> filter_similarity(maps).shape
    (3, 3)
    """
    runner = runner_for(client)
    sources, per_layer = _maps_sources(fmaps, runner, min_channels=2, one_d=True)
    out = {s.layer: S for s, S in zip(sources, _similarities(runner, sources, device, chunk, False))}
    if per_layer:
        return out
    S = out["fmaps"]
    return torch.from_numpy(S).to(resolve_device(device, like=fmaps)) if isinstance(fmaps, torch.Tensor) else S


def _select(S, ratio, kind):
    return central_filters(S, ratio, kind=kind)


def layer_central_filters(acts, ratio: float, *, kind: str = "cf_local", progress: bool = True,
                          client=None) -> dict:
    """Central-Filter selection of every layer: ``central_filters(filter_similarity(maps), ratio)``.

    The filter similarity of each layer is computed by tasks over chunks of images
    (``filter_similarity``), then one task per layer selects the central filters (Duan et al.:
    threshold graph by bisection to ``ceil(C·ratio)`` deletable filters, closeness scores, greedy
    selection). Equal to the in-process selection on the in-process similarity.

    Parameters
    ----------
    acts : Activations, mapping layer -> (N, C, H, W) or (N, C, L), StoreArrays or store path
    ratio : float
        Fraction of each layer's filters to prune, in (0, 1).
    kind : str
        Closeness score, as in ``repgraph.central_filters``.
    progress : bool
        Show a progress bar.
    client : distributed.Client, optional
        Default: the client of the enclosing ``repgraph.parallel`` block; else in this process.

    Returns
    -------
    dict
        layer -> ``CentralFilters``.

    Raises
    ------
    ValueError
        For a ratio outside (0, 1) or one that would prune a whole layer, and as ``filter_similarity``.

    Examples
    --------
    >>> import numpy as np
    >>> from repgraph.distributed import layer_central_filters
    >>> maps = np.random.default_rng(0).random((6, 8, 4, 4))
    >>> picked = layer_central_filters({"conv": maps}, 0.25, progress=False)
    >>> len(picked["conv"].pruned)
    2
    """
    runner = runner_for(client)
    sources, _ = layer_sources(acts, runner, what="acts")
    for source in sources:
        check_feature_map_shape(tuple(source.shape), name=source.name, min_channels=2, one_d=True)
        prune_count(source.shape[1], ratio, allow_zero=False)
    selections = runner.results([runner.submit(_select, S, ratio, kind)
                                 for S in _similarities(runner, sources, None, 16, progress)],
                                desc="central filters", progress=progress)
    return {s.layer: selection for s, selection in zip(sources, selections)}


def hrank_scores(fmaps, *, device=None, client=None):
    """``repgraph.hrank_scores`` on a cluster: mean over images of each channel's map rank, one task
    per chunk of images (and per layer for a mapping); exact (ranks are integers).

    Parameters
    ----------
    fmaps : (N, C, H, W) or (N, C, L) array or store layer, or a mapping / StoreArrays / store path of them
    device
        As in ``repgraph.hrank_scores``.
    client : distributed.Client, optional
        Default: the client of the enclosing ``repgraph.parallel`` block; else in this process.

    Returns
    -------
    numpy.ndarray (C,), or a dict layer -> (C,)

    Raises
    ------
    ValueError
        For maps that are not (N, C, H, W) or (N, C, L), or hold NaN/Inf.

    References
    ----------
    Lin et al., "HRank: Filter Pruning using High-Rank Feature Map", CVPR 2020.

    Examples
    --------
    >>> import numpy as np
    >>> from repgraph.distributed import hrank_scores
    >>> hrank_scores(np.ones((2, 3, 4, 4))).tolist()
    [1.0, 1.0, 1.0]
    """
    runner = runner_for(client)
    sources, per_layer = _maps_sources(fmaps, runner, one_d=True)
    means = _means_over_images(runner, sources, _hrank_sum, lambda s: (s.name, device), "HRank")
    return {s.layer: m for s, m in zip(sources, means)} if per_layer else means[0]


def chip_scores(fmaps, *, device=None, route: str = "auto", client=None):
    """``repgraph.chip_scores`` on a cluster: CHIP channel independence
    ``CI_c = ‖A‖_* − ‖A with row c zeroed‖_*`` per image (A = (C, H·W)), averaged over images;
    one task per chunk of images (and per layer for a mapping). Equal to in process up to the
    order of float64 sums.

    Parameters
    ----------
    fmaps : (N, C, H, W) or (N, C, L) array or store layer, or a mapping / StoreArrays / store path of them
    device, route
        As in ``repgraph.chip_scores``.
    client : distributed.Client, optional
        Default: the client of the enclosing ``repgraph.parallel`` block; else in this process.

    Returns
    -------
    numpy.ndarray (C,), or a dict layer -> (C,)

    Raises
    ------
    ValueError
        For an unknown route, maps that are not (N, C, H, W) or (N, C, L), or hold NaN/Inf.

    References
    ----------
    Sui et al., "CHIP: CHannel Independence-based Pruning", NeurIPS 2021.

    Examples
    --------
    >>> import numpy as np
    >>> from repgraph.distributed import chip_scores
    >>> chip_scores(np.eye(3).reshape(1, 3, 3, 1)).tolist()
    [1.0, 1.0, 1.0]
    """
    if route not in ("auto", "gram", "svd"):
        raise ValueError(f"route must be 'auto', 'gram' or 'svd', got {route!r}.")
    runner = runner_for(client)
    sources, per_layer = _maps_sources(fmaps, runner, one_d=True)
    means = _means_over_images(runner, sources, _chip_sum, lambda s: (s.name, device, route), "CHIP")
    return {s.layer: m for s, m in zip(sources, means)} if per_layer else means[0]


def birth_points(fmaps, *, max_level: int = 50, max_edge_density: float = 0.8, n_jobs: int | None = None,
                 client=None) -> np.ndarray:
    """``repgraph.birth_points`` on a cluster: one task per chunk of images, concatenated (exact).

    Birth point of each image's and unit's H×H map: the first level of the rank filtration of
    ``max(A, Aᵀ)`` at which β1 > 0 in the flag complex, 0 if none at a level ≤ ``max_level``
    (Zhao & Zhang). ``n_jobs`` is accepted for the in-process signature; here the cluster's
    workers are the parallelism and each task runs serially.

    Parameters
    ----------
    fmaps : (N, C, H, W) array or store layer
    max_level, max_edge_density
        As in ``repgraph.birth_points``.
    n_jobs : int, optional
        Not used (see above).
    client : distributed.Client, optional
        Default: the client of the enclosing ``repgraph.parallel`` block; else in this process.

    Returns
    -------
    numpy.ndarray (N, C) of int64

    Raises
    ------
    ValueError
        For maps that are not square (N, C, H, H) with H ≥ 3, or hold NaN/Inf.

    References
    ----------
    Zhao & Zhang, arXiv 2103.09716 / ICLR 2022.

    Examples
    --------
    >>> import numpy as np
    >>> from repgraph.distributed import birth_points
    >>> M = np.array([[0, 10, 2, 7], [10, 0, 9, 1], [2, 9, 0, 8], [7, 1, 8, 0]], dtype=float)
    >>> birth_points(M.reshape(1, 1, 4, 4)).tolist()
    [[3]]
    """
    runner = runner_for(client)
    source = array_source("fmaps", "fmaps", fmaps, runner)
    check_feature_map_shape(tuple(source.shape), name=source.name, square=True)
    tasks = [runner.submit(_birth_kernel, source.data, a, b, max_level, max_edge_density)
             for a, b in _image_chunks(source, runner)]
    return np.concatenate(runner.results(tasks, desc="birth points", progress=False))


def feature_entropy(fmaps_or_birth_points, *, client=None, **birth_kwargs) -> pd.DataFrame:
    """``repgraph.feature_entropy`` with the birth points computed on a cluster (``birth_points``),
    then the per-unit entropy here: ``selective_rate`` (fraction of zero birth points),
    ``entropy = −Σ p ln p`` of the non-zero ones, ``ineffectiveness = entropy/(1 − rate)``.

    Parameters
    ----------
    fmaps_or_birth_points : (N, C, H, W) maps of one class's images, a store layer, or (N, C) birth points
    client : distributed.Client, optional
        Default: the client of the enclosing ``repgraph.parallel`` block; else in this process.
    **birth_kwargs
        Passed to ``birth_points``.

    Returns
    -------
    pandas.DataFrame
        (unit, entropy, selective_rate, ineffectiveness), equal to in process.

    Raises
    ------
    ValueError
        As ``birth_points``.

    References
    ----------
    Zhao & Zhang, arXiv 2103.09716 / ICLR 2022.

    Examples
    --------
    >>> import numpy as np
    >>> from repgraph.distributed import feature_entropy
    >>> feature_entropy(np.array([[1], [2], [0], [0]]))["selective_rate"].tolist()
    [0.5]
    """
    data = fmaps_or_birth_points
    if len(getattr(data, "shape", np.shape(data))) >= 3:  # maps (birth_points refuses all but (N, C, H, H))
        data = birth_points(data, client=client, **birth_kwargs)
    return _entropy_table(data)
