"""Where a task finds a layer's rows, one interface for every analysis: a store's file
(``LayerFile``: the task reads its own rows wherever it runs; for a store's path, a mapping with
``files`` such as ``open_store``'s, or an ``Activations`` loaded from a store) or an in-memory
array (shared with the runner once; in process, the array itself). Every analysis turns its input
into ``LayerSource``s here, and every kernel reads ``source.data[a:b]``."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .._arrays import check_feature_map_shape
from ..storage.layer_file import LayerFile, store_files


@dataclass(frozen=True)
class LayerSource:
    """One layer as tasks see it: its ``layer`` key, the ``name`` errors use, its ``shape``,
    ``data`` (a ``LayerFile``, the array itself in process, or a runner handle of the array;
    either way ``data[a:b]`` where the task runs gives rows a…b−1) and the ``device`` type of an
    in-process tensor (``"cpu"`` otherwise); ``in_memory``: ``data`` is the array itself, in this
    process (so a task may read it whole without a copy)."""

    layer: str
    name: str
    shape: tuple
    data: object
    device: str = "cpu"
    in_memory: bool = False

    @property
    def n(self) -> int:
        return self.shape[0]


class StoreFiles(dict):
    """A complete store's layers as ``LayerFile``s (layer -> file, in the store's order), with its
    ``labels`` and ``files`` (itself). The files carry the manifest's checksums: an analysis given
    a store's path checks every row it reads against them, where it reads them (on a worker, or in
    process), so a damaged store raises ``DamagedStoreError`` instead of giving wrong numbers; in
    process this costs one more pass over each file once per process, as on each worker."""

    def __init__(self, path):
        files, self.labels, self.meta = store_files(path)
        super().__init__(files)
        self.files = self


def as_store(acts, what: str = "acts"):
    """``acts`` as given, or the ``StoreFiles`` of a store folder named by a path (its errors name
    the argument ``what``)."""
    if not isinstance(acts, (str, Path)):
        return acts
    try:
        return StoreFiles(acts)
    except ValueError as err:  # DamagedStoreError stays one
        raise type(err)(f"{what}: {err}") from None


def array_source(layer: str, name: str, array, runner) -> LayerSource:
    """A source for one array: a ``LayerFile`` as it is; in process the array itself (a tensor
    stays on its device, a memory map stays mapped); else the array shared with the cluster once
    (tensors as numpy on the CPU, bfloat16 ones as tensors)."""
    if isinstance(array, LayerFile):
        return LayerSource(layer, name, array.shape, array)
    if type(array).__module__.startswith("dask"):
        raise TypeError(f"{name} is a dask array; pass the store it came from (open_store(path) or its "
                        "path) so workers read the files, or compute it first.")
    if isinstance(array, Mapping):
        raise TypeError(f"{name} must be a numpy array or a torch tensor, got {type(array).__name__}.")
    if isinstance(array, torch.Tensor) and runner.in_process:
        if array.ndim < 1:
            raise ValueError(f"{name} is a scalar; an activation array needs a sample axis (N, ...).")
        return LayerSource(layer, name, tuple(array.shape), array.detach(), array.device.type, True)
    if isinstance(array, torch.Tensor):
        array = array.detach().cpu()
        # numpy has no bfloat16: such tensors travel as they are (every kernel takes tensors, and
        # HRank's tolerance follows the maps' own precision)
        array = array if array.dtype == torch.bfloat16 else array.numpy()
    elif not isinstance(array, np.ndarray):  # a memmap is an ndarray: it stays mapped
        array = np.asarray(array)
    if array.ndim < 1:
        raise ValueError(f"{name} is a scalar; an activation array needs a sample axis (N, ...).")
    return LayerSource(layer, name, array.shape, runner.share(array), in_memory=runner.in_process)


def _here(acts, layer, runner) -> bool:
    """Whether an in-process runner reads ``acts[layer]`` itself (an array in this process, not a
    store's lazy dask array or file)."""
    return runner.in_process and not isinstance(acts, StoreFiles) and \
        isinstance(acts[layer], (np.ndarray, torch.Tensor))


def _layer_file(file) -> LayerFile:
    return file if isinstance(file, LayerFile) else LayerFile.open(file)


def layer_sources(acts, runner, *, what: str = "acts", suffix: str = "") -> tuple[list[LayerSource], object]:
    """``(sources, labels)`` of every layer of ``acts``: an ``Activations`` or mapping layer ->
    array, ``open_store``'s arrays, or a store's path. Source names read ``layer 'x'{suffix}``."""
    acts = as_store(acts, what)
    if not isinstance(acts, Mapping) or len(acts) == 0:
        raise TypeError(f"{what} must be a non-empty Activations, mapping layer -> array (N, ...), "
                        "open_store(path) or a store's path.")
    # a store's layers (open_store's, or an Activations loaded from a store) name their files:
    # tasks on a cluster read those; in process a loaded store's memory maps are read as they are
    stored = getattr(acts, "files", None) or {}
    arrays = {layer: _layer_file(stored[layer]) if layer in stored and not _here(acts, layer, runner) else acts[layer]
              for layer in acts}
    sources = [array_source(layer, f"layer {layer!r}{suffix}", arrays[layer], runner) for layer in acts]
    return sources, getattr(acts, "labels", None)


def compared_sources(acts, acts2, runner) -> tuple[list[LayerSource], list[LayerSource], int]:
    """``(xs, ys, n)``: the sources of ``acts`` and of ``acts2`` (none when it is None; names read
    ``layer 'x' (acts2)``) for a layer-by-layer comparison, and their common sample count N, with a
    ``ValueError`` naming every layer's N when they differ."""
    xs, _ = layer_sources(acts, runner)
    ys = [] if acts2 is None else layer_sources(acts2, runner, what="acts2", suffix=" (acts2)")[0]
    sizes = {s.name: s.n for s in xs + ys}
    if len(set(sizes.values())) > 1:
        raise ValueError(f"All layers must hold the same samples (same N); got {sizes}.")
    return xs, ys, xs[0].n


def feature_map_sources(fmaps, runner, **shape_rules) -> tuple[list[LayerSource], bool]:
    """``(sources, per_layer)``: one source for one layer's maps, or one per layer of a mapping or
    store (``per_layer``), each shape checked here with ``check_feature_map_shape(**shape_rules)``,
    so a wrong shape is one clear error before any task runs."""
    fmaps = as_store(fmaps, "fmaps")
    per_layer = isinstance(fmaps, Mapping)
    sources = layer_sources(fmaps, runner, what="fmaps")[0] if per_layer else \
        [array_source("fmaps", "fmaps", fmaps, runner)]
    for source in sources:
        check_feature_map_shape(tuple(source.shape), name=source.name, **shape_rules)
    return sources, per_layer
