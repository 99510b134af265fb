"""Modularity of the class partition of sample graphs, layer by layer (Lu et al., ECCV 2022)."""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

from .._arrays import as_features, as_label_classes, as_label_codes, is_constant_rows, resolve_device
from .._results import described
from .._warnings import warn_user
from ..builders.convert import as_sparse, is_symmetric
from ..builders.knn import NEGATIVE, batch_steps, knn_edges, knn_edges_batched, negative_edges
from ..execution.runner import planning
from ..execution.sources import layer_sources


def _adjacency(A) -> sp.csr_matrix:
    M = as_sparse(A)
    if not np.isfinite(M.data).all():
        raise ValueError("A contains NaN or Inf weights; check the similarity it was built from.")
    if not is_symmetric(M, atol=1e-12 * max(1.0, float(abs(M).max()) if M.nnz else 1.0)):
        raise ValueError("A is not symmetric; modularity here is for undirected graphs: pass "
                         "(A + A.T) / 2 or build it with knn_graph(..., symmetrize='mean').")
    return M


def modularity(A, labels, *, resolution: float = 1.0) -> float:
    """Weighted Newman modularity of the partition given by ``labels`` on the undirected graph ``A``.

    ``Q = tr(YᵀAY)/(2m) − γ‖Yᵀk‖²/(2m)²`` with Y the one-hot labels, ``k = A·1`` the weighted
    degrees, ``2m = Σk`` and γ = ``resolution``. A diagonal entry ``A[i,i]`` is a self-loop of that
    weight, counted twice in the degree and once per edge, as networkx does, so the result equals
    ``networkx.community.modularity``. Negative weights are kept. Computed in float64.

    Parameters
    ----------
    A : array, tensor or scipy.sparse matrix (N, N)
        A symmetric weighted adjacency matrix (e.g. ``knn_graph(X)``); symmetric up to
        1e-12·max|A|.
    labels : array-like (N,)
        The community (e.g. ground-truth class) of each node: numbers, strings or bools, read
        by position (a pandas Series' index is ignored); not NaN/None.
    resolution : float
        γ, the weight of the null-model term.

    Returns
    -------
    float

    Raises
    ------
    ValueError
        If ``A`` is not square, not symmetric, holds NaN/Inf or has total weight 0, if ``labels``
        is missing, not 1-D, not of length N or holds NaN/None, or if ``resolution`` is not a
        finite number.
    TypeError
        If ``labels`` mix numbers and strings (``[0, "a"]``: pass one type).

    Warns
    -----
    UserWarning
        When ``labels`` hold one class (Q = 0), and when negative weights make the total weight
        small against the absolute weight (``Σ A < Σ|A|/2``) or put Q outside [−1, 1]: the value
        is then not comparable with the modularity of a nonnegative graph, in [−1/2, 1].

    References
    ----------
    Newman, "Analysis of weighted networks", Phys. Rev. E 70, 056131 (2004); Lu et al.,
    "Understanding the Dynamics of DNNs Using Graph Modularity", ECCV 2022 (the class partition
    of sample graphs); ``networkx.community.modularity`` (the self-loop convention).

    Examples
    --------
    Two disjoint triangles, one label each: every edge lies inside a class (first term 1) and each
    class holds half the degree (second term 2·(1/2)² = 1/2):

    >>> import numpy as np
    >>> from repgraph import modularity
    >>> A = np.zeros((6, 6))
    >>> for i, j in [(0, 1), (1, 2), (0, 2), (3, 4), (4, 5), (3, 5)]:
    ...     A[i, j] = A[j, i] = 1.0
    >>> modularity(A, [0, 0, 0, 1, 1, 1]), modularity(A, [0, 0, 0, 1, 1, 1], resolution=0.5)
    (0.5, 0.75)
    """
    _check_resolution(resolution)
    M = _adjacency(A)
    classes, codes = as_label_classes(labels, M.shape[0])
    if len(classes) == 1:
        warn_user(f"modularity: every label is {classes.tolist()[0]!r}, so the partition is one class and Q = 0 "
                  "whatever the graph; pass labels with two or more classes.")
    M = (M + sp.diags(M.diagonal())).tocoo()  # networkx convention: a self-loop adds 2w to the degree
    q = edge_modularity(M.row, M.col, M.data, codes, resolution=resolution)
    balance = _Balance.of(M.data, q)
    if balance.degenerate:
        warn_user(f"modularity: {balance.describe()} Q = {q:.4g} is not comparable with the modularity of a "
                  "graph with nonnegative weights (which lies in [-1/2, 1]); build A from post-activation "
                  "features or drop the negative weights (knn_graph(..., negative='clip')).")
    return q


