"""Criteria on one block's input and output: Block Influence (Men et al. 2024, ShortGPT), the
angular distance (Gromov et al. 2024) and the relative update norm.

Array forms. A block's input and output are arrays (N, ...) of the same shape. Each is read as N
samples of token vectors: one axis holds the hidden features (``feature_axis``), every other
non-sample axis is a token (or spatial-position) axis. ``feature_axis=None`` chooses by rank:

- (N, D): one vector per sample (already reduced, e.g. captured with ``reduce="last_token"``);
- (N, T, D): a transformer's hidden states, tokens on axis 1, features last (``feature_axis=-1``);
- (N, C, H, W) (any rank ≥ 4): channels-first feature maps (``feature_axis=1``); each spatial
  position's C-vector is a "token" — the residual stream at that position, as a token's hidden
  state is in a transformer.

``mask`` (the array's shape without the feature axis, 1 = real token, 0 = padding) keeps padding
out of every mean and picks the last and the first *real* token. The first real token is position
0 for right padding (BERT's tokenizers; its [CLS]) and the first unpadded position for left
padding, as ``capture_activations(reduce="first_token")`` picks it.

Cosine conventions: ``cos(u, v) = u·v/(‖u‖‖v‖)``; two zero vectors are equal (cos 1, angle 0), a
zero and a non-zero vector are orthogonal (cos 0, angle π/2). Angles come from
``θ = 2·atan2(‖û − v̂‖, ‖û + v̂‖)`` (û = u/‖u‖), which is exact near 0 and π where ``arccos`` of a
rounded cosine is not: an identity block has angle exactly 0, a negating block exactly π.
"""
from __future__ import annotations

import math

import torch

from .._arrays import as_tensor, non_finite_error, row_chunk

REDUCTIONS = ("last_token", "first_token", "token_mean", "flatten")


def _feature_axis(ndim: int, feature_axis, name: str) -> int:
    if feature_axis is None:
        return 2 if ndim == 3 else 1
    if isinstance(feature_axis, bool) or not isinstance(feature_axis, int):
        raise TypeError(f"feature_axis must be an int or None, got {feature_axis!r}.")
    axis = feature_axis % ndim if -ndim <= feature_axis < ndim else None
    if axis is None or axis == 0:
        raise ValueError(f"feature_axis={feature_axis} is not a feature axis of {name} with {ndim} axes "
                         "(axis 0 holds the samples); pass 1..ndim-1 or -1.")
    return axis


def token_vectors(X, *, feature_axis=None, name: str = "X", device=None) -> torch.Tensor:
    """``X`` (N, ...) as float32 token vectors (N, P, D): the feature axis moved last, every other
    non-sample axis flattened into P positions (P = 1 for (N, D)). Raises ``ValueError`` for fewer
    than 2 axes, an empty array or NaN/Inf."""
    t = as_tensor(X, name=name, device=device)
    if t.ndim < 2:
        raise ValueError(f"{name} must have shape (N, D), (N, T, D) or (N, C, H, W), got {tuple(t.shape)}.")
    if t.numel() == 0:
        raise ValueError(f"{name} is empty (shape {tuple(t.shape)}).")
    axis = _feature_axis(t.ndim, feature_axis, name)
    t = t.movedim(axis, -1)
    t = t.reshape(t.shape[0], -1, t.shape[-1])
    finite = torch.isfinite(t).reshape(t.shape[0], -1).all(dim=1)
    if not bool(finite.all()):
        raise non_finite_error(name, int((~finite).sum()), t.shape[0])
    return t


def token_mask(mask, X, *, feature_axis=None, name: str = "X", device=None) -> torch.Tensor | None:
    """``mask`` as a bool (N, P) tensor matching ``token_vectors(X)``, or None for no mask. Its shape
    must be ``X``'s without the feature axis; every sample needs at least one real token."""
    if mask is None:
        return None
    shape = tuple(X.shape)
    axis = _feature_axis(len(shape), feature_axis, name)
    expected = shape[:axis] + shape[axis + 1:]
    m = as_tensor(mask, name="mask", device=device, dtype=torch.float32)
    if tuple(m.shape) != expected:
        raise ValueError(f"mask has shape {tuple(m.shape)} but {name} has shape {shape}: the mask needs the "
                         f"shape without the feature axis, {expected}.")
    m = m.reshape(m.shape[0], -1) != 0
    empty = ~m.any(dim=1)
    if bool(empty.any()):
        raise ValueError(f"mask has no real token (all 0) in {int(empty.sum())} sample(s), e.g. sample "
                         f"{int(empty.nonzero()[0])}; drop those samples.")
    return m


