"""Lottery tickets: unstructured magnitude masks, iterative magnitude pruning with rewinding (IMP)
and cyclic overlapping lottery tickets (COLT), with masks made permanent as true zeros."""
from __future__ import annotations

import contextlib
import copy
import math
from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import nn

from .._arrays import check_count, check_ratio
from .._warnings import warn_user
from ..hooks.handles import TemporaryHooks

PRUNABLE = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
SCOPES = ("global", "layer")


def _layers(model: nn.Module, layers) -> dict:
    """name -> module for ``layers`` (default every Conv/Linear), checked to have a weight."""
    modules = dict(model.named_modules())
    if layers is None:
        return {n: m for n, m in modules.items() if isinstance(m, PRUNABLE)}
    layers = [layers] if isinstance(layers, str) else list(layers)
    bad = [n for n in layers if not isinstance(getattr(modules.get(n), "weight", None), torch.Tensor)]
    if bad:
        raise ValueError(f"layers {bad} are not modules of the model with a weight; pass names from "
                         "list_layers(model, x), e.g. its Conv and Linear layers.")
    return {n: modules[n] for n in layers}


def _pools(names: list, scope: str) -> list:
    """The groups of layers that share one threshold: all of ``names`` (global) or each alone."""
    return [list(names)] if scope == "global" else [[n] for n in names]


def _check_masks(masks, chosen: dict, name: str = "masks") -> dict:
    if not isinstance(masks, Mapping):
        raise TypeError(f"{name} must be a dict layer name -> bool tensor shaped like its weight, "
                        f"got {type(masks).__name__}.")
    checked = {}
    for layer, mask in masks.items():
        if layer not in chosen:
            raise ValueError(f"{name}[{layer!r}]: no such layer among {sorted(chosen)}; key masks by the "
                             "names of the layers they prune.")
        mask = torch.as_tensor(mask)
        if tuple(mask.shape) != tuple(chosen[layer].weight.shape):
            raise ValueError(f"{name}[{layer!r}] has shape {tuple(mask.shape)}, the weight "
                             f"{tuple(chosen[layer].weight.shape)}.")
        checked[layer] = mask.to(torch.bool).cpu()
    return checked


