"""capture_activations: stream data through a model and keep the selected layers' outputs."""
from __future__ import annotations

import hashlib
import itertools
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from .._arrays import resolve_device
from .activations import FORMAT, Activations, layer_filename, read_manifest, write_manifest
from .batches import as_batch_tensor, iter_batches
from .npy_stream import NpyStreamWriter
from .recorder import ActivationRecorder
from .layers import select_layers
from .modes import evaluating


def _flatten(t):
    return t.flatten(1)


def _spatial_mean(t):
    return t.mean(dim=tuple(range(2, t.ndim))) if t.ndim > 2 else t


REDUCERS = {"flatten": _flatten, "mean": _spatial_mean}


def _reducer(reduce):
    if reduce is None or callable(reduce):
        return reduce
    try:
        return REDUCERS[reduce]
    except KeyError:
        raise ValueError(f"reduce must be 'flatten', 'mean', None or a callable, got {reduce!r}.") from None


def _model_fingerprint(model: nn.Module) -> str:
    digest = hashlib.sha1(type(model).__qualname__.encode())
    for name, tensor in itertools.chain(model.named_parameters(), model.named_buffers()):
        digest.update(name.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def _reduce_name(reduce) -> str:
    if reduce is None or isinstance(reduce, str):
        return str(reduce)
    return getattr(reduce, "__qualname__", repr(reduce))


class _StoreWriter:
    """Streams layers into ``folder``; the manifest says ``complete: true`` only after ``finish``."""

    def __init__(self, folder: Path, fingerprint: dict):
        self.folder, self.fingerprint = folder, fingerprint
        self.writers: dict[str, NpyStreamWriter] = {}
        self.labels: NpyStreamWriter | None = None
        for stale in itertools.chain(folder.glob("layer_*.npy"), folder.glob("labels.npy")):
            stale.unlink()
        write_manifest(folder, {"format": FORMAT, "complete": False, "fingerprint": fingerprint})

    def append(self, outputs: dict[str, np.ndarray], labels):
        for name, array in outputs.items():
            if name not in self.writers:
                self.writers[name] = NpyStreamWriter(self.folder / layer_filename(len(self.writers)))
            self.writers[name].append(array)
        if labels is not None:
            self.labels = self.labels or NpyStreamWriter(self.folder / "labels.npy")
            self.labels.append(labels)

    def finish(self, meta: dict) -> Activations:
        entries = []
        for i, (name, writer) in enumerate(self.writers.items()):
            shape = writer.close()
            entries.append({"name": name, "file": layer_filename(i), "shape": list(shape),
                            "dtype": str(writer.dtype)})
        if self.labels is not None:
            self.labels.close()
        write_manifest(self.folder, {"format": FORMAT, "complete": True, "fingerprint": self.fingerprint,
                                     "layers": entries, "labels": self.labels is not None,
                                     "n_samples": entries[0]["shape"][0], "meta": meta})
        return Activations.load(self.folder)

    def abort(self):
        for writer in itertools.chain(self.writers.values(), [self.labels] if self.labels else []):
            writer.abort()


def _check_store(folder: Path, fingerprint: dict) -> Activations | None:
    """Reuse a complete matching store; refuse a store of another capture or a foreign folder."""
    manifest = read_manifest(folder)
    if manifest is None:
        if folder.exists() and any(folder.iterdir()):
            raise ValueError(f"store={str(folder)!r} is a non-empty folder that is not a repgraph activation "
                             "store; pass an empty or new folder.")
        return None
    stored = manifest.get("fingerprint")
    if stored == fingerprint:
        return Activations.load(folder) if manifest.get("complete") else None
    if manifest.get("complete"):
        differ = sorted(k for k in set(fingerprint) | set(stored or {})
                        if (stored or {}).get(k) != fingerprint.get(k))
        raise ValueError(f"store={str(folder)!r} holds activations of another capture (they differ in: "
                         f"{', '.join(differ)}); pass a new folder or delete this one.")
    return None  # an interrupted capture: start again


def capture_activations(model: nn.Module, data, layers="blocks", *, reduce="flatten",
                        max_samples: int | None = None, device=None, store=None, progress: bool = True,
                        batch_size: int = 256) -> Activations:
    """Run ``data`` through ``model`` (eval mode, ``torch.no_grad()``) and keep the outputs of ``layers``.

    ``data``: a DataLoader, a Dataset, a tensor/array of inputs, or a tuple ``(X, y)``; labels are
    kept when the batches carry them. ``reduce``: ``"flatten"`` (N, C·H·W), ``"mean"`` (global
    average over spatial axes), None (the raw shape) or a callable on the output tensor.
    ``store=PATH`` streams each layer to ``PATH`` (one ``.npy`` per layer and a manifest written
    last), so peak memory stays near one batch; a complete store with a matching fingerprint
    (model weights, first input batch, sample count, layers, reduce, max_samples) is loaded instead
    of recomputed. The model's train/eval modes and ``requires_grad`` flags are restored.
    """
    names = select_layers(model, layers)
    reducer = _reducer(reduce)
    if max_samples is not None and max_samples < 1:
        raise ValueError(f"max_samples must be a positive integer or None, got {max_samples!r}.")
    device = resolve_device(device, like=model)
    batches, total = iter_batches(data, batch_size)
    try:
        first = next(batches)
    except StopIteration:
        raise ValueError("data is empty: no batch to run through the model.") from None
    batches = itertools.chain([first], batches)
    if max_samples is not None and total is not None:
        total = min(total, max_samples)

    writer = None
    meta = {"model": type(model).__name__, "reduce": _reduce_name(reduce), "max_samples": max_samples}
    if store is not None:
        folder = Path(store)
        fingerprint = {"model": _model_fingerprint(model),
                       "data": hashlib.sha1(first[0].detach().cpu().contiguous().numpy().tobytes()).hexdigest(),
                       "n_samples": total, "layers": names, "reduce": _reduce_name(reduce),
                       "max_samples": max_samples}
        reused = _check_store(folder, fingerprint)
        if reused is not None:
            return reused
        folder.mkdir(parents=True, exist_ok=True)
        writer = _StoreWriter(folder, fingerprint)

    collected: dict[str, list[np.ndarray]] = {}
    labels: list[np.ndarray] = []
    seen = 0
    try:
        with evaluating(model), ActivationRecorder(model, names, reducer=reducer, device="cpu") as rec, \
                torch.no_grad():
            bar = tqdm(batches, total=None if total is None else -(-total // batch_size),
                       desc="capture", disable=not progress, leave=False)
            for x, y in bar:
                if max_samples is not None:
                    x = x[:max_samples - seen]
                    y = None if y is None else y[:max_samples - seen]
                if len(x) == 0:
                    break
                model(x.to(device))
                missing = [n for n in names if n not in rec.outputs]
                if missing:
                    raise ValueError(f"Layer(s) {missing} never fired during the forward pass: they are "
                                     "registered but not used by forward(); choose layers that run "
                                     "(list_layers(model, x) shows calls per forward).")
                outputs = {n: v[0].numpy() for n, v in rec.outputs.items()}
                rec.clear()
                batch_labels = None if y is None else as_batch_tensor(y, "labels").cpu().numpy()
                if writer is not None:
                    writer.append(outputs, batch_labels)
                else:
                    for n, a in outputs.items():
                        collected.setdefault(n, []).append(a)
                    if batch_labels is not None:
                        labels.append(batch_labels)
                seen += len(x)
                if max_samples is not None and seen >= max_samples:
                    break
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    if writer is not None:
        return writer.finish(meta)
    arrays = {n: np.concatenate(parts) for n, parts in collected.items()}
    return Activations(arrays, np.concatenate(labels) if labels else None, meta=meta)