def _cosines(U: torch.Tensor, V: torch.Tensor) -> torch.Tensor:
    """Cosine of matching vectors along the last axis, float64, with the zero-vector conventions."""
    U, V = U.double(), V.double()
    nu, nv = U.norm(dim=-1), V.norm(dim=-1)
    both, one = (nu == 0) & (nv == 0), (nu == 0) ^ (nv == 0)
    cos = (U * V).sum(dim=-1) / (nu * nv).masked_fill(both | one, 1.0)
    return cos.masked_fill(both, 1.0).masked_fill(one, 0.0).clamp(-1.0, 1.0)


def angles(U: torch.Tensor, V: torch.Tensor) -> torch.Tensor:
    """The angle (radians, float64) between matching vectors along the last axis:
    ``2·atan2(‖û − v̂‖, ‖û + v̂‖)``, 0 for two zero vectors, π/2 for a zero and a non-zero one."""
    U, V = U.double(), V.double()
    nu, nv = U.norm(dim=-1, keepdim=True), V.norm(dim=-1, keepdim=True)
    Uh, Vh = U / nu.clamp_min(1e-300), V / nv.clamp_min(1e-300)
    theta = 2.0 * torch.atan2((Uh - Vh).norm(dim=-1), (Uh + Vh).norm(dim=-1))
    nu, nv = nu.squeeze(-1), nv.squeeze(-1)
    return theta.masked_fill((nu == 0) & (nv == 0), 0.0).masked_fill((nu == 0) ^ (nv == 0), math.pi / 2)


def _paired(X_in, X_out, feature_axis, mask, device):
    if tuple(X_in.shape) != tuple(X_out.shape):
        raise ValueError(f"X_in has shape {tuple(X_in.shape)} but X_out has {tuple(X_out.shape)}; the criterion "
                         "compares a block's input and output token by token, so the block must keep the shape.")
    U = token_vectors(X_in, feature_axis=feature_axis, name="X_in", device=device)
    V = token_vectors(X_out, feature_axis=feature_axis, name="X_out", device=device)
    m = token_mask(mask, X_in, feature_axis=feature_axis, name="X_in", device=U.device)
    return U, V, m


def _token_sums(U, V, m, per_token):
    """Σ over the (masked) tokens of ``per_token(u_chunk, v_chunk)`` (each (n, P) float64), chunked
    over samples within the working-memory budget, and the number of tokens summed."""
    n, p, d = U.shape
    step = row_chunk(n, 8 * 4 * p * d)
    total, count = None, 0
    for start in range(0, n, step):
        rows = slice(start, start + step)
        values = per_token(U[rows], V[rows])
        if m is not None:
            values = [v[m[rows]] for v in values]
        sums = torch.stack([v.sum() for v in values])
        total = sums if total is None else total + sums
        count += values[0].numel()
    return total, count


