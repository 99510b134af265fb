"""The one home of input checks: arrays and tensors (any device) into checked torch tensors,
labels into integer codes, feature maps, square matrices, the device resolver and chunk sizing
within the working-memory budget (``repgraph.set_config``)."""
from __future__ import annotations

import itertools
import math
import numbers
import warnings
from collections.abc import Mapping

import numpy as np
import torch
from torch import nn

from ._config import get_config


def resolve_device(device=None, like=None) -> torch.device:
    """The device to compute on: ``device`` if given, else the device of ``like`` (a tensor, or a
    module's first parameter or buffer), else CPU.

    Raises ``ValueError`` for a CUDA device when no GPU is available, instead of torch's
    lazy-initialisation error deep inside a computation.
    """
    if device is None:
        if isinstance(like, torch.Tensor):
            return like.device
        if isinstance(like, nn.Module):
            first = next(itertools.chain(like.parameters(), like.buffers()), None)
            return first.device if first is not None else torch.device("cpu")
        return torch.device("cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"device={device!r} is not a device; pass 'cpu', 'cuda', 'cuda:1', "
                         "a torch.device or None.") from err
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} but no CUDA device is available here; pass "
                         "device='cpu' (or None to use where the data or model already are).")
    return resolved


def check_count(value, name: str, minimum: int = 1) -> int:
    """``value`` if it is an integer (not a bool) ``>= minimum``, else an error naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer >= {minimum}, got {value!r} ({type(value).__name__}).")
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value}.")
    return int(value)


def row_chunk(n_rows: int, bytes_per_row: int) -> int:
    """Rows per chunk so that one chunk of ``bytes_per_row``-byte rows stays within the
    working-memory budget (``repgraph.get_config()["working_memory"]`` MiB); at least 1."""
    budget = get_config()["working_memory"] * 2**20
    return int(max(1, min(n_rows, budget // max(1, bytes_per_row))))


def as_tensor(X, *, name: str = "X", device=None, dtype=torch.float32) -> torch.Tensor:
    """Return ``X`` (numpy array, memmap or tensor) as a torch tensor on ``device`` without
    copying when it already has the right dtype and device (``dtype=None``: keep its dtype)."""
    if isinstance(X, torch.Tensor):
        t = X.detach()
    elif isinstance(X, np.ndarray):
        if not np.issubdtype(X.dtype, np.number) and X.dtype != np.bool_:
            raise TypeError(f"{name} must hold numbers, got dtype {X.dtype}.")
        with warnings.catch_warnings():
            # a read-only array (a store's memmap) is shared as it is: repgraph never writes into
            # its inputs, so torch's warning about non-writable tensors is noise for the user
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
            t = torch.from_numpy(np.ascontiguousarray(X))
    else:
        try:
            t = torch.as_tensor(np.asarray(X, dtype=np.float64))
        except (TypeError, ValueError) as err:
            raise TypeError(
                f"{name} must be a numpy array or a torch tensor, got {type(X).__name__}."
            ) from err
    return t.to(device=resolve_device(device, t), dtype=dtype)


def non_finite_error(name: str, n_bad: int, n: int) -> ValueError:
    return ValueError(
        f"{name} contains NaN or Inf in {n_bad} of {n} samples; check the layer's input data "
        "or the model (e.g. a diverged training run) before analysing it."
    )


def as_features(X, *, name: str = "X", device=None, dtype=torch.float32, min_samples: int = 2,
                check_finite: bool = True):
    """Validate a feature matrix: at least 2-D (N, ...), flattened to (N, D), finite values.

    Raises ``ValueError`` naming ``name`` for too few samples, empty features or NaN/Inf
    (``check_finite=False`` leaves that check to a caller that gets it for free, e.g. from norms).
    """
    t = as_tensor(X, name=name, device=device, dtype=dtype)
    if t.ndim < 2:
        raise ValueError(
            f"{name} must have shape (n_samples, n_features, ...), got shape {tuple(t.shape)}; "
            "reshape a single sample to (1, -1) or stack samples along the first axis."
        )
    if t.shape[0] < min_samples:  # before the reshape, which cannot infer D from 0 rows
        raise ValueError(f"{name} has {t.shape[0]} sample(s); at least {min_samples} are needed.")
    t = t.reshape(t.shape[0], -1)
    n, d = t.shape
    if d == 0:
        raise ValueError(f"{name} has no features (shape {tuple(t.shape)}).")
    if check_finite and not bool(torch.isfinite(t).all()):
        raise non_finite_error(name, int((~torch.isfinite(t)).any(dim=1).sum()), n)
    return t


def _missing_labels(values: np.ndarray) -> np.ndarray:
    """Where ``values`` (a 1-D array of any dtype) holds NaN, None or another missing marker."""
    if values.dtype.kind == "f" or values.dtype.kind == "c":
        return np.isnan(values)
    if values.dtype == object:
        return np.array([_is_missing(v) for v in values], dtype=bool)
    return np.zeros(len(values), dtype=bool)


def _is_missing(value) -> bool:
    """None, NaN (any float type) or pandas' NA (whose comparisons are neither true nor false)."""
    if value is None:
        return True
    try:
        return bool(value != value)
    except (TypeError, ValueError):
        return True


