"""Permutation calibration of a similarity score (Gröger et al., ICML 2026): the null of the
score under random pairings of the samples, its p-value, the (1 − α) threshold τ and the score
rescaled above it, exactly as ``aristotelian/metrics/calibration.py`` and ``aggregation.py`` of
github.com/mlbio-epfl/Aristotelian at commit 785054b define them."""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from .._arrays import check_count
from .._warnings import warn_user
from .similarity_measures import get_measure

#: The z-score's guard, Aristotelian's ``utils.EPS``: z = (s − mean(null)) / (std(null) + EPS).
EPS = 1e-8


class CalibratedScore(NamedTuple):
    """A score with its permutation calibration (``calibrate``, ``calibrated_score``).

    Every field but ``tau``, ``null_mean`` and ``null`` is *oriented*: for a measure where lower is
    more similar it is computed on −score, so a larger ``calibrated``, ``null_centred`` or ``z``
    always means more similar than the null.

    Parameters
    ----------
    score : float
        The raw score s of the unpermuted pair.
    p_value : float
        ``(1 + #{null ≥ s}) / (K + 1)`` (add-one estimator, ties count against s; ``≤`` when lower
        is more similar).
    tau : float
        The threshold τ, in the measure's units: the ⌈(1 − α)(K + 1)⌉-th smallest of the null
        together with s (largest, when lower is more similar).
    calibrated : float
        The gated score ``min(max(0, (s − τ)/(s_max − τ)), 1)`` (0 when s ≤ τ, 1 when
        s_max ≤ τ < s); for an unbounded measure (maximum None) ``max(s − τ, 0)``, in the
        measure's units.
    null_mean : float
        mean(null), in the measure's units.
    null_std : float
        std(null), population (ddof = 0, ``numpy.std``'s default, as the reference).
    null_centred : float
        s − mean(null) (oriented).
    z : float
        (s − mean(null)) / (std(null) + 1e-8) (oriented; the reference's guard against a
        constant null).
    null : ndarray (K,)
        The null scores, one per permutation.
    n_permutations : int
        K.
    alpha : float
        The level α of τ.

    Notes
    -----
    A NamedTuple: it unpacks, and ``_replace`` works; comparing two results with ``==`` compares
    their ``null`` arrays element-wise (numpy's ambiguity error), so compare fields instead.

    References
    ----------
    Gröger, Wen & Brbić,
    "Revisiting the Platonic Representation Hypothesis: An Aristotelian View", ICML 2026 (arXiv 2602.14486); github.com/mlbio-epfl/
    Aristotelian at 785054b, ``aristotelian/metrics/calibration.py`` (``compute_calibration_stats``,
    ``compute_null_variants``) and ``aggregation.py`` (``tau_order_statistic``, ``gated_rescaled``).

    Examples
    --------
    >>> import numpy as np
    >>> from repgraph.analyzers.calibration import calibrated_score
    >>> r = calibrated_score(0.95, np.linspace(0.1, 0.9, 9), alpha=0.1)
    >>> r.p_value, r.tau, round(r.calibrated, 12)
    (0.1, 0.9, 0.5)
    """

    score: float
    p_value: float
    tau: float
    calibrated: float
    null_mean: float
    null_std: float
    null_centred: float
    z: float
    null: np.ndarray
    n_permutations: int
    alpha: float


def _check_alpha(alpha) -> float:
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float, np.floating)) or not 0.0 < float(alpha) < 1.0:
        raise ValueError(f"alpha must be a level in (0, 1), e.g. 0.05, got {alpha!r}.")
    return float(alpha)


def _finite(value, what: str) -> float:
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{what} is {value}; a calibration needs finite scores (check the measure and its inputs).")
    return value


