"""Cost of ``capture_activations`` against the bare forward pass it cannot avoid: time and peak
memory of a bare forward pass, a capture into memory and a capture into a disk store, on the same
model and images in the same run.

Contenders, for each ``--reduce`` (default ``flatten`` and the reducing spatial mean):

- bare forward: the images in batches of ``--batch-size`` through the model in eval mode under
  ``torch.no_grad()``, outputs discarded (nothing is hooked or copied);
- capture in memory: ``capture_activations(model, (X, y), layers, reduce=..., progress=False)``;
- capture to a store: the same with ``store=`` a fresh, empty folder each repeat (deleted after).

Time: the contenders run interleaved, once each per repeat, so that a slow spell of a shared
machine hits all of them; each reports its best of ``--repeats`` and its ratio to the bare forward.
The in-memory and store captures are checked to hold identical arrays.

Peak memory: torch's buffers are invisible to ``tracemalloc``, so each contender runs once more in
a fresh subprocess that builds the model and the images and runs one warm-up batch (so one-time
allocations — thread pools, allocator caches, the weights — are part of the baseline), then
resets the kernel's peak-RSS mark (``/proc/self/clear_refs`` ← 5, Linux), runs the contender and
reports ``VmHWM − VmRSS at the reset``: the extra resident memory the contender needed at its peak,
its result included. Where the mark cannot be reset, ``ru_maxrss`` minus the RSS after setup is
reported instead (an upper bound: a setup peak higher than the contender's counts too; flagged by
``*``). On CUDA the subprocess also reports the GPU's peak allocated bytes above the setup
(``torch.cuda.reset_peak_memory_stats``).

    python benchmarks/bench_capture.py [--model resnet20] [--images 2048] [--batch-size 256]
        [--layers blocks] [--reduce flatten spatial_mean] [--repeats 3] [--device cpu|cuda]
        [--store-root DIR] [--no-memory]
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from repgraph import capture_activations, models
from repgraph.hooks import reducers as reducers_module
from peak_memory import extra_peak
from timing import timed

CONTENDERS = {"forward": "bare forward", "memory": "capture, in memory", "store": "capture, to a store"}
MODELS = ("resnet20", "resnet32", "resnet56")


def default_reducing() -> str:
    """The spatial-mean reducer under its current name (``spatial_mean``; ``mean`` before issue 15)."""
    return "spatial_mean" if "spatial_mean" in getattr(reducers_module, "NAMED", {}) else "mean"


def setup(args):
    """The model (eval mode, on ``--device``) and the images with labels, the same in every process."""
    torch.manual_seed(0)
    model = getattr(models, args.model)().to(args.device).eval()
    X = torch.randn(args.images, 3, 32, 32)
    y = torch.arange(args.images) % 10
    return model, X, y


def bare_forward(model, X, batch_size, device):
    with torch.no_grad():
        for start in range(0, len(X), batch_size):
            model(X[start:start + batch_size].to(device))


def run_contender(name, model, X, y, args, reduce, read=lambda acts: acts):
    """Run one contender; returns ``read`` of the captured Activations (None for the bare
    forward). A store lives in a fresh folder under ``--store-root``, deleted afterwards."""
    if name == "forward":
        return bare_forward(model, X, args.batch_size, args.device)
    kwargs = {"layers": args.layers, "reduce": reduce, "batch_size": args.batch_size, "progress": False}
    if name == "memory":
        return read(capture_activations(model, (X, y), **kwargs))
    folder = Path(tempfile.mkdtemp(prefix="bench_capture_", dir=args.store_root))
    try:
        return read(capture_activations(model, (X, y), store=folder / "store", **kwargs))
    finally:
        shutil.rmtree(folder)


def checked_shapes(model, X, y, args, reduce) -> dict:
    """One untimed run of both captures (a warm-up too): they must hold identical arrays; returns
    the per-sample shape of each layer."""
    def read(acts):
        return {layer: np.array(acts[layer]) for layer in acts}

    memory, stored = (run_contender(name, model, X, y, args, reduce, read) for name in ("memory", "store"))
    if list(memory) != list(stored) or not all(np.array_equal(memory[l], stored[l]) for l in memory):
        raise SystemExit(f"reduce={reduce!r}: the in-memory and the stored capture differ")
    return {layer: array.shape[1:] for layer, array in memory.items()}


def child(args, reduce):
    """Measure one contender's extra peak memory in this fresh process; print it as JSON."""
    model, X, y = setup(args)
    bare_forward(model, X[:args.batch_size], args.batch_size, args.device)  # warm-up
    print(json.dumps(extra_peak(lambda: run_contender(args.child, model, X, y, args, reduce), args.device)))