def block_influence(X_in, X_out, *, feature_axis=None, mask=None, device=None) -> float:
    """Block Influence ``BI = 1 − (1/|M|) Σ_{(n,t)∈M} cos(x_in[n,t], x_out[n,t])``.

    The mean runs over every real token t of every sample n (M: all of them, or those where
    ``mask`` is 1): 0 when the block changes no token's direction, 1 when it turns each token
    orthogonal, 2 when it negates each token. Men et al. (ShortGPT) remove the blocks with the
    lowest BI. Array forms and conventions: see the module docstring.

    Parameters
    ----------
    X_in, X_out : array or tensor (N, ...)
        The block's input and output, of one shape: (N, D), (N, T, D) or (N, C, H, W).
    feature_axis : int, optional
        The axis of the hidden features; default −1 for 3-D arrays, 1 otherwise.
    mask : array (N, T) or the shape without the feature axis, optional
        1 for real tokens, 0 for padding.
    device : str or torch.device, optional
        Where to compute; default where ``X_in`` is.

    Returns
    -------
    float

    Raises
    ------
    ValueError
        For arrays of different shapes, NaN/Inf, a mask of the wrong shape or a sample without a
        real token.

    References
    ----------
    Men et al. 2024, ShortGPT: Layers in Large Language Models are More Redundant Than You Expect.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.random.default_rng(0).normal(size=(4, 5, 8))
    >>> [round(block_influence(x, y), 6) for y in (x, -x, 3 * x)]  # float32 rounding aside
    [0.0, 2.0, 0.0]
    """
    U, V, m = _paired(X_in, X_out, feature_axis, mask, device)
    total, count = _token_sums(U, V, m, lambda u, v: [_cosines(u, v)])
    return float(1.0 - total[0] / count)


def relative_update_norm(X_in, X_out, *, feature_axis=None, mask=None, device=None) -> float:
    """The block's update relative to its input: ``Σ_{(n,t)∈M} ‖x_out − x_in‖ / Σ_{(n,t)∈M} ‖x_in‖``.

    Norms of the token vectors (the same tokens M as ``block_influence``), summed over tokens and
    samples before dividing, so a token whose input vector is zero (a dead position after a ReLU)
    adds its update without a division by zero. 0 for an identity block, 2 for a negating one,
    ``2·sin(θ/2)`` for one that rotates every token by θ; small values mean the block barely
    moves the residual stream.

    Parameters
    ----------
    X_in, X_out : array or tensor (N, ...)
        The block's input and output, of one shape.
    feature_axis : int, optional
        The axis of the hidden features; default −1 for 3-D arrays, 1 otherwise.
    mask : array, optional
        1 for real tokens, 0 for padding (the shape without the feature axis).
    device : str or torch.device, optional
        Where to compute.

    Returns
    -------
    float

    Raises
    ------
    ValueError
        As ``block_influence``, and when every input token vector is zero (the ratio is undefined).

    References
    ----------
    No paper defines this ratio: it is repgraph's companion of Block Influence (Men et al. 2024,
    ShortGPT, arXiv 2403.03853), measuring the size of a block's residual update where BI
    measures its direction.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.random.default_rng(0).normal(size=(4, 5, 8))
    >>> [round(relative_update_norm(x, y), 6) for y in (x, -x, 1.5 * x)]
    [0.0, 2.0, 0.5]
    """
    U, V, m = _paired(X_in, X_out, feature_axis, mask, device)
    total, _ = _token_sums(U, V, m, lambda u, v: [(v.double() - u.double()).norm(dim=-1), u.double().norm(dim=-1)])
    if not total[1] > 0:
        raise ValueError("X_in is zero at every token, so the update relative to it is undefined.")
    return float(total[0] / total[1])


def default_reductions(ndim: int) -> tuple[str, str]:
    """The default ``(angular, similarity)`` reductions for arrays of ``ndim`` axes: for (N, T, D)
    hidden states the last (real) token for the angular distance (Gromov et al.) and the mean over
    the real tokens for GBS, CKA and modularity (one D-vector per sample, whatever T); for feature
    maps (any rank >= 4) and (N, D) vectors the spatial mean for the angle and the flattened map
    for the sample similarities (Lu et al.'s and Chen et al.'s features)."""
    return ("last_token", "token_mean") if ndim == 3 else ("token_mean", "flatten")


def reduce_tokens(U: torch.Tensor, m: torch.Tensor | None, reduce: str) -> torch.Tensor:
    """One float32 vector per sample from token vectors ``U`` (N, P, D) and their mask ``m``
    (bool (N, P) or None), as ``token_vectors`` and ``token_mask`` give them; ``reduce`` as in
    ``sample_vectors``."""
    if reduce not in REDUCTIONS:
        raise ValueError(f"reduce must be one of {REDUCTIONS}, got {reduce!r}.")
    if reduce in ("last_token", "first_token"):
        end = -1 if reduce == "last_token" else 0
        if m is None:  # a copy: a view would keep all of U alive
            return U[:, end].to(torch.float32, copy=True)
        position = m.int().argmax(dim=1) if end == 0 else U.shape[1] - 1 - m.flip(1).int().argmax(dim=1)
        return U[torch.arange(U.shape[0], device=U.device), position].float()
    if m is not None:
        U = U * m[..., None]
    if reduce == "token_mean":
        count = U.shape[1] if m is None else m.sum(dim=1, keepdim=True)
        return (U.double().sum(dim=1) / count).float()
    return U.reshape(U.shape[0], -1).float()


