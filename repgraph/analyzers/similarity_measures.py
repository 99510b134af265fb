"""A registry of representation-similarity measures: each measure says how to prepare one layer
once (``prepare``), how to score two prepared layers (``score``) and how to permute a prepared
layer's samples without preparing it again (``permute``, for permutation nulls), and what it is
(orientation, bound, invariances). ``layer_similarity`` and ``calibrate`` take any registered
measure by name; ``register_measure`` adds one (Klabunde et al., ICLR 2025, benchmark such measures;
Gröger et al., ICML 2026, calibrate them by permutation).

Built-ins: ``cka`` (linear, biased HSIC), ``cka_debiased`` (linear, unbiased HSIC), ``cka_rbf``
(``sigma`` = 0.5), ``gbs`` (full cosine sample graph) and ``gbs_knn`` (cosine kNN graph, ``k`` = 3);
their scores are those of ``repgraph.cka`` and ``repgraph.gbs`` (same kernels and graphs, prepared
by ``cka.PreparedKernel`` and ``gbs.PreparedGraph``).

and the kNN-neighbourhood measures ``jaccard_knn``, ``rank_similarity``, ``second_order_cosine``,
``mutual_knn`` and ``cknna`` (``k`` = 10, ReSi's default; one ``neighbourhood(X, k)`` per layer,
permuted by re-indexing; ``repgraph.analyzers.neighbourhood``).

A measure whose prepared state has a ``permuted(perm)`` method registers in one call, as these do::

    register_measure("jaccard_knn", prepare=neighbourhood, score=jaccard_knn, maximum=1.0,
                     invariances={"orthogonal", "isotropic_scaling"}, defaults={"k": 10})
"""
from __future__ import annotations

import difflib
import inspect
import threading
from dataclasses import dataclass, field
from typing import Callable

from .cka import PreparedKernel, prepared_cka
from .gbs import REFERENCE as GBS_REFERENCE
from .gbs import PreparedGraph, prepared_gbs
from .neighbourhood import cknna, jaccard_knn, mutual_knn, neighbourhood, rank_similarity, second_order_cosine

#: What a measure may declare itself invariant to (transformations of one representation X):
#: ``orthogonal`` X ↦ XQ (QᵀQ = I), ``isotropic_scaling`` X ↦ cX (c > 0), ``translation`` X ↦ X + 1bᵀ.
INVARIANCES = frozenset({"orthogonal", "isotropic_scaling", "translation"})


def permuted_state(state, perm):
    """The default ``permute`` of a measure: ``state.permuted(perm)`` (as ``PreparedKernel``,
    ``PreparedGraph`` and ``Neighbourhood`` states offer), or a ``TypeError`` saying what to pass.

    Parameters
    ----------
    state : object
        A prepared layer with a ``permuted(perm)`` method.
    perm : ndarray (N,) of int
        A permutation of the samples.

    Returns
    -------
    object
        The prepared state of ``X[perm]``.

    Examples
    --------
    >>> import numpy as np
    >>> from repgraph.analyzers.gbs import PreparedGraph
    >>> from repgraph.analyzers.similarity_measures import permuted_state
    >>> state = PreparedGraph(np.arange(6.0).reshape(3, 2) + 1)
    >>> permuted_state(state, np.array([2, 0, 1])).graph.shape
    torch.Size([3, 3])
    """
    method = getattr(state, "permuted", None)
    if not callable(method):
        raise TypeError(f"a prepared state of type {type(state).__name__} has no .permuted(perm) method; register "
                        "its measure with permute=f, f(state, perm) giving the state of X[perm].")
    return method(perm)


