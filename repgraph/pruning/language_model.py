"""Language-model evaluation: perplexity of next-token prediction on held-out token batches."""
from __future__ import annotations

import math
from collections.abc import Mapping
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from ..hooks.modes import evaluating
from .._arrays import resolve_device


class LMEvaluation(NamedTuple):
    """What ``evaluate_lm`` returns: ``perplexity = exp(nll)`` with
    ``nll = (1/n) Σ −log p(x_t | x_<t)`` over the n predicted tokens.

    A named tuple: unpack it (``ppl, nll, n = evaluate_lm(...)``) or read its fields.

    Parameters
    ----------
    perplexity : float
        ``exp(nll)``.
    nll : float
        Mean negative log-likelihood per predicted token, in nats.
    n_tokens : int
        The number n of predicted tokens the mean runs over.

    References
    ----------
    Jurafsky & Martin, "Speech and Language Processing", ch. 3 (perplexity of a language model);
    the Hugging Face transformers guide "Perplexity of fixed-length models".

    Examples
    --------
    >>> import math
    >>> result = LMEvaluation(perplexity=math.exp(2.0), nll=2.0, n_tokens=60)
    >>> ppl, nll, n = result
    >>> round(ppl, 4), result.nll, result.n_tokens
    (7.3891, 2.0, 60)
    """

    perplexity: float
    nll: float
    n_tokens: int


def _as_batch(batch, where: str) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(input_ids, attention_mask or None)`` from a tensor, a mapping with ``input_ids`` (and
    optionally ``attention_mask``), or a tuple/list whose first element is the ids."""
    mask = None
    if isinstance(batch, Mapping):
        if "input_ids" not in batch:
            raise TypeError(f"{where}: a dict batch needs the key 'input_ids' (and optionally "
                            f"'attention_mask'); got keys {sorted(batch)}.")
        ids, mask = batch["input_ids"], batch.get("attention_mask")
    elif isinstance(batch, (tuple, list)) and batch and isinstance(batch[0], torch.Tensor):
        ids = batch[0]
    else:
        ids = batch
    if not isinstance(ids, torch.Tensor) or ids.dtype.is_floating_point or ids.dtype.is_complex or ids.dim() != 2:
        raise TypeError(f"{where}: token ids must be an integer tensor (N, T); got "
                        f"{getattr(ids, 'dtype', type(ids).__name__)} of shape {tuple(getattr(ids, 'shape', ()))}.")
    if mask is not None and tuple(mask.shape) != tuple(ids.shape):
        raise ValueError(f"{where}: attention_mask has shape {tuple(mask.shape)} but input_ids has "
                         f"{tuple(ids.shape)}; they must match.")
    return ids.long(), mask


def token_batches(data, batch_size: int):
    """Yield ``(input_ids, attention_mask or None)`` batches from token data: a LongTensor (N, T),
    a dict ``{"input_ids": (N, T), "attention_mask": (N, T)}``, a Dataset of (T,) tensors or of
    dicts, or any iterable of batches (a DataLoader, a list of tensors or dicts)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
    if isinstance(data, torch.Tensor) or isinstance(data, Mapping):
        ids, mask = _as_batch(data, "data")
        for start in range(0, len(ids), batch_size):
            yield ids[start:start + batch_size], None if mask is None else mask[start:start + batch_size]
        return
    if isinstance(data, Dataset):
        data = DataLoader(data, batch_size=batch_size, shuffle=False)
    try:
        batches = iter(data)
    except TypeError:
        raise TypeError("data must be a LongTensor (N, T), a dict with 'input_ids' (and optionally "
                        "'attention_mask'), a Dataset or an iterable of such batches; got "
                        f"{type(data).__name__}.") from None
    for i, batch in enumerate(batches):
        yield _as_batch(batch, f"batch {i}")


def _check_ids(ids: torch.Tensor, vocab: int) -> None:
    if ids.numel() and (ids.min() < 0 or ids.max() >= vocab):
        raise ValueError(f"Token ids must lie in [0, {vocab}) (the model's vocabulary); got "
                         f"[{int(ids.min())}, {int(ids.max())}].")


