"""Lottery jackpots: a sparse mask searched on a trained network whose weights stay frozen (Zhang
et al., TPAMI 2023), the search of the authors' code with its per-step top-k swap."""
from __future__ import annotations

import copy
import math
import numbers

import torch
from torch import nn
from torch.func import functional_call
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from .._arrays import check_count, check_ratio
from .lottery import SCOPES, _layers, _zero, magnitude_masks
from .training import _dataset

INITS = ("magnitude", "random")
# The authors' initial scores (utils/conv_type.py, set_prune_rate): 1 where the initial mask
# keeps a weight, 0.99 where it prunes it, so the first steps decide the order.
KEPT_SCORE, PRUNED_SCORE = 1.0, 0.99


def _swap(score: torch.Tensor, kept: torch.Tensor, pruned: int, swap_fraction: float) -> int:
    """The authors' mask update after each step (``final_pop_up``), in place on the flat ``kept``.

    With t the ``pruned``-th smallest score, the pruned weights scoring above t ("revive") and the
    kept ones scoring at most t ("drop") are out of order. Only when both sets are non-empty and
    of equal size (no tie at t) are ``ceil(swap_fraction·n)`` of each exchanged (all when n = 1):
    the revived of highest score, the dropped of lowest. Returns how many were swapped."""
    if pruned == 0:
        return 0
    threshold = torch.sort(score).values[pruned - 1]
    revive = torch.nonzero(~kept & (score > threshold)).reshape(-1)
    drop = torch.nonzero(kept & (score <= threshold)).reshape(-1)
    if len(revive) == 0 or len(revive) != len(drop):
        return 0
    n = len(revive) if len(revive) == 1 else math.ceil(round(len(revive) * swap_fraction, 9))
    kept[revive[torch.sort(score[revive], descending=True, stable=True).indices[:n]]] = True
    kept[drop[torch.sort(score[drop], stable=True).indices[:n]]] = False
    return n


def _initial_masks(model: nn.Module, sparsity: float, layers: list, scope: str, init: str, seed: int) -> dict:
    """The magnitude masks, or for ``init="random"`` as many pruned weights per layer at random."""
    masks = magnitude_masks(model, sparsity, layers=layers, scope=scope)
    if init == "magnitude":
        return masks
    generator = torch.Generator().manual_seed(seed)
    randomised = {}
    for n, mask in masks.items():
        kept = torch.zeros(mask.numel(), dtype=torch.bool)
        kept[torch.randperm(mask.numel(), generator=generator)[:int(mask.sum())]] = True
        randomised[n] = kept.reshape(mask.shape)
    return randomised


def _check_number(value, name: str, low: float, high: float, *, low_open: bool, high_open: bool) -> float:
    inside = (isinstance(value, numbers.Real) and not isinstance(value, bool)
              and (value > low if low_open else value >= low) and (value < high if high_open else value <= high))
    if not inside:
        interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        raise ValueError(f"{name} must be a number in {interval}, got {value!r}.")
    return float(value)


