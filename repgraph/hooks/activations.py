"""Activations: an ordered mapping layer -> array (N, ...) with the samples' labels, and its
on-disk form (one ``.npy`` per layer + ``labels.npy`` + ``manifest.json``)."""
from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

MANIFEST = "manifest.json"
FORMAT = "repgraph-activations/1"


def layer_filename(index: int) -> str:
    return f"layer_{index:04d}.npy"


def write_manifest(folder: Path, manifest: dict):
    """Write the manifest atomically (temporary file + rename), so it is never half-written."""
    tmp = folder / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=1))
    os.replace(tmp, folder / MANIFEST)


def read_manifest(folder: Path) -> dict | None:
    path = Path(folder) / MANIFEST
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError:
        return None
    return manifest if manifest.get("format") == FORMAT else None


def _to_numpy(name, value):
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    if not isinstance(value, np.ndarray):
        value = np.asarray(value)
    if value.ndim < 1:
        raise ValueError(f"Layer {name!r}: an activation array needs a sample axis, got a scalar.")
    return value


class Activations(Mapping):
    """Ordered mapping layer name -> array of shape (N, ...), plus ``labels`` (N,) or None.

    Build it from a dict (or list of pairs) of numpy arrays / tensors, or get it from
    ``capture_activations``. Every layer must have the same number of samples N.
    ``meta`` holds how the arrays were made (model, reduce, ...).
    """

    def __init__(self, arrays, labels=None, *, meta: dict | None = None):
        items = list(arrays.items()) if isinstance(arrays, Mapping) else list(arrays)
        if not items:
            raise ValueError("Activations needs at least one layer; got an empty mapping.")
        self._arrays = {}
        for name, value in items:
            self._arrays[str(name)] = _to_numpy(name, value)
        sizes = {name: a.shape[0] for name, a in self._arrays.items()}
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
        """Write to folder ``path``: one ``.npy`` per layer, ``labels.npy``, then the manifest last
        (an interrupted save leaves no complete manifest, so it is never loaded as complete)."""
        folder = Path(path)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / MANIFEST).unlink(missing_ok=True)
        entries = []
        for i, (name, array) in enumerate(self._arrays.items()):
            np.save(folder / layer_filename(i), np.ascontiguousarray(array))
            entries.append({"name": name, "file": layer_filename(i), "shape": list(array.shape),
                            "dtype": str(array.dtype)})
        if self.labels is not None:
            np.save(folder / "labels.npy", self.labels)
        write_manifest(folder, {"format": FORMAT, "complete": True, "layers": entries,
                                "labels": self.labels is not None, "n_samples": self.n_samples,
                                "meta": self.meta})

    @classmethod
    def load(cls, path, mmap: bool = True) -> "Activations":
        """Load a folder written by ``save`` or by ``capture_activations(store=...)``; with ``mmap``
        the arrays are read-only memory maps (nothing is read until used)."""
        folder = Path(path)
        manifest = read_manifest(folder)
        if manifest is None or not manifest.get("complete"):
            raise ValueError(f"{folder} holds no complete repgraph activation store (no complete "
                             f"{MANIFEST}); it may be from an interrupted capture: capture again.")
        mode = "r" if mmap else None
        arrays = {e["name"]: np.load(folder / e["file"], mmap_mode=mode) for e in manifest["layers"]}
        labels = np.load(folder / "labels.npy") if manifest.get("labels") else None
        return cls(arrays, labels, meta=manifest.get("meta"))