def magnitude_masks(model: nn.Module, sparsity: float, *, layers=None, masks=None, scope: str = "global") -> dict:
    """Unstructured magnitude pruning: keep masks that remove the smallest-``|w|`` weights until a
    fraction ``sparsity`` of the weights is pruned.

    With N weights in the chosen layers (``scope="global"``, pooled) or in each layer
    (``scope="layer"``), ``k = ceil(sparsity·N)`` are pruned: those already pruned by ``masks``
    and, of the survivors, the ``k − already`` of smallest ``|w|`` (ties: the earlier layer, then the
    lower flattened index). Biases and norm parameters are never pruned.

    Parameters
    ----------
    model : nn.Module
        Read only.
    sparsity : float
        The fraction of weights pruned afterwards, in [0, 1).
    layers : list of str, optional
        The layers whose ``weight`` is pruned; default every Conv1d/2d/3d and Linear.
    masks : dict, optional
        Masks already in place (layer name -> bool tensor, True = kept), e.g. from an earlier
        round; their pruned weights stay pruned. Default: nothing pruned.
    scope : {"global", "layer"}
        One threshold over all chosen layers, or the same sparsity in each.

    Returns
    -------
    dict
        layer name -> bool tensor shaped like its weight (True = kept), on the CPU.

    Raises
    ------
    ValueError
        For a sparsity outside [0, 1), an unknown ``scope`` or layer, masks of the wrong shape,
        or masks that already prune more than ``sparsity`` asks for.

    References
    ----------
    Han, Pool, Tran & Dally, "Learning both Weights and Connections for Efficient Neural Networks",
    NeurIPS 2015 (magnitude pruning); Frankle & Carbin, "The Lottery Ticket Hypothesis: Finding
    Sparse, Trainable Neural Networks", ICLR 2019 (layer-wise and global scopes).

    Examples
    --------
    Half of six weights: the three smallest ``|w|`` (0.1, 0.2, 0.5) go:

    >>> import torch
    >>> from torch import nn
    >>> from repgraph import magnitude_masks
    >>> layer = nn.Linear(3, 2)
    >>> with torch.no_grad():
    ...     _ = layer.weight.copy_(torch.tensor([[0.5, -3.0, 1.0], [-0.1, 2.0, 0.2]]))
    >>> magnitude_masks(nn.Sequential(layer), 0.5)["0"].int().tolist()
    [[0, 1, 1], [0, 1, 0]]
    """
    sparsity = check_ratio(sparsity, name="sparsity")
    if scope not in SCOPES:
        raise ValueError(f"scope must be one of {SCOPES}, got {scope!r}.")
    chosen = _layers(model, layers)
    previous = _check_masks(masks or {}, chosen)
    weights = {n: m.weight.detach().cpu().to(torch.float64).abs().reshape(-1) for n, m in chosen.items()}
    kept = {n: previous[n].reshape(-1).clone() if n in previous else torch.ones(len(w), dtype=torch.bool)
            for n, w in weights.items()}
    pools = _pools(list(chosen), scope)
    for pool in pools:
        magnitude = torch.cat([weights[n] for n in pool])
        alive = torch.cat([kept[n] for n in pool])
        total = len(magnitude)
        k = math.ceil(round(sparsity * total, 9))
        already = int((~alive).sum())
        if already > k:
            where = "the chosen layers" if scope == "global" else f"layer {pool[0]!r}"
            raise ValueError(f"masks already prune {already} of {total} weights in {where}, more than "
                             f"sparsity={sparsity} asks for ({k}); pass a sparsity >= {already / total:.6g}.")
        candidates = torch.nonzero(alive).reshape(-1)
        order = np.argsort(magnitude[candidates].numpy(), kind="stable")[:k - already]
        alive[candidates[torch.from_numpy(order)]] = False
        start = 0
        for n in pool:
            kept[n] = alive[start:start + len(weights[n])]
            start += len(weights[n])
    return {n: kept[n].reshape(chosen[n].weight.shape).clone() for n in chosen}


def _zero(chosen: dict, masks: dict) -> None:
    with torch.no_grad():
        for n, mask in masks.items():
            chosen[n].weight.mul_(mask.to(device=chosen[n].weight.device, dtype=chosen[n].weight.dtype))


def apply_masks(model: nn.Module, masks: Mapping) -> nn.Module:
    """A copy of ``model`` whose masked weights are set to exactly 0 (``W′ = W ⊙ M``): the masks
    made permanent, as plain weights with no hook or reparametrisation left, so ``sparsity`` counts
    true zeros and the copy saves and loads as any model. ``model`` is untouched.

    Parameters
    ----------
    model : nn.Module
        The model; not modified.
    masks : dict
        layer name -> bool tensor shaped like the layer's weight (True = kept), e.g. from
        ``magnitude_masks`` or ``lottery_imp``.

    Returns
    -------
    nn.Module
        The masked copy.

    Raises
    ------
    ValueError
        For an unknown layer or a mask of the wrong shape.
    TypeError
        If ``masks`` is not a dict.

    References
    ----------
    Frankle & Carbin, "The Lottery Ticket Hypothesis: Finding Sparse, Trainable Neural Networks",
    ICLR 2019 (the pruned network ``f(x; m ⊙ θ)``).

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from repgraph import apply_masks, sparsity
    >>> model = nn.Sequential(nn.Linear(2, 2, bias=False))
    >>> masked = apply_masks(model, {"0": torch.tensor([[True, False], [False, False]])})
    >>> sparsity(masked), sparsity(model)
    (0.75, 0.0)
    """
    copied = copy.deepcopy(model)
    chosen = _layers(copied, list(masks) if isinstance(masks, Mapping) else None)
    _zero(chosen, _check_masks(masks, chosen))
    return copied


