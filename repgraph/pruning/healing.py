"""Healing a pruned language model: a short, seeded next-token fine-tune."""
from __future__ import annotations

import pandas as pd
import torch
from torch import nn
from tqdm import tqdm

from .language_model import next_token_nll
from .._arrays import resolve_device

SCHEDULES = ("cosine", "constant")


def heal_lm(model: nn.Module, tokens, *, steps: int = 200, lr: float = 3e-4, batch_size: int = 16,
            seq_len: int = 128, weight_decay: float = 0.0, schedule: str = "cosine",
            max_grad_norm: float | None = 1.0, seed: int = 0, device=None,
            progress: bool = True) -> pd.DataFrame:
    """Fine-tune a language model in place on next-token prediction for a few hundred steps.

    Each step draws ``batch_size`` windows of ``seq_len`` consecutive tokens at random offsets of
    the token stream (a generator seeded by ``seed``), minimises the mean next-token negative
    log-likelihood ``(1/n) Σ −log p(x_t | x_<t)`` with AdamW, clips the gradient norm to
    ``max_grad_norm`` and follows the learning-rate ``schedule``: ``"cosine"`` decays from ``lr``
    at step 1 to 0 after the last step, ``"constant"`` keeps ``lr``. Dropout draws from the global
    RNG seeded by ``seed`` inside a forked RNG state, so the global RNG is untouched and the same
    inputs give bit-identical weights on CPU.

    What changes, in place: the parameters with ``requires_grad``; every submodule is left in eval
    mode (``model.eval()``, as ``train`` leaves it), whatever mode it was in before. The
    ``requires_grad`` flags, the module structure and the model's hooks are not touched (its own
    hooks run in every step's forward).

    Parameters
    ----------
    model : nn.Module
        A Hugging Face causal LM (returns ``.logits``) or a module mapping ids (B, T) to logits
        (B, T, V); only parameters with ``requires_grad`` are trained.
    tokens : 1-D integer tensor or array
        The training token stream (e.g. ``byte_corpus("train")``); any integer dtype.
    steps : int, default 200
        Optimiser steps.
    lr : float, default 3e-4
        Peak learning rate.
    batch_size : int, default 16
        Windows per step.
    seq_len : int, default 128
        Tokens per window (``seq_len − 1`` predicted tokens); at most the model's context length.
    weight_decay : float, default 0.0
        AdamW's decoupled weight decay.
    schedule : {"cosine", "constant"}, default "cosine"
        Learning-rate schedule over the steps.
    max_grad_norm : float or None, default 1.0
        Clip the gradients' global L2 norm to this value; None disables clipping.
    seed : int, default 0
        Seeds the window offsets and dropout.
    device : str or torch.device, optional
        Where batches go; default the device of the model's first parameter.
    progress : bool, default True
        Show a tqdm bar over the steps.

    Returns
    -------
    pandas.DataFrame
        One row per step: ``step`` (1-based), ``loss`` (the batch's mean NLL, nats), ``lr`` (the
        learning rate of that step); ``attrs`` record the settings.

    Raises
    ------
    ValueError
        For a ``tokens`` stream that is not 1-D or shorter than ``seq_len``, ``seq_len < 2``,
        ``steps < 1``, ``batch_size < 1`` or an unknown ``schedule``.

    References
    ----------
    Gromov et al. 2024 heal LLMs after removing their deeper blocks with a short (QLoRA)
    fine-tune; Men et al. 2024 (ShortGPT) study retraining after layer removal.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> model = nn.Sequential(nn.Embedding(256, 16), nn.Linear(16, 256))  # a bigram model
    >>> history = heal_lm(model, torch.arange(1000) % 256, steps=5, lr=1e-2, batch_size=4,
    ...                   seq_len=32, progress=False)
    >>> list(history.columns), len(history)
    (['step', 'loss', 'lr'], 5)
    """
    tokens = torch.as_tensor(tokens)
    if tokens.dim() != 1 or tokens.dtype.is_floating_point or tokens.dtype.is_complex:
        raise ValueError(f"tokens must be a 1-D integer token stream, got {tokens.dtype} of shape "
                         f"{tuple(tokens.shape)}; flatten (N, T) windows with tokens.reshape(-1).")
    if seq_len < 2:
        raise ValueError(f"seq_len must be >= 2 (one context token and one predicted token), got {seq_len}.")
    if len(tokens) < seq_len:
        raise ValueError(f"tokens holds {len(tokens)} tokens, fewer than seq_len={seq_len}; pass a longer "
                         "stream or a smaller seq_len.")
    if steps < 1 or batch_size < 1:
        raise ValueError(f"steps and batch_size must be >= 1, got steps={steps}, batch_size={batch_size}.")
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}.")
    device = resolve_device(device, like=model)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    scheduler = (torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps) if schedule == "cosine"
                 else None)
    generator = torch.Generator().manual_seed(seed)
    window = torch.arange(seq_len)
    history = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model.train()
        bar = tqdm(range(1, steps + 1), desc="heal", disable=not progress, leave=False)
        for step in bar:
            offsets = torch.randint(0, len(tokens) - seq_len + 1, (batch_size,), generator=generator)
            ids = tokens[offsets[:, None] + window].long().to(device)
            step_lr = opt.param_groups[0]["lr"]
            opt.zero_grad(set_to_none=True)
            loss = next_token_nll(model, ids).mean()
            loss.backward()
            if max_grad_norm is not None:
                nn.utils.clip_grad_norm_(params, max_grad_norm)
            opt.step()
            if scheduler is not None:
                scheduler.step()
            history.append({"step": step, "loss": loss.item(), "lr": step_lr})
            bar.set_postfix(loss=round(history[-1]["loss"], 4))
    model.eval()
    out = pd.DataFrame(history)
    out.attrs.update({"optimizer": "AdamW", "lr": lr, "schedule": schedule, "steps": steps,
                      "batch_size": batch_size, "seq_len": seq_len, "weight_decay": weight_decay,
                      "max_grad_norm": max_grad_norm, "seed": seed})
    return out
