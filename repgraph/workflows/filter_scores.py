"""Filter scores of a model from any registered criterion, on the maps each conv produces."""
from __future__ import annotations

from torch import nn

from ..hooks import capture_activations
from ..hooks.trace import following_relu
from ..pruning import ScoresImportance, uncoupled_convs
from .criteria import CriterionInputs, get_criterion


def filter_scores(model: nn.Module, criterion, *, example_input, convs=None, data=None, ratio: float = 0.4,
                  max_samples: int = 256, seed: int = 0, progress: bool = True) -> dict:
    """Per-filter scores of ``convs`` under a registered criterion, ready for ``prune_filters``.

    Map-based criteria (``needs_maps``: hrank, chip, entropy, central_filter, and users' own) read
    each conv's post-ReLU maps (the first ReLU module after it) on the first ``max_samples``
    samples of ``data``, captured once for all convs; weight-based ones (l1, clp, random) read the
    model only.

    Parameters
    ----------
    model : nn.Module
        The network to score.
    criterion : str or FilterCriterion
        A registered name (``repgraph.workflows.criteria_names()``) or a ``FilterCriterion``.
    example_input : tensor
        One input batch, for tracing (which ReLU follows which conv, conv→BN pairs).
    convs : list of str, optional
        The convs to score; default ``uncoupled_convs(model, example_input)`` (those not tied to
        another conv by a residual addition).
    data : optional
        Any data form ``capture_activations`` accepts; required by map-based criteria.
    ratio : float
        Fraction to prune, for criteria that select rather than rank (central_filter: it prunes
        ``ceil(C·ratio)`` filters per conv).
    max_samples : int
        Images whose maps are read.
    seed : int
        Seed of stochastic criteria (random).
    progress : bool
        Show a progress bar while capturing maps.

    Returns
    -------
    dict
        conv name -> (C_out,) scores (higher = keep), or -> ``CentralFilters`` for central_filter.

    Raises
    ------
    ValueError
        For an unknown criterion, or a map-based one without ``data``.

    Examples
    --------
    >>> import repgraph as rg
    >>> from repgraph.datasets import digits
    >>> from repgraph.models import resnet20
    >>> test = digits("test")
    >>> scores = rg.filter_scores(resnet20(in_channels=1), "hrank", example_input=test.data[:1],
    ...                           data=test, max_samples=16, progress=False)
    >>> sorted(scores)[:2], scores["layer1.0.conv1"].shape
    (['layer1.0.conv1', 'layer1.1.conv1'], (16,))
    """
    chosen = get_criterion(criterion)
    convs = uncoupled_convs(model, example_input) if convs is None else list(convs)
    inputs = CriterionInputs(model=model, convs=convs, example_input=example_input, ratio=ratio, seed=seed)
    if chosen.needs_maps:
        if data is None:
            raise ValueError(f"criterion {chosen.name!r} reads feature maps: pass data= (inputs to run "
                             "through the model).")
        relus = {c: following_relu(model, c, example_input) for c in convs}
        acts = capture_activations(model, data, layers=sorted(set(relus.values())), reduce=None,
                                   max_samples=max_samples, progress=progress)
        inputs.maps = {conv: acts[relu] for conv, relu in relus.items()}
        inputs.labels = acts.labels
    return chosen.score(inputs)


def criterion_importance(model: nn.Module, criterion, **kwargs) -> ScoresImportance:
    """Any registered criterion as a Torch-Pruning ``Importance``: ``filter_scores(model,
    criterion, **kwargs)`` wrapped in ``ScoresImportance`` (see both for the parameters), for
    Torch-Pruning's own pruners (``tp.pruner.MetaPruner(model, x, importance=...)``).

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
    return ScoresImportance(model, filter_scores(model, criterion, **kwargs))
