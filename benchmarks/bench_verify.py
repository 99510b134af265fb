"""What verifying a store costs on the cluster path: a full out-of-core ``cka_matrix`` of a store
opened with and without checksums (``open_store(path, verify=...)``) on a LocalCluster of two
worker processes, each run on fresh workers (the checks are cached per process).

    PYTHONPATH=. python benchmarks/bench_verify.py --n 20000 --width 512 --layers 4
"""
from __future__ import annotations

import argparse
import importlib
import tempfile
import time
from pathlib import Path

import numpy as np

import repgraph as rg
from repgraph.distributed import open_store


def _timed(folder, verify: bool, repeats: int) -> float:
    import distributed

    best = float("inf")
    for _ in range(repeats):
        with distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None,
                                      silence_logs=50) as cluster, distributed.Client(cluster) as client:
            client.run(importlib.import_module, "repgraph.analyzers")
            began = time.perf_counter()
            rg.cka_matrix(open_store(folder, verify=verify), client=client, progress=False)
            best = min(best, time.perf_counter() - began)
    return best


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20000)
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "store"
        rng = np.random.default_rng(0)
        rg.Activations({f"l{i}": rng.normal(size=(args.n, args.width)).astype(np.float32)
                        for i in range(args.layers)}).save(folder)
        size = args.n * args.width * args.layers * 4 / 2**20
        plain, checked = _timed(folder, False, args.repeats), _timed(folder, True, args.repeats)
    print(f"store {size:.0f} MiB ({args.layers} layers of {args.n}×{args.width} float32), best of {args.repeats}")
    print(f"cka_matrix without verification {plain:.2f} s, with {checked:.2f} s: ratio {checked / plain:.2f}")


if __name__ == "__main__":
    main()
