"""Where a task finds a layer's rows: a store's file (``LayerFile``: the task reads its own rows on
the worker; for a store's path, ``open_store``, or an ``Activations`` loaded from a store) or an
in-memory array sent to the cluster once (``share``). Every distributed analysis turns its input
into ``LayerSource``s here."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .store_arrays import LayerFile, StoreArrays, open_store


@dataclass(frozen=True)
class LayerSource:
    """One layer as tasks see it: its ``layer`` key, the ``name`` errors use, its ``shape`` and
    ``data`` (a ``LayerFile`` or a runner handle of the array; either way ``data[a:b]`` on the
    worker gives rows a…b−1 as numpy)."""

    layer: str
    name: str
    shape: tuple
    data: object

    @property
    def n(self) -> int:
        return self.shape[0]


def as_store(acts):
    """``acts`` as given, or the ``StoreArrays`` of a store folder named by a path."""
    return open_store(acts) if isinstance(acts, (str, Path)) else acts


def array_source(layer: str, name: str, array, runner) -> LayerSource:
    """A source for one array: a ``LayerFile`` as it is, else the array shared with the cluster once."""
    if isinstance(array, LayerFile):
        return LayerSource(layer, name, array.shape, array)
    if type(array).__module__.startswith("dask"):
        raise TypeError(f"{name} is a dask array; pass the store it came from (open_store(path) or its "
                        "path) so workers read the files, or compute it first.")
    if isinstance(array, Mapping):
        raise TypeError(f"{name} must be a numpy array or a torch tensor, got {type(array).__name__}.")
    if isinstance(array, torch.Tensor):
        array = array.detach().cpu()
        # numpy has no bfloat16: such tensors travel as they are (every kernel takes tensors, and
        # HRank's tolerance follows the maps' own precision)
        array = array if array.dtype == torch.bfloat16 else array.numpy()
    else:
        array = np.asarray(array)
    if array.ndim < 1:
        raise ValueError(f"{name} is a scalar; an activation array needs a sample axis (N, ...).")
    return LayerSource(layer, name, array.shape, runner.share(array))


def layer_sources(acts, runner, *, what: str = "acts", suffix: str = "") -> tuple[list[LayerSource], object]:
    """``(sources, labels)`` of every layer of ``acts``: an ``Activations`` or mapping layer ->
    array, a ``StoreArrays``, or a store's path. Source names read ``layer 'x'{suffix}``."""
    acts = as_store(acts)
    if not isinstance(acts, Mapping) or len(acts) == 0:
        raise TypeError(f"{what} must be a non-empty Activations, mapping layer -> array (N, ...), "
                        "open_store(path) or a store's path.")
    if isinstance(acts, StoreArrays):
        arrays = acts.files
    else:  # an Activations loaded from a store names its files: workers read those
        stored = getattr(acts, "files", None) or {}
        arrays = {layer: LayerFile.open(stored[layer]) if layer in stored else acts[layer] for layer in acts}
    sources = [array_source(layer, f"layer {layer!r}{suffix}", arrays[layer], runner) for layer in acts]
    return sources, getattr(acts, "labels", None)
