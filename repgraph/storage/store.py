"""The activation store on disk, and how it is written so that it never hands back wrong data.

Layout of a store ``acts/``: one plain ``.npy`` file per layer (``layer_0000.npy``, …,
memory-mappable with ``numpy.load(mmap_mode="r")``), ``labels.npy`` when there are labels, and
``manifest.json`` naming each layer's file, shape, dtype and CRC-32 checksums, the capture's
fingerprint and a checksum of the manifest itself.

Writing: a writer takes the lock ``acts.lock`` (next to the store), writes into the private
folder ``acts.partial/`` and publishes it with one atomic rename to ``acts/``, so a reader sees no
store or a complete one. After every batch the partial folder's manifest records the committed
sample count, each file's CRC-32 up to it and the data hash up to it; a killed capture resumes
from there (files are cut back to the committed rows). A published store is never modified.

Each file's checksums are a list of row ranges (``chunks``), so a store can also be assembled
from shards written by several processes: under ``StoreLock``, ``remove_abandoned_folders(store)``
and create the capture's own ``capture_folder(store, token)`` (a fresh token) with each layer's
file preallocated at its final size (``npy_stream.npy_header`` then ``truncate``); each worker
opens the files by path (never creating them), writes its rows at ``HEADER_BYTES + start *
row_bytes`` and returns their CRC-32 (``zlib.crc32``); once every shard is in, re-read each
shard's rows and compare their CRC-32 with the returned one, ``write_manifest(folder,
complete_manifest([file_entry(name, file, shape, dtype, chunks), ...], labels, fingerprint,
meta))`` and ``publish(folder, store)``; on any failure delete the folder before releasing the
lock. Workers of an abandoned capture may still be running: they can only write into their own
capture's folder, which is gone or about to be deleted, never into another capture's files.
"""
from __future__ import annotations

import glob
import json
import os
import shutil
import socket
import zlib
from pathlib import Path

import numpy as np
import torch

from .npy_stream import HEADER_BYTES, NpyStreamWriter, crc32_of, read_header, row_bytes

MANIFEST = "manifest.json"
FORMAT = "repgraph-activations/2"
LABELS = "labels.npy"


class DamagedStoreError(ValueError):
    """A store whose manifest or files do not match their checksums, sizes or headers."""


def layer_filename(index: int) -> str:
    return f"layer_{index:04d}.npy"


def partial_path(store: Path) -> Path:
    """The private folder a capture into ``store`` is written in before it is published."""
    return store.with_name(store.name + ".partial")


def lock_path(store: Path) -> Path:
    return store.with_name(store.name + ".lock")


def store_folder(path, argument: str = "store", write: bool = True) -> Path:
    """``path`` (``~`` expanded) as the absolute folder of a store, after checking it can be one:
    not a file, not under a file and, to ``write`` it, not the current folder or one above it (a
    store is published by renaming a folder onto it). ``argument`` names the parameter in the
    ``ValueError``; an absolute path also gives every spelling of a folder one lock."""
    folder = Path(os.path.abspath(Path(path).expanduser()))
    if folder.is_file():
        raise ValueError(f"{argument}={str(path)!r} is a file, not a folder; a store is a folder (pass the "
                         "folder that holds manifest.json, or a new folder's path).")
    for above in folder.parents:
        if above.exists() and not above.is_dir():
            raise ValueError(f"{argument}={str(path)!r} lies under {str(above)!r}, which is a file, not a "
                             "folder; pass a path under a folder.")
    if write and (folder == Path.cwd() or folder in Path.cwd().parents):
        raise ValueError(f"{argument}={str(path)!r} is the current folder or one above it; a store is "
                         "published by renaming a folder onto its path: pass a folder of its own, e.g. "
                         f"{argument}='acts'.")
    return folder


def _json_problem(value, where: str) -> str | None:
    """Where in ``value`` a value JSON cannot hold is, and its type; None when there is none."""
    if isinstance(value, dict):
        return next((p for k, v in value.items() if (p := _json_problem(v, f"{where}[{k!r}]"))), None)
    if isinstance(value, (list, tuple)):
        return next((p for i, v in enumerate(value) if (p := _json_problem(v, f"{where}[{i}]"))), None)
    if value is None or isinstance(value, (str, int, float, np.integer, np.floating, np.bool_)):
        return None
    return f"{where} holds a value of type {type(value).__name__}"


def _manifest_crc(manifest: dict) -> int:
    body = {k: v for k, v in manifest.items() if k != "manifest_crc32"}
    return zlib.crc32(json.dumps(body, sort_keys=True).encode())


