"""Reducers: what a captured output (N, ...) becomes before it is stored.

A reducer takes the batch-first output of one layer for one batch, and the batch's attention
mask (N, T) when the model was called with one (else None), and returns an (N, ...) tensor. It
runs where the model runs (on the GPU for a GPU model), before the copy to the host.
"""
from __future__ import annotations

import inspect

import torch

CHOICES = ("auto", "flatten", "spatial_mean", "token_mean", "first_token", "last_token", "mean", None)


def flatten(output: torch.Tensor, attention_mask=None) -> torch.Tensor:
    """Every value of each sample in one row: (N, ...) -> (N, prod(...)).

    The features of Lu et al.'s sample graphs (C·H·W per sample, no pooling). A 1-D output
    (one value per sample) becomes (N, 1).

    Parameters
    ----------
    output : torch.Tensor
        Batch-first output, shape (N, ...).
    attention_mask : torch.Tensor, optional
        Ignored (every position is kept).

    Returns
    -------
    torch.Tensor
        Shape (N, D) with D the product of the trailing dimensions.

    Examples
    --------
    >>> import torch
    >>> flatten(torch.ones(2, 3, 4, 4)).shape
    torch.Size([2, 48])
    """
    return output.reshape(output.shape[0], -1)


def spatial_mean(output: torch.Tensor, attention_mask=None) -> torch.Tensor:
    """Global average pooling of channels-first maps: (N, C, *S) -> (N, C), the mean over every
    axis after the channel axis. An (N, C) output is returned unchanged.

    Parameters
    ----------
    output : torch.Tensor
        Channels-first output (N, C, H, W), (N, C, L), (N, C, D, H, W) or (N, C).
    attention_mask : torch.Tensor, optional
        Ignored.

    Returns
    -------
    torch.Tensor
        Shape (N, C): ``out[n, c] = mean over s of output[n, c, s]``.

    Examples
    --------
    >>> import torch
    >>> x = torch.arange(8.0).reshape(1, 2, 2, 2)   # channel 0 holds 0..3, channel 1 holds 4..7
    >>> spatial_mean(x)
    tensor([[1.5000, 5.5000]])
    """
    return output.mean(dim=tuple(range(2, output.ndim))) if output.ndim > 2 else output


def _token_axis(output: torch.Tensor, attention_mask, reducer: str):
    if output.ndim < 3:
        raise ValueError(f"reduce={reducer!r} needs a token axis, (N, T, D), but the output has shape "
                         f"{tuple(output.shape)}; use 'flatten' or None for it.")
    if attention_mask is None:
        return None
    mask = attention_mask.to(device=output.device).bool()
    if tuple(mask.shape) != tuple(output.shape[:2]):
        raise ValueError(f"reduce={reducer!r}: the attention mask has shape {tuple(mask.shape)} but the "
                         f"output has shape {tuple(output.shape)}; the mask must be (N, T) for an (N, T, ...) "
                         "output (set batch_axis= so that samples come first and tokens second).")
    empty = ~mask.any(dim=1)
    if empty.any():
        raise ValueError(f"reduce={reducer!r}: sample(s) {empty.nonzero().flatten().tolist()} of the batch "
                         "have no token in their attention mask.")
    return mask


