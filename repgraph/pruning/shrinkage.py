"""Selective weight shrinkage: a weight decay applied only to the weights the loss is insensitive
to, and the iterative pruning that removes them (after Bonetta, Ribero & Cancelliere,
arXiv 2204.04977, and Tartaglione et al., NeurIPS 2018)."""
from __future__ import annotations

import copy
import math

import torch
from torch import nn

from .lottery import _held, _layers, _zero

REFERENCES = ("Bonetta, Ribero & Cancelliere, \"Regularization-based Pruning of Irrelevant Weights in Deep Neural "
              "Architectures\", arXiv 2204.04977 (2022), Applied Intelligence 2023")


def _check_settings(decay, relevance):
    if not (isinstance(decay, (int, float)) and math.isfinite(decay) and decay >= 0):
        raise ValueError(f"decay must be a number >= 0 (the shrinkage λ of the irrelevant weights), got {decay!r}.")
    if not (isinstance(relevance, (int, float)) and 0 <= relevance <= 1):
        raise ValueError(f"relevance must be in [0, 1] (the fraction of a layer's largest sensitivity below which "
                         f"a weight is irrelevant), got {relevance!r}.")


def shrink_step(model: nn.Module, *, decay: float, relevance: float = 0.1, layers=None) -> dict:
    """Add the selective-shrinkage regulariser's gradient to the weights' gradients, in place:
    call it after ``loss.backward()`` and before ``optimizer.step()``.

    For each chosen layer's weight w with gradient g = ∂L/∂w (the loss's, already in ``.grad``),
    the sensitivity of the loss to each weight is ``s = |w ⊙ g|`` (the first-order change of L
    when the weight is removed); a weight is irrelevant when ``s < relevance · max s`` over its
    layer. The regulariser ``R(w) = (λ/2) Σ_{irrelevant} w²`` (the irrelevant set held fixed for the
    step) adds ``λ·w`` to the gradient of the irrelevant weights only:
    ``g ← g + λ · w ⊙ 1[s < τ · max s]``. With plain SGD of step η an irrelevant weight moves
    ``w ← w − η g − η λ w`` (shrunk by the factor ``1 − ηλ`` when g = 0) while a relevant one
    follows the plain gradient step ``w ← w − η g``. A layer whose sensitivities are all 0 has
    no reference and is left alone; so are layers without a gradient.

    Parameters
    ----------
    model : nn.Module
        The network being trained; its weights' ``.grad`` are changed, nothing else.
    decay : float
        λ ≥ 0, the shrinkage of the irrelevant weights (a weight decay restricted to them).
    relevance : float
        τ in [0, 1]: a weight is irrelevant below ``τ`` times its layer's largest sensitivity.
    layers : list of str, optional
        The layers whose weights are regularised; default every Conv1d/2d/3d and Linear.

    Returns
    -------
    dict
        layer name -> bool tensor shaped like its weight, True where the weight was irrelevant
        (shrunk) at this step, on the CPU; layers without a gradient are absent.

    Raises
    ------
    ValueError
        For a negative ``decay``, ``relevance`` outside [0, 1], an unknown layer, or when no chosen
        weight has a gradient (call it after ``loss.backward()``).

    References
    ----------
    Bonetta, Ribero & Cancelliere, "Regularization-based Pruning of Irrelevant Weights in Deep Neural
    Architectures", arXiv 2204.04977 (2022), Applied Intelligence 2023 (shrinking the norm of the
    weights judged irrelevant, a classic update for the others); Tartaglione, Lepsøy, Fiandrotti &
    Francini, "Learning Sparse Neural Networks via Sensitivity-Driven Regularization", NeurIPS 2018
    (the sensitivity-gated decay term). Only the abstract of the first was available here: the
    loss sensitivity ``|w·∂L/∂w|`` and the relative threshold τ are repgraph's reading of it.

    Examples
    --------
    The loss (w·x − 3)² at x = (1, 0): the gradient is (−4, 0), so the second weight is
    irrelevant; one SGD step of 0.1 with λ = 0.5 moves the first by 0.4 and shrinks the second by
    the factor 1 − 0.05:

    >>> import torch
    >>> from torch import nn
    >>> from repgraph import shrink_step
    >>> model = nn.Sequential(nn.Linear(2, 1, bias=False))
    >>> with torch.no_grad():
    ...     _ = model[0].weight.copy_(torch.tensor([[1.0, 0.5]]))
    >>> loss = ((model(torch.tensor([[1.0, 0.0]])) - 3.0) ** 2).sum()
    >>> loss.backward()
    >>> shrink_step(model, decay=0.5)["0"].tolist()
    [[False, True]]
    >>> torch.optim.SGD(model.parameters(), lr=0.1).step()
    >>> [round(w, 4) for w in model[0].weight[0].tolist()]
    [1.4, 0.475]
    """
    _check_settings(decay, relevance)
    chosen = _layers(model, layers)
    found = {}
    for name, module in chosen.items():
        w, g = module.weight, module.weight.grad
        if g is None:
            continue
        with torch.no_grad():
            s = (w.detach().double() * g.double()).abs()
            top = s.max()
            irrelevant = s < relevance * top if top > 0 else torch.zeros_like(s, dtype=torch.bool)
            g.add_(decay * w.detach() * irrelevant.to(w.dtype))
        found[name] = irrelevant.cpu()
    if not found:
        raise ValueError("shrink_step: no chosen weight has a gradient; call it after loss.backward() and before "
                         "optimizer.step().")
    return found