def _check_label_kinds(values: np.ndarray, name: str) -> None:
    """Refuse an object array of labels that mixes numbers with strings: numpy would compare them
    as strings (0 and "0" one class) or not at all, so either result would be an accident."""
    numbers_at = [i for i, v in enumerate(values) if isinstance(v, (numbers.Number, np.bool_))]
    strings_at = [i for i, v in enumerate(values) if isinstance(v, (str, bytes))]
    if numbers_at and strings_at:
        i, j = numbers_at[0], strings_at[0]
        raise TypeError(f"{name} mix numbers and strings ({values[i]!r} at position {i}, {values[j]!r} at "
                        f"position {j}): whether 0 and '0' are one class would be an accident. Pass labels of "
                        "one type, e.g. [str(v) for v in labels].")


def as_label_classes(labels, n: int, *, name: str = "labels") -> tuple[np.ndarray, np.ndarray]:
    """``(classes, codes)``: the sorted distinct labels of ``labels`` (length ``n``; numbers,
    strings or bools, as a list, array, tensor or pandas Series, read by position) and each
    sample's integer code 0..C-1 into them.

    Raises ``ValueError`` naming ``name`` for labels that are missing, not 1-D, not of length
    ``n``, or hold NaN/None (with their count and the first position: a missing label is not a
    class), and ``TypeError`` for a single string or mapping, labels mixing numbers and strings,
    or values that cannot be ordered.
    """
    if labels is None:
        raise ValueError(f"{name} are required; pass one label per sample.")
    if isinstance(labels, (str, bytes, Mapping, set, frozenset)):
        raise TypeError(f"{name} must be a sequence of one label per sample (list, array, tensor or Series), "
                        f"got a {type(labels).__name__}.")
    if isinstance(labels, torch.Tensor):
        labels = labels.detach().cpu().numpy()
    try:
        arr = np.asarray(labels)
    except ValueError as err:  # ragged entries
        raise ValueError(f"{name} must be 1-D: one scalar label (number or string) per sample.") from err
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}.")
    if arr.shape[0] != n:
        raise ValueError(f"{name} has length {arr.shape[0]} but there are {n} samples; pass one label per sample.")
    if arr.dtype.kind in "USO" and not isinstance(labels, np.ndarray):
        arr = np.asarray(labels, dtype=object)  # numpy would turn [0, "a"] into strings silently
    missing = _missing_labels(arr)
    if missing.any():
        raise ValueError(f"{name} hold {int(missing.sum())} missing label(s) (NaN or None), the first at position "
                         f"{int(np.argmax(missing))}: a missing label is not a class. Drop those samples or give "
                         "them a label.")
    if arr.dtype == object:
        _check_label_kinds(arr, name)
    try:
        classes, codes = np.unique(arr, return_inverse=True)
    except TypeError as err:
        kinds = sorted({type(v).__name__ for v in arr})
        raise TypeError(f"{name} hold values of types {kinds} that cannot be ordered; pass numbers or "
                        "strings.") from err
    return classes, codes.reshape(-1).astype(np.int64)


