"""A data source named by one string, as the command line's ``--data`` takes it."""
from __future__ import annotations

from pathlib import Path

import torch

from .cifar10 import cifar10
from .digits import digits
from .mnist1d import mnist1d
from .text import token_windows

SOURCES = ("digits", "mnist1d", "cifar10:DIR", "text:FILE", "FILE.pt")
TEXT_WINDOW = 64  # tokens per window of text:FILE; the label is the byte that follows


def data_source(spec: str, *, size: int = 16, seed: int = 0, max_samples: int | None = None):
    """The inputs and labels named by ``spec``.

    - ``"digits"``: the test split of scikit-learn's digits, (N, 1, size, size) images;
    - ``"mnist1d"``: the test split of MNIST-1D, (N, 1, 40) sequences;
    - ``"cifar10:DIR"``: the CIFAR-10 test batches in the folder ``DIR`` (the python version);
    - ``"text:FILE"``: the bytes of ``FILE`` (vocabulary 256) in windows of ``TEXT_WINDOW``
      tokens, each labelled with the byte that follows it (as ``repgraph.datasets.text``);
    - ``"FILE.pt"``: a file written by ``torch.save({"X": X, "y": y})`` (``y`` optional), read
      with ``weights_only=True`` so loading it runs no code.

    Parameters
    ----------
    spec : str
        One of the forms above.
    size : int, default 16
        Side of the digits images.
    seed : int, default 0
        Seed of the digits split.
    max_samples : int, optional
        Keep only the first ``max_samples`` samples.

    Returns
    -------
    X : torch.Tensor
        The inputs (N, ...).
    y : torch.Tensor or None
        The labels (N,), or None when the source has none.

    Raises
    ------
    ValueError
        For an unknown form, a missing file or folder, a ``.pt`` file that is not a dict with a
        tensor ``X`` (and optionally ``y`` of as many samples), or text shorter than a window.

    References
    ----------
    The sources' own: scikit-learn's ``load_digits``; Greydanus 2020, MNIST-1D; Krizhevsky 2009,
    CIFAR-10.

    Examples
    --------
    >>> X, y = data_source("digits", size=8, max_samples=5)
    >>> tuple(X.shape), tuple(y.shape)
    ((5, 1, 8, 8), (5,))
    """
    kind, _, where = spec.partition(":")
    if spec == "digits":
        X, y = digits("test", size=size, seed=seed).tensors
    elif spec == "mnist1d":
        X, y = mnist1d("test").tensors
    elif kind == "cifar10" and where:
        X, y = cifar10(_existing(where, spec, folder=True)).tensors
    elif kind == "text" and where:
        tokens = torch.frombuffer(bytearray(_existing(where, spec).read_bytes()), dtype=torch.uint8).long()
        if tokens.numel() < TEXT_WINDOW + 1:
            raise ValueError(f"--data {spec}: the file holds {tokens.numel()} bytes, fewer than one window of "
                             f"{TEXT_WINDOW} tokens and its label; pass a longer text.")
        windows = token_windows(tokens, TEXT_WINDOW + 1)
        X, y = windows[:, :TEXT_WINDOW], windows[:, TEXT_WINDOW]
    elif spec.endswith(".pt"):
        X, y = _tensors(_existing(spec, spec), spec)
    else:
        raise ValueError(f"--data {spec!r} is not a data source; pass one of {', '.join(SOURCES)}.")
    if max_samples is not None:
        X, y = X[:max_samples], None if y is None else y[:max_samples]
    return X, y


def _existing(path: str, spec: str, folder: bool = False) -> Path:
    found = Path(path)
    if not (found.is_dir() if folder else found.is_file()):
        raise ValueError(f"--data {spec}: {path!r} is not an existing {'folder' if folder else 'file'}.")
    return found


def _tensors(path: Path, spec: str):
    held = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(held, dict) or not isinstance(held.get("X"), torch.Tensor):
        raise ValueError(f"--data {spec}: the file must hold a dict with a tensor 'X' (and optionally 'y'), as "
                         "torch.save({'X': X, 'y': y}, path) writes it.")
    X, y = held["X"], held.get("y")
    if y is not None and (not isinstance(y, torch.Tensor) or y.shape[:1] != X.shape[:1]):
        raise ValueError(f"--data {spec}: 'y' must be a tensor of {X.shape[0]} labels, one per sample of 'X'.")
    return X, y