def token_mean(output: torch.Tensor, attention_mask=None) -> torch.Tensor:
    """Mean over the tokens of each sequence: (N, T, D) -> (N, D), counting only the positions
    whose ``attention_mask`` is 1 when the batch carries a mask (padding is left out).

    ``out[n] = sum_t m[n, t] · output[n, t] / sum_t m[n, t]`` with m the mask (all ones without one).

    Parameters
    ----------
    output : torch.Tensor
        Shape (N, T, ...), tokens on axis 1.
    attention_mask : torch.Tensor, optional
        Shape (N, T), 1 for real tokens and 0 for padding.

    Returns
    -------
    torch.Tensor
        Shape (N, ...).

    Raises
    ------
    ValueError
        For an output without a token axis, a mask of another shape, or a sample without tokens.

    Examples
    --------
    >>> import torch
    >>> h = torch.tensor([[[1.0], [3.0], [100.0]]])          # one sequence, 3 tokens, D = 1
    >>> token_mean(h), token_mean(h, torch.tensor([[1, 1, 0]]))  # the padded 100 is left out
    (tensor([[34.6667]]), tensor([[2.]]))
    """
    mask = _token_axis(output, attention_mask, "token_mean")
    if mask is None:
        return output.mean(dim=1)
    weights = mask.to(output.dtype).reshape(*mask.shape, *([1] * (output.ndim - 2)))
    return (output * weights).sum(dim=1) / weights.sum(dim=1)


def _pick_token(output, index):
    rows = torch.arange(output.shape[0], device=output.device)
    return output[rows, index]


def first_token(output: torch.Tensor, attention_mask=None) -> torch.Tensor:
    """The first token of each sequence (BERT's [CLS]): (N, T, D) -> (N, D); with an attention
    mask, the first position whose mask is 1 (position 0 for right padding).

    Parameters
    ----------
    output : torch.Tensor
        Shape (N, T, ...), tokens on axis 1.
    attention_mask : torch.Tensor, optional
        Shape (N, T), 1 for real tokens and 0 for padding.

    Returns
    -------
    torch.Tensor
        Shape (N, ...).

    Examples
    --------
    >>> import torch
    >>> h = torch.tensor([[[1.0], [2.0], [3.0]], [[4.0], [5.0], [6.0]]])
    >>> first_token(h, torch.tensor([[1, 1, 0], [0, 1, 1]])).flatten()   # 2nd row left-padded
    tensor([1., 5.])
    """
    mask = _token_axis(output, attention_mask, "first_token")
    if mask is None:
        return output[:, 0]
    return _pick_token(output, mask.to(torch.int8).argmax(dim=1))


def last_token(output: torch.Tensor, attention_mask=None) -> torch.Tensor:
    """The last non-padding token of each sequence, as causal-LM studies read a sequence:
    (N, T, D) -> (N, D); position T-1 without a mask, else the last position whose mask is 1
    (so right- and left-padded batches both work).

    Parameters
    ----------
    output : torch.Tensor
        Shape (N, T, ...), tokens on axis 1.
    attention_mask : torch.Tensor, optional
        Shape (N, T), 1 for real tokens and 0 for padding.

    Returns
    -------
    torch.Tensor
        Shape (N, ...).

    Examples
    --------
    >>> import torch
    >>> h = torch.tensor([[[1.0], [2.0], [3.0]], [[4.0], [5.0], [6.0]]])
    >>> last_token(h, torch.tensor([[1, 1, 0], [1, 1, 1]])).flatten()    # 1st row right-padded
    tensor([2., 6.])
    """
    mask = _token_axis(output, attention_mask, "last_token")
    if mask is None:
        return output[:, -1]
    positions = torch.arange(mask.shape[1], device=mask.device)
    return _pick_token(output, torch.where(mask, positions, -1).argmax(dim=1))


def _mean(output: torch.Tensor, attention_mask=None) -> torch.Tensor:
    if output.ndim == 3:
        raise ValueError(f"reduce='mean' is ambiguous for an output of shape {tuple(output.shape)}: pass "
                         "'spatial_mean' for channels-first maps (N, C, L), 'token_mean' (or "
                         "'first_token' / 'last_token') for sequences (N, T, D), or 'flatten'.")
    return spatial_mean(output)


NAMED = {"flatten": flatten, "spatial_mean": spatial_mean, "token_mean": token_mean,
         "first_token": first_token, "last_token": last_token, "mean": _mean}


def _takes_mask(fn) -> bool:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.name == "attention_mask" or p.kind is p.VAR_KEYWORD for p in params)


