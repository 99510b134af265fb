"""Healing a pruned language model: a short, seeded next-token fine-tune."""
from __future__ import annotations

import contextlib
import math
import numbers

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from .._arrays import check_count
from .language_model import check_context, check_token_ids, next_token_nll
from .lora_adapters import lora_adapters, lora_config
from .._arrays import resolve_device

SCHEDULES = ("cosine", "constant")


def _check_real(value, name: str, *, positive: bool, hint: str = "") -> float:
    """``value`` as a float if it is a finite real number ``> 0`` (``>= 0`` unless ``positive``),
    else an error naming ``name``."""
    bound = "> 0" if positive else ">= 0"
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a finite number {bound}, got {value!r} ({type(value).__name__}){hint}.")
    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        raise ValueError(f"{name} must be a finite number {bound}, got {value!r}{hint}.")
    return float(value)


def _token_stream(tokens, model: nn.Module, seq_len: int) -> torch.Tensor:
    """The training stream as a 1-D integer tensor, checked against ``seq_len``, the model's
    vocabulary and its positions before any step runs."""
    if isinstance(tokens, torch.Tensor):
        stream = tokens
    else:
        try:
            stream = torch.as_tensor(np.asarray(tokens))
        except (TypeError, ValueError, RuntimeError):
            raise TypeError(f"tokens must be a 1-D integer tensor or array, got {type(tokens).__name__}.") from None
    if stream.dim() != 1 or stream.dtype.is_floating_point or stream.dtype.is_complex or stream.dtype == torch.bool:
        raise ValueError(f"tokens must be a 1-D integer token stream, got {stream.dtype} of shape "
                         f"{tuple(stream.shape)}; flatten (N, T) windows with tokens.reshape(-1).")
    if len(stream) < seq_len:
        raise ValueError(f"tokens holds {len(stream)} tokens, fewer than seq_len={seq_len}; pass a longer "
                         "stream or a smaller seq_len.")
    vocab = getattr(getattr(model, "config", None), "vocab_size", None)
    if isinstance(vocab, int):
        check_token_ids(stream, vocab, "tokens")
    check_context(model, seq_len, f"seq_len={seq_len}", "pass a seq_len of at most that many tokens.")
    return stream


def _diverged(step: int, what: str, history: list, lr: float, weights: str) -> FloatingPointError:
    """The error that stops a diverging heal: which step, why, the last finite loss and the fix."""
    last = f"; the last finite loss was {history[-1]['loss']:.4g} (step {history[-1]['step']})" if history else ""
    return FloatingPointError(f"heal_lm diverged at step {step}: {what}{last}. The model's weights {weights}. "
                              f"Lower lr (lr={lr:g}) or clip the gradients (max_grad_norm).")


def _train(model: nn.Module, params: list, tokens: torch.Tensor, *, steps: int, lr: float, weight_decay: float,
           schedule: str, max_grad_norm, batch_size: int, seq_len: int, seed: int, device, progress: bool) -> list:
    """heal_lm's steps on ``params`` (checked arguments); the history rows. The model ends in eval
    mode, also after a divergence."""
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    scheduler = (torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps) if schedule == "cosine"
                 else None)
    generator = torch.Generator().manual_seed(seed)
    window = torch.arange(seq_len)
    history = []
    last_finite = [p.detach().clone() for p in params]  # the weights before the current step
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
            # the global gradient norm (clipped to max_grad_norm; an infinite bound only measures it)
            norm = nn.utils.clip_grad_norm_(params, math.inf if max_grad_norm is None else max_grad_norm)
            if not (math.isfinite(loss.item()) and math.isfinite(norm.item())):
                model.eval()
                raise _diverged(step, f"its loss is {loss.item()} and its gradient norm {norm.item()}",
                                history, lr, "are those after the last finite step, untouched by it")
            opt.step()
            if not all(bool(torch.isfinite(p).all()) for p in params):
                with torch.no_grad():
                    for p, kept in zip(params, last_finite):
                        p.copy_(kept)
                model.eval()
                raise _diverged(step, "its update made weights non-finite", history, lr,
                                "were restored to those before it")
            with torch.no_grad():
                for p, kept in zip(params, last_finite):
                    kept.copy_(p)
            if scheduler is not None:
                scheduler.step()
            history.append({"step": step, "loss": loss.item(), "lr": step_lr})
            bar.set_postfix(loss=round(history[-1]["loss"], 4))
    model.eval()
    return history