def edge_modularity(rows, cols, weights, codes, *, resolution: float = 1.0) -> float:
    """Modularity (as ``modularity``) of the partition ``codes`` (integers 0…C−1) on the graph
    ``(E + Eᵀ)/2``, where ``E`` has the entries ``weights`` at (``rows``, ``cols``), duplicates summed.

    Degrees are ``k = (E·1 + Eᵀ·1)/2``, ``2m = ΣE``, and ``tr(YᵀAY) = Σ_{codes[i]=codes[j]} E_ij``, so
    a directed kNN edge list gives the modularity of its ``(A + Aᵀ)/2`` graph without building it.
    """
    codes_r, codes_c = codes[rows], codes[cols]
    two_m = float(np.sum(weights))
    if two_m == 0:
        raise ValueError("The graph's total edge weight is 0; modularity is undefined. "
                         "Check that the sample graph has edges (and positive weights).")
    intra = float(np.sum(weights[codes_r == codes_c]))
    n_codes = int(codes.max()) + 1
    community_degree = (np.bincount(codes_r, weights=weights, minlength=n_codes)
                        + np.bincount(codes_c, weights=weights, minlength=n_codes)) / 2
    return intra / two_m - resolution * float(np.dot(community_degree, community_degree)) / two_m**2


BALANCE_FLOOR = 0.5  # total weight below this share of the absolute weight: negative weights dominate Q


def _check_resolution(resolution) -> None:
    if isinstance(resolution, bool) or not isinstance(resolution, (int, float, np.integer, np.floating)) \
            or not math.isfinite(resolution):
        raise ValueError(f"resolution must be a finite number (γ, 1 for Newman's modularity), got {resolution!r}.")


class _Balance(NamedTuple):
    """A graph's total weight ``Σw`` against its absolute weight ``Σ|w|``, and its Q. With
    nonnegative weights the two are equal and Q lies in [−1/2, 1]; negative weights that nearly
    cancel the positive ones make ``2m`` small and Q unbounded."""

    total: float
    absolute: float
    q: float

    @classmethod
    def of(cls, weights, q: float) -> _Balance:
        return cls(float(np.sum(weights)), float(np.sum(np.abs(weights))), float(q))

    @property
    def degenerate(self) -> bool:
        return self.total < BALANCE_FLOOR * self.absolute or not -1.0 <= self.q <= 1.0

    def describe(self) -> str:
        return (f"the graph's total weight {self.total:.4g} is {self.total / self.absolute:.2g} of its absolute "
                f"weight {self.absolute:.4g} (negative weights cancel positive ones; Q = {self.q:.4g}).")


def _batch_bounds(n: int, batch_size: int, n_batches: int | None) -> list[tuple[int, int]]:
    """Consecutive full batches of ``batch_size`` (all N as one batch when N < ``batch_size``), at
    most ``n_batches``; a warning gives the count of samples left out by a partial last batch or
    by fewer full batches than ``n_batches`` asked for."""
    if n < batch_size:
        return [(0, n)]
    full = n // batch_size
    used = full if n_batches is None else min(full, n_batches)
    bounds = [(b * batch_size, (b + 1) * batch_size) for b in range(used)]
    if n_batches is not None and n_batches > full:
        warn_user(f"modularity_curve: n_batches={n_batches} asked for, but only {full} full batch(es) of "
                  f"{batch_size} fit in N={n}; using {full}.")
    if used == full and n % batch_size:
        divisors = [b for b in range(batch_size, 1, -1) if n % b == 0]
        hint = f" (batch_size={divisors[0]} uses all of them)" if divisors and divisors[0] > batch_size // 2 else ""
        warn_user(f"modularity_curve: the last {n % batch_size} of {n} samples are left out: they do not "
                  f"fill a batch of {batch_size}, and kNN modularity depends on the batch size, so batches "
                  f"of another size are not averaged in{hint}.")
    return bounds


