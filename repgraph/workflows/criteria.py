"""Filter criteria as plug-ins: a registry name → criterion with one signature, open to users'
own criteria (as Torch-Pruning's importance plug-ins)."""
from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Callable

import numpy as np
from torch import nn

from ..analyzers import central_filters, chip_scores, class_feature_entropy, hrank_scores, l1_scores
from ..analyzers.topology import birth_points, entropy_ranking_scores
from ..builders import filter_similarity
from ..pruning import cap_mask_scores
from .clp import clp_scores
from .fsm import fsm_model_scores
from .layer_scores import LayerScores


@dataclass
class CriterionInputs:
    """What a criterion may use: the ``model``, the conv names to score (``convs``), a traced
    ``example_input``, the pruning ``ratio`` (for criteria that select rather than rank), a
    ``seed``, and for criteria registered with ``needs_maps=True`` the post-ReLU ``maps`` of each
    conv (conv name → (N, C, ...) array) with the images' ``labels`` (or None); ``data``: the
    ``data`` given to ``filter_scores`` as it is (or None), for criteria that train on it (cap)."""

    model: nn.Module
    convs: list
    example_input: object
    ratio: float
    seed: int
    maps: dict | None = None
    labels: np.ndarray | None = None
    data: object = None


@dataclass(frozen=True)
class FilterCriterion:
    """A named filter criterion: ``score(inputs: CriterionInputs) -> {conv name: scores}`` where
    scores are a (C_out,) array (higher = keep) or a ``CentralFilters`` selection (which
    ``filter_scores`` returns as scores, the selection in ``.selections``)."""

    name: str
    score: Callable[[CriterionInputs], dict]
    needs_maps: bool
    description: str = ""


_REGISTRY: dict[str, FilterCriterion] = {}


def register_criterion(name: str, *, needs_maps: bool, description: str = ""):
    """Decorator: register ``score(inputs: CriterionInputs) -> {conv: scores}`` under ``name``.

    Parameters
    ----------
    name : str
        The name ``filter_scores`` and ``repgraph prune --criterion`` accept.
    needs_maps : bool
        True when the criterion reads each conv's post-ReLU feature maps (``inputs.maps``):
        ``filter_scores`` then captures them from its ``data``.
    description : str
        One line shown in listings.

    Returns
    -------
    callable
        The decorator; it returns the function unchanged.

    Raises
    ------
    ValueError
        If ``name`` is already registered.

    References
    ----------
    The plug-in convention of Torch-Pruning's importance criteria
    (``torch_pruning.importance.Importance``), github.com/VainF/Torch-Pruning.

    Examples
    --------
    >>> import repgraph as rg
    >>> @rg.register_criterion("mean_activation", needs_maps=True, description="mean post-ReLU value")
    ... def mean_activation(inputs):
    ...     return {conv: maps.mean(axis=(0, 2, 3)) for conv, maps in inputs.maps.items()}
    >>> from repgraph.workflows import criteria_names, unregister_criterion
    >>> "mean_activation" in criteria_names()
    True
    >>> unregister_criterion("mean_activation")
    """
    if name in _REGISTRY:
        raise ValueError(f"A filter criterion named {name!r} is registered already; choose another "
                         "name or unregister_criterion it first.")

    def decorator(score):
        _REGISTRY[name] = FilterCriterion(name, score, needs_maps, description)
        return score
    return decorator


def unregister_criterion(name: str) -> None:
    """Remove a registered criterion (``ValueError`` naming the known ones if absent)."""
    get_criterion(name)
    del _REGISTRY[name]


def criteria_names() -> list[str]:
    """The registered criteria's names, built-in ones first."""
    return list(_REGISTRY)


def get_criterion(criterion) -> FilterCriterion:
    """``criterion`` (a registered name or a ``FilterCriterion``) as a ``FilterCriterion``."""
    if isinstance(criterion, FilterCriterion):
        return criterion
    try:
        return _REGISTRY[criterion]
    except (KeyError, TypeError):
        close = difflib.get_close_matches(str(criterion), _REGISTRY, n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise ValueError(f"Unknown filter criterion {criterion!r}; registered: {', '.join(_REGISTRY)}.{hint} "
                         "Add your own with repgraph.register_criterion.") from None


@register_criterion("l1", needs_maps=False, description="L1 norm of each filter's weights (Li et al., ICLR 2017)")
def _l1(inputs):
    return {c: s for c, s in l1_scores(inputs.model).items() if c in inputs.convs}


@register_criterion("clp", needs_maps=False,
                    description="channel Lipschitz upper bound (Zheng et al., ECCV 2022)")
def _clp(inputs):
    found = clp_scores(inputs.model, example_input=inputs.example_input)
    return LayerScores({c: s for c, s in found.items() if c in inputs.convs},
                       flagged={c: f for c, f in found.flagged.items() if c in inputs.convs})


@register_criterion("fsm", needs_maps=False,
                    description="feature shift from BN parameters and next filters (Duan et al., ACCV 2022)")
def _fsm(inputs):
    return fsm_model_scores(inputs.model, example_input=inputs.example_input, convs=inputs.convs)


@register_criterion("cap", needs_maps=False,
                    description="complexity-weighted learned soft channel masks (Wang et al., arXiv 2209.03534)")
def _cap(inputs):
    if inputs.data is None:
        raise ValueError("criterion 'cap' trains soft channel masks on labelled samples: pass data=(X, y) or a "
                         "Dataset of (x, y) pairs.")
    return cap_mask_scores(inputs.model, inputs.data, convs=inputs.convs, seed=inputs.seed)


@register_criterion("random", needs_maps=False, description="uniform random scores (a control)")
def _random(inputs):
    rng = np.random.default_rng(inputs.seed)
    modules = dict(inputs.model.named_modules())
    return {c: rng.random(modules[c].out_channels) for c in inputs.convs}


@register_criterion("hrank", needs_maps=True, description="mean feature-map rank (Lin et al., CVPR 2020)")
def _hrank(inputs):
    return {c: hrank_scores(m) for c, m in inputs.maps.items()}


@register_criterion("chip", needs_maps=True, description="channel independence (Sui et al., NeurIPS 2021)")
def _chip(inputs):
    return {c: chip_scores(m) for c, m in inputs.maps.items()}


@register_criterion("entropy", needs_maps=True,
                    description="feature entropy, mean over classes (Zhao & Zhang, ICLR 2022)")
def _entropy(inputs):
    return {c: entropy_ranking_scores(class_feature_entropy(birth_points(m), inputs.labels))
            for c, m in inputs.maps.items()}


@register_criterion("central_filter", needs_maps=True,
                    description="Central-Filter selection at the ratio (Duan et al., arXiv 2112.05493)")
def _central_filter(inputs):
    return {c: central_filters(filter_similarity(m), inputs.ratio) for c, m in inputs.maps.items()}
