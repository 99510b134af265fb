"""Speed of ``cka_matrix`` and ``gbs_matrix`` against the per-pair approach a typical
implementation uses, on the same activations in the same run; values must agree to 1e-6.

Per-pair baseline (written here from the definitions): for every layer pair build both Gram
matrices, centre each with the n×n centring matrix H (two n×n products), compute HSIC as a trace;
for GBS, build both layers' kNN graphs for every pair and average the row cosines.

    python benchmarks/bench_similarity.py [--layers 20] [--samples 1000] [--device cpu|cuda] [--repeats 1]
"""
from __future__ import annotations

import argparse

import numpy as np
import torch

from repgraph import Activations, cka_matrix, gbs_matrix, knn_graph
from repgraph.datasets import synthetic_clusters
from timing import timed


def per_pair_cka(layers, device):
    xs = [torch.as_tensor(X, device=device, dtype=torch.float64) for X in layers]
    n = xs[0].shape[0]
    H = torch.eye(n, dtype=torch.float64, device=device) - 1.0 / n
    out = np.zeros((len(xs), len(xs)))

    def hsic(K, L):
        return float(torch.trace(H @ K @ H @ L))

    for i, X in enumerate(xs):
        for j, Y in enumerate(xs):
            K, L = X @ X.T, Y @ Y.T
            out[i, j] = hsic(K, L) / np.sqrt(hsic(K, K) * hsic(L, L))
    return out


def per_pair_gbs(layers, k):
    out = np.zeros((len(layers), len(layers)))
    for i, X in enumerate(layers):
        for j, Y in enumerate(layers):
            A, B = knn_graph(X, k).toarray(), knn_graph(Y, k).toarray()
            num = (A * B).sum(1)
            den = np.linalg.norm(A, axis=1) * np.linalg.norm(B, axis=1)
            out[i, j] = np.mean(np.where(den > 0, num / np.where(den > 0, den, 1.0), 0.0))
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=20)
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--features", type=int, default=2048)
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=1,
                        help="best of this many runs for every contender (use 3 on a GPU, where the "
                             "first run pays for warm-up)")
    args = parser.parse_args()
    layers = [np.maximum(synthetic_clusters(args.samples, 10, args.features, separation=0.03 * 1.3 ** d,
                                            seed=d, shuffle=False)[0], 0) for d in range(args.layers)]
    acts = Activations({f"layer{d}": X for d, X in enumerate(layers)}, np.arange(args.samples) % 10)
    print(f"torch {torch.__version__}, device {args.device}, {torch.get_num_threads()} CPU threads; "
          f"{args.layers} layers x {args.samples} samples x {args.features} features")

    t_ref, ref = timed(lambda: per_pair_cka(layers, args.device), args.repeats)
    t_ours, ours = timed(lambda: cka_matrix(acts, device=args.device), args.repeats)
    print(f"CKA per pair (H-centring)  : {t_ref:8.2f} s")
    print(f"cka_matrix (stacked)       : {t_ours:8.2f} s   speed-up x{t_ref / t_ours:.1f}   "
          f"max |diff| {np.abs(ours.to_numpy() - ref).max():.1e}")
    t_deb, _ = timed(lambda: cka_matrix(acts, debiased=True, device=args.device), args.repeats)
    print(f"cka_matrix debiased        : {t_deb:8.2f} s")

    t_ref, ref = timed(lambda: per_pair_gbs(layers, args.k), args.repeats)
    t_ours, ours = timed(lambda: gbs_matrix(acts, k=args.k, device=args.device), args.repeats)
    print(f"GBS per pair (graphs per pair): {t_ref:8.2f} s")
    print(f"gbs_matrix (graphs once)   : {t_ours:8.2f} s   speed-up x{t_ref / t_ours:.1f}   "
          f"max |diff| {np.abs(ours.to_numpy() - ref).max():.1e}")


if __name__ == "__main__":
    main()
