"""The capture loop: every batch through the model once, with a recorder writing each layer's
reduced output into a target (in-memory arrays or a store writer)."""
from __future__ import annotations

import numpy as np
import torch
from tqdm.auto import tqdm

from .._warnings import warn_user
from .batches import input_dtype
from .fingerprint import DataDigest
from .modes import evaluating
from .recorder import ActivationRecorder
from .transfer import HostTransfer


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


class DataChanged(Exception):
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


def forward_all(model, rec, batches, target, device, *, total, max_samples, progress,
                 digest: DataDigest | None = None, skip: int = 0, prefix: dict | None = None,
                 keys: list[str] | None = None, commit=None):
    """Run every batch through ``model`` with ``rec`` writing into ``target``; the first ``skip``
    samples (committed by an interrupted capture) are only hashed and their labels kept, and
    their hash must equal ``prefix``. Returns ``(labels, n_samples)``."""
    dtype = input_dtype(model)
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
                    raise DataChanged
                batch = batch.part(head.n, batch.n)
            if batch.n > 0:
                if digest is not None:
                    digest.update(batch)
                labels.add(batch.labels)
                rec.n_samples = batch.n
                transfer.begin(seen)
                batch.run(model, device, dtype, first=index == 0)
                while rec.reducer.pending:
                    warn_user(*rec.reducer.pending.pop(0))
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
        raise DataChanged
    return labels.result(), seen