class SelectiveShrinkage:
    """The selective-shrinkage regulariser of one model, to call once per optimisation step (after
    ``loss.backward()``, before ``optimizer.step()``): ``shrink_step(model, decay=…, relevance=…,
    layers=…)`` with the settings given here. ``last`` holds the irrelevant masks of the last call
    and ``calls`` the number of calls.

    Parameters
    ----------
    model : nn.Module
        The network being trained.
    decay : float
        λ ≥ 0, the shrinkage of the irrelevant weights.
    relevance : float
        τ in [0, 1], the relative sensitivity below which a weight is irrelevant.
    layers : list of str, optional
        The regularised layers; default every Conv1d/2d/3d and Linear.

    References
    ----------
    Bonetta, Ribero & Cancelliere, arXiv 2204.04977 (2022); Tartaglione et al., NeurIPS 2018; see
    ``shrink_step``.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from repgraph import SelectiveShrinkage
    >>> model = nn.Sequential(nn.Linear(2, 1, bias=False))
    >>> with torch.no_grad():
    ...     _ = model[0].weight.copy_(torch.tensor([[1.0, 0.5]]))
    >>> shrink = SelectiveShrinkage(model, decay=0.5)
    >>> opt = torch.optim.SGD(model.parameters(), lr=0.1)
    >>> for _ in range(2):
    ...     opt.zero_grad()
    ...     ((model(torch.tensor([[1.0, 0.0]])) - 3.0) ** 2).sum().backward()
    ...     _ = shrink()
    ...     opt.step()
    >>> round(model[0].weight[0, 1].item(), 6), shrink.calls    # 0.5 · 0.95²
    (0.45125, 2)
    """

    def __init__(self, model: nn.Module, decay: float, relevance: float = 0.1, layers=None):
        _check_settings(decay, relevance)
        _layers(model, layers)  # names checked now, not at the first step
        self.model, self.decay, self.relevance, self.layers = model, decay, relevance, layers
        self.calls, self.last = 0, {}

    def __call__(self) -> dict:
        self.last = shrink_step(self.model, decay=self.decay, relevance=self.relevance, layers=self.layers)
        self.calls += 1
        return self.last

    def __repr__(self):
        return f"SelectiveShrinkage(decay={self.decay}, relevance={self.relevance}, calls={self.calls})"