def _check_batch_labels(codes: np.ndarray, bounds, order, label) -> None:
    """Warn about label sets that make a batch's Q meaningless: batches covering fewer classes
    than the whole set (class-sorted data), labels with one sample per class (continuous) and a
    single class (``label``: the first sample's label)."""
    n_classes = len(np.unique(codes))
    if n_classes == 1:
        warn_user(f"modularity_curve: every label is {label!r}, so each batch's partition is one class and "
                  "Q = 0 at every layer; pass labels with two or more classes.")
        return
    used = np.concatenate([order[a:b] for a, b in bounds])
    if len(np.unique(codes[used])) == len(used) and len(used) > 1:
        warn_user("modularity_curve: every sample has its own label (continuous labels?): each class is "
                  "a single node, so Q only measures the graph, not class structure. Pass class labels.")
        return
    short = [(i, len(np.unique(codes[order[a:b]]))) for i, (a, b) in enumerate(bounds)]
    short = [(i, c) for i, c in short if c < n_classes]
    if short:
        listed = ", ".join(f"batch {i}: {c}" for i, c in short[:5]) + (" ..." if len(short) > 5 else "")
        warn_user(f"modularity_curve: {len(short)} of {len(bounds)} batch(es) cover fewer than the "
                  f"{n_classes} classes ({listed}): the data look sorted by class, and such a batch's Q "
                  "is not comparable. Pass shuffle=<seed> (or shuffle the data).")


class _Batch(NamedTuple):
    """One batch of ``modularity_curve``: samples ``start:stop`` of the order, and the ``rows`` it
    takes (the slice itself, or the sorted sample indices when the samples were shuffled)."""

    start: int
    stop: int
    rows: object


def _check_curve_options(k, batch_size, n_batches, shuffle, negative) -> None:
    if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}.")
    if not isinstance(batch_size, (int, np.integer)) or isinstance(batch_size, bool) or batch_size < 2:
        raise ValueError(f"batch_size must be an integer >= 2, got {batch_size!r}.")
    if n_batches is not None and (not isinstance(n_batches, (int, np.integer)) or isinstance(n_batches, bool)
                                  or n_batches < 1):
        raise ValueError(f"n_batches must be None (every full batch) or an integer >= 1, got {n_batches!r}.")
    if shuffle is not None and (not isinstance(shuffle, (int, np.integer)) or isinstance(shuffle, bool) or shuffle < 0):
        raise ValueError(f"shuffle must be None (the samples' own order) or a seed, an integer >= 0, got {shuffle!r}.")
    if negative not in NEGATIVE:
        raise ValueError(f"negative must be one of {NEGATIVE} (what to do with negative kNN weights), "
                         f"got {negative!r}.")


def _batch_plan(labels, n: int, layer, batch_size: int, n_batches, shuffle) -> list[_Batch]:
    """The batches of every layer (N = ``n``; ``layer`` names the labels in errors): full batches of
    the sample order (a random permutation seeded by ``shuffle``, or none), with the warnings about
    left-out samples and batches that miss classes."""
    if labels is None:
        raise ValueError("No labels: pass labels=... or capture activations from data with labels.")
    classes, codes = as_label_classes(labels, n, name=f"labels (for layer {layer!r})")
    if n < 2:
        raise ValueError(f"layer {layer!r} holds {n} sample(s); a sample graph needs at least 2.")
    order = np.arange(n) if shuffle is None else np.random.default_rng(shuffle).permutation(n)
    bounds = _batch_bounds(n, batch_size, n_batches)
    _check_batch_labels(codes, bounds, order, classes.tolist()[0])
    return [_Batch(a, b, slice(a, b) if shuffle is None else np.sort(order[a:b])) for a, b in bounds]


def _stacks_batches(batched, on_cuda: bool, n_batches: int) -> bool:
    """Whether a layer's batches go through one ``knn_edges_batched`` call: as ``batched`` says
    (default: on CUDA), and only when there are several."""
    return (on_cuda if batched is None else bool(batched)) and n_batches > 1


class _LayerValues(NamedTuple):
    """What ``_batch_values`` gives for some batches of one layer: Q of each, the number of batches
    in which the layer is constant, and ``(start, stop, balance)`` of those whose ``_Balance`` is
    degenerate."""

    values: list
    constant: int
    unbalanced: list


