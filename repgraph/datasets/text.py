"""Offline byte-level text: the Python standard library's own sources, as a token stream (vocabulary
256) split into train/validation/test, and fixed-length windows of it."""
from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

import torch

from .._warnings import warn_user

# Pure-Python standard-library modules present (as top-level .py files or packages) on every
# Python >= 3.10, read in this order; about 1.6 MB of code, docstrings and comments.
STDLIB_MODULES = (
    "argparse", "ast", "calendar", "configparser", "contextlib", "copy", "csv", "dataclasses",
    "difflib", "doctest", "enum", "fractions", "functools", "gettext", "heapq", "inspect",
    "optparse", "pickle", "pprint", "queue", "random", "shlex", "shutil", "statistics", "string",
    "subprocess", "tarfile", "tempfile", "textwrap", "threading", "tokenize", "typing",
)
SPLITS = ("train", "validation", "test")


@functools.lru_cache(maxsize=4)
def _module_sources(modules: tuple[str, ...]) -> tuple[bytes, ...]:
    """Each module's source file as bytes (``\\r\\n`` → ``\\n``), found without importing it."""
    texts, missing = [], []
    for name in modules:
        spec = importlib.util.find_spec(name)
        path = Path(spec.origin) if spec is not None and spec.origin else None
        if path is None or path.suffix != ".py" or not path.is_file():
            missing.append(name)
            continue
        texts.append(path.read_bytes().replace(b"\r\n", b"\n"))
    if missing:
        warn_user(f"byte_corpus: no Python source for {missing} in this installation (frozen, "
                  "compiled-only or absent); the corpus leaves them out.")
    if not texts:
        raise FileNotFoundError(f"byte_corpus: none of the modules {list(modules)} has a source file here.")
    return tuple(texts)


def byte_corpus(split: str = "train", *, modules=STDLIB_MODULES,
                fractions: tuple[float, float, float] = (0.9, 0.05, 0.05)) -> torch.Tensor:
    """Real English-and-code text available offline wherever Python runs: the standard library's
    own sources (code, docstrings, comments), as bytes.

    Each module's source file is cut by position into its first ``fractions[0]`` (train), the
    next ``fractions[1]`` (validation) and the last ``fractions[2]`` (test) of its bytes; a split
    is the concatenation of those pieces over ``modules``, in order, so every split holds text of
    every module and no byte is in two splits. Tokens are the raw UTF-8 bytes (vocabulary 256, no
    tokenizer). The files are found with ``importlib.util.find_spec`` (nothing is imported) and read
    once per process. The text is fixed for one Python version but varies slightly across versions
    (the standard library's sources change); a module without a source file (frozen or
    compiled-only installations) is left out with a warning.

    Parameters
    ----------
    split : {"train", "validation", "test"}, default "train"
        Which part to return.
    modules : sequence of str, default ``STDLIB_MODULES``
        Importable module names whose ``.py`` sources make up the corpus (32 pure-Python stdlib
        modules, about 1.6 MB).
    fractions : (float, float, float), default (0.9, 0.05, 0.05)
        Train, validation and test shares of each module; positive, summing to 1.

    Returns
    -------
    torch.Tensor
        A 1-D ``torch.uint8`` token stream (cut it with ``token_windows``).

    Raises
    ------
    ValueError
        For an unknown ``split`` or ``fractions`` that are not three positive shares summing to 1.
    FileNotFoundError
        When none of ``modules`` has a source file.

    Examples
    --------
    >>> train, test = byte_corpus("train"), byte_corpus("test")
    >>> train.dtype, train.dim(), len(train) > 10 * len(test)
    (torch.uint8, 1, True)
    >>> bytes(byte_corpus("train", modules=["textwrap"])[3:25].tolist())  # after the opening quotes
    b'Text wrapping and fill'
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}.")
    if len(fractions) != 3 or min(fractions) <= 0 or abs(sum(fractions) - 1.0) > 1e-9:
        raise ValueError(f"fractions must be three positive shares (train, validation, test) summing to 1, "
                         f"got {fractions!r}.")
    if isinstance(modules, str):
        modules = [modules]
    part = SPLITS.index(split)
    cut = (0.0, fractions[0], fractions[0] + fractions[1], 1.0)
    pieces = []
    for text in _module_sources(tuple(modules)):
        start, stop = (round(len(text) * cut[part]), round(len(text) * cut[part + 1]))
        pieces.append(text[start:stop])
    return torch.frombuffer(bytearray(b"".join(pieces)), dtype=torch.uint8)


def token_windows(tokens, seq_len: int, *, stride: int | None = None, max_windows: int | None = None
                  ) -> torch.Tensor:
    """Cut a 1-D token stream into windows: row i is ``tokens[i·stride : i·stride + seq_len]``.

    Parameters
    ----------
    tokens : 1-D integer tensor or array
        The token stream (e.g. ``byte_corpus("validation")``).
    seq_len : int
        Tokens per window (>= 2: a window predicts ``seq_len − 1`` tokens).
    stride : int, optional
        Offset between window starts; default ``seq_len`` (non-overlapping windows). A tail
        shorter than ``seq_len`` is dropped.
    max_windows : int, optional
        Keep only the first ``max_windows`` windows.

    Returns
    -------
    torch.LongTensor
        Shape (N, seq_len), a copy.

    Raises
    ------
    ValueError
        For a stream that is not 1-D or shorter than ``seq_len``, or ``seq_len < 2``, ``stride < 1``,
        ``max_windows < 1``.

    Examples
    --------
    >>> token_windows(torch.arange(10), 4)
    tensor([[0, 1, 2, 3],
            [4, 5, 6, 7]])
    >>> token_windows(torch.arange(10), 4, stride=3).shape
    torch.Size([3, 4])
    """
    tokens = torch.as_tensor(tokens)
    stride = seq_len if stride is None else stride
    if tokens.dim() != 1:
        raise ValueError(f"tokens must be a 1-D stream, got shape {tuple(tokens.shape)}.")
    if seq_len < 2 or stride < 1 or (max_windows is not None and max_windows < 1):
        raise ValueError(f"Need seq_len >= 2, stride >= 1 and max_windows >= 1 (or None); got seq_len={seq_len}, "
                         f"stride={stride}, max_windows={max_windows}.")
    if len(tokens) < seq_len:
        raise ValueError(f"tokens holds {len(tokens)} tokens, fewer than seq_len={seq_len}.")
    windows = tokens.unfold(0, seq_len, stride)
    if max_windows is not None:
        windows = windows[:max_windows]
    return windows.to(torch.int64, memory_format=torch.contiguous_format, copy=True)
