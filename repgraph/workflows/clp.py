"""CLP scores of a whole model: conv→BN pairs from a traced forward, then each pair's channel
Lipschitz upper bounds (Zheng et al., ECCV 2022)."""
from __future__ import annotations

from torch import nn

from ..analyzers.criteria import clp_outliers, clp_upper_bounds
from ..hooks.trace import conv_bn_pairs
from .layer_scores import LayerScores


def clp_scores(model: nn.Module, u: float = 3.0, *, example_input) -> LayerScores:
    """CLP channel Lipschitz upper bound of every conv that a BatchNorm follows.

    ``UCLC_k = σ_max(W_k reshaped (C_in, kh·kw)) · |γ_k / sqrt(running_var_k + eps)|`` for each
    output channel k of a conv W (Conv1d/2d/3d) and its BN; channels with UCLC > mean + u·std of
    their layer are flagged (``.flagged``), std unbiased (ddof = 1) as ``torch.std`` in the
    reference. ``sqrt(running_var + eps)`` is the BN's own divisor; the reference's
    ``sqrt(running_var)`` omits eps (a difference only for running variances near eps).

    Parameters
    ----------
    model : nn.Module
        The network; it is traced once in eval mode (its modes are restored).
    u : float
        Outlier threshold in standard deviations (the paper's default 3).
    example_input : tensor, array, dict or any data form of ``capture_activations``
        One input batch to trace the conv→BN data flow with (never registration order).

    Returns
    -------
    LayerScores
        dict conv name -> (C_out,) float64 UCLC, with ``flagged`` conv name -> boolean mask.

    Raises
    ------
    ValueError
        If a BatchNorm does not take a conv's output, or the model has no conv→BN pair.

    References
    ----------
    Zheng, Tang, Li & Liu, "Data-free backdoor removal based on channel Lipschitzness", ECCV 2022;
    github.com/rkteddy/channel-Lipschitzness-based-pruning ``defense.py`` (``CLP``).

    Examples
    --------
    >>> import torch
    >>> import repgraph as rg
    >>> from repgraph.models import resnet20
    >>> scores = rg.clp_scores(resnet20(), example_input=torch.zeros(1, 3, 32, 32))
    >>> scores["layer1.0.conv1"].shape, scores.flagged["layer1.0.conv1"].dtype
    ((16,), dtype('bool'))
    """
    pairs = conv_bn_pairs(model, example_input)
    if not pairs:
        raise ValueError(f"{type(model).__name__} has no conv -> BN pair; CLP needs BatchNorm after convs.")
    modules = dict(model.named_modules())
    scores, flagged = {}, {}
    for conv_name, bn_name in pairs:
        bn = modules[bn_name]
        uclc = clp_upper_bounds(modules[conv_name].weight, bn.weight, bn.running_var, bn.eps)
        scores[conv_name] = uclc
        flagged[conv_name] = clp_outliers(uclc, u)
    return LayerScores(scores, flagged=flagged)
