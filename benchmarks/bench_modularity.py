"""Speed of ``modularity_curve`` against the reference-style pipeline, and against the bare Gram
matrix products it cannot avoid, on the same activations in the same run.

Reference style (as research code for Lu et al. typically does it, written here from the
definition): per batch a numpy cosine matrix, a per-row ``heapq.nlargest(k, candidates, row.take)``
loop (the usual top-k-indices idiom) for the k neighbours, a dense adjacency, a networkx graph and
networkx's modularity of the label partition. The timed baseline computes the cosine in float64,
i.e. the exact definition that ``modularity_curve`` reproduces (values must agree to 1e-6). The
same pipeline on the float32 activations as captured is run once more to show how far float32
rounding alone moves the curve (near-tied neighbours flip).

    python benchmarks/bench_modularity.py [--layers 10] [--batches 5] [--batch-size 500] [--features 4096]
"""
from __future__ import annotations

import argparse
import heapq

import networkx as nx
import numpy as np
import torch

from repgraph import Activations, modularity_curve
from repgraph.datasets import synthetic_clusters
from timing import timed


def reference_layer(X: np.ndarray, labels: np.ndarray, k: int, batch_size: int, n_batches: int,
                    dtype=np.float64) -> float:
    values = []
    for b in range(n_batches):
        Xb = X[b * batch_size:(b + 1) * batch_size].astype(dtype)
        y = labels[b * batch_size:(b + 1) * batch_size]
        Xn = Xb / np.maximum(np.linalg.norm(Xb, axis=1, keepdims=True), 1e-8)
        S = Xn @ Xn.T
        np.fill_diagonal(S, 0.0)
        n = len(Xb)
        A = np.zeros((n, n))
        for i in range(n):
            row = S[i]
            for j in heapq.nlargest(k, (j for j in range(n) if j != i), row.take):
                A[i, j] = row[j]
        A = (A + A.T) / 2
        G = nx.from_numpy_array(A)
        groups = [set(np.flatnonzero(y == c).tolist()) for c in np.unique(y)]
        values.append(nx.community.modularity(G, groups, weight="weight"))
    return float(np.mean(values))


def bare_gram(X: np.ndarray, batch_size: int, n_batches: int):
    for b in range(n_batches):
        Xb = torch.from_numpy(X[b * batch_size:(b + 1) * batch_size])
        Xb @ Xb.T


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=10)
    parser.add_argument("--batches", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--features", type=int, default=4096)
    parser.add_argument("--k", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3, help="best of this many runs for the fast paths")
    parser.add_argument("--stress", action="store_true",
                        help="weakly separated layers only (Q < 0.25): cosines crowd together, so many "
                             "rows need the float64 re-scoring of near-tied neighbours")
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
    acts = Activations(layers, labels)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; {args.layers} layers x "
          f"{args.batches} batches x {args.batch_size} samples x {args.features} features, k={args.k}")

    t_ref, reference = timed(lambda: [reference_layer(X, labels, args.k, args.batch_size, args.batches)
                                      for X in layers.values()])
    t_ref32, reference32 = timed(lambda: [reference_layer(X, labels, args.k, args.batch_size, args.batches, np.float32)
                                          for X in layers.values()])

    t_ours, curve = timed(lambda: modularity_curve(acts, k=args.k, batch_size=args.batch_size,
                                                   n_batches=args.batches, progress=False), args.repeats)
    t_gram, _ = timed(lambda: [bare_gram(X, args.batch_size, args.batches) for X in layers.values()], args.repeats)

    ours = curve["modularity"].to_numpy()
    diff = float(np.max(np.abs(ours - np.asarray(reference))))
    diff32 = float(np.max(np.abs(np.asarray(reference32) - np.asarray(reference))))
    print(f"reference-style pipeline, float64 (exact)  : {t_ref:8.3f} s")
    print(f"modularity_curve                           : {t_ours:8.3f} s   speed-up x{t_ref / t_ours:.1f}")
    print(f"bare float32 Gram products                 : {t_gram:8.3f} s   modularity_curve / Gram = {t_ours / t_gram:.2f}")
    print(f"reference-style pipeline, float32 (as captured): {t_ref32:8.3f} s   speed-up x{t_ref32 / t_ours:.1f}")
    print(f"max |modularity_curve - exact reference|   : {diff:.2e}")
    note = "  (float32 rounding flipped near-tied neighbours)" if diff32 > 1e-6 else ""
    print(f"max |float32 reference - exact reference|  : {diff32:.2e}{note}")
    print("curve:", np.round(curve["modularity"].to_numpy(), 4).tolist())
    if diff > 1e-6:
        raise SystemExit("the curves differ by more than 1e-6")


if __name__ == "__main__":
    main()