def lottery_jackpot(model: nn.Module, data, *, sparsity: float, epochs: int, lr: float = 0.1,
                    momentum: float = 0.9, weight_decay: float = 5e-4, batch_size: int = 256,
                    init: str = "magnitude", swap_fraction: float = 1.0, layers=None, scope: str = "global",
                    seed: int = 0, progress: bool = True) -> tuple[dict, nn.Module]:
    """A lottery jackpot of ``model``: the mask at ``sparsity`` searched with the weights frozen,
    so the ticket is the trained network itself with some weights set to 0 and no weight tuned.

    Every chosen layer l gets a score ``s_l`` per weight and a binary mask ``m_l`` (True = kept)
    holding a fixed number ``k_l`` of pruned weights: those of the initial mask,
    ``magnitude_masks(model, sparsity, scope=scope)`` (``init="magnitude"``) or, for
    ``init="random"``, as many per layer drawn at random (seeded by ``seed``). The scores start at
    1 where ``m`` keeps a weight and 0.99 where it prunes one. The network runs with
    ``W′_l = W_l ⊙ m_l``; the mask passes the gradient straight through to the scores, so

        ``∂L/∂s_l = ∂L/∂W′_l ⊙ W_l``

    (also for pruned weights, whose ``W_l`` is not 0). SGD (``momentum``, ``weight_decay``, no
    Nesterov) steps the scores on cross-entropy minibatches of ``batch_size``, the learning rate
    cosine-annealed per epoch, ``lr_e = lr·(1 + cos(π·e/E))/2`` for epoch e = 0..E−1 (so one
    epoch runs at ``lr``). After every
    step each layer's mask is brought back to its top scores: with t the ``k_l``-th smallest
    score, the pruned weights scoring above t and the kept ones scoring at most t are exchanged,
    ``ceil(swap_fraction·n)`` of the n pairs (highest-scoring revived, lowest-scoring dropped),
    and only when the two sets are equally large (no tie at t); so ``k_l`` never changes.

    The weights, biases and BatchNorm affine parameters are never changed (the authors freeze
    them); the search runs the network in train mode, as theirs does, so BatchNorm's running
    statistics (and dropout) behave as in training and the ticket keeps the statistics the search
    leaves, those of the masked network. ``model`` is not modified: the search runs on a copy.

    Parameters
    ----------
    model : nn.Module
        The trained network; not modified.
    data : Dataset or tuple (X, y)
        The search's training set, as for ``train``: a Dataset of ``(x, y)`` pairs or inputs and
        integer labels; reshuffled every epoch by a generator seeded with ``seed``.
    sparsity : float
        The fraction p of the chosen weights pruned, in [0, 1).
    epochs : int
        Passes over ``data`` (the authors use 30 on CIFAR, 10 with magnitude init on ImageNet).
    lr, momentum, weight_decay : float
        SGD on the scores (the authors' 0.1, 0.9 and 5e-4); ``lr`` > 0, ``momentum`` in [0, 1),
        ``weight_decay`` >= 0.
    batch_size : int
        Samples per step (the authors' 256); part of the search, not a memory setting.
    init : {"magnitude", "random"}
        The initial mask (the paper's magnitude-initialised jackpot, or a random start).
    swap_fraction : float
        The fraction of the out-of-order pairs exchanged per step, in (0, 1]; the released code
        uses 1 (all).
    layers : list of str, optional
        The layers whose weights are masked; default every Conv1d/2d/3d and Linear. The authors
        leave the classifier dense: pass the layers without it to do the same.
    scope : {"global", "layer"}
        The initial magnitude threshold over all chosen layers (the authors' default, which sets
        each layer's ``k_l``) or per layer (``k_l = ceil(p·N_l)``).
    seed : int
        Seed of the shuffling, of the random state during the search (dropout) and of
        ``init="random"``.
    progress : bool
        Show a progress bar over the epochs.

    Returns
    -------
    masks : dict
        layer name -> bool tensor shaped like its weight (True = kept), on the CPU.
    ticket : nn.Module
        A copy of ``model`` with the weights ``W ⊙ m`` (every kept weight bit-identical to
        ``model``'s, the pruned ones exactly 0), BatchNorm statistics from the search, and
        ``model``'s modes, hooks and ``requires_grad`` flags.

    Raises
    ------
    ValueError
        For a sparsity outside [0, 1), ``epochs`` or ``batch_size`` < 1, ``lr``, ``momentum``,
        ``weight_decay`` or ``swap_fraction`` out of range, an unknown ``init``, ``scope`` or
        layer, no layer to mask, or empty ``data``.
    TypeError
        If ``data`` is neither a Dataset nor a tuple (X, y), or ``epochs``, ``batch_size`` or
        ``seed`` is not an integer.

    Notes
    -----
    Deviations from the released code: ``k_l`` comes from ``magnitude_masks`` (``ceil`` of the
    pruned count; the authors floor ``rate·N_l`` after turning the global threshold into a rate);
    sorts are stable (ties go to the lower index); the pre-trained weights are used as they are
    (``cifar.py`` builds a fresh network after computing the layer rates and searches on its
    untrained weights, which ``imagenet.py`` does not); the returned mask is the last one, not the
    one of best test accuracy; ``init="random"`` is repgraph's (the released code starts from the
    magnitude mask only). The paper's "short restriction" is not in the released search apart
    from ``swap_fraction``, which both scripts fix at 1 (``cifar.py`` ``adjust_rate``:
    ``ceil((1 − e/E)^4) = 1`` for every epoch e < E; ``imagenet.py`` returns 1).

    References
    ----------
    Y. Zhang, M. Lin, Y. Zhong, F. Chao and R. Ji, "Lottery Jackpots Exist in Pre-trained Models",
    IEEE TPAMI 45(12), 2023, arXiv:2104.08700; code github.com/zyxxmu/lottery-jackpots at
    1b802ea6: ``utils/conv_type.py`` (``GetMask``, ``PretrainConv``: straight-through mask,
    ``final_pop_up``, ``set_prune_rate``), ``cifar.py`` (``generate_pr_cfg``, the optimiser and
    schedule, the update after every step), ``utils/common.py`` (``freeze_model_weights``).

    Examples
    --------
    One sample of class 1, x = (1, 0.5); the magnitude mask keeps the column of 2 and −3, whose
    logits (1, −1.5) predict class 0. The score gradient ``(softmax(z) − e₁) xᵀ ⊙ W`` lifts the
    pruned 0.5 and 1 above the kept ones after one step of lr 0.1, and both pairs swap:

    >>> import torch
    >>> from torch import nn
    >>> from repgraph import lottery_jackpot, sparsity
    >>> model = nn.Sequential(nn.Linear(2, 2, bias=False))
    >>> with torch.no_grad():
    ...     _ = model[0].weight.copy_(torch.tensor([[0.5, 2.0], [1.0, -3.0]]))
    >>> data = (torch.tensor([[1.0, 0.5]]), torch.tensor([1]))
    >>> masks, ticket = lottery_jackpot(model, data, sparsity=0.5, epochs=1, weight_decay=0.0, progress=False)
    >>> masks["0"].int().tolist(), ticket[0].weight[:, 0].tolist(), sparsity(ticket)
    ([[1, 0], [1, 0]], [0.5, 1.0], 0.5)
    """
    sparsity = check_ratio(sparsity, name="sparsity")
    epochs = check_count(epochs, "epochs")
    batch_size = check_count(batch_size, "batch_size")
    seed = check_count(seed, "seed", minimum=0)
    lr = _check_number(lr, "lr", 0.0, math.inf, low_open=True, high_open=True)
    momentum = _check_number(momentum, "momentum", 0.0, 1.0, low_open=False, high_open=True)
    weight_decay = _check_number(weight_decay, "weight_decay", 0.0, math.inf, low_open=False, high_open=True)
    swap_fraction = _check_number(swap_fraction, "swap_fraction", 0.0, 1.0, low_open=True, high_open=False)
    if init not in INITS:
        raise ValueError(f"init must be one of {INITS}, got {init!r}.")
    if scope not in SCOPES:
        raise ValueError(f"scope must be one of {SCOPES}, got {scope!r}.")
    dataset = _dataset(data)
    if len(dataset) == 0:
        raise ValueError("lottery_jackpot: data is empty; pass at least one (input, label) sample.")
    chosen = list(_layers(model, layers))
    if not chosen:
        raise ValueError("lottery_jackpot: the model has no Conv1d/2d/3d or Linear layer to mask; pass layers=[...] "
                         "naming modules with a weight.")
    masks = _initial_masks(model, sparsity, chosen, scope, init, seed)

    net = copy.deepcopy(model)
    modules = _layers(net, chosen)
    device = modules[chosen[0]].weight.device
    kept = {n: masks[n].reshape(-1).to(device) for n in chosen}
    pruned = {n: int((~kept[n]).sum()) for n in chosen}
    scores = {n: torch.where(kept[n], KEPT_SCORE, PRUNED_SCORE).to(modules[n].weight.dtype).requires_grad_()
              for n in chosen}
    frozen = {name: p.detach() for name, p in net.named_parameters()}
    optimiser = torch.optim.SGD(list(scores.values()), lr=lr, momentum=momentum, weight_decay=weight_decay)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, generator=torch.Generator().manual_seed(seed))
    loss_fn = nn.CrossEntropyLoss()
    cuda_devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=cuda_devices):
        torch.manual_seed(seed)
        net.train()
        for epoch in tqdm(range(epochs), desc="lottery_jackpot", disable=not progress, leave=False):
            for group in optimiser.param_groups:
                group["lr"] = 0.5 * lr * (1 + math.cos(math.pi * epoch / epochs))  # imagenet.py's "cos" policy
            for x, y in loader:
                masked = {}
                for n in chosen:
                    mask = kept[n].to(scores[n].dtype)
                    # straight through: the value is the binary mask, the gradient goes to the score
                    through = mask + (scores[n] - scores[n].detach())
                    masked[f"{n}.weight"] = frozen[f"{n}.weight"] * through.reshape(modules[n].weight.shape)
                loss = loss_fn(functional_call(net, {**frozen, **masked}, (x.to(device),)), y.to(device))
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                optimiser.step()
                with torch.no_grad():
                    for n in chosen:
                        _swap(scores[n].detach(), kept[n], pruned[n], swap_fraction)
    masks = {n: kept[n].reshape(modules[n].weight.shape).cpu().clone() for n in chosen}
    ticket = copy.deepcopy(model)
    ticket.load_state_dict(net.state_dict())
    _zero(_layers(ticket, chosen), masks)
    return masks, ticket