def _batch_values(X, batches, batch_codes, k: int, layer, device, stack: bool, stack_name: str,
                  negative: str = "keep") -> _LayerValues:
    """The modularity of the partition ``batch_codes[i]`` on the cosine kNN graph ``(A + Aᵀ)/2`` of
    each batch ``batches[i]`` of one layer's rows ``X`` (anything that ``X[rows]`` reads), its
    negative weights kept, dropped or refused as ``negative`` says (``negative_edges``), with the
    counts ``_LayerValues`` keeps for ``_curve_table``'s warnings. ``stack``: all of them in one
    ``knn_edges_batched`` call named ``stack_name``, else one ``knn_edges`` each."""
    features = []
    for batch in batches:
        shuffled = "" if isinstance(batch.rows, slice) else ", shuffled"
        name = f"layer {layer!r} (samples {batch.start}:{batch.stop}{shuffled})"
        Xb = as_features(X[batch.rows], name=name, device=device, check_finite=False)
        if Xb.shape[0] <= k:
            raise ValueError(f"{name} has N={Xb.shape[0]} samples but k={k}: a kNN graph needs N > k.")
        features.append((name, Xb))
    constant = sum(is_constant_rows(Xb) for _, Xb in features)
    if stack:
        edges = knn_edges_batched(torch.stack([Xb for _, Xb in features]), k, "cosine", name=stack_name)
    else:
        edges = [knn_edges(Xb, k, "cosine", name=name) for name, Xb in features]
    values, unbalanced = [], []
    for (name, _), batch, (r, c, w), codes in zip(features, batches, edges, batch_codes):
        r, c, w = negative_edges(r, c, w, negative, name=name)
        if float(np.sum(w)) == 0:
            raise ValueError(f"{name}: its kNN graph's total edge weight is 0, so modularity is undefined (an "
                             "all-zero layer, or negative cosine weights that cancel the positive ones). Leave "
                             "the layer out, or use larger batches, a smaller k or negative='clip'.")
        values.append(edge_modularity(r, c, w, codes))  # of (A + Aᵀ)/2
        balance = _Balance.of(w, values[-1])
        if balance.degenerate:
            unbalanced.append((batch.start, batch.stop, balance))
    return _LayerValues(values, constant, unbalanced)


def _warn_unbalanced(layer, unbalanced, n_batches: int, k: int, batch_size: int) -> None:
    """One warning for a layer whose kNN graphs have degenerate ``_Balance`` in some batches."""
    if not unbalanced:
        return
    start, stop, worst = min(unbalanced, key=lambda u: u[2].total / u[2].absolute)
    qs = [b.q for _, _, b in unbalanced]
    warn_user(f"modularity_curve: layer {layer!r}: in {len(unbalanced)} of {n_batches} batch(es) negative cosine "
              f"weights nearly cancel the positive ones (total weight under {BALANCE_FLOOR:g} of the absolute "
              f"weight) or Q leaves [-1, 1] (Q of those batches from {min(qs):.4g} to {max(qs):.4g}); the worst, "
              f"samples {start}:{stop}: total weight {worst.total:.4g} against absolute weight {worst.absolute:.4g}. "
              "Such a Q is not comparable with other layers' (modularity with nonnegative weights lies in "
              f"[-1/2, 1]). Use larger batches (batch_size={batch_size}), a smaller k (k={k}), post-activation "
              "layers, or negative='clip' to drop the negative edges.")


def _curve_table(layers, results, batches, *, k, batch_size, n_batches, shuffle, negative) -> pd.DataFrame:
    """The curve from each layer's ``_LayerValues`` (``_batch_values`` over all its batches): mean
    and sample std (ddof = 1; NaN for one batch) per layer, a warning per constant layer and one per
    layer with degenerate (negative-dominated) graphs."""
    rows = []
    n_used = sum(b.stop - b.start for b in batches)
    for depth, (layer, (values, constant, unbalanced)) in enumerate(zip(layers, results)):
        if constant:
            warn_user(f"modularity_curve: layer {layer!r} is constant (every sample has the same features) "
                      f"in {constant} of {len(batches)} batch(es): its kNN graph, and Q, only reflect "
                      "tie-breaking by index.")
        _warn_unbalanced(layer, unbalanced, len(batches), k, batch_size)
        rows.append({"layer": layer, "depth": depth, "modularity": float(np.mean(values)),
                     "std": float(np.std(values, ddof=1)) if len(values) > 1 else float("nan"),
                     "n_samples": n_used})
    curve = pd.DataFrame(rows, columns=["layer", "depth", "modularity", "std", "n_samples"])
    return described(curve, "modularity of the label partition on a cosine kNN graph", "Lu et al., ECCV 2022",
                     k=k, batch_size=batch_size, n_batches=n_batches, n_batches_used=len(batches),
                     n_samples=n_used, shuffle=shuffle, negative=negative, symmetrize="mean", metric="cosine")


