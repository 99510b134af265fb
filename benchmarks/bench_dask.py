"""repgraph on Dask: in process vs 1 vs 2 workers for capture, ``modularity_curve`` and
``cka_matrix`` on a store of several GB, in one run, with ratios, where the time goes and each
worker's peak memory; and the out-of-core check (workers limited to ``--memory-limit``, 1 GB by
default, on a store larger than that) that the distributed results equal the in-process ones.

The store is made by the capture phase itself: a ReLU MLP (``--layers`` hidden layers of
``--features`` units) on ``--samples`` synthetic labelled inputs; the default 500 000 × 8 × 256
float32 activations are 4.1 GB. What is compared:

- capture: the stores written by the workers hold the same bytes as the in-process store (SHA-1
  of every layer's data and of the labels).
- ``modularity_curve``: on the whole store, the distributed curve equals the in-process
  ``repgraph.modularity_curve`` on the memory-mapped store exactly.
- ``cka_matrix`` (linear, biased; ``--debiased`` for the unbiased estimator): the in-process
  ``repgraph.cka_matrix`` builds N×N Gram blocks (N² = 2.5·10¹¹ here) and cannot run on the whole
  store, so the in-process row runs the same out-of-core tasks one after another in this process
  (``repgraph.cka_matrix`` of the store without a client); the cluster's results must equal it
  exactly. Separately, on the first ``--check-samples`` samples, the distributed result is
  compared with the in-process ``repgraph.cka_matrix`` (float64 rounding, ~1e-14, when the Gram
  path runs there; ~1e-9 when the feature-space path, float64, meets the in-process float32 Gram).

Time split per run: ``wall``; ``compute``: the tasks' compute time summed over workers (Dask's
task stream), of which ``reading`` the store reads (``read_statistics``; the in-process
``repgraph.modularity_curve`` reads through memory maps, which that does not count); ``transfer``:
Dask's transfers between workers. In process, compute = wall; it uses torch's default threads
(``--threads`` to change), each worker one. Peak memory: each process's VmHWM (reset
before the phase), after the imports; the in-process ``modularity_curve`` reads through a memory
map, whose touched pages count there (file-backed, reclaimable page cache), while the workers
read with ``numpy.fromfile`` and keep nothing mapped. Timings on a machine shared with other jobs
are noisy: the ratios are what to read.

    python benchmarks/bench_dask.py [--samples 500000] [--features 256] [--layers 8] [--workers 1 2]
                                    [--memory-limit 1GB] [--working-memory 64] [--folder DIR] [--keep]
"""
from __future__ import annotations

import argparse
import hashlib
import importlib
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

import repgraph as rg
from repgraph import distributed as rd
from repgraph import storage as rs

TASK_MODULES = ("repgraph.hooks.sharded_capture", "repgraph.analyzers.cka", "repgraph.analyzers.modularity")
PHASES = ("capture", "modularity", "cka")


def reset_peak():
    """Reset this process's peak resident memory (Linux: /proc/self/clear_refs)."""
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")


def peak_mib() -> float:
    """This process's peak resident memory since the last reset, MiB (VmHWM)."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def make_data(args):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, args.classes, args.samples)
    centres = rng.normal(size=(args.classes, args.input_dim)).astype(np.float32)
    X = centres[labels] + rng.normal(size=(args.samples, args.input_dim)).astype(np.float32)
    torch.manual_seed(0)
    modules = []
    width = args.input_dim
    for _ in range(args.layers):
        modules += [nn.Linear(width, args.features), nn.ReLU()]
        width = args.features
    model = nn.Sequential(*modules).eval()
    relus = [str(2 * i + 1) for i in range(args.layers)]
    return model, (torch.from_numpy(X), torch.from_numpy(labels)), relus


def store_digest(folder) -> dict:
    """SHA-1 of every layer's data (after the .npy header) and of the labels."""
    acts = rg.Activations.load(folder)
    out = {}
    for name, array in [*acts.items(), ("labels", acts.labels)]:
        digest = hashlib.sha1()
        for start in range(0, len(array), 65536):
            digest.update(np.ascontiguousarray(array[start:start + 65536]).tobytes())
        out[name] = digest.hexdigest()
    return out