def _padding_kept(layer: str) -> str:
    return (f"Layer {layer!r} gives (N, T, D) token states, the batch carries an attention_mask and "
            "reduce= was left at its default, 'auto', which is 'flatten' for now: it keeps all T positions, "
            "the padded ones included. In the next release the default becomes reduce='token_mean' (the "
            "mean over the real tokens) for such outputs. Pass reduce='token_mean' (or 'first_token' for "
            "BERT's [CLS], 'last_token' for a decoder) to leave the padding out now, or reduce='flatten' to "
            "keep every position and silence this warning.")


class Reducer:
    """A resolved ``reduce=`` choice: ``reducer(output, attention_mask)`` -> (N, ...) tensor.

    A complex result (e.g. of a module computing an FFT) is refused, naming the layer: the
    captured arrays are float32, so a reducer must make the values real.

    ``spec`` is what the user passed (a name, a callable or None), used in the fingerprint;
    ``"auto"`` (``capture_activations``' default) is ``"flatten"`` there and here, and the first
    time it flattens an (N, T, D) output whose batch carries an attention mask it puts a
    ``FutureWarning`` in ``pending`` (once per reducer: the default for those outputs becomes
    ``"token_mean"``), which the capture loop raises after the forward, at the user's line (inside
    the forward the first frame outside repgraph is torch's hook caller).
    """

    def __init__(self, spec):
        self.auto = isinstance(spec, str) and spec == "auto"
        self._warned = False
        self.pending: list[tuple[str, type[Warning]]] = []  # (message, category), for warn_user
        spec = "flatten" if self.auto else spec
        self.spec = spec
        if spec is None:
            self._fn, self._mask = None, False
        elif isinstance(spec, str):
            if spec not in NAMED:
                raise ValueError(f"reduce={spec!r} is not a reducer; choose one of {CHOICES} or pass a "
                                 "callable output -> (N, ...) tensor.")
            self._fn, self._mask = NAMED[spec], True
        elif callable(spec):
            self._fn, self._mask = spec, _takes_mask(spec)
        else:
            raise TypeError(f"reduce must be one of {CHOICES} or a callable, got {type(spec).__name__}.")

    @property
    def name(self) -> str:
        if self.spec is None or isinstance(self.spec, str):
            return str(self.spec)
        return getattr(self.spec, "__qualname__", type(self.spec).__qualname__)

    def __call__(self, output: torch.Tensor, attention_mask=None, layer: str = "?") -> torch.Tensor:
        if self.auto and not self._warned and attention_mask is not None and output.ndim == 3 \
                and tuple(attention_mask.shape) == tuple(output.shape[:2]):
            self._warned = True
            self.pending.append((_padding_kept(layer), FutureWarning))
        if self._fn is None:
            value = output
        else:
            value = self._fn(output, attention_mask=attention_mask) if self._mask else self._fn(output)
        if isinstance(value, torch.Tensor) and value.is_complex():
            raise TypeError(f"Layer {layer!r} gives complex values ({value.dtype}); activations are stored as "
                            "float32 and would lose the imaginary part. Pass reduce= a callable that makes them "
                            "real, e.g. lambda t: torch.view_as_real(t).flatten(1) (real and imaginary parts) or "
                            "lambda t: t.abs().flatten(1), or hook a module whose output is real.")
        if self._fn is None:
            return value
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"Layer {layer!r}: reduce={self.name} returned {type(value).__name__}, not a tensor.")
        if value.ndim < 1 or value.shape[0] != output.shape[0]:
            raise ValueError(f"Layer {layer!r}: reduce={self.name} turned an output of shape "
                             f"{tuple(output.shape)} into {tuple(value.shape)}; a reducer must keep the "
                             "sample axis first.")
        return value


def resolve_reducer(reduce) -> Reducer:
    """``reduce`` (a name, a callable, None or a ``Reducer``) as a ``Reducer``."""
    return reduce if isinstance(reduce, Reducer) else Reducer(reduce)