def heal_lm(model: nn.Module, tokens, *, steps: int = 200, lr: float = 3e-4, batch_size: int = 16,
            seq_len: int = 128, weight_decay: float = 0.0, schedule: str = "cosine",
            max_grad_norm: float | None = 1.0, seed: int = 0, device=None,
            progress: bool = True, lora=None) -> pd.DataFrame:
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

    A step whose loss or gradient norm is not finite is not applied, and a step that makes a weight
    non-finite is undone: either way heal_lm stops with a ``FloatingPointError`` and the model keeps
    the weights of its last finite step (never NaN weights).

    Parameters
    ----------
    model : nn.Module
        A Hugging Face causal LM (returns ``.logits``) or a module mapping ids (B, T) to logits
        (B, T, V); only parameters with ``requires_grad`` are trained.
    tokens : 1-D integer tensor, array or list
        The training token stream (e.g. ``byte_corpus("train")``); any integer dtype, every id
        within the model's ``config.vocab_size`` when it has one.
    steps : int, default 200
        Optimiser steps.
    lr : float, default 3e-4
        Peak learning rate, finite and > 0.
    batch_size : int, default 16
        Windows per step.
    seq_len : int, default 128
        Tokens per window (``seq_len − 1`` predicted tokens); at most the model's context length
        (``config.n_positions`` or ``config.max_position_embeddings``).
    weight_decay : float, default 0.0
        AdamW's decoupled weight decay, finite and >= 0.
    schedule : {"cosine", "constant"}, default "cosine"
        Learning-rate schedule over the steps.
    max_grad_norm : float or None, default 1.0
        Clip the gradients' global L2 norm to this value (finite and > 0); None disables clipping.
    seed : int, default 0
        Seeds the window offsets and dropout; >= 0.
    device : str or torch.device, optional
        Where batches go; default the device of the model's first parameter.
    progress : bool, default True
        Show a tqdm bar over the steps.
    lora : None, True, int, dict or peft.LoraConfig, optional
        None (default): a full fine-tune of the parameters with ``requires_grad``. Otherwise heal
        through LoRA adapters (Hu et al. 2022; the optional ``peft`` package, ``repgraph[lora]``):
        True for rank 8 on every linear layer (α = 16, no dropout; a Hugging Face LM's output head
        excluded), an int for that rank (α = 2r), a dict of ``peft.LoraConfig`` arguments over
        those, or a ``LoraConfig``. Only the adapters train (AdamW state for them alone); at the
        end, also after an error, they are merged into the weights, ``W ← W + (α/r)·B·A``, and
        the model's own layers (their hooks and ``requires_grad`` flags) are back in place.

    Returns
    -------
    pandas.DataFrame
        One row per step: ``step`` (1-based), ``loss`` (the batch's mean NLL, nats), ``lr`` (the
        learning rate of that step); ``attrs`` record the settings.

    Raises
    ------
    TypeError
        For ``steps``, ``batch_size``, ``seq_len`` or ``seed`` that is not an integer, ``lr``,
        ``weight_decay`` or ``max_grad_norm`` that is not a number, or a model that does not
        return logits.
    ValueError
        For a ``tokens`` stream that is not 1-D integers, is shorter than ``seq_len`` or holds ids
        outside the vocabulary; ``seq_len < 2`` or beyond the model's positions; ``steps < 1``,
        ``batch_size < 1``, ``seed < 0``; ``lr <= 0``, ``max_grad_norm <= 0``,
        ``weight_decay < 0`` or any of them not finite; an unknown ``schedule``; a model without a
        parameter that requires a gradient. All are raised before the first step.
    FloatingPointError
        When training diverges (see above); the message names the step and the last finite loss.

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
    steps, batch_size = check_count(steps, "steps"), check_count(batch_size, "batch_size")
    seq_len = check_count(seq_len, "seq_len", minimum=2)  # one context token and one predicted token
    lr = _check_real(lr, "lr", positive=True)
    weight_decay = _check_real(weight_decay, "weight_decay", positive=False)
    if max_grad_norm is not None:
        max_grad_norm = _check_real(max_grad_norm, "max_grad_norm", positive=True,
                                    hint="; pass None for no clipping")
    seed = check_count(seed, "seed", minimum=0)
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}.")
    tokens = _token_stream(tokens, model, seq_len)
    if lora is None and not any(p.requires_grad for p in model.parameters()):
        raise ValueError(f"{type(model).__name__} has no parameter with requires_grad=True, so heal_lm would "
                         "train nothing; unfreeze the parameters to fine-tune (p.requires_grad_(True)), or pass "
                         "lora=True to train adapters.")
    device = resolve_device(device, like=model)
    config = None if lora is None else lora_config(lora)
    with contextlib.nullcontext() if config is None else lora_adapters(model, config) as lora_params:
        params = [p for p in model.parameters() if p.requires_grad] if config is None else lora_params
        trained_with = None if config is None else {
            "r": config.r, "lora_alpha": config.lora_alpha, "lora_dropout": config.lora_dropout,
            "target_modules": sorted(config.target_modules) if isinstance(config.target_modules, set)
            else config.target_modules, "n_parameters": sum(p.numel() for p in lora_params)}
        history = _train(model, params, tokens, steps=steps, lr=lr, weight_decay=weight_decay, schedule=schedule,
                         max_grad_norm=max_grad_norm, batch_size=batch_size, seq_len=seq_len, seed=seed,
                         device=device, progress=progress)
    out = pd.DataFrame(history)
    out.attrs.update({"optimizer": "AdamW", "lr": lr, "schedule": schedule, "steps": steps,
                      "batch_size": batch_size, "seq_len": seq_len, "weight_decay": weight_decay,
                      "max_grad_norm": max_grad_norm, "seed": seed,
                      "lora": trained_with})
    return out
