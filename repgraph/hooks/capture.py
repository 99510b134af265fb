"""capture_activations: stream data through a model and keep the selected layers' outputs."""
from __future__ import annotations

import errno
import itertools
import numbers
import os
import socket
import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from .._arrays import resolve_device
from .activations import Activations
from .batches import iter_batches
from .fingerprint import DataDigest, callable_token, model_digest, value_token
from .in_memory import GrowingArrays
from .modes import evaluating
from .recorder import ActivationRecorder
from .store import StoreLock, StoreWriter, partial_path, read_manifest, resumable
from .transfer import HostTransfer

_DISK_FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


def _check_options(batch_size, max_samples):
    if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer (samples per forward pass), got {batch_size!r}.")
    if max_samples is not None and (isinstance(max_samples, bool) or not isinstance(max_samples, numbers.Integral)
                                    or max_samples < 1):
        raise ValueError(f"max_samples must be a positive integer or None, got {max_samples!r}.")


def _run_device(model: nn.Module, device) -> torch.device:
    """Where the forward runs: ``device`` (checked) or the model's; the model must hold real weights
    there."""
    tensors = list(itertools.chain(model.parameters(), model.buffers()))
    if any(t.is_meta for t in tensors):
        raise ValueError(f"{type(model).__name__} has parameters on the meta device (they hold no values); "
                         "materialise it before capturing, e.g. model.to_empty(device='cpu') then "
                         "load_state_dict(...), or build it without the meta device.")
    run = resolve_device(device, like=model)
    if run.type == "cuda" and run.index is None:
        run = torch.device("cuda", torch.cuda.current_device())
    where = {t.device for t in tensors}
    if len(where) == 1 and where != {run}:
        raise ValueError(f"device={str(device)!r} but the model's weights are on {where.pop()}; move the "
                         "model there first (model.to(device)) or pass device=None.")
    return run


def _input_dtype(model: nn.Module) -> torch.dtype | None:
    return next((p.dtype for p in model.parameters() if p.is_floating_point()), None)


def _to_model(value, device: torch.device, dtype: torch.dtype | None):
    if isinstance(value, np.ndarray) and value.dtype.kind in "biuf":
        value = torch.from_numpy(value)
    if not isinstance(value, torch.Tensor):
        return value
    if value.is_floating_point() and dtype is not None and value.dtype != dtype:
        return value.to(device=device, dtype=dtype)
    return value.to(device)


class _Labels:
    """The labels of the batches seen: all batches carry them or none does."""

    def __init__(self):
        self.parts, self.missing = [], False

    def add(self, labels):
        if labels is None:
            self.missing = True
        else:
            self.parts.append(labels)
        if self.missing and self.parts:
            raise ValueError("Some batches carry labels and others do not; give every batch its labels.")

    def result(self):
        return np.concatenate(self.parts) if self.parts else None


class _DataChanged(Exception):
    """The data of a resumed capture differs from what the interrupted one committed."""


def _check_fired(rec: ActivationRecorder, keys: list[str] | None, batch_index: int) -> list[str]:
    fired = rec.fired
    if keys is None:
        missing = [n for n in rec.layers if n not in fired]
        if missing:
            raise ValueError(f"Layer(s) {missing} never fired during the forward pass: they are registered but "
                             "not used by forward(); choose layers that run (list_layers(model, x) shows calls "
                             "per forward).")
        return list(fired)
    if sorted(fired) != sorted(keys):
        raise ValueError(f"Batch {batch_index} recorded {sorted(fired)} but the first batch recorded "
                         f"{sorted(keys)}: the layers must fire the same way for every batch.")
    return keys