def write_manifest(folder: Path, manifest: dict):
    """Write the manifest (with its own checksum) atomically: temporary file + rename."""
    problem = _json_problem(manifest, "manifest")
    if problem is not None:
        raise TypeError(f"{problem}, which a store's JSON manifest cannot hold; keep to numbers, strings, "
                        "lists and dicts (e.g. meta={'epochs': 3}, str(...) for anything else).")
    # the form it will be read back in (numpy scalars as the Python numbers they hold)
    manifest = json.loads(json.dumps(manifest, default=lambda v: v.item()))
    manifest["manifest_crc32"] = _manifest_crc(manifest)
    tmp = folder / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=1))
    os.replace(tmp, folder / MANIFEST)


def read_manifest(folder: Path) -> dict | None:
    """The manifest of ``folder``, or None when it has none; ``DamagedStoreError`` naming the
    folder when it is not valid JSON, not a repgraph manifest or does not match its checksum."""
    path = Path(folder) / MANIFEST
    if not path.is_file():
        return None
    fix = "delete the folder and capture again"
    try:
        manifest = json.loads(path.read_bytes())
    except (ValueError, UnicodeDecodeError) as err:
        raise DamagedStoreError(f"Activation store {folder}: {MANIFEST} is damaged (not valid JSON: {err}); "
                                f"{fix}.") from None
    if not isinstance(manifest, dict) or not str(manifest.get("format", "")).startswith("repgraph-activations/"):
        raise DamagedStoreError(f"Activation store {folder}: {MANIFEST} is not a repgraph activation manifest; {fix}.")
    if manifest["format"] != FORMAT:
        raise ValueError(f"Activation store {folder} was written by another version of repgraph (format "
                         f"{manifest['format']}, this one reads {FORMAT}); {fix}.")
    if manifest.get("manifest_crc32") != _manifest_crc(manifest):
        raise DamagedStoreError(f"Activation store {folder}: {MANIFEST} is damaged (its content does not match "
                                f"its checksum); {fix}.")
    return manifest


def damaged_file(folder, name: str, file: str, problem: str) -> DamagedStoreError:
    """The error for one damaged file of the store in ``folder``: it names the store, the layer
    ``name`` (or ``'labels'``), the ``file`` and the ``problem``, and says what to do."""
    return DamagedStoreError(f"Activation store {folder}: layer {name!r}, file {file}: {problem}. "
                             "The store is damaged: delete the folder and capture again.")


def file_entries(manifest: dict) -> list[tuple[str, dict]]:
    """``(layer name or 'labels', entry)`` for every data file a manifest lists."""
    entries = [(e["name"], e) for e in manifest["layers"]]
    return entries + ([("labels", manifest["labels"])] if manifest.get("labels") else [])


def check_files(folder: Path, manifest: dict, verify: bool):
    """Check every file of a complete store: present, a readable ``.npy`` header matching the
    manifest's shape and dtype, the right size and (``verify``) the CRC-32 of each chunk of rows.

    Raises ``DamagedStoreError`` naming the store, the layer and the file.
    """
    for name, entry in file_entries(manifest):
        path = folder / entry["file"]

        def damaged(problem):
            raise damaged_file(folder, name, entry["file"], problem)
        if not path.is_file():
            damaged("the file is missing")
        try:
            shape, dtype, header = read_header(path)
        except (ValueError, OSError, SyntaxError) as err:
            damaged(f"its .npy header is damaged ({err})")
        expected_shape, expected_dtype = tuple(entry["shape"]), np.dtype(entry["dtype"])
        if shape != expected_shape or dtype != expected_dtype or header != entry["header_bytes"]:
            damaged(f"its header says {dtype} {shape}, the manifest {expected_dtype} {expected_shape}")
        stride = row_bytes(dtype, shape[1:])
        size, expected = path.stat().st_size, header + shape[0] * stride
        if size != expected:
            damaged(f"it holds {size} bytes but {expected} are expected "
                    f"({'truncated' if size < expected else 'bytes were appended'})")
        chunks = sorted(entry["chunks"], key=lambda c: c["start"])
        if [c["start"] for c in chunks] != [0] + [c["stop"] for c in chunks[:-1]] or \
                (chunks[-1]["stop"] if chunks else 0) != shape[0]:
            damaged("its checksums do not cover its rows")
        if verify:
            for c in chunks:
                got = crc32_of(path, header + c["start"] * stride, (c["stop"] - c["start"]) * stride)
                if got != c["crc32"]:
                    damaged(f"rows {c['start']}:{c['stop']} do not match their CRC-32 (the file was changed "
                            "or corrupted)")