def shrink_prune(model: nn.Module, train_fn, *, threshold: float, decay: float, relevance: float = 0.1,
                 rounds: int = 1, layers=None) -> tuple[dict, nn.Module]:
    """Iterative pruning with selective shrinkage: train with the regulariser, remove the weights
    it shrank below ``threshold``, repeat.

    Round r = 1..R on a copy of ``model`` (the rounds continue from each other, no rewinding):
    ``train_fn(net, shrink)`` trains ``net`` in place, calling ``shrink()`` (a
    ``SelectiveShrinkage`` of ``net``) after each ``loss.backward()``, while the weights already
    pruned are held at exactly 0 (as in ``lottery_imp``: zeroed before each forward, their
    gradients zeroed); then the mask drops every surviving weight with ``|w| < threshold``:
    ``m ← m ∧ 1[|w| ≥ T]``. The irrelevant weights decay geometrically toward 0 and fall under T
    while the relevant ones, updated normally, stay. ``model`` is not modified.

    Parameters
    ----------
    model : nn.Module
        The (trained or untrained) network; not modified.
    train_fn : callable
        ``train_fn(net, shrink)``: trains ``net`` in place, calling ``shrink()`` after each
        backward pass and before the optimizer step. Called ``rounds`` times.
    threshold : float
        T > 0, the magnitude below which a weight is removed after each round.
    decay : float
        λ ≥ 0 of the regulariser.
    relevance : float
        τ in [0, 1] of the regulariser.
    rounds : int
        R ≥ 1 rounds of shrink-then-prune.
    layers : list of str, optional
        The layers regularised and pruned; default every Conv1d/2d/3d and Linear.

    Returns
    -------
    masks : dict
        layer name -> bool tensor shaped like its weight (True = kept), on the CPU, in
        ``magnitude_masks``' format (``apply_masks``, ``sparsity``).
    pruned : nn.Module
        The trained copy with the pruned weights exactly 0.

    Raises
    ------
    ValueError
        For ``threshold`` ≤ 0, a bad ``decay`` or ``relevance``, ``rounds`` < 1 or an unknown layer.
    TypeError
        If ``train_fn`` is not callable.

    References
    ----------
    Bonetta, Ribero & Cancelliere, "Regularization-based Pruning of Irrelevant Weights in Deep Neural
    Architectures", arXiv 2204.04977 (2022) (the regulariser and an iterative pruning of the
    irrelevant weights); Tartaglione et al., "Learning Sparse Neural Networks via
    Sensitivity-Driven Regularization", NeurIPS 2018 (thresholding the shrunk weights). From the
    abstracts: the schedule (R rounds, a fixed magnitude threshold) is repgraph's.

    Examples
    --------
    Ten SGD steps on (w·x − 3)² at x = (1, 0): the first weight learns, the second (irrelevant)
    shrinks by 0.5 per step to 0.5·2⁻¹⁰ and is pruned:

    >>> import torch
    >>> from torch import nn
    >>> from repgraph import shrink_prune
    >>> model = nn.Sequential(nn.Linear(2, 1, bias=False))
    >>> with torch.no_grad():
    ...     _ = model[0].weight.copy_(torch.tensor([[1.0, 0.5]]))
    >>> def train_fn(net, shrink):
    ...     opt = torch.optim.SGD(net.parameters(), lr=0.1)
    ...     for _ in range(10):
    ...         opt.zero_grad()
    ...         ((net(torch.tensor([[1.0, 0.0]])) - 3.0) ** 2).sum().backward()
    ...         _ = shrink()
    ...         opt.step()
    >>> masks, pruned = shrink_prune(model, train_fn, threshold=1e-3, decay=5.0)
    >>> masks["0"].int().tolist(), [round(w, 4) for w in pruned[0].weight[0].tolist()]
    ([[1, 0]], [2.7853, 0.0])
    """
    if not (isinstance(threshold, (int, float)) and math.isfinite(threshold) and threshold > 0):
        raise ValueError(f"threshold must be a number > 0 (weights with |w| below it are removed), got {threshold!r}.")
    _check_settings(decay, relevance)
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
        raise ValueError(f"rounds must be an integer >= 1, got {rounds!r}.")
    if not callable(train_fn):
        raise TypeError(f"train_fn must be callable, train_fn(net, shrink) training net in place; got {train_fn!r}.")
    net = copy.deepcopy(model)
    chosen = _layers(net, layers)
    masks = {n: torch.ones(m.weight.shape, dtype=torch.bool) for n, m in chosen.items()}
    for _ in range(rounds):
        shrink = SelectiveShrinkage(net, decay, relevance, list(chosen))
        with _held(net, chosen, masks):
            train_fn(net, shrink)
        masks = {n: masks[n] & (chosen[n].weight.detach().abs() >= threshold).cpu() for n in chosen}
        _zero(chosen, masks)
    return masks, net