def _forward_all(model, rec, batches, target, device, *, total, max_samples, progress,
                 digest: DataDigest | None = None, skip: int = 0, prefix: dict | None = None,
                 keys: list[str] | None = None, commit=None):
    """Run every batch through ``model`` with ``rec`` writing into ``target``; the first ``skip``
    samples (committed by an interrupted capture) are only hashed and their labels kept, and
    their hash must equal ``prefix``. Returns ``(labels, n_samples)``."""
    dtype = _input_dtype(model)
    transfer = HostTransfer(target, device)
    rec._sink = transfer.stage
    labels = _Labels()
    seen = index = 0
    bar = tqdm(total=total, unit="sample", desc="capture", disable=not progress, leave=False)
    with evaluating(model), rec, torch.no_grad():
        for batch in batches:
            before = seen
            if max_samples is not None and seen + batch.n > max_samples:
                batch = batch.part(0, max_samples - seen)
            if seen < skip:  # committed before the interruption: check, do not recompute
                head = batch.part(0, skip - seen)
                digest.update(head)
                labels.add(head.labels)
                seen += head.n
                if seen == skip and digest.snapshot() != prefix:
                    raise _DataChanged
                batch = batch.part(head.n, batch.n)
            if batch.n > 0:
                if digest is not None:
                    digest.update(batch)
                labels.add(batch.labels)
                rec.n_samples = batch.n
                transfer.begin(seen)
                model(*(_to_model(a, device, dtype) for a in batch.args),
                      **{k: _to_model(v, device, dtype) for k, v in batch.kwargs.items()})
                keys = _check_fired(rec, keys, index)
                seen += batch.n
                snapshot = digest.snapshot() if digest is not None else None
                transfer.end_batch(lambda n=seen, s=snapshot: commit and commit(n, s))
            index += 1
            bar.update(seen - before)
            if max_samples is not None and seen >= max_samples:
                break
        transfer.finish()
    bar.close()
    if seen == 0:
        raise ValueError("data is empty: no batch to run through the model.")
    if seen < skip:
        raise _DataChanged
    return labels.result(), seen


def _config(model, rec: ActivationRecorder, output, batch_axis, label_key, max_samples) -> dict:
    spec = rec.reducer.spec
    return {"model": model_digest(model), "layers": rec.layers,
            "reduce": spec if spec is None or isinstance(spec, str) else callable_token(spec),
            "output": value_token(output), "batch_axis": value_token(batch_axis), "inputs": rec.inputs,
            "label_key": label_key, "max_samples": max_samples, "dtype": "float32"}


def _hash_data(batches, max_samples) -> dict:
    digest = DataDigest()
    for batch in batches:
        if max_samples is not None and digest.n_samples + batch.n > max_samples:
            batch = batch.part(0, max_samples - digest.n_samples)
        digest.update(batch)
        if max_samples is not None and digest.n_samples >= max_samples:
            break
    return digest.snapshot()


def _other_capture(folder: Path, differ: list[str]) -> ValueError:
    why = {"model": "model (its weights: an unseeded model gets new random weights on every run)",
           "data": "data (inputs or labels)"}
    listed = ", ".join(why.get(d, d) for d in differ)
    return ValueError(
        f"store={str(folder)!r} holds activations of another capture; they differ in: {listed}. A store "
        "never hands back another capture's activations. To keep both, pass another folder as store=; to "
        f"replace it, delete it (shutil.rmtree({str(folder)!r})); to reuse it, capture the same model on the "
        "same data (seed the model with torch.manual_seed before building it, or load its saved weights).")


def _reuse(folder: Path, manifest: dict, config: dict, batches, max_samples) -> Activations:
    """The published store at ``folder`` when it holds this capture (same configuration, same data
    hash, intact files); else a ValueError saying what differs."""
    if not manifest.get("complete"):
        raise ValueError(f"store={str(folder)!r} holds an incomplete manifest; delete the folder.")
    stored = manifest.get("fingerprint") or {}
    differ = [key for key in config if stored.get(key) != config[key]]
    if differ:
        raise _other_capture(folder, differ)
    data = _hash_data(batches, max_samples)
    if data != stored.get("data"):
        raise _other_capture(folder, ["data"])
    return Activations.load(folder, verify=True)


def _published(folder: Path) -> dict | None:
    manifest = read_manifest(folder)
    if manifest is None and folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise ValueError(f"store={str(folder)!r} is a non-empty folder that is not a repgraph activation "
                         "store; pass an empty or new folder.")
    return manifest


