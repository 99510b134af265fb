"""In-memory capture target: one float32 array per layer, written batch by batch in place."""
from __future__ import annotations

import numpy as np
import torch


class GrowingArrays:
    """``write(key, start, tensor)`` copies a batch straight into rows ``start:start+n`` of the
    layer's array: preallocated for ``capacity`` samples when the sample count is known, else
    grown geometrically (doubling, in place where the allocator can). One copy per value, and
    peak memory is the result itself.
    """

    def __init__(self, capacity: int | None):
        self.capacity = capacity
        self.arrays: dict[str, np.ndarray] = {}

    def write(self, key: str, start: int, value: torch.Tensor):
        stop = start + value.shape[0]
        array = self.arrays.get(key)
        if array is None:
            rows = max(stop, self.capacity or 0)
            array = self.arrays[key] = np.empty((rows, *value.shape[1:]), dtype=np.float32)
        elif tuple(value.shape[1:]) != array.shape[1:]:
            raise ValueError(f"Layer {key!r}: a batch gives samples of shape {tuple(value.shape[1:])} but "
                             f"earlier batches gave {array.shape[1:]}; every batch must give each layer one "
                             "shape per sample (pad sequences to one length, or use a token reducer).")
        elif stop > array.shape[0]:
            array.resize((max(stop, 2 * array.shape[0]), *array.shape[1:]), refcheck=False)
        torch.from_numpy(array[start:stop]).copy_(value)

    def result(self, n_samples: int) -> dict[str, np.ndarray]:
        """Every layer's array cut to ``n_samples`` rows (in place)."""
        for array in self.arrays.values():
            if array.shape[0] != n_samples:
                array.resize((n_samples, *array.shape[1:]), refcheck=False)
        return self.arrays
