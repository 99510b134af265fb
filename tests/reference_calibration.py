"""The permutation calibration of Gröger et al. (ICML 2026) as github.com/mlbio-epfl/Aristotelian
defines it at commit 785054b, ported line by line (numpy inputs only; the torch branches only
convert tensors to numpy) from ``aristotelian/metrics/aggregation.py`` (``tau_order_statistic``,
``compute_null_summary``, ``gated_rescaled``), ``calibration.py`` (``compute_null_variants``,
``compute_calibration_stats``) and ``utils.py`` (``EPS``). An oracle for repgraph's calibration:
it shares no code with it."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

EPS = 1e-8


def tau_order_statistic(null_samples, quantile, *, obs=None):
    arr = np.asarray(null_samples, dtype=float)
    if obs is not None:
        arr = np.append(arr, float(obs))
    arr = np.sort(arr)
    m = arr.size
    if m == 0:
        raise ValueError("null_samples must be non-empty")
    rank = min(max(int(np.ceil(float(quantile) * m)), 1), m)
    return float(arr[rank - 1])


def compute_null_summary(null_samples_T, *, T_obs, alpha):
    if not 0.0 <= float(alpha) <= 1.0:
        raise ValueError("alpha must be in [0, 1]")
    null_arr = np.asarray(null_samples_T, dtype=float)
    tau_alpha = tau_order_statistic(null_arr, 1.0 - alpha, obs=T_obs)
    p_value = (1.0 + float(np.sum(null_arr >= float(T_obs)))) / (len(null_arr) + 1.0)
    if alpha <= 0:
        tail_strength = 0.0
    else:
        tail_strength = float(max(0.0, min(1.0, (alpha - p_value) / alpha)))
    mu0 = float(null_arr.mean())
    sd0 = float(null_arr.std())
    return {"tau_alpha": tau_alpha, "p_value": p_value, "tail_strength": tail_strength, "mu0": mu0, "sd0": sd0}


def gated_rescaled(T_obs, *, tau_alpha, s_max):
    if s_max is None:
        return float(max(T_obs - tau_alpha, 0.0))
    if T_obs <= tau_alpha:
        return 0.0
    if s_max <= tau_alpha:
        return 1.0
    denom = s_max - tau_alpha
    if abs(denom) <= EPS:
        return 1.0
    return float(min((T_obs - tau_alpha) / denom, 1.0))


@dataclass
class NullVariants:
    mean_null: float
    median_null: float
    std_null: float
    null_centered: float
    z: float
    ari: float


@dataclass
class CalibrationStats:
    tau: float
    gated: float
    pvalue: float
    tail_strength: float
    variants: NullVariants


def compute_null_variants(raw, null_samples, *, min_score, max_score):
    null_arr = np.asarray(null_samples, dtype=float)
    mean_null = float(null_arr.mean())
    median_null = float(np.median(null_arr))
    std_null = float(null_arr.std()) if null_arr.size > 0 else 0.0
    null_centered = float(raw - mean_null)
    z = float((raw - mean_null) / (std_null + EPS))
    denom = max_score - mean_null
    ari = (raw - mean_null) / denom if denom > 0 else 0.0
    ari = float(max(min(ari, 1.0), -1.0))
    return NullVariants(mean_null=mean_null, median_null=median_null, std_null=std_null,
                        null_centered=null_centered, z=z, ari=ari)


def compute_calibration_stats(raw, null_samples, *, quantile, min_score=0.0, max_score=1.0):
    null_arr = np.asarray(null_samples, dtype=float)
    tau = tau_order_statistic(null_arr, quantile, obs=raw)
    gated = gated_rescaled(raw, tau_alpha=tau, s_max=max_score)
    num_exceed = int(np.sum(null_arr >= raw))
    num_total = len(null_arr)
    pvalue = float((num_exceed + 1.0) / (num_total + 1.0))
    alpha = 1.0 - float(quantile)
    if alpha <= 0:
        tail_strength = 0.0
    else:
        tail_strength = float(max(0.0, min(1.0, (alpha - pvalue) / alpha)))
    variants = compute_null_variants(raw, null_samples, min_score=min_score, max_score=max_score)
    return CalibrationStats(tau=tau, gated=gated, pvalue=pvalue, tail_strength=tail_strength, variants=variants)
