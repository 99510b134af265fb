"""FSM, feature shift minimisation (Duan et al., ACCV 2022): a channel's importance is the shift of
the next layer's feature mean that removing it causes, estimated from the BN affine parameters
(the post-BN map taken as Gaussian) and the next conv's filters; no data is read."""
from __future__ import annotations

import math

import numpy as np
import torch

# The reference's replacement for a negative BN weight (γ < 0 → σ = 1e-5, main.py get_relu_expect).
REFERENCE_NEGATIVE_GAMMA = 1e-5


def _float64(values) -> np.ndarray:
    """An array or tensor (any device, with or without grad) as a float64 numpy array."""
    if torch.is_tensor(values):
        return values.detach().cpu().double().numpy()
    return np.asarray(values, dtype=np.float64)


def relu_normal_mean(mean, std):
    """``E[max(X, 0)]`` for ``X ~ N(mean, std²)``, in closed form, elementwise:
    ``μ·Φ(μ/σ) + σ·φ(μ/σ)`` (Φ, φ the standard normal CDF and density), ``max(μ, 0)`` where σ = 0.

    Parameters
    ----------
    mean : array_like
        μ, the means.
    std : array_like
        σ ≥ 0, the standard deviations (broadcast against ``mean``).

    Returns
    -------
    ndarray of float64, the broadcast shape of ``mean`` and ``std``.

    Raises
    ------
    ValueError
        If ``std`` holds a negative value, or either holds NaN/Inf.

    References
    ----------
    The mean of a rectified (censored at 0) normal variable, e.g. Beauchamp, "On the rectified
    normal distribution", 2018; FSM's reference evaluates it numerically (``scipy.stats.norm(μ,
    σ).expect(lb=0)``, github.com/lscgx/FSM ``main.py``).

    Examples
    --------
    >>> from repgraph.analyzers import relu_normal_mean
    >>> relu_normal_mean([0.0, 2.0, -1.0], [1.0, 0.0, 0.0]).round(6)    # 1/sqrt(2 pi); max(mu, 0)
    array([0.398942, 2.      , 0.      ])
    """
    mu, sigma = torch.as_tensor(_float64(mean)), torch.as_tensor(_float64(std))
    if not (torch.isfinite(mu).all() and torch.isfinite(sigma).all()):
        raise ValueError("relu_normal_mean: mean and std must be finite; got NaN or Inf.")
    if (sigma < 0).any():
        raise ValueError("relu_normal_mean: std must be >= 0 (a standard deviation); pass |std|.")
    mu, sigma = torch.broadcast_tensors(mu, sigma)
    positive = sigma > 0
    safe = torch.where(positive, sigma, torch.ones_like(sigma))
    z = mu / safe
    smooth = mu * torch.special.ndtr(z) + safe * torch.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)
    return torch.where(positive, smooth, mu.clamp_min(0.0)).numpy()


