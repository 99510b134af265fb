"""Activations: an ordered mapping layer -> array (N, ...) with the samples' labels, and its
on-disk form (see ``repgraph.storage.store``)."""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

from ..storage.store import (LABELS, StoreLock, StoreWriter, check_files, partial_path, read_manifest,
                             store_folder)


def _to_numpy(name, value):
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu()
        if value.dtype == torch.bfloat16:  # numpy has no bfloat16; float32 holds every value
            value = value.float()
        value = value.numpy()
    if not isinstance(value, np.ndarray):
        value = np.asarray(value)
    if value.ndim < 1:
        raise ValueError(f"Layer {name!r}: an activation array needs a sample axis, got a scalar.")
    return value


class Activations(Mapping):
    """Ordered mapping layer name -> array of shape (N, ...), plus ``labels`` (N,) or None.

    Built from a dict (or list of pairs) of numpy arrays or tensors, returned by
    ``capture_activations``, or loaded from a store with ``Activations.load``.

    Parameters
    ----------
    arrays : dict or list of (str, array)
        Layer name -> array or tensor of shape (N, ...); every layer holds the same N ≥ 1
        samples. bfloat16 tensors become float32 (numpy has no bfloat16; no value changes).
    labels : array-like, optional
        One label per sample (numbers or strings).
    meta : dict, optional
        How the arrays were made (model, reduce, ...).

    Attributes
    ----------
    layers : list of str
        The layer names, in order.
    n_samples : int
        N.
    labels : numpy.ndarray or None
    meta : dict
    files : dict of str to Path
        For activations loaded from a store: layer name -> its ``.npy`` file (open it lazily,
        e.g. ``numpy.load(path, mmap_mode="r")`` or as a dask array); else empty.

    Raises
    ------
    ValueError
        For no layer, a layer without samples or a scalar, unequal sample counts, or labels of
        the wrong length.
    KeyError
        When indexed with a name that is not a layer (the message lists close matches).

    References
    ----------
    A ``collections.abc.Mapping``; its store holds one NumPy ``.npy`` file per layer (NEP 1, "A
    simple file format for NumPy arrays") next to a JSON manifest.

    Examples
    --------
    >>> import numpy as np
    >>> acts = Activations({"a": np.zeros((4, 3)), "b": np.ones((4, 2, 2))}, labels=[0, 1, 0, 1])
    >>> acts.layers, acts.n_samples, acts["b"].shape
    (['a', 'b'], 4, (4, 2, 2))
    """

    def __init__(self, arrays, labels=None, *, meta: dict | None = None):
        items = list(arrays.items()) if isinstance(arrays, Mapping) else list(arrays)
        if not items:
            raise ValueError("Activations needs at least one layer; got an empty mapping.")
        self._arrays = {}
        for name, value in items:
            self._arrays[str(name)] = _to_numpy(name, value)
        sizes = {name: a.shape[0] for name, a in self._arrays.items()}
        empty = [name for name, n in sizes.items() if n == 0]
        if empty:
            raise ValueError(f"Layer(s) {empty} hold 0 samples; activations need at least one sample per layer.")
        if len(set(sizes.values())) > 1:
            raise ValueError(f"All layers must hold the same samples; got sample counts {sizes}.")
        self.n_samples = next(iter(sizes.values()))
        if labels is not None:
            labels = _to_numpy("labels", labels)
            if labels.ndim != 1 or labels.shape[0] != self.n_samples:
                raise ValueError(f"labels has shape {labels.shape} but the layers have {self.n_samples} "
                                 "samples; pass one label per sample.")
        self.labels = labels
        self.meta = dict(meta or {})
        self.files: dict[str, Path] = {}

    @property
    def layers(self) -> list[str]:
        return list(self._arrays)

    def __getitem__(self, name):
        try:
            return self._arrays[name]
        except KeyError:
            import difflib
            lowered = {n.lower(): n for n in self._arrays}
            close = [lowered[c] for c in difflib.get_close_matches(str(name).lower(), lowered, n=3)]
            hint = f" Close matches: {', '.join(close)}." if close else ""
            raise KeyError(f"No layer {name!r} in these activations.{hint}") from None

    def __iter__(self):
        return iter(self._arrays)

    def __len__(self):
        return len(self._arrays)

    def __repr__(self):
        shapes = ", ".join(f"{n}: {a.shape[1:]}" for n, a in list(self._arrays.items())[:6])
        more = f", … ({len(self)} layers)" if len(self) > 6 else ""
        return f"Activations(N={self.n_samples}, {{{shapes}{more}}}, labels={'yes' if self.labels is not None else 'no'})"

    def _repr_html_(self):
        rows = "".join(f"<tr><td>{n}</td><td>{tuple(a.shape[1:])}</td><td>{a.dtype}</td></tr>"
                       for n, a in self._arrays.items())
        labels = "none" if self.labels is None else f"{len(np.unique(self.labels))} classes"
        return (f"<p>Activations: {self.n_samples} samples, {len(self)} layers, labels: {labels}</p>"
                f"<table><tr><th>layer</th><th>shape per sample</th><th>dtype</th></tr>{rows}</table>")

    def save(self, path):
        """Write these activations as a store in folder ``path`` (see ``repgraph.storage.store``).

        The files are written into ``path.partial`` and published with one rename, replacing a
        store already at ``path``; a folder that is not a store is refused.

        Parameters
        ----------
        path : str or Path
            The store folder.

        Raises
        ------
        ValueError
            When ``path`` is a non-empty folder that is not an activation store, a file, under a
            file, or the current folder (or one above it).
        TypeError
            When ``meta`` holds a value JSON cannot hold (the message names it).

        Examples
        --------
        >>> import tempfile, numpy as np
        >>> folder = tempfile.mkdtemp()
        >>> Activations({"a": np.arange(6.0).reshape(3, 2)}, labels=["x", "y", "x"]).save(folder)
        >>> back = Activations.load(folder, verify=True)
        >>> back["a"][2].tolist(), back.labels.tolist()
        ([4.0, 5.0], ['x', 'y', 'x'])
        """
        folder = store_folder(path, "path")
        if read_manifest(folder) is None and folder.is_dir() and any(folder.iterdir()):
            raise ValueError(f"{folder} is a non-empty folder that is not an activation store; pass an "
                             "empty or new folder.")
        lock = StoreLock(folder)
        lock.acquire()
        try:
            writer = StoreWriter(partial_path(folder), fingerprint=None)
            try:
                for name, array in self._arrays.items():
                    writer.write(name, 0, array)
                writer.publish(folder, self.labels, self.meta, replace=True)
            except BaseException:
                writer.discard()
                raise
        finally:
            lock.release()

    @classmethod
    def load(cls, path, mmap: bool = True, verify: bool = False) -> "Activations":
        """Load a store written by ``save`` or by ``capture_activations(store=...)``.

        Every file is checked against the manifest (present, header, size) before anything is
        read; ``verify=True`` also reads each file once and checks its CRC-32 checksums.

        Parameters
        ----------
        path : str or Path
            The store folder.
        mmap : bool
            Open the arrays as read-only memory maps (nothing is read until used).
        verify : bool
            Check every file's checksums (reads the whole store once).

        Returns
        -------
        Activations
            With ``files`` naming each layer's ``.npy`` file.

        Raises
        ------
        ValueError
            When ``path`` does not exist, is a file, holds no store or an incomplete one (an
            interrupted capture), or
            ``DamagedStoreError`` (a ValueError) naming the store, the layer and the file when a
            file is missing, truncated, of another shape, or (``verify``) corrupted, or when the
            manifest is damaged.

        Examples
        --------
        >>> import tempfile, numpy as np
        >>> folder = tempfile.mkdtemp()
        >>> Activations({"a": np.ones((2, 3))}).save(folder)
        >>> acts = Activations.load(folder)
        >>> type(acts["a"]).__name__, acts.files["a"].name
        ('memmap', 'layer_0000.npy')
        """
        folder = store_folder(path, "path", write=False)
        if not folder.exists():
            raise ValueError(f"path={str(path)!r} holds no complete repgraph activation store: it does not "
                             f"exist (looked for {str(folder)!r}); pass the folder a store was saved or captured "
                             "into.")
        manifest = read_manifest(folder)
        if manifest is None:
            raise ValueError(f"path={str(path)!r} holds no complete repgraph activation store: it is a folder "
                             "without a manifest.json; pass the folder a store was saved or captured into.")
        if not manifest.get("complete"):
            raise ValueError(f"path={str(path)!r} holds no complete repgraph activation store: its manifest is "
                             "incomplete (an interrupted capture); capture again.")
        check_files(folder, manifest, verify=verify)
        mode = "r" if mmap else None
        arrays = {e["name"]: np.load(folder / e["file"], mmap_mode=mode) for e in manifest["layers"]}
        labels = np.load(folder / LABELS) if manifest.get("labels") else None
        acts = cls(arrays, labels, meta=manifest.get("meta"))
        acts.files = {e["name"]: folder / e["file"] for e in manifest["layers"]}
        return acts