def _keywords(fn) -> tuple[set, bool]:
    """The keyword parameters ``fn`` accepts, and whether it takes ``**kwargs`` (True when its
    signature cannot be read)."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return set(), True
    named = {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    return named, any(p.kind is p.VAR_KEYWORD for p in params)


@dataclass(frozen=True)
class SimilarityMeasure:
    """A similarity measure between two representations of the same N samples, in three steps:
    ``state = prepare(X, **params)`` once per layer, ``score(state_a, state_b) -> float`` per pair,
    and ``permute(state, perm)``, the state of ``X[perm]`` derived from ``state`` (e.g. a Gram
    matrix ``K ↦ K[perm][:, perm]``), so a permutation null (``calibrate``) never prepares again.

    Parameters
    ----------
    name : str
        The registry key (``layer_similarity(measure=name)``).
    prepare : callable
        ``prepare(X, **params)``: X an (N, ...) array or tensor. If it accepts ``device=`` or
        ``name=`` keywords, ``layer_similarity`` passes the device and the layer's name (for
        messages); else errors it raises are prefixed with the layer's name.
    score : callable
        ``score(state_a, state_b) -> float``.
    permute : callable
        ``permute(state, perm)`` with ``perm`` an (N,) integer permutation; default
        ``permuted_state`` (calls ``state.permuted(perm)``).
    higher_is_more_similar : bool
        Orientation: True for similarities (CKA, GBS), False for distances.
    maximum : float or None
        The bound of the score on its *similar* side, reached by identical representations: the
        supremum when higher is more similar (1 for CKA and GBS), the infimum when lower is (0
        for a distance). The calibrated score rescales to it; None = unbounded.
    invariances : frozenset of str
        A subset of ``{"orthogonal", "isotropic_scaling", "translation"}`` (``INVARIANCES``): the
        transformations of X (XQ, cX, X + 1bᵀ) that leave every score unchanged, for every
        parameter value.
    description : str
        One line: the estimator (recorded as ``attrs["estimator"]``).
    defaults : dict
        The parameters ``prepare`` takes and their default values; ``layer_similarity`` and
        ``calibrate`` accept exactly these as keyword arguments.
    reference : str or None
        Where the measure is defined (recorded as ``attrs["reference"]``).
    symmetric : bool, default True
        Whether ``score(a, b) == score(b, a)``; ``layer_similarity`` without ``acts2`` scores only
        the pairs a ≤ b of a symmetric measure and mirrors them, every ordered pair otherwise
        (CKNNA is not symmetric).

    Raises
    ------
    TypeError
        For a non-callable ``prepare``, ``score`` or ``permute``, or ``defaults`` that are not a mapping
        or name keywords that ``prepare`` does not take.
    ValueError
        For an empty name, an unknown invariance or a non-finite ``maximum``.

    References
    ----------
    Klabunde et al., "ReSi: A Comprehensive Benchmark for Representational Similarity Measures",
    ICLR 2025, and "Similarity of Neural Network Models: A Survey of Functional and
    Representational Measures", ACM Computing Surveys 2025 (the measures and their invariances);
    Gröger, Wen & Brbić, "Revisiting the Platonic Representation Hypothesis: An Aristotelian View", ICML 2026 (arXiv 2602.14486) (permutation calibration; github.com/mlbio-epfl/Aristotelian).

    Examples
    --------
    >>> import numpy as np
    >>> from repgraph.analyzers import SimilarityMeasure, get_measure
    >>> get_measure("cka").maximum, sorted(get_measure("gbs").invariances)
    (1.0, ['isotropic_scaling', 'orthogonal'])
    >>> m = SimilarityMeasure("centroid_cos", prepare=lambda X: np.asarray(X).mean(0),
    ...                       score=lambda a, b: float(a @ b / np.linalg.norm(a) / np.linalg.norm(b)),
    ...                       permute=lambda s, p: s, maximum=1.0)
    >>> round(m.score(m.prepare(np.ones((4, 2))), m.prepare(2 * np.ones((4, 2)))), 12)
    1.0
    """

    name: str
    prepare: Callable
    score: Callable
    permute: Callable = permuted_state
    higher_is_more_similar: bool = True
    maximum: float | None = None
    invariances: frozenset = frozenset()
    description: str = ""
    defaults: dict = field(default_factory=dict)
    reference: str | None = None
    symmetric: bool = True

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name.strip():
            raise ValueError(f"name must be a non-empty string, got {self.name!r}.")
        for what in ("prepare", "score", "permute"):
            if not callable(getattr(self, what)):
                raise TypeError(f"measure {self.name!r}: {what} must be callable, got "
                                f"{type(getattr(self, what)).__name__}.")
        invariances = frozenset([self.invariances] if isinstance(self.invariances, str) else self.invariances)
        unknown = sorted(invariances - INVARIANCES)
        if unknown:
            raise ValueError(f"measure {self.name!r}: unknown invariance(s) {unknown}; choose from "
                             f"{sorted(INVARIANCES)}.")
        object.__setattr__(self, "invariances", invariances)
        object.__setattr__(self, "higher_is_more_similar", bool(self.higher_is_more_similar))
        object.__setattr__(self, "symmetric", bool(self.symmetric))
        if self.maximum is not None:
            maximum = float(self.maximum)
            if maximum != maximum or maximum in (float("inf"), float("-inf")):
                raise ValueError(f"measure {self.name!r}: maximum must be a finite number or None (unbounded), "
                                 f"got {self.maximum!r}.")
            object.__setattr__(self, "maximum", maximum)
        if not hasattr(self.defaults, "keys"):
            raise TypeError(f"measure {self.name!r}: defaults must be a mapping parameter -> default value, got "
                            f"{type(self.defaults).__name__}.")
        object.__setattr__(self, "defaults", dict(self.defaults))
        named, var = _keywords(self.prepare)
        missing = sorted(set(self.defaults) - named) if not var else []
        if missing:
            raise TypeError(f"measure {self.name!r}: defaults name {missing}, which prepare does not take as "
                            "keyword arguments.")

    def __hash__(self):  # equal measures have equal names; defaults (a dict) would not hash
        return hash(self.name)

    def parameters(self, params: dict | None = None) -> dict:
        """The measure's ``defaults`` updated with ``params``; a ``TypeError`` naming the accepted
        parameters for any other key."""
        params = dict(params or {})
        unknown = sorted(set(params) - set(self.defaults))
        if unknown:
            accepted = ", ".join(f"{k}={v!r}" for k, v in self.defaults.items()) or "none"
            raise TypeError(f"measure {self.name!r} takes no parameter(s) {unknown}; its parameters (defaults): "
                            f"{accepted}.")
        return {**self.defaults, **params}

    def prepare_layer(self, X, *, device=None, name: str | None = None, **params):
        """``prepare(X, **parameters(params))``, passing ``device`` and ``name`` where ``prepare``
        takes them (a ``TypeError`` for a device it cannot take); errors of a ``prepare`` that
        takes no name are prefixed with ``name``."""
        kwargs = self.parameters(params)
        named, var = _keywords(self.prepare)
        if device is not None:
            if not (var or "device" in named):
                raise TypeError(f"measure {self.name!r} computes where its prepare puts the data: it takes no "
                                f"device=; pass device=None.")
            kwargs["device"] = device
        if name is not None and (var or "name" in named):
            return self.prepare(X, name=name, **kwargs)
        try:
            return self.prepare(X, **kwargs)
        except (ValueError, TypeError) as err:
            if name is None or type(err) not in (ValueError, TypeError):
                raise
            raise type(err)(f"{name}: {err}") from err


_REGISTRY: dict[str, SimilarityMeasure] = {}
_LOCK = threading.Lock()


def _add(measure: SimilarityMeasure, replace: bool) -> SimilarityMeasure:
    with _LOCK:
        if measure.name in _REGISTRY and not replace:
            raise ValueError(f"a similarity measure named {measure.name!r} is registered already; pass "
                             "replace=True to replace it, or choose another name.")
        _REGISTRY[measure.name] = measure
    return measure


def register_measure(name, prepare=None, score=None, permute=permuted_state, *, higher_is_more_similar: bool = True,
                     maximum: float | None = None, invariances=(), description: str = "", defaults=None,
                     reference: str | None = None, symmetric: bool = True, replace: bool = False):
    """Register a similarity measure under ``name`` (see ``SimilarityMeasure``), so that
    ``layer_similarity(acts, measure=name)`` and ``calibrate(name, X, Y)`` use it.

    Three forms: a call with ``score`` (returns the measure); a decorator of the score function
    when ``score`` is omitted (returns the function unchanged); or a ``SimilarityMeasure`` as the
    only argument (with ``replace=``).

    Parameters
    ----------
    name : str or SimilarityMeasure
        The registry key, or a whole measure.
    prepare : callable
        ``prepare(X, **params) -> state``, once per layer.
    score : callable, optional
        ``score(state_a, state_b) -> float``; omitted: ``register_measure`` returns a decorator.
    permute : callable
        ``permute(state, perm) -> state`` of ``X[perm]``; default ``state.permuted(perm)``.
    higher_is_more_similar : bool
    maximum : float or None
        The score's bound on its similar side (1 for CKA); None = unbounded.
    invariances : iterable of str
        Subset of ``{"orthogonal", "isotropic_scaling", "translation"}``.
    description : str
    defaults : dict, optional
        The parameters of ``prepare`` with their defaults.
    reference : str, optional
    symmetric : bool, default True
        Whether ``score(a, b) == score(b, a)`` (see ``SimilarityMeasure``).
    replace : bool
        Replace a measure already registered under ``name`` (else a ``ValueError``).

    Returns
    -------
    SimilarityMeasure, or the decorated score function, or a decorator

    Raises
    ------
    ValueError
        For a name that is registered already (without ``replace=True``), or a bad declaration.
    TypeError
        For a missing or non-callable ``prepare``, or a measure object with other arguments.

    References
    ----------
    Klabunde et al., ICLR 2025 (measures); Gröger et al., ICML 2026 (calibration).

    Examples
    --------
    >>> import numpy as np
    >>> from repgraph.analyzers import calibrate, register_measure, unregister_measure
    >>> @register_measure("mean_cos", prepare=lambda X: np.asarray(X, dtype=float),
    ...                   permute=lambda s, p: s[p], maximum=1.0, invariances={"orthogonal"})
    ... def mean_cos(a, b):
    ...     return float(np.mean(np.sum(a * b, 1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)))
    >>> X = np.random.default_rng(0).normal(size=(20, 3))
    >>> calibrate("mean_cos", X, X, n_permutations=19, seed=0).p_value    # 1 / (19 + 1)
    0.05
    >>> unregister_measure("mean_cos")
    """
    if isinstance(name, SimilarityMeasure):
        if prepare is not None or score is not None:
            raise TypeError("register_measure(measure) takes a SimilarityMeasure alone (and replace=); got more "
                            "arguments.")
        return _add(name, replace)
    if prepare is None:
        raise TypeError(f"register_measure({name!r}): prepare= is required (prepare(X, **params) -> state, once "
                        "per layer).")
    fields = dict(prepare=prepare, permute=permute, higher_is_more_similar=higher_is_more_similar,
                  maximum=maximum, invariances=invariances, description=description, defaults=defaults or {},
                  reference=reference, symmetric=symmetric)
    if score is None:
        def decorator(fn):
            _add(SimilarityMeasure(name, score=fn, **fields), replace)
            return fn
        return decorator
    return _add(SimilarityMeasure(name, score=score, **fields), replace)


def _unknown(name) -> ValueError:
    names = list(_REGISTRY)
    close = difflib.get_close_matches(str(name), names, n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
    return ValueError(f"unknown similarity measure {name!r}; registered: {', '.join(names)}.{hint} "
                      "Add one with repgraph.register_measure(name, prepare=..., score=...).")


def unregister_measure(name: str) -> None:
    """Remove the measure registered under ``name``.

    Parameters
    ----------
    name : str

    Returns
    -------
    None

    Raises
    ------
    ValueError
        For a name that is not registered (listing those that are).

    References
    ----------
    Klabunde et al., ICLR 2025.

    Examples
    --------
    >>> from repgraph.analyzers import measure_names, register_measure, unregister_measure
    >>> _ = register_measure("toy", prepare=float, score=lambda a, b: -abs(a - b), permute=lambda s, p: s)
    >>> unregister_measure("toy")
    >>> "toy" in measure_names()
    False
    """
    with _LOCK:
        if name not in _REGISTRY:
            raise _unknown(name)
        del _REGISTRY[name]


def measure_names() -> tuple[str, ...]:
    """The names of the registered similarity measures, in registration order (built-ins first).

    Returns
    -------
    tuple of str

    References
    ----------
    Klabunde et al., ICLR 2025.

    Examples
    --------
    >>> from repgraph.analyzers import measure_names
    >>> measure_names()[:5]
    ('cka', 'cka_debiased', 'cka_rbf', 'gbs', 'gbs_knn')
    """
    return tuple(_REGISTRY)


def get_measure(name_or_measure) -> SimilarityMeasure:
    """The registered measure named ``name_or_measure`` (a ``SimilarityMeasure`` is returned as
    it is).

    Parameters
    ----------
    name_or_measure : str or SimilarityMeasure

    Returns
    -------
    SimilarityMeasure

    Raises
    ------
    ValueError
        For an unknown name: the message lists the registered names and close matches.
    TypeError
        For anything else than a name or a measure.

    References
    ----------
    Klabunde et al., ICLR 2025.

    Examples
    --------
    >>> from repgraph.analyzers import get_measure
    >>> get_measure("gbs_knn").defaults
    {'k': 3}
    >>> get_measure("ckaa")    # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: unknown similarity measure 'ckaa'; registered: cka, ... Did you mean 'cka', ...
    """
    if isinstance(name_or_measure, SimilarityMeasure):
        return name_or_measure
    if not isinstance(name_or_measure, str):
        raise TypeError(f"measure must be a registered name ({', '.join(_REGISTRY)}) or a SimilarityMeasure, got "
                        f"{type(name_or_measure).__name__}.")
    try:
        return _REGISTRY[name_or_measure]
    except KeyError:
        raise _unknown(name_or_measure) from None


# --- built-ins: the kernels of cka.py and the graphs of gbs.py, prepared once per layer ------------
def _linear_cka(X, *, device=None, name: str = "X") -> PreparedKernel:
    return PreparedKernel(X, "linear", False, 0.5, device, name)


def _debiased_cka(X, *, device=None, name: str = "X") -> PreparedKernel:
    return PreparedKernel(X, "linear", True, 0.5, device, name)


def _rbf_cka(X, *, sigma: float = 0.5, device=None, name: str = "X") -> PreparedKernel:
    return PreparedKernel(X, "rbf", False, sigma, device, name)


def _full_graph(X, *, device=None, name: str = "X") -> PreparedGraph:
    return PreparedGraph(X, None, "cosine", device, name)


def _knn_graph(X, *, k: int = 3, device=None, name: str = "X") -> PreparedGraph:
    return PreparedGraph(X, k, "cosine", device, name)


_CKA_REFERENCE = "Kornblith et al., ICML 2019; Nguyen et al., ICLR 2021"
_ALL = frozenset(INVARIANCES)
_GRAPH = frozenset({"orthogonal", "isotropic_scaling"})
#: the built-in measures by name (layer_similarity computes them with cka_matrix / gbs_matrix)
BUILTINS = {m.name: m for m in (
    SimilarityMeasure("cka", _linear_cka, prepared_cka, permuted_state, True, 1.0, _ALL,
                      "linear CKA, biased HSIC", {}, _CKA_REFERENCE),
    SimilarityMeasure("cka_debiased", _debiased_cka, prepared_cka, permuted_state, True, 1.0, _ALL,
                      "linear CKA, unbiased HSIC (debiased CKA)", {}, _CKA_REFERENCE),
    SimilarityMeasure("cka_rbf", _rbf_cka, prepared_cka, permuted_state, True, 1.0, _ALL,
                      "RBF CKA, biased HSIC, σ = sigma·sqrt(median squared distance)", {"sigma": 0.5},
                      _CKA_REFERENCE),
    SimilarityMeasure("gbs", _full_graph, prepared_gbs, permuted_state, True, 1.0, _GRAPH,
                      "GBS on the full cosine sample graph", {}, GBS_REFERENCE),
    SimilarityMeasure("gbs_knn", _knn_graph, prepared_gbs, permuted_state, True, 1.0, _GRAPH,
                      "GBS on the cosine kNN sample graph, (A + Aᵀ)/2", {"k": 3}, GBS_REFERENCE),
)}
_NEIGHBOURHOOD_REFERENCE = {
    "resi": "Klabunde et al., ICLR 2025 (ReSi, repsim/measures/nearest_neighbor.py)",
    "platonic": "Huh et al., ICML 2024 (The Platonic Representation Hypothesis, metrics.py)"}
#: the kNN-neighbourhood measures (repgraph.analyzers.neighbourhood), registered as built-ins too
NEIGHBOURHOOD_MEASURES = {m.name: m for m in (
    SimilarityMeasure(name, neighbourhood, score, permuted_state, True, 1.0, _GRAPH, description, {"k": 10},
                      _NEIGHBOURHOOD_REFERENCE[source], symmetric=symmetric)
    for name, score, description, source, symmetric in (
        ("jaccard_knn", jaccard_knn, "mean Jaccard index of the cosine k-NN sets", "resi", True),
        ("rank_similarity", rank_similarity, "ReSi's rank similarity of the cosine k-NN", "resi", True),
        ("second_order_cosine", second_order_cosine, "ReSi's second-order cosine of k-NN cosine distances",
         "resi", True),
        ("mutual_knn", mutual_knn, "mean |N_A(i) ∩ N_B(i)| / k of the cosine k-NN", "platonic", True),
        ("cknna", cknna, "CKA on the pairs that are k-NN in both (one-directional)", "platonic", False)))}
for _measure in (*BUILTINS.values(), *NEIGHBOURHOOD_MEASURES.values()):
    _add(_measure, replace=False)