def threshold(null, score: float, alpha: float) -> float:
    """τ = the ⌈(1 − α)·m⌉-th smallest of the null together with ``score`` (m = K + 1 values;
    the rank clipped to [1, m]): Aristotelian's ``tau_order_statistic(null, 1 − α, obs=score)``,
    computed as it does (``ceil((1.0 − alpha)·m)`` in floating point).

    Parameters
    ----------
    null : array (K,)
    score : float
    alpha : float

    Returns
    -------
    float

    Examples
    --------
    >>> from repgraph.analyzers.calibration import threshold
    >>> threshold([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9], 0.05, 0.1)    # 9th of 10 values
    0.8
    """
    values = np.sort(np.append(np.asarray(null, dtype=np.float64), float(score)))
    rank = min(max(int(np.ceil((1.0 - float(alpha)) * values.size)), 1), values.size)
    return float(values[rank - 1])


def gated(score: float, tau: float, maximum: float | None) -> float:
    """The calibrated (gated, rescaled) score: 0 when s ≤ τ; else 1 when s_max ≤ τ or
    |s_max − τ| ≤ 1e-8; else ``min((s − τ)/(s_max − τ), 1)``; with no maximum ``max(s − τ, 0)``
    (Aristotelian's ``gated_rescaled``).

    Parameters
    ----------
    score : float
    tau : float
    maximum : float or None

    Returns
    -------
    float

    Examples
    --------
    >>> from repgraph.analyzers.calibration import gated
    >>> gated(0.9, 0.5, 1.0), gated(0.4, 0.5, 1.0), gated(3.0, 1.0, None)
    (0.8, 0.0, 2.0)
    """
    if maximum is None:
        return float(max(score - tau, 0.0))
    if score <= tau:
        return 0.0
    if maximum <= tau or abs(maximum - tau) <= EPS:
        return 1.0
    return float(min((score - tau) / (maximum - tau), 1.0))


def calibrated_score(score: float, null, *, alpha: float = 0.05, maximum: float | None = 1.0,
                     higher_is_more_similar: bool = True) -> CalibratedScore:
    """Calibrate ``score`` against its permutation ``null`` (K scores), as Gröger et al.:

    - ``p = (1 + #{null ≥ s}) / (K + 1)`` (add-one; ties count against s);
    - ``τ`` = the ⌈(1 − α)(K + 1)⌉-th smallest of the null together with s;
    - calibrated ``= min(max(0, (s − τ)/(s_max − τ)), 1)``, s_max = ``maximum``; without a
      maximum ``max(s − τ, 0)`` (the reference's choice: gated, not rescaled);
    - ``null_centred = s − mean(null)``, ``z = (s − mean(null)) / (std(null) + 1e-8)``, std with
      ddof = 0.

    For a measure where lower is more similar (``higher_is_more_similar=False``) all of this is
    applied to −s and −null (so p counts null ≤ s, τ is the ⌈(1 − α)(K + 1)⌉-th *largest*, and
    ``maximum`` is the best, smallest, value); τ and ``null_mean`` are reported in the measure's
    units, the other fields oriented (larger = more similar than chance).

    Follows Aristotelian at commit 785054b, its latest: τ the exact ceiling order statistic
    (``tau_order_statistic``) and centring on the null's mean. Its earlier commits (692a41f,
    2684a87) used ``numpy.quantile``'s interpolated τ, centred on the median, and did not cap the
    gated score at 1.

    Parameters
    ----------
    score : float
        The raw score s.
    null : array (K,)
        The scores of K permuted pairings.
    alpha : float
        Level of τ, in (0, 1).
    maximum : float or None
        The measure's bound on its similar side; None: unbounded.
    higher_is_more_similar : bool

    Returns
    -------
    CalibratedScore

    Raises
    ------
    ValueError
        For a non-finite score or null value, an empty null, or α outside (0, 1).

    Warns
    -----
    UserWarning
        When 1/(K + 1) > α: no score can pass τ, the calibrated score is always 0 (the message
        gives the K needed).

    References
    ----------
    Gröger, Wen & Brbić,
    "Revisiting the Platonic Representation Hypothesis: An Aristotelian View", ICML 2026 (arXiv 2602.14486); github.com/mlbio-epfl/
    Aristotelian at 785054b; Phipson & Smyth, "Permutation P-values Should Never Be Zero",
    Stat. Appl. Genet. Mol. Biol. 2010 (the add-one estimator).

    Examples
    --------
    >>> import numpy as np
    >>> from repgraph.analyzers.calibration import calibrated_score
    >>> r = calibrated_score(0.95, [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9], alpha=0.1)
    >>> r.p_value, r.tau, round(r.calibrated, 12), round(r.null_centred, 12)
    (0.1, 0.9, 0.5, 0.45)
    """
    alpha = _check_alpha(alpha)
    null = np.asarray(null, dtype=np.float64).reshape(-1)
    if null.size == 0:
        raise ValueError("null is empty; a calibration needs at least one permuted score.")
    if not np.isfinite(null).all():
        raise ValueError(f"null holds {int((~np.isfinite(null)).sum())} non-finite value(s); a calibration needs "
                         "finite scores (check the measure and its inputs).")
    score = _finite(score, "the score")
    sign = 1.0 if higher_is_more_similar else -1.0
    s, values = sign * score, sign * null
    best = None if maximum is None else sign * float(maximum)
    k = null.size
    if 1.0 / (k + 1) > alpha:
        warn_user(f"calibration: with {k} permutations the smallest p-value is 1/{k + 1} > alpha={alpha}, so no "
                  f"score passes tau and the calibrated score is 0; use n_permutations >= {math.ceil(1 / alpha) - 1}.")
    p_value = float((np.sum(values >= s) + 1.0) / (k + 1.0))
    tau = threshold(values, s, alpha)
    mean, std = float(values.mean()), float(values.std())
    return CalibratedScore(score=score, p_value=p_value, tau=sign * tau, calibrated=gated(s, tau, best),
                           null_mean=sign * mean, null_std=std, null_centred=float(s - mean),
                           z=float((s - mean) / (std + EPS)), null=null, n_permutations=k, alpha=alpha)