def sparsity(model: nn.Module, layers=None) -> float:
    """The fraction of weights that are exactly zero: ``Σ_l #{w ∈ W_l : w = 0} / Σ_l |W_l|`` over the
    ``weight`` of the chosen layers (biases and norms excluded), counted on the values.

    Parameters
    ----------
    model : nn.Module
        Read only.
    layers : list of str, optional
        The layers counted; default every Conv1d/2d/3d and Linear.

    Returns
    -------
    float
        In [0, 1]; 0.0 when no layer is chosen.

    Raises
    ------
    ValueError
        For a name in ``layers`` that is not a module with a weight.

    References
    ----------
    Frankle & Carbin, "The Lottery Ticket Hypothesis: Finding Sparse, Trainable Neural Networks",
    ICLR 2019 (sparsity as the pruned fraction of the weights).

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from repgraph import sparsity
    >>> model = nn.Sequential(nn.Linear(2, 2, bias=False), nn.Linear(2, 1, bias=False))
    >>> with torch.no_grad():
    ...     _ = model[0].weight.copy_(torch.tensor([[0.0, 1.0], [0.0, 0.0]]))
    >>> sparsity(model), sparsity(model, ["0"])
    (0.5, 0.75)
    """
    chosen = _layers(model, layers)
    zeros = sum(int((m.weight.detach() == 0).sum()) for m in chosen.values())
    total = sum(m.weight.numel() for m in chosen.values())
    return zeros / total if total else 0.0


@contextlib.contextmanager
def _held(model: nn.Module, chosen: dict, masks: dict):
    """Masked weights held at 0 while the block trains ``model``: each forward first zeroes them (a
    forward pre-hook) and their gradients are zeroed (a tensor hook), so optimizer moments stay 0;
    they are zeroed once more on exit. The hooks are removed on exit."""
    hooks = TemporaryHooks(model)
    handles = []
    try:
        for n, mask in masks.items():
            module = chosen[n]
            device_mask = mask.to(module.weight.device)

            def zero_weight(mod, args, mask=device_mask):
                with torch.no_grad():
                    mod.weight.mul_(mask.to(mod.weight.dtype))

            hooks.pre(module, zero_weight)
            if module.weight.requires_grad:
                handles.append(module.weight.register_hook(lambda g, mask=device_mask: g * mask.to(g.dtype)))
        _zero(chosen, masks)
        yield
    finally:
        hooks.remove()
        for handle in handles:
            handle.remove()
        _zero(chosen, masks)


def _rewind_state(model: nn.Module, rewind_to) -> dict:
    if rewind_to is None:
        return copy.deepcopy(model.state_dict())
    state = rewind_to.state_dict() if isinstance(rewind_to, nn.Module) else rewind_to
    if not isinstance(state, Mapping):
        raise TypeError(f"rewind_to must be None (the model's weights now), a state dict or a model, got "
                        f"{type(rewind_to).__name__}.")
    missing = set(model.state_dict()) - set(state)
    if missing:
        raise ValueError(f"rewind_to lacks {sorted(missing)[:5]}; pass the state_dict of the same "
                         "architecture (e.g. a copy saved early in training).")
    return copy.deepcopy(dict(state))


def _ticket(model: nn.Module, state: dict, masks: dict, layers) -> tuple[nn.Module, dict]:
    ticket = copy.deepcopy(model)
    ticket.load_state_dict(state)
    chosen = _layers(ticket, layers)
    _zero(chosen, masks)
    return ticket, chosen


