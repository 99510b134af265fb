"""One way to compare every pair of layers with any registered similarity measure, optionally
calibrated by permutation (Gröger et al., ICML 2026)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .._arrays import check_count
from .._results import described
from ..execution.runner import planning
from ..execution.sources import compared_sources
from .calibration import _check_alpha, calibrated_pair, permutations
from .cka import cka_matrix
from .gbs import gbs_matrix
from .similarity_measures import BUILTINS, get_measure, measure_names

#: the fields of a pair's CalibratedScore that ``attrs["calibration"]`` holds, one L × L' frame each
CALIBRATION_FIELDS = ("score", "p_value", "tau", "null_mean", "null_std", "null_centred", "z")


#: the built-ins whose uncalibrated matrix comes from cka_matrix / gbs_matrix (same values, same attrs)
_MATRICES = {
    "cka": lambda acts, acts2, params, **kw: cka_matrix(acts, acts2, **kw),
    "cka_debiased": lambda acts, acts2, params, **kw: cka_matrix(acts, acts2, debiased=True, **kw),
    "cka_rbf": lambda acts, acts2, params, **kw: cka_matrix(acts, acts2, kernel="rbf", sigma=params["sigma"], **kw),
    "gbs": lambda acts, acts2, params, **kw: gbs_matrix(acts, acts2, **kw),
    "gbs_knn": lambda acts, acts2, params, **kw: gbs_matrix(acts, acts2, k=params["k"], **kw),
}


def _prepared(measure, rows, params: dict, device, name: str):
    """Task: one layer read whole and prepared by ``measure``."""
    return measure.prepare_layer(rows[0:len(rows)], device=device, name=name, **params)


def _score(measure, state_a, state_b) -> float:
    """Task: the score of one pair of prepared layers."""
    value = float(measure.score(state_a, state_b))
    if not np.isfinite(value):
        raise ValueError(f"measure {measure.name!r} gave {value} for a pair of layers; it must give finite scores "
                         "(check the layers for constant features).")
    return value


def layer_similarity(acts, acts2=None, measure="cka", *, calibrate: bool = False, n_permutations: int = 200,
                     alpha: float = 0.05, seed=0, client=None, device=None, progress: bool = False,
                     **measure_params) -> pd.DataFrame:
    """Similarity of every layer of ``acts`` with every layer of ``acts2`` (default: ``acts``
    itself) under any registered measure (``measure_names()``), optionally calibrated.

    Built-in measures uncalibrated are computed by ``cka_matrix`` / ``gbs_matrix`` (the same
    values, to the bit, and their ``attrs``). Any other measure: each layer is prepared once
    (one task per layer on the runner) and every pair scored from the prepared states (one task
    per pair); without ``acts2`` only the pairs a ≤ b of a symmetric measure are scored and mirrored.

    With ``calibrate=True`` each pair's score is calibrated against a permutation null
    (``calibrate``): K = ``n_permutations`` permutations of the samples are drawn once from
    ``seed`` and used for every pair, the column layer's prepared state permuted
    (``measure.permute``); the frame holds the calibrated (gated) score
    ``min(max(0, (s − τ)/(s_max − τ)), 1)``, τ the ⌈(1 − α)(K + 1)⌉-th smallest of null ∪ {s}.
    Entry (a, b) equals ``calibrate(measure, acts[a], acts2[b], n_permutations, alpha, seed)``;
    without ``acts2``, (b, a) mirrors (a, b) for a < b.

    Parameters
    ----------
    acts : Activations, mapping layer -> array (N, ...), ``open_store(path)`` or a store's path
    acts2 : same kinds, optional
        A second network's layers on the same samples; default ``acts``.
    measure : str or SimilarityMeasure
        ``"cka"``, ``"cka_debiased"``, ``"cka_rbf"``, ``"gbs"``, ``"gbs_knn"`` or any registered one.
    calibrate : bool
        Calibrate every pair by permutation.
    n_permutations : int
        K, with ``calibrate``.
    alpha : float
        Level of τ, with ``calibrate``.
    seed : int, numpy.random.Generator or None
        Seed of the permutations, with ``calibrate``.
    client : distributed.Client, optional
        Compute on this Dask cluster; default: an enclosing ``repgraph.parallel`` block's, else here.
    device : str or torch.device, optional
        Where the measure prepares and scores (passed to its ``prepare``).
    progress : bool
        Show a progress bar over the pairs.
    **measure_params
        The measure's parameters (its ``defaults``): ``sigma`` for ``cka_rbf``, ``k`` for ``gbs_knn``.

    Returns
    -------
    DataFrame (rows: layers of ``acts``, named ``layer``; columns: of ``acts2``, ``layer2``)
        ``attrs``: ``measure`` (the registered name), ``reference``, ``estimator`` (the measure's
        description, or ``cka_matrix``'s), ``parameters`` (the measure's parameters in force),
        ``higher_is_more_similar``, ``invariances`` (sorted tuple), ``maximum``, ``n_samples``,
        ``calibrated`` (bool) and, from ``cka_matrix`` / ``gbs_matrix``, their own keys. With
        ``calibrate``: ``values`` = "calibrated", ``n_permutations``, ``alpha``, ``seed`` and
        ``calibration``, a dict of L × L' frames (same index and columns) named ``score`` (raw),
        ``p_value``, ``tau``, ``null_mean``, ``null_std``, ``null_centred`` and ``z`` (fields of
        ``CalibratedScore``), plus ``null``, an (L, L', K) array of the null scores.

    Raises
    ------
    TypeError
        If ``acts`` or ``acts2`` is not a non-empty mapping or store, or for a parameter the
        measure does not take.
    ValueError
        For an unknown measure, layers with different N, non-finite scores, α outside (0, 1), or the
        measure's own errors (prefixed with the layer's name).

    References
    ----------
    Klabunde et al., "ReSi: A Comprehensive Benchmark for Representational Similarity Measures",
    ICLR 2025; Gröger, Wen & Brbić, "Revisiting the Platonic Representation Hypothesis: An Aristotelian View", ICML 2026 (arXiv 2602.14486)
    (github.com/mlbio-epfl/Aristotelian at 785054b).

    Examples
    --------
    >>> import numpy as np
    >>> from repgraph import cka_matrix, layer_similarity
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(40, 6))
    >>> acts = {"a": X, "b": X @ np.linalg.qr(rng.normal(size=(6, 6)))[0], "c": rng.normal(size=(40, 6))}
    >>> layer_similarity(acts).equals(cka_matrix(acts, progress=False))
    True
    >>> M = layer_similarity(acts, measure="gbs_knn", k=5, calibrate=True, n_permutations=99)
    >>> M.round(2).loc["a", "b"], M.loc["a", "c"], M.attrs["calibration"]["p_value"].loc["a", "b"]
    (np.float64(1.0), np.float64(0.0), np.float64(0.01))
    """
    if isinstance(acts2, str) and acts2 in measure_names() and not Path(acts2).exists():
        raise TypeError(f"acts2={acts2!r} is the name of a measure, not a second set of layers; pass "
                        f"measure={acts2!r}.")
    m = get_measure(measure)
    params = m.parameters(measure_params)
    delegated = m.name in _MATRICES and BUILTINS.get(m.name) is m  # not a user's replacement of the name
    if calibrate:
        n_permutations = check_count(n_permutations, "n_permutations")
        alpha = _check_alpha(alpha)
    about = dict(measure=m.name, parameters=params, higher_is_more_similar=m.higher_is_more_similar,
                 invariances=tuple(sorted(m.invariances)), maximum=m.maximum, calibrated=bool(calibrate))
    if delegated and not calibrate:
        out = _MATRICES[m.name](acts, acts2, params, device=device, progress=progress, client=client)
        out.attrs.update(about, estimator=out.attrs.get("estimator", m.description))
        if "n_samples" not in out.attrs and _n_samples(acts) is not None:
            out.attrs["n_samples"] = _n_samples(acts)
        return out
    rows, cols, n, pairs, results = _pair_results(m, acts, acts2, params, device, progress, client,
                                                  (n_permutations, seed, alpha) if calibrate else None)
    symmetric, offset = acts2 is None and m.symmetric, 0 if acts2 is None else len(rows)

    def frame(values, extra=()):
        """The pairs' ``values`` as the (L, L'[, extra]) array (mirrored when symmetric), or a frame."""
        out = np.zeros((len(rows), len(cols)) + tuple(extra))
        for (a, b), value in zip(pairs, values):
            out[a, b - offset] = value
            if symmetric:
                out[b, a] = value
        if extra:
            return out
        return pd.DataFrame(out, index=pd.Index(rows, name="layer"), columns=pd.Index(cols, name="layer2"))

    if not calibrate:
        return described(frame(results), m.name, m.reference, estimator=m.description, **_rest(about), n_samples=n)
    tables = {name: frame([getattr(r, name) for r in results]) for name in CALIBRATION_FIELDS}
    tables["null"] = frame([r.null for r in results], (n_permutations,))
    return described(frame([r.calibrated for r in results]), m.name, m.reference, estimator=m.description,
                     **_rest(about), n_samples=n, values="calibrated", n_permutations=n_permutations, alpha=alpha,
                     seed=seed if seed is None or isinstance(seed, (int, np.integer)) else repr(seed),
                     calibration=tables)


def _pair_results(m, acts, acts2, params, device, progress, client, calibration):
    """The plan of a registry measure: one task per layer prepares it, one task per pair (a ≤ b
    without ``acts2``; every pair of ``acts`` × ``acts2`` with it) scores it, or with
    ``calibration = (K, seed, alpha)`` calibrates it against the K permutations drawn once from
    ``seed``. Returns the row and column layers, N, the pairs (indices into acts + acts2) and
    their scores or ``CalibratedScore``s."""
    with planning(client) as runner:
        xs, ys, n = compared_sources(acts, acts2, runner)
        sources = xs + ys
        states = [runner.submit(_prepared, m, s.data, params, device, s.name) for s in sources]
        if runner.in_process:  # every layer prepared (and its errors raised) before any pair is scored
            runner.results(states, desc=f"{m.name} layers", progress=False)
        if acts2 is None:
            pairs = [(a, b) for a in range(len(xs)) for b in (range(a, len(xs)) if m.symmetric else range(len(xs)))]
        else:
            pairs = [(a, len(xs) + b) for a in range(len(xs)) for b in range(len(ys))]
        if calibration is not None:
            n_permutations, seed, alpha = calibration
            perms = runner.share(permutations(n, n_permutations, seed))
            tasks = [runner.submit(calibrated_pair, m, states[a], states[b], perms, alpha) for a, b in pairs]
        else:
            tasks = [runner.submit(_score, m, states[a], states[b]) for a, b in pairs]
        results = runner.results(tasks, desc=f"{m.name} pairs", progress=progress)
        runner.emit_warnings(states)
    return [s.layer for s in xs], [s.layer for s in (ys or xs)], n, pairs, results


def _rest(about: dict) -> dict:
    return {k: v for k, v in about.items() if k != "measure"}


def _n_samples(acts):
    """N of the first layer of ``acts`` when it is a mapping of arrays (None otherwise)."""
    try:
        return len(next(iter(acts.values())))
    except (AttributeError, TypeError, StopIteration):
        return None