def permutations(n: int, n_permutations: int, seed=None) -> np.ndarray:
    """``(K, n)`` random permutations of ``range(n)``, one per row, from ``numpy.random.default_rng(seed)``
    (``Generator.permuted`` of the tiled range along its rows): the same seed gives the same
    permutations.

    Parameters
    ----------
    n : int
        Samples.
    n_permutations : int
        K, at least 1.
    seed : int, numpy.random.Generator or None
        None: fresh entropy (not reproducible).

    Returns
    -------
    ndarray (K, n) of int64

    Examples
    --------
    >>> from repgraph.analyzers.calibration import permutations
    >>> P = permutations(5, 3, seed=0)
    >>> P.shape, sorted(P[0].tolist()) == list(range(5))
    ((3, 5), True)
    """
    n_permutations = check_count(n_permutations, "n_permutations")
    rng = np.random.default_rng(seed)
    return rng.permuted(np.tile(np.arange(n, dtype=np.int64), (n_permutations, 1)), axis=1)


def null_scores(measure, state_x, state_y, perms) -> np.ndarray:
    """``score(state_x, permute(state_y, perm))`` for each row ``perm`` of ``perms``: the null of
    the pair, from the prepared states (nothing prepared again).

    Parameters
    ----------
    measure : SimilarityMeasure
    state_x, state_y : object
        Prepared layers (``measure.prepare``).
    perms : ndarray (K, N)

    Returns
    -------
    ndarray (K,) of float64

    Examples
    --------
    >>> import numpy as np
    >>> from repgraph.analyzers import get_measure
    >>> from repgraph.analyzers.calibration import null_scores, permutations
    >>> m = get_measure("cka")
    >>> X = np.random.default_rng(0).normal(size=(10, 2))
    >>> null_scores(m, m.prepare(X), m.prepare(X), permutations(10, 4, seed=0)).shape
    (4,)
    """
    return np.array([measure.score(state_x, measure.permute(state_y, perm)) for perm in perms], dtype=np.float64)