def lottery_imp(model: nn.Module, train_fn, *, sparsity: float, rounds: int, rewind_to=None, layers=None,
                scope: str = "global") -> tuple[dict, nn.Module]:
    """Iterative magnitude pruning with rewinding: the lottery ticket of ``model`` at ``sparsity``.

    Round r = 1..R: rewind to θ_rw (load ``rewind_to``, default the weights ``model`` has now, its
    initialisation θ₀), apply the masks m (``θ_rw ⊙ m``), train with ``train_fn`` while the masked
    weights are held at 0, then prune by magnitude among the trained survivors
    (``magnitude_masks``) to the sparsity ``p_r = 1 − (1 − p)^{r/R}``, so each round removes the
    same fraction ``1 − (1 − p)^{1/R}`` of the weights left. The ticket is ``θ_rw ⊙ m_R``, rewound
    and masked, ready to be trained; its surviving weights hold exactly their rewound values.

    During ``train_fn`` the masked weights stay exactly 0 whatever the optimizer: every forward
    zeroes them first and their gradients are zeroed (so momentum and Adam moments stay 0), and
    they are zeroed again when ``train_fn`` returns. ``model`` itself is not modified: every round
    trains a fresh copy.

    Parameters
    ----------
    model : nn.Module
        The network at the weights to rewind to (unless ``rewind_to`` is given); not modified.
    train_fn : callable
        ``train_fn(net)`` trains ``net`` in place (e.g. ``lambda m: train(m, data, epochs=5)``);
        its return value is ignored. Called R times.
    sparsity : float
        The final fraction p of the chosen weights pruned, in [0, 1).
    rounds : int
        R ≥ 1 rounds of train, prune, rewind (R = 1 is one-shot pruning).
    rewind_to : state dict or nn.Module, optional
        The weights θ_rw to rewind to, e.g. a copy taken after k steps of training (late
        rewinding); default ``model``'s current weights. Buffers (BatchNorm statistics) rewind too.
    layers : list of str, optional
        The layers whose weights are pruned; default every Conv1d/2d/3d and Linear.
    scope : {"global", "layer"}
        Magnitude threshold over all chosen layers or per layer (``magnitude_masks``).

    Returns
    -------
    masks : dict
        layer name -> bool tensor (True = kept) with the final sparsity.
    ticket : nn.Module
        A copy of the network at ``θ_rw ⊙ m_R``; ``sparsity(ticket, layers)`` counts true zeros.

    Raises
    ------
    ValueError
        For a sparsity outside [0, 1), ``rounds`` < 1, an unknown layer or ``scope``, or a
        ``rewind_to`` of another architecture.
    TypeError
        If ``train_fn`` is not callable or ``rewind_to`` not a state dict or model.

    References
    ----------
    Frankle & Carbin, "The Lottery Ticket Hypothesis: Finding Sparse, Trainable Neural Networks",
    ICLR 2019 (IMP, p^{1/n} per round); Frankle, Dziugaite, Roy & Carbin, "Linear Mode Connectivity
    and the Lottery Ticket Hypothesis", ICML 2020 (rewinding to an early iterate).

    Examples
    --------
    A "training" that adds (1, −0.05, 0, −2) to the weights (0.1, 0.2, 0.3, 0.4): round 1 of 2
    prunes to 1 − 0.25^{1/2} = 0.5, the trained ``|w|`` 0.15 and 0.3; round 2 to 0.75, then 1.1 < 1.6:

    >>> import torch
    >>> from torch import nn
    >>> from repgraph import lottery_imp
    >>> model = nn.Sequential(nn.Linear(4, 1, bias=False))
    >>> with torch.no_grad():
    ...     _ = model[0].weight.copy_(torch.tensor([[0.1, 0.2, 0.3, 0.4]]))
    >>> def fake_train(net):
    ...     with torch.no_grad():
    ...         net[0].weight.add_(torch.tensor([[1.0, -0.05, 0.0, -2.0]]))
    >>> masks, ticket = lottery_imp(model, fake_train, sparsity=0.75, rounds=2)
    >>> masks["0"].int().tolist(), ticket[0].weight.tolist()
    ([[0, 0, 0, 1]], [[0.0, 0.0, 0.0, 0.4000000059604645]])
    """
    sparsity = check_ratio(sparsity, name="sparsity")
    rounds = check_count(rounds, "rounds")
    if not callable(train_fn):
        raise TypeError(f"train_fn must be callable, train_fn(net) training net in place; got {train_fn!r}.")
    if scope not in SCOPES:
        raise ValueError(f"scope must be one of {SCOPES}, got {scope!r}.")
    state = _rewind_state(model, rewind_to)
    masks = {n: torch.ones(m.weight.shape, dtype=torch.bool) for n, m in _layers(model, layers).items()}
    for r in range(1, rounds + 1):
        net, chosen = _ticket(model, state, masks, layers)
        with _held(net, chosen, masks):
            train_fn(net)
        target = 1.0 - (1.0 - sparsity) ** (r / rounds) if r < rounds else sparsity
        masks = magnitude_masks(net, target, layers=list(chosen), masks=masks, scope=scope)
    ticket, _ = _ticket(model, state, masks, layers)
    return masks, ticket


