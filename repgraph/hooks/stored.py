"""Capture into a store: reuse a complete store of the same capture (checked without running the
model), otherwise take the lock, resume or start the capture in the private folder, publish."""
from __future__ import annotations

import errno
import json
import os
import socket
import sys
from pathlib import Path

import numpy as np

from .activations import Activations
from .batches import iter_batches
from .fingerprint import DataDigest, callable_token, model_digest, modules_digest, value_token
from .forward import DataChanged, forward_all
from .recorder import ActivationRecorder
from ..storage.store import (StoreLock, StoreWriter, partial_path, read_manifest, remove_abandoned_folders,
                             resumable, store_folder)
from .writer_thread import StoreWriterThread

_DISK_FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


def _as_json(value):
    """A value JSON cannot hold, as JSON: a numpy number as the Python number, anything else as
    its ``value_token``."""
    return value.item() if isinstance(value, (np.integer, np.floating, np.bool_)) else value_token(value)


def capture_config(model, rec: ActivationRecorder, output, batch_axis, label_key, max_samples) -> dict:
    """Everything but the data that identifies a capture (the data hash is added when it is known),
    in the form the manifest gives back (JSON: a tuple as a list, ``numpy.int64(3)`` as 3), so that a
    store of the same capture compares equal."""
    spec = rec.reducer.spec
    # a flat conv group is named by its conv: its span tells it from the conv alone
    layers = [name if ends == (name, name) else f"{name} ({ends[0]} .. {ends[1]})" for name, ends in rec.ends.items()]
    config = {"model": model_digest(model), "modules": modules_digest(model), "layers": layers,
              "reduce": spec if spec is None or isinstance(spec, str) else callable_token(spec),
              "output": value_token(output), "batch_axis": value_token(batch_axis), "inputs": rec.inputs,
              "label_key": label_key, "max_samples": max_samples, "dtype": "float32"}
    return json.loads(json.dumps(config, default=_as_json))


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
           "modules": "modules (what the model computes with its weights: its module tree, a module's "
                      "settings such as an activation's slope or a conv's padding, an attribute its forward "
                      "reads, the code of its methods, or the forward hooks and pre-hooks on it)",
           "data": "data (inputs or labels)"}
    listed = ", ".join(why.get(d, d) for d in differ)
    return ValueError(
        f"store={str(folder)!r} holds activations of another capture; they differ in: {listed}. A store "
        "never hands back another capture's activations. To keep both, pass another folder as store=; to "
        f"replace it, delete it (shutil.rmtree({str(folder)!r})); to reuse it, capture the same model, built "
        "the same way and with the same hooks, on the same data (seed the model with torch.manual_seed "
        "before building it, or load its saved weights).")


def _reuse(folder: Path, manifest: dict, config: dict, batches, max_samples) -> Activations:
    """The published store at ``folder`` when it holds this capture (same configuration, same data
    hash, intact files); else a ValueError saying what differs."""
    if not manifest.get("complete"):
        raise ValueError(f"store={str(folder)!r} holds an incomplete manifest; delete the folder.")
    if manifest.get("fingerprint") is None:
        raise ValueError(
            f"store={str(folder)!r} holds activations saved with Activations.save: nothing records which "
            "model, layers and data made them, so they are never taken for this capture's. To keep them, pass "
            f"another folder as store=; to capture here, delete it (shutil.rmtree({str(folder)!r})).")
    stored = manifest["fingerprint"]
    differ = [key for key in config if stored.get(key) != config[key]]
    if differ:
        raise _other_capture(folder, differ)
    data = _hash_data(batches, max_samples)
    if data != stored.get("data"):
        raise _other_capture(folder, ["data"])
    return Activations.load(folder, verify=True)


def _published(folder: Path) -> dict | None:
    manifest = read_manifest(folder)
    if manifest is None and folder.is_dir() and any(folder.iterdir()):
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


def reuse_or_lock(folder: Path, config: dict, data, *, batch_size, label_key, max_samples, progress):
    """``(activations, None)`` when ``folder`` holds a published store of this capture (also one
    published by another writer of it that we waited for; ``_reuse`` verifies the data and the
    checksums), else ``(None, lock)`` with the folder's lock held, for the caller to write, publish
    and release; the folders of abandoned captures by several writers are deleted then
    (``remove_abandoned_folders``). A published store is never rewritten, so it is read without
    the lock. ``folder`` must be ``store_folder``'s (checked, absolute: one lock for every spelling)."""
    manifest = _published(folder)
    if manifest is None:
        lock = StoreLock(folder)
        _wait_or_refuse(folder, lock, config, progress)
        manifest = _published(folder)
        if manifest is None:
            remove_abandoned_folders(folder)
            return None, lock
        lock.release()
    return _reuse(folder, manifest, config, iter_batches(data, batch_size, label_key)[0], max_samples), None


def capture_to_store(model, data, rec, folder: Path, *, config, device, total, batch_size, label_key,
                     max_samples, progress, meta) -> Activations:
    """``capture_activations(store=folder)``: reuse, wait, resume or write, then publish."""
    folder = store_folder(folder)
    reused, lock = reuse_or_lock(folder, config, data, batch_size=batch_size, label_key=label_key,
                                 max_samples=max_samples, progress=progress)
    if reused is not None:
        return reused
    try:
        partial = partial_path(folder)
        writer = StoreWriter(partial, config, resumable(partial, config))
        try:
            try:
                digest = DataDigest()
                with StoreWriterThread(writer) as target:
                    labels, n = forward_all(model, rec, iter_batches(data, batch_size, label_key)[0], target,
                                             device, total=total, max_samples=max_samples, progress=progress,
                                             digest=digest, skip=writer.committed, prefix=writer.data_prefix,
                                             keys=writer.keys or None, commit=target.commit)
            except DataChanged:  # the interrupted capture saw other data: start again
                if iter(data) is data:
                    raise ValueError(f"store={str(folder)!r} holds an interrupted capture of other data and "
                                     "data is a one-shot iterator; delete the folder "
                                     f"{str(partial)!r} and capture again.") from None
                writer.discard()
                writer = StoreWriter(partial, config)
                digest = DataDigest()
                with StoreWriterThread(writer) as target:
                    labels, n = forward_all(model, rec, iter_batches(data, batch_size, label_key)[0], target,
                                             device, total=total, max_samples=max_samples, progress=progress,
                                             digest=digest, commit=target.commit)
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