def next_token_nll(model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None
                   ) -> torch.Tensor:
    """``−log p(x_t | x_<t)`` (float32, 1-D) for every predicted token of one batch. Position t ≥ 1 is
    predicted from the logits at t − 1 and counts when ``attention_mask`` is 1 at both t − 1 and t
    (every position without a mask). The model gets ``input_ids`` (and ``attention_mask=`` when
    given) and returns logits (B, T, V) or an object with ``.logits`` (Hugging Face)."""
    config = getattr(model, "config", None)
    kwargs = {} if attention_mask is None else {"attention_mask": attention_mask}
    if hasattr(config, "use_cache"):
        kwargs["use_cache"] = False  # a Hugging Face model would otherwise fill a KV cache nobody reads
    if isinstance(getattr(config, "vocab_size", None), int):
        _check_ids(input_ids, config.vocab_size)  # before the embedding fails with a bare IndexError
    out = model(input_ids, **kwargs)
    logits = getattr(out, "logits", out)
    if not isinstance(logits, torch.Tensor) or logits.dim() != 3 or tuple(logits.shape[:2]) != tuple(input_ids.shape):
        raise TypeError(f"{type(model).__name__} must return logits (B, T, V) = ({input_ids.shape[0]}, "
                        f"{input_ids.shape[1]}, V), or an object with .logits; got "
                        f"{getattr(logits, 'shape', type(logits).__name__)}.")
    vocab = logits.shape[-1]
    _check_ids(input_ids, vocab)
    nll = F.cross_entropy(logits[:, :-1].reshape(-1, vocab).float(), input_ids[:, 1:].reshape(-1), reduction="none")
    if attention_mask is None:
        return nll
    return nll[(attention_mask[:, :-1].bool() & attention_mask[:, 1:].bool()).reshape(-1)]


def evaluate_lm(model: nn.Module, data, *, batch_size: int = 8, device=None,
                progress: bool = True) -> LMEvaluation:
    """Perplexity of a language model's next-token predictions on held-out token batches.

    ``nll = (1/n) Σ −log p(x_t | x_<t)`` over every predicted token of every sequence (position
    t ≥ 1, predicted from the logits at t − 1; with an ``attention_mask``, only where the mask is 1
    at both t − 1 and t, so padding never counts) and ``perplexity = exp(nll)``. Sums run in
    float64. The model runs in eval mode under ``no_grad``; every module's train/eval mode is
    restored afterwards (``repgraph.hooks.modes.evaluating``).

    Parameters
    ----------
    model : nn.Module
        A Hugging Face causal LM (returns ``.logits``) or any module mapping ids (B, T) to
        logits (B, T, V). With an attention mask it is called as ``model(ids, attention_mask=mask)``.
    data : LongTensor (N, T), dict, Dataset or iterable of batches
        Token ids: a tensor (N, T); a dict ``{"input_ids": (N, T), "attention_mask": (N, T)}``
        (mask optional, 1 = real token, 0 = padding); a Dataset of (T,) tensors or of such dicts;
        or an iterable of batches of those forms (a DataLoader, a list).
    batch_size : int, default 8
        Sequences per forward when ``data`` is a tensor, a dict or a Dataset.
    device : str or torch.device, optional
        Where batches go; default the device of the model's first parameter.
    progress : bool, default True
        Show a tqdm bar over batches.

    Returns
    -------
    LMEvaluation
        A named tuple ``(perplexity, nll, n_tokens)``.

    Raises
    ------
    TypeError
        For data that is not integer token ids (N, T) in one of the forms above, or a model that
        does not return logits (B, T, V).
    ValueError
        For token ids outside the model's vocabulary, a mask of another shape than the ids, or
        data without a single predicted token (every sequence shorter than 2 real tokens).

    References
    ----------
    Men et al. 2024 (ShortGPT) and Gromov et al. 2024 report the perplexity of LLMs with blocks
    removed.

    Examples
    --------
    A model with constant logits spreads its mass evenly over V = 256 tokens, so its perplexity is
    256 whatever the text:

    >>> import torch
    >>> from torch import nn
    >>> class Uniform(nn.Module):
    ...     def forward(self, ids):
    ...         return torch.zeros(*ids.shape, 256)
    >>> result = evaluate_lm(Uniform(), torch.randint(0, 256, (4, 16)), progress=False)
    >>> round(result.perplexity, 3), result.n_tokens
    (256.0, 60)
    """
    device = resolve_device(device, like=model)
    total = torch.zeros((), dtype=torch.float64)
    count = 0
    with evaluating(model), torch.no_grad():
        for ids, mask in tqdm(token_batches(data, batch_size), desc="perplexity", disable=not progress, leave=False):
            nll = next_token_nll(model, ids.to(device), None if mask is None else mask.to(device))
            total += nll.double().sum().cpu()
            count += nll.numel()
    if count == 0:
        raise ValueError("evaluate_lm: data has no predicted token (every sequence needs at least 2 real "
                         "tokens); pass longer sequences.")
    mean = float(total) / count
    return LMEvaluation(perplexity=math.exp(mean), nll=mean, n_tokens=count)