def as_label_codes(labels, n: int, *, name: str = "labels") -> np.ndarray:
    """Each sample's integer code 0..C-1 (``as_label_classes``, which checks the labels)."""
    return as_label_classes(labels, n, name=name)[1]


def is_constant_rows(X: torch.Tensor) -> bool:
    """Whether every row of ``X`` (n ≥ 2 rows) equals the first. The second row is compared first,
    so a layer that varies (nearly always) costs one row, not a pass over the whole batch."""
    return torch.equal(X[1], X[0]) and bool((X == X[:1]).all())


def check_feature_map_shape(shape: tuple, *, name: str = "fmaps", min_channels: int = 1, square: bool = False,
                            one_d: bool = False) -> None:
    """The shape checks of ``as_feature_maps`` alone (for data that is not at hand, e.g. a store
    layer analysed on a cluster): (N, C, H, W), or (N, C, L) with ``one_d``; N ≥ 1; C ≥
    ``min_channels``; H = W if ``square``. Raises ``ValueError`` naming ``name`` and the shape."""
    shapes = "(N, C, H, W) or (N, C, L)" if one_d else "(N, C, H, W)"
    if square and len(shape) == 3:
        raise ValueError(f"{name} holds 1-D maps of shape {shape} (N, C, L); this measure needs "
                         "square 2-D maps (N, C, H, H), e.g. the output of a Conv2d.")
    if len(shape) != 4 and not (one_d and len(shape) == 3):
        raise ValueError(f"{name} must be feature maps of shape {shapes}, got shape {shape}; "
                         "capture the layer with reduce=None.")
    if shape[0] < 1:
        raise ValueError(f"{name} holds no images.")
    if shape[1] < min_channels:
        raise ValueError(f"{name} has {shape[1]} channel(s); at least {min_channels} are needed.")
    if square and shape[2] != shape[3]:
        raise ValueError(f"{name} has {shape[2]}x{shape[3]} maps; this measure needs square maps (H = W).")


def as_feature_maps(fmaps, *, name: str = "fmaps", device=None, dtype=torch.float32,
                    min_channels: int = 1, square: bool = False, one_d: bool = False) -> torch.Tensor:
    """Validate a layer's feature maps: (N, C, H, W) (or, with ``one_d``, also the (N, C, L) maps
    of a 1-D convolution), finite, enough channels, square if asked.

    ``dtype=None`` keeps a floating dtype (float16 … float64) as it is, so a criterion can use the
    maps' own precision; anything else becomes float32.
    """
    t = as_tensor(fmaps, name=name, device=device, dtype=dtype)
    if not t.is_floating_point():
        t = t.float()
    check_feature_map_shape(tuple(t.shape), name=name, min_channels=min_channels, square=square, one_d=one_d)
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} contains NaN or Inf; check the layer's inputs or the model.")
    return t


SYMMETRY_RTOL = 1e-12  # |S − Sᵀ| up to this times max|S| is rounding (np.corrcoef, saved matrices)