def sample_vectors(X, reduce: str = "flatten", *, feature_axis=None, mask=None, name: str = "X",
                   device=None) -> torch.Tensor:
    """One float32 vector per sample from ``X`` (N, ...): ``"last_token"`` the last (real) token's
    vector (N, D); ``"first_token"`` the first (real) token's (BERT's [CLS]: position 0, also with a
    right-padding mask); ``"token_mean"`` the mean over the (real) tokens (N, D) — for channels-first maps
    the spatial mean; ``"flatten"`` every token's vector concatenated (N, P·D), padded tokens set
    to zero. Array forms: see the module docstring."""
    if reduce not in REDUCTIONS:
        raise ValueError(f"reduce must be one of {REDUCTIONS}, got {reduce!r}.")
    U = token_vectors(X, feature_axis=feature_axis, name=name, device=device)
    m = token_mask(mask, X, feature_axis=feature_axis, name=name, device=U.device)
    return reduce_tokens(U, m, reduce)


def angular_distance(X, Y, *, reduce: str = "last_token", feature_axis=None, mask=None, device=None) -> float:
    """The angular distance ``d(x, y) = (1/N) Σ_n arccos(cos(x_n, y_n))/π`` of Gromov et al.

    ``x_n``, ``y_n`` are sample n's vectors: by default the last (real) token's hidden state, as in
    the paper, which computes the distance at the final token and averages it over the samples
    (the mean of the per-sample angles, not the angle of a mean cosine). ``reduce="token_mean"``
    uses the mean over tokens (encoders, CNN feature maps), ``"first_token"`` the first (real)
    token (BERT's [CLS], position 0), ``"flatten"`` the whole representation. 0 when every
    vector keeps its direction, 1/2 when it turns orthogonal, 1 when it is negated. For a span
    of blocks ℓ … ℓ+n−1 pass the input of block ℓ and the output of block ℓ+n−1; Gromov et al.
    remove the span of n blocks with the smallest distance.

    Parameters
    ----------
    X, Y : array or tensor (N, ...)
        Two representations of the same samples whose sample vectors have one size (e.g. a block's
        input and a later block's output).
    reduce : {"last_token", "first_token", "token_mean", "flatten"}, default "last_token"
        Which vector per sample (``sample_vectors``).
    feature_axis : int, optional
        The axis of the hidden features; default −1 for 3-D arrays, 1 otherwise.
    mask : array, optional
        1 for real tokens, 0 for padding (the shape without the feature axis); the last (or, for
        ``"first_token"``, the first) real token is used.
    device : str or torch.device, optional
        Where to compute.

    Returns
    -------
    float
        In [0, 1].

    Raises
    ------
    ValueError
        For arrays whose sample vectors differ in size or count, NaN/Inf, an unknown ``reduce``, a
        mask of the wrong shape or a sample without a real token.

    References
    ----------
    Gromov et al. 2024, The Unreasonable Ineffectiveness of the Deeper Layers.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.random.default_rng(0).normal(size=(4, 5, 8))
    >>> angular_distance(x, x), angular_distance(x, -x)
    (0.0, 1.0)
    """
    u = sample_vectors(X, reduce, feature_axis=feature_axis, mask=mask, name="X", device=device)
    v = sample_vectors(Y, reduce, feature_axis=feature_axis, mask=mask, name="Y", device=u.device)
    if u.shape != v.shape:
        raise ValueError(f"X gives sample vectors {tuple(u.shape)} but Y gives {tuple(v.shape)}; the angle "
                         "needs vectors of one size for the same samples.")
    return float(angles(u, v).mean() / math.pi)