class StoreLock:
    """An exclusive lock on ``store`` (the file ``store.lock``), held by one writer at a time and
    released by the operating system when its process dies, also by kill -9.

    POSIX systems use ``fcntl.flock`` (no dependency); elsewhere the optional ``filelock``
    package (``pip install repgraph[filelock]``).
    """

    def __init__(self, store: Path):
        self.path = lock_path(store)
        self._handle = None

    def acquire(self, blocking: bool = True) -> bool:
        try:
            return self._acquire(blocking)
        except OSError as err:
            if isinstance(err, BlockingIOError):
                raise
            raise type(err)(err.errno, f"cannot create the store's lock file {str(self.path)!r} "
                                       f"({err.strerror}); the folder the store is in must be writable "
                                       "and the lock path free: pass another store folder.") from err

    def _acquire(self, blocking: bool) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            import fcntl
        except ImportError:  # Windows
            try:
                import filelock
            except ImportError:
                raise ImportError("Writing an activation store on this system needs the optional package "
                                  "filelock: pip install repgraph[filelock]") from None
            lock = filelock.FileLock(str(self.path))
            try:
                lock.acquire(timeout=-1 if blocking else 0)
            except filelock.Timeout:
                return False
            self._handle = lock
            return True
        handle = open(self.path, "a+")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            handle.close()
            return False
        self._handle = handle
        return True

    def release(self):
        if self._handle is not None:
            if hasattr(self._handle, "release"):
                self._handle.release()
            else:
                self._handle.close()  # closing the file releases the flock
            self._handle = None


def file_entry(name: str | None, file: str, shape, dtype, chunks: list[dict]) -> dict:
    """A manifest entry for one data file (``name`` None for the labels): its ``shape``, ``dtype``
    and CRC-32 ``chunks`` ``[{"start", "stop", "crc32"}]`` of data rows covering ``0:shape[0]``
    (one per writer: a single stream, or each shard of a capture on several workers)."""
    entry = {"file": file, "shape": [int(d) for d in shape], "dtype": np.lib.format.dtype_to_descr(np.dtype(dtype)),
             "header_bytes": HEADER_BYTES, "chunks": chunks}
    return entry if name is None else {"name": name, **entry}


def _stream_entry(name: str | None, file: str, writer: NpyStreamWriter) -> dict:
    return file_entry(name, file, (writer.n_rows, *(writer.row_shape or ())), writer.dtype or np.float32,
                      [{"start": 0, "stop": writer.n_rows, "crc32": writer.crc32}])


def complete_manifest(layers: list[dict], labels: dict | None, fingerprint: dict | None, meta: dict) -> dict:
    """The manifest of a complete store from its files' ``file_entry``s."""
    n = layers[0]["shape"][0] if layers else 0
    return {"format": FORMAT, "complete": True, "n_samples": n, "fingerprint": fingerprint,
            "layers": layers, "labels": labels, "meta": meta}


def publish(partial: Path, target: Path, replace: bool = False):
    """Rename the finished folder ``partial`` (its complete manifest written) to ``target`` in one
    step; a store already at ``target`` is replaced only with ``replace`` (moved aside first,
    then deleted; memory maps of its files stay valid)."""
    old = None
    if target.exists() and any(target.iterdir()):
        if not replace:
            raise FileExistsError(f"{target} appeared while this store was written.")
        old = target.with_name(f"{target.name}.old-{os.getpid()}")
        os.rename(target, old)
    os.rename(partial, target)  # onto a missing or empty folder: one atomic step
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def resumable(partial: Path, fingerprint: dict) -> dict | None:
    """The progress manifest of an interrupted capture in ``partial`` when it is the same capture
    (``fingerprint``) and its files still hold their committed rows intact; else None."""
    try:
        manifest = read_manifest(partial)
    except ValueError:
        return None
    if manifest is None or manifest.get("complete") or manifest.get("fingerprint") != fingerprint:
        return None
    committed = manifest.get("committed", 0)
    for _, entry in file_entries(manifest):
        path, dtype = partial / entry["file"], np.dtype(entry["dtype"])
        n_bytes = committed * row_bytes(dtype, entry["shape"][1:])
        if not path.is_file() or path.stat().st_size < HEADER_BYTES + n_bytes or \
                crc32_of(path, HEADER_BYTES, n_bytes) != entry["chunks"][0]["crc32"]:
            return None
    return manifest