def _batches_per_task(sources, batches, runner, stack: bool) -> int:
    """Consecutive batches of one layer per task: at most the working memory's worth of rows
    read, and few enough per task that every slot of a cluster still gets about four tasks (a
    task costs the scheduler milliseconds; a 500×256 batch is ~9 ms of work). Batches stacked
    into one ``knn_edges_batched`` call go in whole multiples of its groups of batches, so each
    group is the same whatever the runner (the same products, to the bit)."""
    rows = max(b.stop - b.start for b in batches)
    batch_bytes = 4 * rows * max(math.prod(s.shape[1:]) for s in sources)
    in_budget = runner.working_memory * 2**20 // batch_bytes
    step = max(1, min(in_budget, math.ceil(len(sources) * len(batches) / (4 * runner.slots))))
    group = batch_steps(len(batches), rows)[0] if stack else 1
    return max(1, step // group) * group


def _merged(parts) -> _LayerValues:
    """One layer's ``_LayerValues`` from those of its tasks, in batch order."""
    return _LayerValues([v for part in parts for v in part.values], sum(part.constant for part in parts),
                        [u for part in parts for u in part.unbalanced])


def modularity_curve(acts, labels=None, *, k: int = 3, batch_size: int = 500, n_batches: int | None = None,
                     shuffle: int | None = None, negative: str = "keep", device=None,
                     batched: bool | None = None, progress: bool = True, client=None) -> pd.DataFrame:
    """Layer-wise modularity of the ground-truth class partition (Lu et al., ECCV 2022, §3).

    For every layer and every consecutive batch of ``batch_size`` samples (the reference protocol:
    the first 5 batches of 500 unshuffled test samples, ``n_batches=5``; ``None`` uses every full
    batch, or one batch of all N when N < ``batch_size``): flatten to (N, D), cosine kNN graph with
    ``k`` neighbours (``knn_graph``), ``A = (A + Aᵀ)/2``, then ``modularity(A, labels)``.
    ``modularity`` is the mean over batches, ``std`` their sample standard deviation (ddof = 1, as
    the reference's ``torch.std``; NaN when there is one batch).

    Parameters
    ----------
    acts : Activations, mapping layer -> array (N, ...), ``open_store(path)`` or a store's path
    labels : array (N,), optional
        Class of each sample; default ``acts.labels``.
    k : int
        Neighbours per sample (Lu et al.: 3).
    batch_size : int
        Samples per graph (Lu et al.: 500). Only full batches are averaged (kNN modularity depends
        on the batch size); samples that do not fill one are left out with a warning.
    n_batches : int, optional
        Use only the first ``n_batches`` batches (≥ 1); default all.
    shuffle : int, optional
        Seed of a random assignment of samples to batches, the same for every layer, for data
        sorted by class (each batch keeps its samples in their original order); an integer ≥ 0.
    negative : {"keep", "clip", "raise"}
        What to do with negative cosine weights of the kNN graphs (zero-mean, pre-activation
        features): ``keep`` them (default; as networkx's modularity), drop them (``clip``) or
        raise. Recorded in ``attrs``.
    device : str or torch.device, optional
        Where the Gram products and top-k run (default: where the activations are; CPU for numpy).
    batched : bool, optional
        Build the kNN graphs of all batches of a layer at once (``knn_edges_batched``: one batched
        product and top-k per group of batches within the working-memory budget), instead of one
        batch at a time. The neighbours are the same (float64 re-scoring of near ties either way);
        weights of rows without near ties may differ in the last float32 bit. Default: batched on
        CUDA, where one batch at a time is bound by kernel launches; one at a time elsewhere (on CPU
        it uses the cheaper block-triangular Gram product).
    progress : bool
        Show a progress bar over the layers.
    client : distributed.Client, optional
        Compute on this Dask cluster; default: an enclosing ``repgraph.parallel`` block's, else here.
        The plan is the same either way: a task per (layer, run of consecutive batches), at most
        the working memory's worth of rows each (about four tasks per worker thread on a
        cluster; with ``batched``, whole groups of the batched product), each reading its own
        rows (a store's file on the worker, or an array sent once), so the values are equal.

    Returns
    -------
    DataFrame (layer, depth, modularity, std, n_samples); ``attrs`` record the parameters,
    ``n_batches_used`` and ``n_samples`` (the samples used).

    Raises
    ------
    TypeError
        If ``acts`` is not a non-empty mapping.
    ValueError
        Without labels, for labels of the wrong length or with NaN/None, ``k`` < 1,
        ``batch_size`` < 2, ``n_batches`` < 1, ``shuffle`` not None or an integer ≥ 0, a bad
        ``negative``, NaN/Inf features (naming the layer), a batch with N ≤ k, or a batch whose
        kNN graph has total weight ≤ 0 (naming the layer and the samples).
    TypeError
        If the labels mix numbers and strings.

    Warns
    -----
    UserWarning
        When samples are left out (with the count); when batches cover fewer classes than the
        whole label set (sorted data: use ``shuffle``); when every sample has its own label
        (continuous labels); when they hold one class (Q = 0); when a layer is constant over a
        batch (every sample alike); once per layer whose kNN graphs, in some batches, have
        negative weights that nearly cancel the positive ones (total weight under half the
        absolute weight) or a Q outside [−1, 1], with the count, the worst batch and the fixes.

    Notes
    -----
    Lu et al.'s code lets a node pick itself (weight 0) when it has fewer than k positive
    similarities; here the k neighbours are always other nodes (see ``knn_graph``).

    References
    ----------
    Lu et al., "Understanding the Dynamics of DNNs Using Graph Modularity", ECCV 2022;
    github.com/yaolu-zjut/Dynamic-Graphs-Construction.

    Examples
    --------
    >>> import numpy as np
    >>> from repgraph import modularity_curve
    >>> rng = np.random.default_rng(0)
    >>> labels = np.arange(200) % 4
    >>> centres = 5 * rng.normal(size=(4, 10))
    >>> layers = {"noise": rng.normal(size=(200, 10)), "clusters": centres[labels] + rng.normal(size=(200, 10))}
    >>> curve = modularity_curve(layers, labels, batch_size=100, progress=False)
    >>> curve[["layer", "n_samples"]].values.tolist(), bool(curve["modularity"].iloc[1] > 0.7)
    ([['noise', 200], ['clusters', 200]], True)
    """
    _check_curve_options(k, batch_size, n_batches, shuffle, negative)  # before any data is sent
    with planning(client) as runner:
        sources, stored_labels = layer_sources(acts, runner)
        labels = stored_labels if labels is None else labels
        batches = _batch_plan(labels, sources[0].n, sources[0].layer, batch_size, n_batches, shuffle)
        codes = [as_label_codes(labels, s.n, name=f"labels (for layer {s.layer!r})") for s in sources]
        on_cuda = [resolve_device(device).type == "cuda" if device is not None else s.device == "cuda"
                   for s in sources]
        stack = [_stacks_batches(batched, cuda, len(batches)) for cuda in on_cuda]
        step = _batches_per_task(sources, batches, runner, any(stack))
        starts = range(0, len(batches), step)
        tasks = []
        for source, layer_codes, layer_stack in zip(sources, codes, stack):
            for i in starts:
                group = batches[i:i + step]
                name = source.name if len(group) == len(batches) else f"{source.name} (batches {i}:{i + len(group)})"
                tasks.append(runner.submit(_batch_values, source.data, group, [layer_codes[b.rows] for b in group],
                                           int(k), source.layer, device, layer_stack, name, negative))
        parts = runner.results(tasks, desc="modularity", progress=progress)
    results = [_merged(parts[j:j + len(starts)]) for j in range(0, len(parts), len(starts))]
    return _curve_table([s.layer for s in sources], results, batches, k=k, batch_size=batch_size,
                        n_batches=n_batches, shuffle=shuffle, negative=negative)