def _survivor_magnitudes(chosen: dict, masks: dict, split_index: int) -> dict:
    """layer name -> the trained ``|w|`` of ``chosen``, flattened in float64, checked finite where the
    mask keeps the weight (a NaN would otherwise be ranked silently)."""
    magnitudes = {n: m.weight.detach().cpu().to(torch.float64).abs().reshape(-1) for n, m in chosen.items()}
    for n, magnitude in magnitudes.items():
        bad = int((~torch.isfinite(magnitude[masks[n].reshape(-1)])).sum())
        if bad:
            raise ValueError(f"train_fn left {bad} non-finite surviving weights in layer {n!r} after training on "
                             f"splits[{split_index}]; COLT ranks the trained weights, so make train_fn converge "
                             "(e.g. a lower learning rate).")
    return magnitudes


def _exact_overlap(masks: dict, split_masks: list, magnitudes: list, scope: str) -> dict:
    """The new masks of one exact COLT round: in each pool (all layers, or each layer), of the
    survivors of ``masks``, prune as many as each split's magnitude mask in ``split_masks`` prunes
    (the round's count, the same for every split), those of smallest (min_s r_s, Σ_s r_s, position),
    r_s the rank by ``|w|`` among the survivors in split s (``magnitudes[s]``; ties by position, as
    in ``magnitude_masks``)."""
    new = {}
    for pool in _pools(list(masks), scope):
        alive = torch.cat([masks[n].reshape(-1) for n in pool])
        where = torch.nonzero(alive).reshape(-1).numpy()
        count = int((alive & ~torch.cat([split_masks[0][n].reshape(-1) for n in pool])).sum())
        ranks = np.empty((len(magnitudes), len(where)), dtype=np.int64)
        for s, magnitude in enumerate(magnitudes):
            order = np.argsort(torch.cat([magnitude[n] for n in pool]).numpy()[where], kind="stable")
            ranks[s, order] = np.arange(len(where))
        pruned = where[np.lexsort((where, ranks.sum(axis=0), ranks.min(axis=0)))[:count]]
        alive[torch.from_numpy(pruned)] = False
        for n, kept in zip(pool, torch.split(alive, [masks[n].numel() for n in pool])):
            new[n] = kept.reshape(masks[n].shape).clone()
    return new


