"""Transformation complexity of ReLU networks: the entropy of the gating states of each layer
(Ren, Li, Zhou, Chan & Zhang, "Towards Theoretical Analysis of Transformation Complexity of ReLU
DNNs", ICML 2022, arXiv 2205.01940; code github.com/sjtu-XAI-lab/transformation-complexity)."""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
import torch

from .._arrays import as_label_codes, row_chunk
from .._results import described

ESTIMATORS = ("discrete", "kde")
# The authors' calc_entropy_for_T_KDE: kernel variance λ·D, λ = 0.01 for (N, D) gating states and
# 0.04 for feature maps (N, C, H, W).
KDE_BANDWIDTH = {"flat": 0.01, "maps": 0.04}


def _gates(name, value) -> tuple[np.ndarray, int]:
    """(N, D) bool gating states of one layer and the ndim of its array: ``value > 0`` (a ReLU's
    output, or its input: ReLU(z) > 0 exactly when z > 0), or the booleans themselves."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    arr = np.asarray(value)
    if arr.ndim < 2 or arr.shape[0] < 1:
        raise ValueError(f"acts_or_gates[{name!r}] has shape {arr.shape}; pass one row per sample, (N, units) or "
                         "(N, C, ...) feature maps.")
    if arr.dtype != bool:
        if arr.dtype.kind not in "biuf":
            raise TypeError(f"acts_or_gates[{name!r}] has dtype {arr.dtype}; pass numbers (activations) or "
                            "booleans (gating states).")
        if arr.dtype.kind == "f" and np.isnan(arr).any():
            raise ValueError(f"acts_or_gates[{name!r}] holds NaN; a gating state is on (> 0) or off, NaN is "
                             "neither. Check the capture.")
        arr = arr > 0
    return arr.reshape(arr.shape[0], -1), arr.ndim


def _plugin_entropy(codes: np.ndarray, base: float) -> float:
    """``−Σ_s p(s) log p(s)`` over the distinct codes, p their frequencies."""
    _, counts = np.unique(codes, return_counts=True)
    p = counts.astype(np.float64) / counts.sum()
    return float(-(p * np.log(p)).sum() / np.log(base))


def _pattern_codes(gates: np.ndarray) -> np.ndarray:
    """An integer per sample, equal for equal gating patterns."""
    packed = np.packbits(gates, axis=1)
    _, codes = np.unique(packed, axis=0, return_inverse=True)
    return codes.reshape(-1)


def _kde_entropy(gates: np.ndarray, variance: float, base: float) -> float:
    """``−(1/N) Σ_i log((1/N) Σ_j exp(−‖σ_i − σ_j‖²/(2v)))``: the authors' kernel estimate, with
    ``‖σ_i − σ_j‖²`` the Hamming distance of the 0/1 patterns."""
    n = len(gates)
    X = torch.from_numpy(gates.astype(np.float32))
    ones = X.sum(1).double()
    density = np.empty(n)
    step = row_chunk(n, 32 * max(n, 1))
    for start in range(0, n, step):
        block = X[start:start + step]
        # integer counts, exact in float32 below 2**24 units
        shared = (block @ X.T).double()
        hamming = (ones[start:start + step, None] + ones[None, :] - 2.0 * shared).clamp_min(0.0)
        density[start:start + step] = torch.exp(-hamming / (2.0 * variance)).mean(1).numpy()
    return float(-np.log(density).mean() / np.log(base))


def _entropy(gates, codes, estimator, variance, base) -> float:
    return _plugin_entropy(codes, base) if estimator == "discrete" else _kde_entropy(gates, variance, base)


def _conditional(gates, codes, labels, estimator, variance, base) -> float:
    """``H(Σ | Y) = Σ_y p(y) H(Σ | Y = y)``."""
    total = 0.0
    for y in np.unique(labels):
        rows = labels == y
        part = None if gates is None else gates[rows]
        total += rows.mean() * _entropy(part, codes[rows], estimator, variance, base)
    return total


def transformation_complexity(acts_or_gates, labels=None, *, estimator: str = "discrete",
                              bandwidth: float | None = None, base: float = 2.0) -> pd.DataFrame:
    """Per-layer transformation complexity of a ReLU network: the entropy of its gating states.

    A ReLU layer l applies ``x ↦ Σ_l z`` with ``Σ_l = diag(σ_l)`` and ``σ_l = 1[z > 0]`` its
    gating states; on each region of constant ``(σ_1, …, σ_L)`` the network is linear. Ren et al.
    measure the complexity of the transformation by the entropy of the gating states over the
    input distribution, ``H(Σ) = −Σ_s p(s) log p(s)`` (their ``I(X; Σ) = H(Σ)``, the states being a
    function of x), and the part of it that concerns the task by ``I(Σ; Y) = H(Σ) − H(Σ | Y)``,
    ``H(Σ | Y) = Σ_y p(y) H(Σ | Y = y)``. This function computes, for each layer l in the order
    given:

    - ``complexity``: ``H(Σ_l)``, the entropy of layer l's own gating patterns;
    - ``cumulative_complexity``: ``H(Σ_1, …, Σ_l)``, the entropy of the joint patterns of layers
      1..l, the complexity of the transformation the first l layers encode (the authors' code
      evaluates it on all gating layers concatenated, the last row here);
    - with ``labels``: ``label_information`` ``I(Σ_l; Y)`` and ``cumulative_label_information``
      ``I(Σ_1, …, Σ_l; Y)``.

    Estimators: ``"discrete"`` is the plug-in entropy of the distinct patterns, p(s) their
    frequencies among the N samples (exact for the sample; at most ``log N``, reached when every
    sample has its own pattern, as for wide layers and conv maps). ``"kde"`` is the estimate of the
    authors' released code (``metrics/calc_info.py``, ``calc_entropy_for_T_KDE``):
    ``H = −(1/N) Σ_i log((1/N) Σ_j exp(−‖σ_i − σ_j‖²/(2λD)))`` with D the number of gating units
    and λ = ``bandwidth`` (their defaults: 0.01 for (N, D) layers, 0.04 when any layer is a feature
    map). The paper's text (full definitions, proofs) was not read here; the formulas above are
    its abstract's metrics as the authors' code computes them.

    Parameters
    ----------
    acts_or_gates : mapping layer -> array (N, D) or (N, C, ...)
        Per layer, the ReLU outputs (or inputs: both are > 0 exactly where the gate is on) or the
        gating states as booleans, e.g. ``capture_activations(model, x, layers=relus)``; numpy or
        torch (any device). An ``Activations`` object brings its ``labels``. The order of the
        mapping is the depth.
    labels : array (N,), optional
        Class of each sample, for the label columns; default ``acts_or_gates.labels`` if any.
    estimator : {"discrete", "kde"}
        The plug-in entropy of the patterns, or the authors' kernel estimate.
    bandwidth : float, optional
        λ of the kernel estimate (> 0); default 0.01 for (N, D) layers, 0.04 for feature maps.
        Ignored by ``"discrete"``.
    base : float
        Base of the logarithm (> 0, ≠ 1): 2 for bits, as the authors' code; ``numpy.e`` for nats.

    Returns
    -------
    DataFrame
        One row per layer: ``layer``, ``depth`` (0-based position), ``n_units`` (D),
        ``n_patterns`` (distinct gating patterns of the layer), ``complexity``,
        ``cumulative_complexity`` and, with labels, ``label_information`` and
        ``cumulative_label_information``; ``attrs`` record ``estimator``, ``base``,
        ``bandwidth`` and ``n_samples``.

    Raises
    ------
    TypeError
        If ``acts_or_gates`` is not a non-empty mapping, or a layer is not numeric or boolean.
    ValueError
        For an unknown ``estimator``, ``bandwidth`` ≤ 0, a bad ``base``, a layer without one row
        per sample, layers with different N, NaN activations, or labels of the wrong length.

    References
    ----------
    Ren, Li, Zhou, Chan & Zhang, "Towards Theoretical Analysis of Transformation Complexity of ReLU
    DNNs", ICML 2022, arXiv 2205.01940 (H(Σ), I(X; Σ), I(Σ; Y)); the kernel estimate of
    github.com/sjtu-XAI-lab/transformation-complexity, ``metrics/calc_info.py``.

    Examples
    --------
    Four samples with four different, equally frequent gating patterns of layer "a": 2 bits;
    layer "b" has one pattern on for the first two samples and one for the others, so it adds
    nothing to "a" (the joint patterns stay four):

    >>> import numpy as np
    >>> from repgraph import transformation_complexity
    >>> a = np.array([[1.0, 0.0], [0.0, 2.0], [3.0, 1.0], [0.0, 0.0]])
    >>> b = np.array([[1.0], [1.0], [0.0], [0.0]])
    >>> table = transformation_complexity({"a": a, "b": b})
    >>> table[["layer", "complexity", "cumulative_complexity"]].values.tolist()
    [['a', 2.0, 2.0], ['b', 1.0, 2.0]]
    """
    if not isinstance(acts_or_gates, Mapping) or len(acts_or_gates) == 0:
        raise TypeError("acts_or_gates must be a non-empty mapping layer -> activations (N, ...) or gating "
                        f"states, e.g. capture_activations(model, x, layers=relus); got {type(acts_or_gates).__name__}.")
    if estimator not in ESTIMATORS:
        raise ValueError(f"estimator must be one of {ESTIMATORS}, got {estimator!r}.")
    if bandwidth is not None and not (np.isfinite(bandwidth) and bandwidth > 0):
        raise ValueError(f"bandwidth must be a number > 0 (the kernel's λ), got {bandwidth!r}; or None for the "
                         "authors' defaults.")
    if not (np.isfinite(base) and base > 0 and base != 1):
        raise ValueError(f"base must be > 0 and ≠ 1 (2 for bits, numpy.e for nats), got {base!r}.")
    names = list(acts_or_gates)
    layers = [_gates(name, acts_or_gates[name]) for name in names]
    n = layers[0][0].shape[0]
    bad = {name: g.shape[0] for name, (g, _) in zip(names, layers) if g.shape[0] != n}
    if bad:
        raise ValueError(f"layers have different numbers of samples: {names[0]!r} has {n}, {bad}; pass the "
                         "activations of the same inputs for every layer.")
    if labels is None:
        labels = getattr(acts_or_gates, "labels", None)
    codes_y = None if labels is None else as_label_codes(labels, n)

    def variance(dims: int, maps: bool) -> float:
        lam = bandwidth if bandwidth is not None else KDE_BANDWIDTH["maps" if maps else "flat"]
        return lam * max(dims, 1)

    rows = []
    joint_codes = np.zeros(n, dtype=np.int64)
    joint_gates, joint_maps = [], False
    for depth, (name, (gates, ndim)) in enumerate(zip(names, layers)):
        codes = _pattern_codes(gates)
        joint_gates.append(gates)
        joint_maps = joint_maps or ndim > 2
        _, joint_codes = np.unique(np.stack([joint_codes, codes], 1), axis=0, return_inverse=True)
        joint_codes = joint_codes.reshape(-1)
        own_v = variance(gates.shape[1], ndim > 2)
        joint = np.concatenate(joint_gates, axis=1) if estimator == "kde" else None
        joint_v = variance(sum(g.shape[1] for g in joint_gates), joint_maps)
        row = {"layer": name, "depth": depth, "n_units": gates.shape[1], "n_patterns": int(codes.max()) + 1,
               "complexity": _entropy(gates, codes, estimator, own_v, base),
               "cumulative_complexity": _entropy(joint, joint_codes, estimator, joint_v, base)}
        if codes_y is not None:
            row["label_information"] = row["complexity"] - _conditional(gates, codes, codes_y, estimator, own_v, base)
            row["cumulative_label_information"] = row["cumulative_complexity"] - _conditional(
                joint, joint_codes, codes_y, estimator, joint_v, base)
        rows.append(row)
    return described(pd.DataFrame(rows), "transformation complexity (entropy of ReLU gating states)",
                     "Ren et al., ICML 2022, arXiv 2205.01940", estimator=estimator, base=float(base),
                     bandwidth=bandwidth, n_samples=n)
