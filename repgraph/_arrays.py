"""Input validation shared by builders and analyzers: one place that turns numpy arrays or torch
tensors (any device) into checked torch tensors, and labels into checked integer codes."""
from __future__ import annotations

import numpy as np
import torch


def resolve_device(device, like=None) -> torch.device:
    """``device`` if given, else the device of the tensor ``like``, else CPU."""
    if device is not None:
        return torch.device(device)
    if isinstance(like, torch.Tensor):
        return like.device
    return torch.device("cpu")


def as_tensor(X, *, name: str = "X", device=None, dtype=torch.float32) -> torch.Tensor:
    """Return ``X`` (numpy array, memmap or tensor) as a torch tensor on ``device`` without
    copying when it already has the right dtype and device."""
    if isinstance(X, torch.Tensor):
        t = X.detach()
    elif isinstance(X, np.ndarray):
        if not np.issubdtype(X.dtype, np.number) and X.dtype != np.bool_:
            raise TypeError(f"{name} must hold numbers, got dtype {X.dtype}.")
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
    t = t.reshape(t.shape[0], -1)
    n, d = t.shape
    if n < min_samples:
        raise ValueError(f"{name} has {n} sample(s); at least {min_samples} are needed.")
    if d == 0:
        raise ValueError(f"{name} has no features (shape {tuple(t.shape)}).")
    if check_finite and not bool(torch.isfinite(t).all()):
        raise non_finite_error(name, int((~torch.isfinite(t)).any(dim=1).sum()), n)
    return t


def as_label_codes(labels, n: int, *, name: str = "labels") -> np.ndarray:
    """Map arbitrary hashable labels of length ``n`` to integer codes 0..C-1."""
    if labels is None:
        raise ValueError(f"{name} are required; pass one label per sample.")
    if isinstance(labels, torch.Tensor):
        labels = labels.detach().cpu().numpy()
    arr = np.asarray(labels)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}.")
    if arr.shape[0] != n:
        raise ValueError(f"{name} has length {arr.shape[0]} but there are {n} samples; pass one label per sample.")
    _, codes = np.unique(arr, return_inverse=True)
    return codes.astype(np.int64)