def fsm_scores(bn_weight, bn_bias, next_weights=None, *, negative_gamma: str = "clamp"):
    """FSM channel importance of one conv → BN → ReLU layer: the feature shift that removing each
    channel causes in the layers that read its post-ReLU maps.

    The post-BN map of channel k is taken as ``N(β_k, σ_k²)`` (``γ_k·x̂ + β_k`` with a standard
    normal ``x̂``), so its mean after the ReLU is ``E_k = relu_normal_mean(β_k, σ_k)``; removing
    the channel shifts output i of a next conv ``W`` by ``E_k·Σ_{spatial} W[i, k]``, and

    ``score_k = Σ_{next convs W} (1/N_W) Σ_{i<N_W} |Σ_{spatial} W[i, k]| · E_k``

    (the mean absolute shift over the next conv's N_W outputs; summed over next convs when several
    read the maps). With no next conv (the classifier follows), ``score_k = E_k``. Higher = keep.

    Parameters
    ----------
    bn_weight, bn_bias : array_like (C,)
        The BN's γ and β (its running statistics are not used, as in the reference).
    next_weights : array_like (N, C, ...) or a sequence of them, optional
        The weights of the conv(s) that read the layer's post-ReLU maps (dense: ``groups=1``).
        None or an empty sequence: the reference's rule for the last conv, ``score_k = E_k``.
    negative_gamma : {"clamp", "abs"}
        σ_k for γ_k < 0: ``"clamp"`` sets it to 1e-5, as the reference does; ``"abs"`` uses ``|γ_k|``,
        the BN output's actual standard deviation. γ_k = 0 gives σ_k = 0 (``E_k = max(β_k, 0)``).

    Returns
    -------
    ndarray (C,) of float64 scores (higher = keep).

    Raises
    ------
    ValueError
        For an unknown ``negative_gamma``, γ and β of different shapes, NaN/Inf in them, or a next
        conv whose second dimension is not C.

    Notes
    -----
    E_k is evaluated in closed form; the reference integrates numerically (``scipy.stats.norm.
    expect``), which agrees to about 1e-9 for σ of ordinary size but is off by up to 10 % at the
    reference's own σ = 1e-5 for negative γ (e.g. 0.09 instead of 0.1 for β = 0.1). The reference
    also writes the 1e-5 into the model's BN weights (in place); nothing is changed here.

    References
    ----------
    Duan, Zhou, He, Liu, Duan & Hu, "Network Pruning via Feature Shift Minimization", ACCV 2022
    (arXiv 2207.02632); github.com/lscgx/FSM at 0cb01ea, ``main.py`` (``get_relu_expect``,
    ``get_effect_for_dstr`` with ``type='mean'``, and ``effect = relu_expect[i]`` for VGG's last
    conv).

    Examples
    --------
    Two channels with the same β and γ, the first read by the next conv's filters twice as
    strongly; a third channel switched off by its BN (β = -3, γ = 0):

    >>> import numpy as np
    >>> from repgraph.analyzers import fsm_scores
    >>> W = np.array([[2.0, 1.0, 5.0], [-2.0, 1.0, 5.0]])[:, :, None, None]    # (2 outputs, 3 channels, 1, 1)
    >>> fsm_scores([1.0, 1.0, 0.0], [0.0, 0.0, -3.0], W).round(6)    # E = 1/sqrt(2 pi), 0
    array([0.797885, 0.398942, 0.      ])
    """
    if negative_gamma not in ("clamp", "abs"):
        raise ValueError(f"negative_gamma must be 'clamp' (the reference's 1e-5) or 'abs', got {negative_gamma!r}.")
    gamma, beta = _float64(bn_weight), _float64(bn_bias)
    if gamma.ndim != 1 or gamma.shape != beta.shape:
        raise ValueError(f"bn_weight and bn_bias must be (C,) arrays of one shape, got {gamma.shape} and "
                         f"{beta.shape}.")
    if not (np.isfinite(gamma).all() and np.isfinite(beta).all()):
        raise ValueError("fsm_scores: bn_weight and bn_bias must be finite; got NaN or Inf.")
    sigma = np.where(gamma < 0, REFERENCE_NEGATIVE_GAMMA if negative_gamma == "clamp" else -gamma, gamma)
    expect = relu_normal_mean(beta, sigma)
    if next_weights is None:
        following = []
    elif isinstance(next_weights, (list, tuple)):
        following = list(next_weights)
    else:
        following = [next_weights]
    if not following:
        return expect
    total = np.zeros_like(expect)
    for i, weight in enumerate(following):
        W = torch.as_tensor(_float64(weight))
        if W.ndim < 2 or W.shape[1] != expect.shape[0]:
            raise ValueError(f"next_weights[{i}] has shape {tuple(W.shape)}; a next conv reading these "
                             f"{expect.shape[0]} channels has weights (N, {expect.shape[0]}, ...) (groups=1).")
        summed = W.reshape(W.shape[0], W.shape[1], -1).sum(dim=2)  # (N, C): Σ over the kernel
        total += summed.abs().mean(dim=0).numpy() * expect
    return total