def colt_masks(model: nn.Module, train_fn, splits: Sequence, *, sparsity: float, rate: float = 0.15,
               max_rounds: int = 20, rewind_to=None, layers=None, scope: str = "global",
               exact: bool = True) -> tuple[dict, nn.Module]:
    """Cyclic overlapping lottery tickets (COLT): masks that keep only the weights every network,
    trained on its own data split, ranks highly by magnitude; by default at exactly the target
    sparsity.

    Round r: for each split s, start from ``θ_rw ⊙ m`` (rewound, masked; from scratch as in
    COLT), train on split s with ``train_fn(net, s)`` (masked weights held at 0, as in
    ``lottery_imp``). The round's target is ``p_r = min(p, 1 − (1 − q)(1 − rate))``, q the
    sparsity before it: each split's network prunes a fraction ``rate`` of the weights left. In a
    pool (all chosen layers for ``scope="global"``, each layer for ``"layer"``) of N weights, n of
    them surviving, the round prunes ``c = ceil(p_r·N) − (N − n)`` survivors. Let ``r_s(w)`` in
    0..n−1 be survivor w's rank by trained ``|w|`` in split s's network, ascending (ties: the
    earlier layer, then the lower flattened index, as in ``magnitude_masks``). Split s's magnitude
    mask prunes ``{w : r_s(w) < c}``, so the authors' overlap ``m = ∧_s m_s`` prunes

        ``{w : min_s r_s(w) < c}``,

    which holds at least c weights and more wherever the splits disagree: the plain overlap
    overshoots the target. With ``exact=True`` (the default) the round prunes exactly the c
    survivors of smallest ``min_s r_s(w)``: the overlap at the largest common per-split count t
    whose overlap prunes at most c weights, completed by weights of ``min_s r_s(w) = t``, those
    of smallest ``Σ_s r_s(w)`` first, then the earlier layer and lower flattened index. A kept
    weight is thus in the top ``n − t`` of every split, and a pruned one is among the c smallest
    of at least one split. The rounds stop once every pool has reached p, so the result prunes
    exactly ``ceil(p·N)`` weights per pool. With ``exact=False`` the overlap is the plain
    intersection and the rounds stop once its overall sparsity reaches p, so the result
    overshoots p by up to the last round's disagreement. After ``max_rounds`` without reaching
    p, a warning says where it stopped.

    Parameters
    ----------
    model : nn.Module
        The network at the weights to rewind to (unless ``rewind_to`` is given); not modified.
    train_fn : callable
        ``train_fn(net, split)`` trains ``net`` in place on one element of ``splits``.
    splits : sequence
        Two or more data segments (anything ``train_fn`` takes), e.g. the classes split in two.
    sparsity : float
        The sparsity p to reach, in [0, 1).
    rate : float
        The fraction of the surviving weights each split's network prunes per round, in (0, 1);
        default 0.15, the authors' default for conv layers.
    max_rounds : int
        The most rounds.
    rewind_to : state dict or nn.Module, optional
        The weights θ_rw every round starts from; default ``model``'s current weights.
    layers : list of str, optional
        The layers whose weights are pruned; default every Conv1d/2d/3d and Linear.
    scope : {"global", "layer"}
        Rank over all chosen layers or within each layer.
    exact : bool
        True: every round prunes exactly its target count, by the rule above. False: the authors'
        plain intersection of the per-split masks, which overshoots.

    Returns
    -------
    masks : dict
        layer name -> bool tensor (True = kept).
    ticket : nn.Module
        A copy of the network at ``θ_rw ⊙ m``.

    Raises
    ------
    ValueError
        For fewer than two splits, a ``sparsity`` or ``rate`` out of range, ``max_rounds`` < 1, an
        unknown layer or ``scope``, a ``rewind_to`` of another architecture, or surviving weights
        that ``train_fn`` left non-finite.
    TypeError
        If ``train_fn`` is not callable.

    References
    ----------
    Hossain, Rakib, Elahi, Mohammed & Rahman, "COLT: Cyclic Overlapping Lottery Tickets for Faster
    Pruning of Convolutional Neural Networks", arXiv:2212.12770 (2022), IEEE TAI (2025); code
    github.com/ismail31416/COLT. Theirs (``main.py`` 324–404, ``prune.py`` 145–155 and 263–341,
    ``weights.py`` 138–153): one network per data split, each trained from the same
    initialisation; per round each prunes by ``|w|`` a fraction of its surviving weights
    (``torch.nn.utils.prune``, whose amount applies to the unpruned weights; global by default,
    one pool per layer type, or per layer), all are rewound to the initial weights, the masks are
    intersected (``np.equal(m1, m2)·m1``, chained over the splits), and the rounds repeat until the
    measured sparsity reaches the final rate; their default prunes only the conv layers, 0.15 per
    round, to 99.1 %. That plain intersection, kept as ``exact=False``, overshoots each round's
    target. Repgraph's: the exact count with its tie rule (the default), the last round's target
    capped at p, one pool for all chosen layers, and the stopping per pool.

    Examples
    --------
    The two splits "train" the weights to (4, 3, 2, 1) and (1, 4, 3, 2); one round at rate 0.5
    prunes c = 2. Their ranks by ``|w|`` are (3, 2, 1, 0) and (0, 3, 2, 1), so the smallest rank
    of each weight is (0, 2, 1, 0) and the sum (3, 5, 3, 1). The plain overlap prunes the
    weights of smallest rank below 2, three of the four; the exact rule prunes weight 3 (0, 1)
    and weight 0 (0, 3):

    >>> import torch
    >>> from torch import nn
    >>> from repgraph import colt_masks
    >>> model = nn.Sequential(nn.Linear(4, 1, bias=False))
    >>> with torch.no_grad():
    ...     _ = model[0].weight.copy_(torch.tensor([[0.1, 0.2, 0.3, 0.4]]))
    >>> def fake_train(net, split):
    ...     with torch.no_grad():
    ...         net[0].weight.copy_(split)
    >>> splits = [torch.tensor([[4.0, 3.0, 2.0, 1.0]]), torch.tensor([[1.0, 4.0, 3.0, 2.0]])]
    >>> masks, ticket = colt_masks(model, fake_train, splits, sparsity=0.5, rate=0.5)
    >>> masks["0"].int().tolist(), [round(w, 2) for w in ticket[0].weight[0].tolist()]
    ([[0, 1, 1, 0]], [0.0, 0.2, 0.3, 0.0])
    >>> colt_masks(model, fake_train, splits, sparsity=0.5, rate=0.5, exact=False)[0]["0"].int().tolist()
    [[0, 1, 0, 0]]
    """
    sparsity_target = check_ratio(sparsity, name="sparsity")
    rate = check_ratio(rate, name="rate", allow_zero=False)
    max_rounds = check_count(max_rounds, "max_rounds")
    if not callable(train_fn):
        raise TypeError(f"train_fn must be callable, train_fn(net, split) training net in place; got {train_fn!r}.")
    if not isinstance(exact, bool):
        raise TypeError(f"exact must be True (prune exactly the target) or False (the authors' plain overlap), "
                        f"got {exact!r}.")
    splits = list(splits)
    if len(splits) < 2:
        raise ValueError(f"splits must hold at least two data segments (COLT intersects their masks), got "
                         f"{len(splits)}.")
    if scope not in SCOPES:
        raise ValueError(f"scope must be one of {SCOPES}, got {scope!r}.")
    state = _rewind_state(model, rewind_to)
    masks = {n: torch.ones(m.weight.shape, dtype=torch.bool) for n, m in _layers(model, layers).items()}
    # exact: every pool must reach p; plain (the authors'): the overall sparsity
    stop_pools = _pools(list(masks), scope if exact else "global")

    def pruned(pool):
        return sum(int((~masks[n]).sum()) for n in pool) / sum(masks[n].numel() for n in pool)

    def reached():
        return all(pruned(pool) >= sparsity_target - 1e-12 for pool in stop_pools)

    for _ in range(max_rounds):
        if reached():
            break
        step = min(sparsity_target, 1.0 - (1.0 - pruned(list(masks))) * (1.0 - rate))
        split_masks, magnitudes = [], []
        for i, split in enumerate(splits):
            net, chosen = _ticket(model, state, masks, layers)
            with _held(net, chosen, masks):
                train_fn(net, split)
            if exact:
                magnitudes.append(_survivor_magnitudes(chosen, masks, i))
            split_masks.append(magnitude_masks(net, step, layers=list(chosen), masks=masks, scope=scope))
        if exact:
            masks = _exact_overlap(masks, split_masks, magnitudes, scope)
        else:
            masks = {n: torch.stack([m[n] for m in split_masks]).all(dim=0) for n in masks}
    if not reached():
        warn_user(f"colt_masks: {max_rounds} rounds reached sparsity {pruned(list(masks)):.4f} of the "
                  f"{sparsity_target} asked for; raise max_rounds or rate.", RuntimeWarning)
    ticket, _ = _ticket(model, state, masks, layers)
    return masks, ticket