def calibrated_pair(measure, state_x, state_y, perms, alpha: float) -> CalibratedScore:
    """``calibrated_score`` of ``score(state_x, state_y)`` against ``null_scores`` over ``perms``
    (``calibrate`` and ``layer_similarity(calibrate=True)`` share it)."""
    score = _finite(measure.score(state_x, state_y), f"the {measure.name} score")
    return calibrated_score(score, null_scores(measure, state_x, state_y, perms), alpha=alpha,
                            maximum=measure.maximum, higher_is_more_similar=measure.higher_is_more_similar)


def calibrate(measure, X, Y, n_permutations: int = 200, alpha: float = 0.05, seed=None, *, device=None,
              **measure_params) -> CalibratedScore:
    """The score of X and Y under ``measure``, calibrated against a permutation null (Gröger et
    al., ICML 2026): X and Y are prepared once; the null is ``score(X, Y[π_k])`` for K random
    permutations π_k of Y's rows, each from ``measure.permute`` of Y's prepared state; then
    ``calibrated_score``:

    - ``p = (1 + #{null ≥ s}) / (K + 1)``;
    - ``τ`` = the ⌈(1 − α)(K + 1)⌉-th smallest of null ∪ {s};
    - calibrated ``= min(max(0, (s − τ)/(s_max − τ)), 1)`` (``max(s − τ, 0)`` for a measure without
      a maximum: in its units, not rescaled);
    - ``null_centred = s − mean(null)``, ``z = (s − mean(null))/(std(null) + 1e-8)``, ddof = 0.

    A lower-is-more-similar measure is calibrated on −s (p counts null ≤ s). As Aristotelian at
    785054b (``compute_calibration_stats``); its earlier versions took ``numpy.quantile`` for τ
    and centred on the median.

    Parameters
    ----------
    measure : str or SimilarityMeasure
        A registered name (``measure_names()``) or a measure.
    X, Y : array or tensor (N, ...)
        Two representations of the same N samples.
    n_permutations : int
        K; the smallest attainable p-value is 1/(K + 1).
    alpha : float
        Level of τ, in (0, 1).
    seed : int, numpy.random.Generator or None
        Seed of the permutations (``numpy.random.default_rng``); None is not reproducible.
    device : str or torch.device, optional
        Passed to the measure's ``prepare`` (the built-ins take it).
    **measure_params
        The measure's parameters (its ``defaults``: ``sigma`` for ``cka_rbf``, ``k`` for ``gbs_knn``).

    Returns
    -------
    CalibratedScore

    Raises
    ------
    ValueError
        For X and Y of different N, an unknown measure, non-finite scores, α outside (0, 1).
    TypeError
        For a parameter the measure does not take, or ``n_permutations`` not an integer.

    References
    ----------
    Gröger, Wen & Brbić,
    "Revisiting the Platonic Representation Hypothesis: An Aristotelian View", ICML 2026 (arXiv 2602.14486); github.com/mlbio-epfl/
    Aristotelian at 785054b; Klabunde et al., ICLR 2025 (the measures).

    Examples
    --------
    >>> import numpy as np
    >>> from repgraph import calibrate
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(50, 5))
    >>> r = calibrate("cka", X, X @ np.linalg.qr(rng.normal(size=(5, 5)))[0], n_permutations=99, seed=0)
    >>> round(r.score, 6), r.p_value, r.calibrated > 0.9
    (1.0, 0.01, True)
    >>> r = calibrate("cka", X, rng.normal(size=(50, 5)), n_permutations=99, seed=0)
    >>> r.calibrated, r.p_value > 0.05
    (0.0, True)
    """
    measure = get_measure(measure)
    params = measure.parameters(measure_params)
    n_permutations = check_count(n_permutations, "n_permutations")
    alpha = _check_alpha(alpha)
    if len(X) != len(Y):
        raise ValueError(f"X has {len(X)} samples but Y has {len(Y)}; calibration permutes the pairing of the "
                         "same samples.")
    sx = measure.prepare_layer(X, device=device, name="X", **params)
    sy = measure.prepare_layer(Y, device=device, name="Y", **params)
    return calibrated_pair(measure, sx, sy, permutations(len(Y), n_permutations, seed), alpha)
