"""FSM scores of a whole model: for each conv, its BN, the ReLU after it and the convs that read
the post-ReLU maps, found by one traced forward (data flow), then ``fsm_scores`` on their weights."""
from __future__ import annotations

from torch import nn

from ..analyzers.feature_shift import fsm_scores
from ..hooks.trace import conv_bn_pairs, run_with_hooks
from .layer_scores import LayerScores

# Modules that pass a map on channel for channel, so a conv after them still reads the channels.
PASS_THROUGH = (nn.modules.pooling._MaxPoolNd, nn.modules.pooling._AvgPoolNd, nn.modules.pooling._AdaptiveMaxPoolNd,
                nn.modules.pooling._AdaptiveAvgPoolNd, nn.modules.dropout._DropoutNd, nn.Identity, nn.ReLU)


def _leaf_calls(model: nn.Module, example_input) -> list:
    """``(name, module, input tensor, output)`` of every leaf module's forward call, in order (the
    tensors are kept, so their identities stay unique)."""
    names = {m: n for n, m in model.named_modules()}
    calls = []

    def record(module, inputs, output):
        calls.append((names[module], module, inputs[0] if inputs else None, output))

    run_with_hooks(model, example_input, [(m, record) for m in model.modules() if not list(m.children())])
    return calls


def _first_reader(calls: list, at: int):
    """The index of the first call after ``at`` whose input is call ``at``'s output, or None."""
    out = calls[at][3]
    return next((i for i in range(at + 1, len(calls)) if calls[i][2] is out), None)


def _readers(calls: list, at: int) -> list:
    """``(name, conv)`` of the convs that read call ``at``'s output after it, directly or through
    ``PASS_THROUGH`` modules."""
    frontier, convs = [calls[at][3]], []
    for name, module, inp, out in calls[at + 1:]:
        if inp is None or not any(inp is t for t in frontier):
            continue
        if isinstance(module, nn.modules.conv._ConvNd):
            convs.append((name, module))
        elif isinstance(module, PASS_THROUGH):
            frontier.append(out)
    return convs


def fsm_model_scores(model: nn.Module, *, example_input, convs=None, negative_gamma: str = "clamp") -> LayerScores:
    """FSM feature-shift scores (Duan et al., ACCV 2022) of every conv that a BatchNorm and a ReLU
    module follow.

    For conv → BN (γ, β) → ReLU with next conv(s) W reading the post-ReLU maps (directly or through
    pooling/dropout modules): ``score_k = Σ_W (1/N_W) Σ_i |Σ_{spatial} W[i, k]| · E_k``, ``E_k =
    E[max(N(β_k, σ_k²), 0)]``, σ_k = γ_k (see ``repgraph.analyzers.fsm_scores``). When no conv
    reads the maps (a classifier follows, e.g. VGG's last conv), ``score_k = E_k``, the
    reference's rule for that layer. No data is read: ``example_input`` only traces the data flow.

    Parameters
    ----------
    model : nn.Module
        The network; it is traced once in eval mode (its modes, hooks and weights stay).
    example_input : tensor, array, dict or any data form of ``capture_activations``
        One input batch to trace the conv → BN → ReLU → conv data flow with (never registration
        order).
    convs : list of str, optional
        The convs to score; default every conv followed by a BN and an ``nn.ReLU`` module (a
        residual block's last conv, whose BN output goes into the addition, is left out).
    negative_gamma : {"clamp", "abs"}
        σ_k for a negative γ_k: the reference's 1e-5 (``"clamp"``) or ``|γ_k|`` (``"abs"``).

    Returns
    -------
    LayerScores
        dict conv name -> (C_out,) float64 scores (higher = keep).

    Raises
    ------
    ValueError
        If a conv of ``convs`` does not run on ``example_input``, has no BatchNorm right after it,
        its BN's output is not read first by an ``nn.ReLU`` module (FSM models the ReLU of the BN's
        output), a next conv is grouped, or no conv → BN → ReLU chain is found.

    References
    ----------
    Duan, Zhou, He, Liu, Duan & Hu, "Network Pruning via Feature Shift Minimization", ACCV 2022
    (arXiv 2207.02632); github.com/lscgx/FSM at 0cb01ea, ``main.py``.

    Examples
    --------
    >>> import torch
    >>> from repgraph.models import vgg11
    >>> from repgraph.workflows.fsm import fsm_model_scores
    >>> scores = fsm_model_scores(vgg11(), example_input=torch.zeros(1, 3, 32, 32))
    >>> len(scores), scores["features.0"].shape, scores["features.25"].shape
    (8, (64,), (512,))
    """
    pairs = dict(conv_bn_pairs(model, example_input))
    if not pairs:
        raise ValueError(f"{type(model).__name__} has no conv -> BN pair; FSM needs BatchNorm after convs.")
    explicit = convs is not None
    convs = list(convs) if explicit else list(pairs)
    calls = _leaf_calls(model, example_input)
    scores = {}
    for conv in convs:
        conv_at = next((i for i, call in enumerate(calls) if call[0] == conv), None)
        if conv_at is None:
            raise ValueError(f"Conv {conv!r} did not run in the forward pass of example_input.")
        if conv not in pairs:
            raise ValueError(f"Conv {conv!r} has no BatchNorm right after it; FSM reads the BN's weight and bias "
                             "(leave it out of convs=).")
        bn_at = _first_reader(calls, conv_at)
        relu_at = _first_reader(calls, bn_at) if bn_at is not None else None
        if relu_at is None or not isinstance(calls[relu_at][1], nn.ReLU):
            if not explicit:
                continue  # e.g. a residual block's last conv: its BN's output goes to the addition
            got = ("no module (functional code, e.g. a residual addition)" if relu_at is None
                   else f"{calls[relu_at][0]!r} ({type(calls[relu_at][1]).__name__})")
            raise ValueError(f"The output of BN {pairs[conv]!r} (after conv {conv!r}) goes to {got}, not an nn.ReLU "
                             "module; FSM models BN -> ReLU (leave the conv out of convs=).")
        readers = _readers(calls, relu_at)
        grouped = [name for name, m in readers if m.groups != 1]
        if grouped:
            raise ValueError(f"Conv(s) {grouped} read the maps of {conv!r} with groups != 1; FSM's next-layer term "
                             "needs dense convs (leave the conv out of convs=).")
        bn = calls[bn_at][1]
        gamma = bn.weight if bn.weight is not None else [1.0] * bn.num_features
        beta = bn.bias if bn.bias is not None else [0.0] * bn.num_features
        scores[conv] = fsm_scores(gamma, beta, [m.weight for _, m in readers], negative_gamma=negative_gamma)
    if not scores:
        raise ValueError(f"No conv of {type(model).__name__} is followed by BN -> nn.ReLU; FSM has nothing to score.")
    return LayerScores(scores)
