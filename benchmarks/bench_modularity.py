"""Speed of ``modularity_curve`` against the reference-style pipeline, and against the bare Gram
matrix products it cannot avoid, on the same activations in the same run.

Reference style (as Lu et al.'s code does it; the tests' oracle ``tests/oracles.py``): per batch a
numpy cosine matrix, a per-row ``heapq.nlargest(k, candidates, key)`` loop for the k neighbours, a
dense adjacency, a networkx graph and networkx's modularity of the label partition. The timed baseline computes the cosine in float64,
i.e. the exact definition that ``modularity_curve`` reproduces (values must agree to 1e-6). The
same pipeline on the float32 activations as captured is run once more to show how far float32
rounding alone moves the curve (near-tied neighbours flip).

The Gram products that cannot be avoided are timed twice: as ``modularity_curve`` computes them
(``builders.similarity.gram``: the upper block triangle, 10/16 of the multiply-adds, mirrored)
and as the plain full product ``X @ X.T``. The contenders run interleaved layer by layer (best of
``--repeats`` each), so that a slow spell of a shared machine hits all of them.

``--batched`` adds the batched path (``analyzers.batched_modularity.batch_modularities``: all
batches of a layer in one batched Gram product and one batched top-k, the GPU path), timed side by
side with ``modularity_curve``'s batch-by-batch path; its values must agree to 1e-6.

    python benchmarks/bench_modularity.py [--layers 10] [--batches 5] [--batch-size 500] [--features 4096]
                                          [--repeats 3] [--device cpu|cuda] [--stress] [--batched]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from repgraph import Activations, modularity_curve
from repgraph.analyzers.batched_modularity import batch_modularities
from repgraph.builders.similarity import gram
from repgraph.datasets import synthetic_clusters
from timing import timed

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from oracles import reference_modularity_curve  # noqa: E402  (the tests' oracle)


def reference_layer(X, labels, k, batch_size, n_batches, dtype=np.float64) -> float:
    """The reference-style pipeline of one layer (the tests' oracle): mean modularity over batches."""
    (_, mean, _), = reference_modularity_curve({"layer": X}, labels, k, batch_size, n_batches, dtype)
    return mean


def bare_gram(X: np.ndarray, batch_size: int, n_batches: int, product, device: str):
    for b in range(n_batches):
        product(torch.from_numpy(X[b * batch_size:(b + 1) * batch_size]).to(device))


def full_product(X: torch.Tensor) -> torch.Tensor:
    return X @ X.T


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=10)
    parser.add_argument("--batches", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--features", type=int, default=4096)
    parser.add_argument("--k", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3,
                        help="every contender's time per layer is its best of this many runs")
    parser.add_argument("--device", default="cpu", help="where modularity_curve and the Gram products run")
    parser.add_argument("--stress", action="store_true",
                        help="weakly separated layers only (Q < 0.25): cosines crowd together, so many "
                             "rows need the float64 re-scoring of near-tied neighbours")
    parser.add_argument("--batched", action="store_true",
                        help="also time the batched path (all batches of a layer in one batched product)")
    args = parser.parse_args()
    n = args.batches * args.batch_size
    labels = np.arange(n) % 10
    layers = {}
    for depth in range(args.layers):
        # class structure that sharpens with depth (Q from ~0 to ~0.85, like a trained network),
        # post-ReLU-like (non-negative) features
        separation = 0.02 + 0.01 * depth if args.stress else 0.03 * 1.5 ** depth
        X, _ = synthetic_clusters(n, 10, args.features, separation=separation, seed=depth, shuffle=False)
        layers[f"layer{depth}"] = np.maximum(X, 0.0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {args.device}; "
          f"{args.layers} layers x {args.batches} batches x {args.batch_size} samples x "
          f"{args.features} features, k={args.k}")
    print("contenders run interleaved layer by layer, so that a slow spell of this shared machine "
          "hits all of them")

    always = ["reference", "reference32", "ours", "gram", "full"]
    times = dict.fromkeys(always + ["batched"] * args.batched, 0.0)
    values = {key: [] for key in times}
    for name, X in layers.items():
        acts = Activations({name: X}, labels)
        contenders = {
            "reference": (lambda: reference_layer(X, labels, args.k, args.batch_size, args.batches),
                          args.repeats),
            "reference32": (lambda: reference_layer(X, labels, args.k, args.batch_size, args.batches,
                                                    np.float32), 1),
            "ours": (lambda: modularity_curve(acts, k=args.k, batch_size=args.batch_size,
                                              n_batches=args.batches, device=args.device,
                                              progress=False)["modularity"].item(), args.repeats),
            "gram": (lambda: bare_gram(X, args.batch_size, args.batches, gram, args.device),
                     args.repeats),
            "full": (lambda: bare_gram(X, args.batch_size, args.batches, full_product, args.device),
                     args.repeats),
        }
        if args.batched:
            stacked = X[:n].reshape(args.batches, args.batch_size, -1)
            contenders["batched"] = (lambda: float(np.mean(batch_modularities(
                stacked, labels[:n].reshape(args.batches, args.batch_size), args.k, device=args.device))),
                args.repeats)
        for key, (fn, repeats) in contenders.items():
            seconds, value = timed(fn, repeats)
            times[key] += seconds
            values[key].append(value)
    t_ref, t_ref32, t_ours, t_gram, t_full = (times[key] for key in always)
    reference, reference32, ours = values["reference"], values["reference32"], values["ours"]

    diff = float(np.max(np.abs(np.asarray(ours) - np.asarray(reference))))
    diff32 = float(np.max(np.abs(np.asarray(reference32) - np.asarray(reference))))
    print(f"reference-style pipeline, float64 (exact)  : {t_ref:8.3f} s")
    print(f"modularity_curve                           : {t_ours:8.3f} s   speed-up x{t_ref / t_ours:.1f}")
    print(f"bare float32 Gram, block-triangular (used) : {t_gram:8.3f} s   modularity_curve / Gram = {t_ours / t_gram:.2f}")
    print(f"bare float32 Gram, full X @ X.T            : {t_full:8.3f} s   modularity_curve / Gram = {t_ours / t_full:.2f}")
    print(f"reference-style pipeline, float32 (1 run)  : {t_ref32:8.3f} s   speed-up x{t_ref32 / t_ours:.1f}")
    print(f"max |modularity_curve - exact reference|   : {diff:.2e}")
    note = "  (float32 rounding flipped near-tied neighbours)" if diff32 > 1e-6 else ""
    print(f"max |float32 reference - exact reference|  : {diff32:.2e}{note}")
    if args.batched:
        diff_batched = float(np.max(np.abs(np.asarray(values["batched"]) - np.asarray(ours))))
        print(f"batched path (one batched product a layer) : {times['batched']:8.3f} s   "
              f"modularity_curve / batched = {t_ours / times['batched']:.2f}")
        print(f"max |batched - modularity_curve|           : {diff_batched:.2e}")
        diff = max(diff, diff_batched)
    print("curve:", np.round(ours, 4).tolist())
    if diff > 1e-6:
        raise SystemExit("the curves differ by more than 1e-6")


if __name__ == "__main__":
    main()
