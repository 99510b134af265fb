"""Language-model evaluation: perplexity of next-token prediction on held-out token batches."""
from __future__ import annotations

import inspect
import math
from collections.abc import Mapping
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from ..hooks.modes import evaluating
from .._arrays import check_count, resolve_device

# Config attributes that bound a model's sequence length (GPT-2's; most other transformers').
CONTEXT_ATTRIBUTES = ("n_positions", "max_position_embeddings")


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


def _as_tensor(value):
    """A numpy array of numbers as a tensor (token ids and masks may come as either); anything else
    unchanged, for the caller's type check to name."""
    if isinstance(value, np.ndarray) and (np.issubdtype(value.dtype, np.number) or value.dtype == np.bool_):
        return torch.from_numpy(np.ascontiguousarray(value))
    return value


def _check_mask(mask, ids: torch.Tensor, where: str) -> torch.Tensor:
    """The mask as a LongTensor of 0s and 1s of the ids' shape, else a clear error."""
    if not isinstance(mask, torch.Tensor):
        raise TypeError(f"{where}: attention_mask must be a tensor or array (N, T) of 1 (token) and 0 "
                        f"(padding); got {type(mask).__name__}.")
    if tuple(mask.shape) != tuple(ids.shape):
        raise ValueError(f"{where}: attention_mask has shape {tuple(mask.shape)} but input_ids has "
                         f"{tuple(ids.shape)}; they must match.")
    binary = (mask == 0) | (mask == 1)
    if not bool(binary.all()):
        raise ValueError(f"{where}: attention_mask must hold only 0 (padding) and 1 (token); got "
                         f"{mask[~binary].flatten()[0].item()!r}.")
    return mask.long()