class StoreWriter:
    """Writes a store into the private folder ``partial`` and publishes it.

    ``write(key, start, value)`` appends rows (float32 for tensors, arrays as they are);
    ``commit(n, data)`` records ``n`` committed samples and the data hash up to them;
    ``publish(target, ...)`` finishes the files, writes the manifest and renames the folder.
    With ``resume`` (a progress manifest from ``resumable``) the files are continued after the
    committed rows.
    """

    def __init__(self, partial: Path, fingerprint: dict | None, resume: dict | None = None):
        self.folder, self.fingerprint = partial, fingerprint
        self.streams: dict[str, tuple[str, NpyStreamWriter]] = {}
        self.committed, self.data_prefix = 0, None
        if resume is None:
            if partial.exists():
                shutil.rmtree(partial)
            partial.mkdir(parents=True)
            self._progress()
            return
        self.committed, self.data_prefix = resume["committed"], resume.get("data_prefix")
        for entry in resume["layers"]:
            self.streams[entry["name"]] = (entry["file"], NpyStreamWriter(
                partial / entry["file"], rows=self.committed, dtype=entry["dtype"], row_shape=entry["shape"][1:],
                crc32=entry["chunks"][0]["crc32"]))

    @property
    def keys(self) -> list[str]:
        return list(self.streams)

    def write(self, key: str, start: int, value):
        if key not in self.streams:
            file = layer_filename(len(self.streams))
            self.streams[key] = (file, NpyStreamWriter(self.folder / file))
        writer = self.streams[key][1]
        if start != writer.n_rows:
            raise RuntimeError(f"Layer {key!r}: rows {start}: written after {writer.n_rows} rows.")
        if isinstance(value, torch.Tensor):
            value = value.detach().to(device="cpu", dtype=torch.float32).numpy()
        try:
            writer.append(value)
        except ValueError as err:
            raise ValueError(f"Layer {key!r}: {err} Every batch must give each layer the same shape per "
                             "sample (pad sequences to one length, or use a token reducer).") from None

    def _progress(self, data=None):
        layers = [_stream_entry(key, file, w) for key, (file, w) in self.streams.items()]
        write_manifest(self.folder, {"format": FORMAT, "complete": False, "fingerprint": self.fingerprint,
                                     "committed": self.committed, "data_prefix": data, "layers": layers,
                                     "writer": {"pid": os.getpid(), "host": socket.gethostname()}})

    def commit(self, n_samples: int, data: dict | None):
        """Record that the first ``n_samples`` rows of every file are written (flushed to the OS)."""
        for _, writer in self.streams.values():
            writer.flush()
        self.committed, self.data_prefix = n_samples, data
        self._progress(data)

    def publish(self, target: Path, labels: np.ndarray | None, meta: dict, data: dict | None = None,
                replace: bool = False):
        """Finish every file, write the complete manifest and rename the folder to ``target``
        (an existing store there is replaced only with ``replace``)."""
        layers = []
        for key, (file, writer) in self.streams.items():
            writer.close()
            layers.append(_stream_entry(key, file, writer))
        labels_entry = None
        if labels is not None:
            writer = NpyStreamWriter(self.folder / LABELS)
            writer.append(labels)
            writer.close()
            labels_entry = _stream_entry(None, LABELS, writer)
        fingerprint = None if self.fingerprint is None else {**self.fingerprint, "data": data}
        write_manifest(self.folder, complete_manifest(layers, labels_entry, fingerprint, meta))
        publish(self.folder, target, replace)

    def close_files(self):
        """Close every file, keeping the folder (a later capture resumes from its last commit)."""
        for _, writer in self.streams.values():
            writer.abort()

    def discard(self):
        """Close every file and delete the private folder."""
        self.close_files()
        shutil.rmtree(self.folder, ignore_errors=True)


def capture_folder(store: Path, token: str) -> Path:
    """The private folder of one capture into ``store`` by several writers, named by ``token``
    (unique to that capture, e.g. ``uuid.uuid4().hex``): no other capture ever writes there, and
    its writers open its files by path, so a writer left over from an abandoned capture fails
    once the folder is deleted instead of writing into another capture's files."""
    return store.with_name(f"{store.name}.partial-{token}")


def remove_abandoned_folders(store: Path):
    """Delete every ``capture_folder`` of ``store``: the folders of captures by several writers
    that were abandoned before they published (their client failed or was killed). Call it only
    with ``StoreLock(store)`` held: a live capture holds the lock from before it creates its
    folder until it has published or deleted it, so none of these folders is a live capture's.
    Writers of an abandoned capture still running then fail to open its files, or write into
    files already deleted."""
    for folder in store.parent.glob(glob.escape(store.name) + ".partial-*"):
        shutil.rmtree(folder, ignore_errors=True)