def measure_memory(args, reduce, name) -> dict:
    command = [sys.executable, __file__, "--child", name, "--reduce", reduce, "--model", args.model,
               "--images", str(args.images), "--batch-size", str(args.batch_size), "--layers", args.layers,
               "--device", args.device, "--store-root", args.store_root]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"memory run of {name!r} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def mib(n_bytes) -> str:
    return f"{n_bytes / 2**20:8.1f} MiB"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=MODELS, default="resnet20")
    parser.add_argument("--images", type=int, default=2048, help="3x32x32 random images")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--layers", default="blocks", help="capture_activations' layers= (a preset or a glob)")
    parser.add_argument("--reduce", nargs="+", default=None,
                        help="reducers to compare (default: flatten and the spatial mean)")
    parser.add_argument("--repeats", type=int, default=3,
                        help="every contender's time is its best of this many interleaved runs")
    parser.add_argument("--device", default="cpu", help="where the model runs: cpu or cuda")
    parser.add_argument("--store-root", default=tempfile.gettempdir(),
                        help="folder under which each store run gets a fresh folder (on the disk to measure)")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocesses")
    parser.add_argument("--child", choices=list(CONTENDERS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.device = str(torch.device(args.device))
    if args.child:
        return child(args, args.reduce[0])
    reducers = args.reduce or ["flatten", default_reducing()]
    if torch.device(args.device).type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda but no CUDA device is available here.")

    model, X, y = setup(args)
    bare_forward(model, X[:args.batch_size], args.batch_size, args.device)  # warm-up
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {args.device}; {args.model}, "
          f"{args.images} images of 3x32x32, layers={args.layers!r}, batches of {args.batch_size}, "
          f"best of {args.repeats} (contenders interleaved per repeat); store under {args.store_root}")
    for reduce in reducers:
        shape = checked_shapes(model, X, y, args, reduce)
        best = dict.fromkeys(CONTENDERS, float("inf"))
        for _ in range(args.repeats):
            for name in CONTENDERS:  # [0]: the result is dropped before the next contender runs
                seconds = timed(lambda: run_contender(name, model, X, y, args, reduce, lambda acts: None))[0]
                best[name] = min(best[name], seconds)
        n_values = sum(int(np.prod(s)) for s in shape.values()) * args.images
        print(f"\nreduce={reduce!r}: {len(shape)} layers, {mib(4 * n_values).strip()} of float32 activations")
        for name, label in CONTENDERS.items():
            line = f"  {label:<22}: {best[name]:8.3f} s   x{best[name] / best['forward']:.2f}"
            if not args.no_memory:
                used = measure_memory(args, reduce, name)
                line += f"   peak +{mib(used['host_bytes'])}{'' if used['exact'] else '*'}"
                if used["gpu_bytes"] is not None:
                    line += f"   GPU peak +{mib(used['gpu_bytes'])}"
            print(line)
    print("\nratios: time / bare forward time (same reducer); peak: extra resident memory at the "
          "contender's peak above the same process after setup (* = upper bound, see the docstring)")


if __name__ == "__main__":
    main()