def as_square_matrix(S, *, name: str = "S", symmetric: bool = False) -> np.ndarray:
    """``S`` (numpy array or torch tensor on any device) as a float64 numpy (n, n) matrix, n >= 2.

    With ``symmetric=True`` a matrix that is symmetric up to rounding, ``|S − Sᵀ| ≤ 1e-12·max|S|``
    (NaN where Sᵀ is NaN), is returned as ``(S + Sᵀ)/2``; larger asymmetry raises ``ValueError``
    naming the largest ``|S − Sᵀ|`` and where it is.
    """
    S = np.asarray(S.detach().cpu().numpy() if isinstance(S, torch.Tensor) else S, dtype=np.float64)
    if S.ndim != 2 or S.shape[0] != S.shape[1]:
        raise ValueError(f"{name} must be a square (n, n) matrix, got shape {S.shape}.")
    if S.shape[0] < 2:
        raise ValueError(f"{name} has {S.shape[0]} row(s); at least 2 are needed.")
    if not symmetric:
        return S
    nan = np.isnan(S)
    if (nan != nan.T).any():
        i, j = np.argwhere(nan != nan.T)[0]
        raise ValueError(f"{name} is not symmetric: {name}[{i}, {j}] = {S[i, j]} but {name}[{j}, {i}] = "
                         f"{S[j, i]}; a similarity matrix must be symmetric.")
    with np.errstate(invalid="ignore"):
        gap = np.where(nan, 0.0, np.abs(S - S.T))
    finite = np.abs(S[np.isfinite(S)])
    scale = float(finite.max()) if finite.size else 0.0
    worst = float(gap.max())
    if worst > SYMMETRY_RTOL * scale:
        i, j = np.unravel_index(int(np.argmax(gap)), gap.shape)
        raise ValueError(f"{name} is not symmetric: the largest |{name} − {name}ᵀ| is {worst:.3g} at ({i}, {j}) "
                         f"({S[i, j]!r} vs {S[j, i]!r}), more than rounding ({SYMMETRY_RTOL:g}·max|{name}|); "
                         "pass a symmetric similarity matrix, e.g. (S + S.T) / 2 if the asymmetry is meant "
                         "to be averaged.")
    return (S + S.T) / 2 if worst > 0 else S


def power_of_two_scaled(X: torch.Tensor, *, name: str = "X", limit: int = 32,
                        shrink_only: bool = False) -> tuple[torch.Tensor, int]:
    """``X·2^-e`` and ``e``, with ``2^e ≤ max|X| < 2^(e+1)``, when ``max|X|`` lies outside
    ``[2^-limit, 2^limit]`` (with ``shrink_only``, only above ``2^limit``); else ``X`` itself and 0.

    Scaling by a power of two is exact in floating point, so a scale-invariant quantity (cosine,
    CKA) computed from the scaled values equals the unscaled one bit for bit, while float32 products
    of values near 1e30 (whose squares overflow) or 1e-30 (whose squares underflow) stay finite.
    NaN or Inf in ``X`` raises ``ValueError`` naming ``name``.
    """
    if X.numel() == 0:
        return X, 0
    low, high = torch.aminmax(X)
    top = max(abs(float(low)), abs(float(high)))
    if not math.isfinite(top):
        rows = X.reshape(X.shape[0], -1) if X.ndim > 1 else X.reshape(1, -1)
        raise non_finite_error(name, int((~torch.isfinite(rows)).any(dim=1).sum()), rows.shape[0])
    if top == 0.0 or top <= 2.0 ** limit and (shrink_only or top >= 2.0 ** -limit):
        return X, 0
    exponent = math.frexp(top)[1] - 1
    return X * (2.0 ** -exponent), exponent


def check_ratio(ratio, *, name: str = "ratio", allow_zero: bool = True) -> float:
    """``ratio`` if it is a fraction in [0, 1) (in (0, 1) when ``allow_zero`` is False), else a
    ``ValueError`` naming ``name``."""
    low_ok = isinstance(ratio, numbers.Real) and (ratio >= 0.0 if allow_zero else ratio > 0.0)
    if isinstance(ratio, bool) or not low_ok or not ratio < 1.0:
        interval = "[0, 1)" if allow_zero else "(0, 1)"
        raise ValueError(f"{name} must be a fraction in {interval}, got {ratio!r}.")
    return float(ratio)


def prune_count(n: int, ratio: float, *, name: str = "ratio", allow_zero: bool = True) -> int:
    """How many of ``n`` filters (or channels) a pruning ``ratio`` removes: ``ceil(n·ratio)``,
    everywhere in repgraph (Central-Filter's rule). The product is rounded to 9 decimals first, so
    float error never adds one (10 × 0.3 gives 3, not 4). ``ratio`` is checked by ``check_ratio``;
    a count that would remove all ``n`` raises ``ValueError`` naming ``name``.
    """
    check_ratio(ratio, name=name, allow_zero=allow_zero)
    count = math.ceil(round(n * ratio, 9))
    if count >= n:
        raise ValueError(f"{name}={ratio} would prune all {n} filters (ceil({n}·{ratio}) = {count}); "
                         "use a smaller ratio.")
    return count