class Run:
    """One timed run, in process or on a cluster, with the time split and peak memory."""

    def __init__(self, label, client=None):
        self.label, self.client = label, client

    def __call__(self, fn):
        import distributed

        if self.client is None:
            reset_peak()
            before = rs.read_statistics()["seconds"]
            start = time.perf_counter()
            self.value = fn()
            self.wall = time.perf_counter() - start
            self.compute, self.transfer = self.wall, 0.0
            self.reading = rs.read_statistics()["seconds"] - before
            self.peaks = [peak_mib()]
            return self.value
        self.client.run(rs.read_statistics, True)
        self.client.run(reset_peak)
        with distributed.get_task_stream(self.client) as stream:
            start = time.perf_counter()
            self.value = fn()
            self.wall = time.perf_counter() - start
        spans = [s for task in stream.data for s in task.get("startstops", [])]
        self.compute = sum(s["stop"] - s["start"] for s in spans if s["action"] == "compute")
        self.transfer = sum(s["stop"] - s["start"] for s in spans if s["action"] == "transfer")
        self.reading = sum(s["seconds"] for s in self.client.run(rs.read_statistics).values())
        self.peaks = list(self.client.run(peak_mib).values())
        return self.value


def report(phase, runs):
    base = runs[0].wall
    print(f"\n{phase}")
    print(f"  {'':<12} {'wall s':>8} {'speed-up':>9} {'compute s':>10} {'reading s':>10} {'transfer s':>11}"
          f"  peak memory per process, MiB")
    for run in runs:
        peaks = ", ".join(f"{p:.0f}" for p in run.peaks)
        print(f"  {run.label:<12} {run.wall:8.1f} {base / run.wall:8.2f}x {run.compute:10.1f} {run.reading:10.1f} "
              f"{run.transfer:11.1f}  {peaks}")


def label(w):
    return f"{w} worker{'s' * (w > 1)}"


def time_capture(args, model, data, relus, store, clusters) -> list:
    """In process into ``store``, then on each cluster into a scratch store compared byte for byte."""
    runs = [Run("in process")]
    runs[0](lambda: rg.capture_activations(model, data, layers=relus, store=store, progress=False))
    expected, failures = store_digest(store), []
    for w, client in clusters.items():
        folder = store.parent / f"workers-{w}"
        run = Run(label(w), client)
        run(lambda: rg.capture_activations(model, data, layers=relus, store=folder, client=client, progress=False))
        same = store_digest(folder) == expected
        print(f"capture on {label(w)}: store bytes equal to the in-process store: {same}")
        failures += [] if same else [f"capture on {label(w)}"]
        shutil.rmtree(folder)
        runs.append(run)
    report("capture (forward passes + writing the store)", runs)
    return failures


def time_modularity(args, store, clusters) -> list:
    """``repgraph.modularity_curve`` on the memory-mapped store against the distributed curve."""
    loaded = rg.Activations.load(store)
    runs = [Run("in process")]
    curve = runs[0](lambda: rg.modularity_curve(loaded, batch_size=args.batch_size, progress=False))
    failures = []
    for w, client in clusters.items():
        run = Run(label(w), client)
        got = run(lambda: rg.modularity_curve(store, batch_size=args.batch_size, client=client, progress=False))
        same = got.equals(curve)
        print(f"modularity_curve on {label(w)} equals the in-process curve exactly: {same}")
        failures += [] if same else [f"modularity on {label(w)}"]
        runs.append(run)
    report(f"modularity_curve ({args.samples // args.batch_size} batches of {args.batch_size} per layer, "
           f"{args.layers} layers)", runs)
    print("  curve:", np.round(curve["modularity"].to_numpy(), 4).tolist())
    return failures