def _may_be_alive(writer: dict) -> bool:
    """False only for a writer process known to have died (same host, no such pid)."""
    if writer.get("host") != socket.gethostname() or not isinstance(writer.get("pid"), int):
        return True
    try:
        os.kill(writer["pid"], 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def _wait_or_refuse(folder: Path, lock: StoreLock, config: dict, progress: bool):
    """Take the store's lock; a writer of another capture holding it is an error at once."""
    if lock.acquire(blocking=False):
        return
    try:
        other = read_manifest(partial_path(folder))
    except ValueError:
        other = None
    who = (other or {}).get("writer", {})
    if other is not None and other.get("fingerprint") != config and _may_be_alive(who):
        differ = [k for k in config if (other.get("fingerprint") or {}).get(k) != config[k]]
        raise ValueError(f"store={str(folder)!r} is being written by another process (pid {who.get('pid')} on "
                         f"{who.get('host')}) with a different capture (differs in: {', '.join(differ)}); "
                         "pass another folder as store=.")
    if progress:
        print(f"store={str(folder)!r}: another process is writing this capture; waiting for it.", file=sys.stderr)
    lock.acquire(blocking=True)


def _capture_to_store(model, data, rec, folder: Path, *, config, device, total, batch_size, label_key,
                      max_samples, progress, meta) -> Activations:
    manifest = _published(folder)
    if manifest is not None:
        return _reuse(folder, manifest, config, iter_batches(data, batch_size, label_key)[0], max_samples)
    lock = StoreLock(folder)
    _wait_or_refuse(folder, lock, config, progress)
    try:
        manifest = _published(folder)
        if manifest is not None:  # published by the writer we waited for
            return _reuse(folder, manifest, config, iter_batches(data, batch_size, label_key)[0], max_samples)
        partial = partial_path(folder)
        writer = StoreWriter(partial, config, resumable(partial, config))
        try:
            try:
                digest = DataDigest()
                labels, n = _forward_all(model, rec, iter_batches(data, batch_size, label_key)[0], writer, device,
                                         total=total, max_samples=max_samples, progress=progress, digest=digest,
                                         skip=writer.committed, prefix=writer.data_prefix,
                                         keys=writer.keys or None, commit=writer.commit)
            except _DataChanged:  # the interrupted capture saw other data: start again
                if iter(data) is data:
                    raise ValueError(f"store={str(folder)!r} holds an interrupted capture of other data and "
                                     "data is a one-shot iterator; delete the folder "
                                     f"{str(partial)!r} and capture again.") from None
                writer.discard()
                writer = StoreWriter(partial, config)
                digest = DataDigest()
                labels, n = _forward_all(model, rec, iter_batches(data, batch_size, label_key)[0], writer, device,
                                         total=total, max_samples=max_samples, progress=progress, digest=digest,
                                         commit=writer.commit)
            writer.publish(folder, labels, meta, digest.snapshot())
        except OSError as err:
            if err.errno not in _DISK_FULL:
                writer.close_files()
                raise
            writer.discard()
            raise OSError(err.errno, f"store={str(folder)!r}: the disk is full or the file too large "
                                     f"({err.strerror}) while writing the capture; its partial files were "
                                     "deleted. Free space or pass another folder as store=.") from err
        except BaseException:
            writer.close_files()  # kept: a later capture resumes from the last committed batch
            raise
    finally:
        lock.release()
    return Activations.load(folder)


def capture_activations(model: nn.Module, data, layers="blocks", *, reduce="flatten", output=None,
                        batch_axis=0, inputs: bool = False, label_key="auto", max_samples: int | None = None,
                        device=None, store=None, progress: bool = True, batch_size: int = 256) -> Activations:
    """Run ``data`` through ``model`` (eval mode, ``torch.no_grad()``) and keep the outputs of ``layers``.

    Each batch's output of each layer is taken out of the module's return value (``output``),
    its sample axis moved first (``batch_axis``) and checked against the batch's sample count,
    reduced on the model's device (``reduce``) and copied once into float32 arrays: in memory,
    preallocated for the known sample count, or streamed to ``store``. The model's train/eval
    modes and ``requires_grad`` flags are restored.

    Parameters
    ----------
    model : nn.Module
        Any model; its weights must be materialised (not on the meta device).
    data : tensor, array, tuple, list, dict, Dataset, DataLoader or iterable
        A tensor/array of inputs; ``(X, y)`` or ``[X, y]``; a dict of per-sample arrays, passed to
        the model as keyword arguments (e.g. ``input_ids``, ``attention_mask``); a Dataset (not
        shuffled); a DataLoader or any iterable of batches (tensors, ``(x, y, ...)`` or dicts).
        Floating inputs are cast to the model's dtype (float64 numpy arrays included); labels
        may be numbers or strings.
    layers : str, list of str or callable
        Module names, glob patterns (``"layer1.*"``), a predicate ``(name, module) -> bool`` or a
        preset: ``"blocks"`` (residual blocks; for transformers the stack of repeated blocks,
        BERT's ``encoder.layer.N``, GPT-2's ``h.N``, LLaMA's ``layers.N``; else top-level stages),
        ``"convs"``, ``"relus"``, ``"modularity"`` (Lu et al.: stem conv + every residual block;
        every conv for VGG).
    reduce : str, callable or None
        ``"flatten"`` (N, prod(...)) — Lu et al.'s features; ``"spatial_mean"`` (channels-first
        maps: mean over every axis after the channel axis); ``"token_mean"`` (mean over tokens,
        padding excluded when the batch carries an ``attention_mask``); ``"first_token"`` (CLS);
        ``"last_token"`` (the last non-padding token); ``"mean"`` (``"spatial_mean"`` where that
        is unambiguous, an error on 3-D outputs); None (the raw output); or a callable
        ``output -> (N, ...)`` (given ``attention_mask=`` when it takes that keyword).
    output : int, str, dict or None
        For modules returning tuples, dicts or Hugging Face ``ModelOutput``s: the index or key of
        the tensor to keep (or ``{layer or glob: index or key}``); None keeps the first tensor
        (a transformer block's hidden states).
    batch_axis : int or dict
        The axis of the samples in each output (``{layer or glob: axis}`` for some layers), e.g. 1
        for ``nn.TransformerEncoderLayer(batch_first=False)``'s (T, N, D) outputs.
    inputs : bool
        Also keep each layer's input (its first positional tensor argument or its
        ``hidden_states`` keyword) under ``f"{name}:input"``, with the same reducer and batch axis.
    label_key : str or None
        The key of the labels in dict batches (not passed to the model); ``"auto"`` takes
        ``"labels"`` or ``"label"`` when present; None keeps no labels.
    max_samples : int, optional
        Stop after this many samples.
    device : str or torch.device, optional
        Where the forward runs (default: where the model is); the model must already be there.
    store : str or Path, optional
        A folder: each layer streams to one ``.npy`` file there (peak memory near one batch). A
        complete store of the same capture (same model weights, layers, options and every input
        and label, checked by hash without running the model) is reused after its checksums are
        verified; a store of another capture is an error. A capture killed half-way resumes from
        its last committed batch. Concurrent captures into one folder wait for each other
        (same capture) or fail (another capture).
    progress : bool
        Show a progress bar.
    batch_size : int
        Samples per forward pass (for tensors, arrays, dicts and Datasets).

    Returns
    -------
    Activations
        Layer name -> float32 array (N, ...), in the order the layers first fired, with ``labels``
        when the data carries them.

    Raises
    ------
    ValueError
        For a bad ``batch_size``, an unknown layer, a layer that never fires, an output whose
        sample axis does not hold the batch's samples, a model on the meta device or on another
        device, a CUDA device without a GPU, a store of another capture or a damaged store.
    TypeError
        For a module output or data form that holds no tensor to capture.
    OSError
        When the disk fills up while writing a store (its partial files are deleted).

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> _ = torch.manual_seed(0)
    >>> model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Conv2d(4, 2, 3))
    >>> X, y = torch.randn(10, 1, 8, 8), torch.arange(10) % 2
    >>> acts = capture_activations(model, (X, y), layers=["0", "2"], progress=False)
    >>> acts["0"].shape, acts["2"].shape, acts.labels[:4].tolist()
    ((10, 144), (10, 32), [0, 1, 0, 1])
    >>> capture_activations(model, X, layers="2", reduce="spatial_mean", progress=False)["2"].shape
    (10, 2)
    """
    _check_options(batch_size, max_samples)
    device = _run_device(model, device)
    rec = ActivationRecorder(model, layers, reducer=reduce, inputs=inputs, output=output, batch_axis=batch_axis)
    _, total = iter_batches(data, batch_size, label_key)  # checks the data form before anything runs
    if max_samples is not None and total is not None:
        total = min(total, max_samples)
    meta = {"model": type(model).__name__, "reduce": rec.reducer.name, "max_samples": max_samples,
            "inputs": rec.inputs}
    if store is not None:
        config = _config(model, rec, output, batch_axis, label_key, max_samples)
        return _capture_to_store(model, data, rec, Path(store), config=config, device=device, total=total,
                                 batch_size=batch_size, label_key=label_key, max_samples=max_samples,
                                 progress=progress, meta=meta)
    target = GrowingArrays(total)
    labels, n = _forward_all(model, rec, iter_batches(data, batch_size, label_key)[0], target, device,
                             total=total, max_samples=max_samples, progress=progress)
    return Activations(target.result(n), labels, meta=meta)