def _as_batch(batch, where: str) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(input_ids, attention_mask or None)`` from a tensor or array, a mapping with ``input_ids``
    (and optionally ``attention_mask``), or a tuple/list whose first element is the ids."""
    mask = None
    if isinstance(batch, Mapping):
        if "input_ids" not in batch:
            raise TypeError(f"{where}: a dict batch needs the key 'input_ids' (and optionally "
                            f"'attention_mask'); got keys {sorted(batch)}.")
        ids, mask = batch["input_ids"], batch.get("attention_mask")
    elif isinstance(batch, (tuple, list)) and batch and isinstance(batch[0], (torch.Tensor, np.ndarray)):
        ids = batch[0]
    else:
        ids = batch
    ids = _as_tensor(ids)
    if (not isinstance(ids, torch.Tensor) or ids.dtype.is_floating_point or ids.dtype.is_complex
            or ids.dtype == torch.bool or ids.dim() != 2):
        hint = "; one sequence (T,) is ids[None]" if getattr(ids, "ndim", None) == 1 else ""
        raise TypeError(f"{where}: token ids must be an integer tensor or array (N, T); got "
                        f"{getattr(ids, 'dtype', type(ids).__name__)} of shape "
                        f"{tuple(getattr(ids, 'shape', ()))}{hint}.")
    if mask is not None:
        mask = _check_mask(_as_tensor(mask), ids, where)
    return ids.long(), mask


def token_batches(data, batch_size: int):
    """Yield ``(input_ids, attention_mask or None)`` batches from token data: a LongTensor or integer
    array (N, T), a dict ``{"input_ids": (N, T), "attention_mask": (N, T)}``, a Dataset of (T,)
    tensors or of dicts, or any iterable of batches (a DataLoader, a list of tensors or dicts)."""
    check_count(batch_size, "batch_size")
    if isinstance(data, (torch.Tensor, np.ndarray, Mapping)):
        ids, mask = _as_batch(data, "data")
        for start in range(0, len(ids), batch_size):
            yield ids[start:start + batch_size], None if mask is None else mask[start:start + batch_size]
        return
    if isinstance(data, Dataset):
        data = DataLoader(data, batch_size=batch_size, shuffle=False)
    try:
        batches = iter(data)
    except TypeError:
        raise TypeError("data must be a LongTensor or integer array (N, T), a dict with 'input_ids' (and "
                        "optionally 'attention_mask'), a Dataset or an iterable of such batches; got "
                        f"{type(data).__name__}.") from None
    for i, batch in enumerate(batches):
        yield _as_batch(batch, f"data (batch {i})")


def check_token_ids(ids: torch.Tensor, vocab: int, where: str) -> None:
    """A ``ValueError`` naming ``where`` for token ids outside ``[0, vocab)``."""
    if not ids.numel():
        return
    low, high = int(ids.min()), int(ids.max())  # Python ints: a uint8 stream must not wrap 256 to 0
    if low < 0 or high >= vocab:
        raise ValueError(f"{where}: token ids must lie in [0, {vocab}) (the model's vocabulary); got "
                         f"[{low}, {high}].")


def context_length(model: nn.Module) -> tuple[int, str] | None:
    """``(positions, config attribute)``: how many positions the model's config allows
    (``n_positions``, ``max_position_embeddings``), or None when it says nothing."""
    config = getattr(model, "config", None)
    for attr in CONTEXT_ATTRIBUTES:
        value = getattr(config, attr, None)
        if isinstance(value, int) and not isinstance(value, bool):
            return value, attr
    return None


def check_context(model: nn.Module, length: int, where: str, fix: str) -> None:
    """A ``ValueError`` naming ``where`` when sequences of ``length`` tokens exceed the model's
    positions (``context_length``); ``fix`` says how to shorten them."""
    context = context_length(model)
    if context is not None and length > context[0]:
        raise ValueError(f"{where}: sequences of {length} tokens are longer than the model's {context[0]} "
                         f"positions (config.{context[1]}); {fix}")


def _forward_arguments(model: nn.Module) -> tuple[set[str], bool]:
    """The named parameters of ``model.forward`` and whether it takes ``**kwargs``."""
    try:
        parameters = inspect.signature(model.forward).parameters.values()
    except (TypeError, ValueError):  # a C-implemented forward: assume it takes everything
        return set(), True
    return ({p.name for p in parameters if p.kind is not p.VAR_KEYWORD},
            any(p.kind is p.VAR_KEYWORD for p in parameters))


def position_ids(attention_mask: torch.Tensor) -> torch.Tensor:
    """Each token's position among the real tokens of its row: ``cumsum(mask) − 1``, clamped at 0
    (padding before the first token gets 0; its predictions never count). Left-, right- and
    unpadded rows then give every real token the position it has in the sequence alone."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def next_token_nll(model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                   *, where: str = "input_ids") -> torch.Tensor:
    """``−log p(x_t | x_<t)`` (float32, 1-D) for every predicted token of one batch. Position t ≥ 1 is
    predicted from the logits at t − 1 and counts when ``attention_mask`` is 1 at both t − 1 and t
    (every position without a mask). The model gets ``input_ids`` (and ``attention_mask=`` when
    given, with ``position_ids=position_ids(attention_mask)`` when its forward names that argument,
    so padding on either side leaves the losses unchanged) and returns logits (B, T, V) or an
    object with ``.logits`` (Hugging Face). Errors name ``where``."""
    config = getattr(model, "config", None)
    kwargs = {}
    if attention_mask is not None:
        named, any_keyword = _forward_arguments(model)
        if "attention_mask" not in named and not any_keyword:
            raise TypeError(f"{where} has an attention_mask but {type(model).__name__}.forward takes no "
                            "attention_mask argument; pass the token ids alone (unpadded, equal-length "
                            "sequences) or a model that takes attention_mask.")
        kwargs["attention_mask"] = attention_mask
        if "position_ids" in named:
            kwargs["position_ids"] = position_ids(attention_mask)
    if hasattr(config, "use_cache"):
        kwargs["use_cache"] = False  # a Hugging Face model would otherwise fill a KV cache nobody reads
    if isinstance(getattr(config, "vocab_size", None), int):
        check_token_ids(input_ids, config.vocab_size, where)  # before the embedding fails with a bare IndexError
    check_context(model, input_ids.shape[1], where,
                  "cut them into windows the model can read (repgraph.datasets.text.token_windows).")
    out = model(input_ids, **kwargs)
    logits = getattr(out, "logits", out)
    if not isinstance(logits, torch.Tensor) or logits.dim() != 3 or tuple(logits.shape[:2]) != tuple(input_ids.shape):
        head = (" It returned hidden states without logits: a base model without a language-model head "
                "(e.g. GPT2Model); pass its causal-LM class (GPT2LMHeadModel, AutoModelForCausalLM)."
                if hasattr(out, "last_hidden_state") else "")
        raise TypeError(f"{type(model).__name__} must return logits (B, T, V) = ({input_ids.shape[0]}, "
                        f"{input_ids.shape[1]}, V), or an object with .logits; got "
                        f"{getattr(logits, 'shape', type(logits).__name__)}.{head}")
    vocab = logits.shape[-1]
    check_token_ids(input_ids, vocab, where)
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
        logits (B, T, V). With an attention mask it is called as ``model(ids, attention_mask=mask)``
        and, when its forward names a ``position_ids`` argument (Hugging Face models do), with
        ``position_ids = cumsum(mask) − 1`` (clamped at 0): every real token keeps the position it
        has in its sequence alone, so left-, right- and unpadded batches give the same losses.
    data : LongTensor (N, T), dict, Dataset or iterable of batches
        Token ids: a tensor or integer numpy array (N, T) of any integer dtype; a dict
        ``{"input_ids": (N, T), "attention_mask": (N, T)}`` (mask optional, 1 = real token,
        0 = padding, tensors or arrays); a Dataset of (T,) tensors or of such dicts; or an iterable
        of batches of those forms (a DataLoader, a list). T is at most the model's positions
        (``config.n_positions`` or ``config.max_position_embeddings``) when its config has them.
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
        For data that is not integer token ids (N, T) in one of the forms above (bool ids
        included), a non-integer ``batch_size``, a model that does not return logits (B, T, V)
        (a base model without a language-model head), or a mask for a model whose forward takes
        no ``attention_mask``.
    ValueError
        For token ids outside the model's vocabulary, sequences longer than the model's positions,
        a mask of another shape than the ids or with values other than 0 and 1, ``batch_size < 1``,
        or data without a single predicted token (every sequence shorter than 2 real tokens).

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
        batches = tqdm(token_batches(data, batch_size), desc="perplexity", disable=not progress, leave=False)
        for i, (ids, mask) in enumerate(batches):
            nll = next_token_nll(model, ids.to(device), None if mask is None else mask.to(device),
                                 where=f"data (batch {i})")
            total += nll.double().sum().cpu()
            count += nll.numel()
    if count == 0:
        raise ValueError("evaluate_lm: data has no predicted token (every sequence needs at least 2 real "
                         "tokens); pass longer sequences.")
    mean = float(total) / count
    return LMEvaluation(perplexity=math.exp(mean), nll=mean, n_tokens=count)