def time_cka(args, store, clusters) -> list:
    """The out-of-core tasks in process against the same on each cluster; then the first samples
    against the in-process ``repgraph.cka_matrix``."""
    runs = [Run("in process")]
    here = runs[0](lambda: rg.cka_matrix(store, debiased=args.debiased, progress=False))
    failures = []
    for w, client in clusters.items():
        run = Run(label(w), client)
        got = run(lambda: rg.cka_matrix(store, debiased=args.debiased, client=client, progress=False))
        same = np.array_equal(got.to_numpy(), here.to_numpy())
        print(f"cka_matrix on {label(w)} equals the same tasks run in process exactly: {same}")
        failures += [] if same else [f"cka on {label(w)}"]
        runs.append(run)
    report(f"cka_matrix (linear, {'unbiased' if args.debiased else 'biased'} HSIC, out of core, "
           f"path: {here.attrs['hsic_path']})", runs)
    head = {name: layer[0:args.check_samples] for name, layer in rd.open_store(store).files.items()}
    client = clusters[max(clusters)]
    for debiased in (False, True):
        reference = rg.cka_matrix(head, debiased=debiased, progress=False).to_numpy()
        got = rg.cka_matrix(head, debiased=debiased, client=client, progress=False)
        diff = float(np.abs(got.to_numpy() - reference).max())
        print(f"cka_matrix on the first {args.check_samples} samples, debiased={debiased}: max |distributed "
              f"({got.attrs['hsic_path']}) - in-process repgraph.cka_matrix| = {diff:.2e}")
        failures += [] if diff < 1e-7 else [f"cka on the first samples, debiased={debiased}"]
    return failures


def cluster(n_workers, args):
    import distributed

    lc = distributed.LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                                  memory_limit=args.memory_limit, dashboard_address=None, silence_logs=40)
    client = distributed.Client(lc)
    for module in TASK_MODULES:
        client.run(importlib.import_module, module)
    return lc, client


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=500_000)
    parser.add_argument("--features", type=int, default=256)
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--input-dim", type=int, default=32)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=500, help="modularity batch size")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--memory-limit", default="1GB", help="per worker")
    parser.add_argument("--working-memory", type=int, default=64, help="repgraph working memory, MiB")
    parser.add_argument("--debiased", action="store_true", help="unbiased HSIC for cka_matrix")
    parser.add_argument("--check-samples", type=int, default=4000)
    parser.add_argument("--folder", default=None, help="where the stores go (default: a temporary folder)")
    parser.add_argument("--keep", action="store_true", help="keep the in-process store afterwards")
    parser.add_argument("--phases", nargs="+", choices=PHASES, default=list(PHASES),
                        help="which to time (without capture the store is made, or reused, untimed)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads of the in-process runs (default: torch's; each worker runs 1)")
    args = parser.parse_args()
    rg.set_config(working_memory=args.working_memory)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    root = Path(args.folder or tempfile.mkdtemp(prefix="repgraph-bench-dask-"))
    root.mkdir(parents=True, exist_ok=True)
    model, data, relus = make_data(args)
    size_gb = args.samples * args.layers * args.features * 4 / 1e9
    print(f"store: {args.samples} samples x {args.layers} layers x {args.features} float32 = {size_gb:.2f} GB "
          f"in {root}; workers: {args.workers}, memory limit {args.memory_limit} each; working memory "
          f"{args.working_memory} MiB; torch threads here: {torch.get_num_threads()}")
    store = root / "in-process"
    for module in TASK_MODULES:  # imported here too, as on the workers, before any timing
        importlib.import_module(module)
    clusters = {w: cluster(w, args) for w in args.workers}
    clients = {w: client for w, (_, client) in clusters.items()}
    failures = []
    try:
        if "capture" in args.phases:
            failures += time_capture(args, model, data, relus, store, clients)
        else:  # made (or reused when it is there) untimed
            rg.capture_activations(model, data, layers=relus, store=store, progress=False)
        if "modularity" in args.phases:
            failures += time_modularity(args, store, clients)
        if "cka" in args.phases:
            failures += time_cka(args, store, clients)
    finally:
        for lc, client in clusters.values():
            client.close()
            lc.close()
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    if failures:
        print("NOT EQUAL:", ", ".join(failures))
        sys.exit(1)


if __name__ == "__main__":
    main()
