"""Filter scores of a model from any registered criterion, on the maps each conv produces."""
from __future__ import annotations

from torch import nn

from ..hooks import capture_activations
from ..hooks.trace import following_relu
from ..pruning import ScoresImportance, uncoupled_convs
from .criteria import CriterionInputs, get_criterion
from .layer_scores import LayerScores


def filter_scores(model: nn.Module, criterion, *, example_input, convs=None, data=None, ratio: float = 0.4,
                  max_samples: int = 256, seed: int = 0, progress: bool = True) -> LayerScores:
    """Per-filter scores of ``convs`` under a registered criterion, ready for ``prune_filters``.

    Map-based criteria (``needs_maps``: hrank, chip, entropy, central_filter, and users' own) read
    each conv's post-ReLU maps (the first ReLU module after it) on the first ``max_samples``
    samples of ``data``, captured once for all convs; weight-based ones (l1, clp, fsm, random) read
    the model only.

    Parameters
    ----------
    model : nn.Module
        The network to score.
    criterion : str or FilterCriterion
        A registered name (``repgraph.workflows.criteria_names()``: l1, clp, fsm, random, hrank,
        chip, entropy, central_filter, cap and users' own) or a ``FilterCriterion``.
    example_input : tensor, array, dict or any data form of ``capture_activations``
        One input batch, for tracing (which ReLU follows which conv, conv→BN pairs).
    convs : list of str, optional
        The convs to score; default ``uncoupled_convs(model, example_input)`` (those not tied to
        another conv by a residual addition).
    data : tensor, array, (X, y), dict, Dataset, DataLoader or iterable, optional
        Any data form ``capture_activations`` accepts; required by map-based criteria (its labels,
        when present, group the images into classes for ``entropy``), and by ``cap``, which trains
        soft masks on it (a Dataset of ``(x, y)`` pairs or a tuple ``(X, y)``; all of it, not
        ``max_samples``).
    ratio : float
        Fraction to prune, for criteria that select rather than rank (central_filter: it prunes
        ``ceil(C·ratio)`` filters per conv).
    max_samples : int
        Images whose maps are read (the first ones of ``data``): part of the estimate, not a
        memory setting.
    seed : int
        Seed of stochastic criteria (random, cap).
    progress : bool
        Show a progress bar while capturing maps.

    Returns
    -------
    LayerScores
        dict conv name -> (C_out,) scores (higher = keep) under every criterion. A criterion that
        selects (central_filter) scores its selection 1.0 for kept and 0.0 for pruned filters and
        keeps the ``CentralFilters`` in ``.selections``; ``prune_filters(model,
        scores.for_pruning(), ...)`` carries out the criterion (the selection exactly, with its
        compensation; the ranking elsewhere). CLP's outlier masks are in ``.flagged``.

    Raises
    ------
    ValueError
        For an unknown criterion, a map-based one without ``data``, a conv that does not run on
        ``example_input`` or that no ReLU module follows (map-based criteria), a model
        Torch-Pruning cannot trace, or whatever the criterion itself refuses (e.g. maps with
        NaN/Inf).

    References
    ----------
    The criteria: Li et al., "Pruning Filters for Efficient ConvNets", ICLR 2017 (l1); Zheng et
    al., "Data-free Backdoor Removal based on Channel Lipschitzness", ECCV 2022 (clp); Lin et al.,
    "HRank: Filter Pruning using High-Rank Feature Map", CVPR 2020 (hrank); Sui et al., "CHIP:
    CHannel Independence-based Pruning for Compact Neural Networks", NeurIPS 2021 (chip); Zhao &
    Zhang, arXiv 2103.09716 / ICLR 2022 (entropy); Duan et al., "Network Compression via Central
    Filter", arXiv 2112.05493 (central_filter); Duan et al., "Network Pruning via Feature Shift
    Minimization", ACCV 2022 (fsm); Wang, Ma & Yu, "CAP: instance complexity-aware network
    pruning", arXiv 2209.03534 (cap).

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> import repgraph as rg
    >>> _ = torch.manual_seed(0)
    >>> model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Conv2d(4, 6, 3), nn.ReLU(),
    ...                       nn.Flatten(), nn.Linear(6 * 4 * 4, 2))
    >>> X = torch.randn(8, 1, 8, 8)
    >>> scores = rg.filter_scores(model, "hrank", example_input=X[:1], data=X, progress=False)
    >>> {conv: s.shape for conv, s in scores.items()}    # the maps after ReLUs "1" and "3"
    {'0': (4,), '2': (6,)}
    >>> cf = rg.filter_scores(model, "central_filter", example_input=X[:1], data=X, ratio=0.5, progress=False)
    >>> cf["2"].tolist() == [float(f in cf.selections["2"].kept) for f in range(6)]
    True
    """
    chosen = get_criterion(criterion)
    convs = uncoupled_convs(model, example_input) if convs is None else list(convs)
    inputs = CriterionInputs(model=model, convs=convs, example_input=example_input, ratio=ratio, seed=seed,
                             data=data)
    if chosen.needs_maps:
        if data is None:
            raise ValueError(f"criterion {chosen.name!r} reads feature maps: pass data= (inputs to run "
                             "through the model).")
        relus = {c: following_relu(model, c, example_input) for c in convs}
        acts = capture_activations(model, data, layers=sorted(set(relus.values())), reduce=None,
                                   max_samples=max_samples, progress=progress)
        inputs.maps = {conv: acts[relu] for conv, relu in relus.items()}
        inputs.labels = acts.labels
    return LayerScores.of(chosen.score(inputs))


def criterion_importance(model: nn.Module, criterion, **kwargs) -> ScoresImportance:
    """Any registered criterion as a Torch-Pruning ``Importance``: ``filter_scores(model,
    criterion, **kwargs)`` wrapped in ``ScoresImportance`` (see both for the parameters), for
    Torch-Pruning's own pruners (``tp.pruner.MetaPruner(model, x, importance=...)``).

    Parameters
    ----------
    model : nn.Module
        The network to score; the pruner must prune this same model.
    criterion : str or FilterCriterion
        A registered criterion; central_filter ranks by its selection (kept above pruned),
        without the compensation ``prune_filters`` adds for it.
    **kwargs
        Passed on to ``filter_scores``: ``example_input`` (required), ``convs``, ``data``,
        ``ratio``, ``max_samples``, ``seed``, ``progress``.

    Returns
    -------
    ScoresImportance
        The scores, computed once now for the model as it is: after a pruning step that
        changes a scored conv's width, build a new one (the old one raises ``ValueError``).

    Raises
    ------
    ValueError
        As ``filter_scores``.
    TypeError
        For a missing ``example_input``.

    References
    ----------
    Fang et al., "DepGraph: Towards Any Structural Pruning", CVPR 2023; Torch-Pruning's
    importance plug-ins, github.com/VainF/Torch-Pruning. The criteria: see ``filter_scores``.

    Examples
    --------
    >>> import torch
    >>> import repgraph as rg
    >>> from repgraph.models import vgg11
    >>> model = vgg11()
    >>> imp = rg.criterion_importance(model, "l1", example_input=torch.zeros(1, 3, 32, 32))
    >>> type(imp).__name__
    'ScoresImportance'
    """
    return ScoresImportance(filter_scores(model, criterion, **kwargs), model=model)
