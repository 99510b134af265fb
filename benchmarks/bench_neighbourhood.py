"""Speed of the kNN-neighbourhood measures (jaccard_knn, rank_similarity, second_order_cosine,
mutual_knn, cknna) over every pair of L layers: ``layer_similarity`` (one cosine kNN per layer,
reused for every pair and measure) against the per-pair route ReSi takes (both layers' kNN found
again for every pair and every measure, by scikit-learn's ``NearestNeighbors(metric="cosine")``),
on the same activations in the same run. Both routes score with the same functions of
``repgraph.analyzers.neighbourhood``, so the ratio is the cost of the repeated kNN searches; the
scores must agree (printed). The ratio is printed, never asserted.

    nice -n 15 python benchmarks/bench_neighbourhood.py [--layers 12] [--samples 2000] [--dim 64] [--k 10]
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from sklearn.neighbors import NearestNeighbors

from repgraph import layer_similarity
from repgraph.analyzers import get_measure
from repgraph.analyzers.neighbourhood import Neighbourhood

MEASURES = ("jaccard_knn", "rank_similarity", "second_order_cosine", "mutual_knn", "cknna")


def layers_chain(n_layers, n, dim, seed=0):
    """L layers of a random chain X_{l+1} = tanh(X_l W_l) + noise (neighbouring layers alike)."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, dim))
    out = {}
    for layer in range(n_layers):
        X = np.tanh(X @ rng.normal(size=(dim, dim)) / np.sqrt(dim)) + 0.3 * rng.normal(size=(n, dim))
        out[f"layer{layer:02d}"] = X.astype(np.float32)
    return out


def sklearn_neighbourhood(X, k):
    """ReSi's route: a cosine NearestNeighbors fit on X, the k nearest other samples of each."""
    X = np.asarray(X, dtype=np.float64)
    dist, idx = NearestNeighbors(n_neighbors=k, metric="cosine").fit(X).kneighbors()  # query = X, self left out
    unit = X / np.linalg.norm(X, axis=1, keepdims=True)
    return Neighbourhood(idx, 1.0 - dist, unit)


def per_pair(acts, measure, k):
    names = list(acts)
    m = get_measure(measure)
    out = np.zeros((len(names), len(names)))
    for a in range(len(names)):
        for b in (range(a, len(names)) if m.symmetric else range(len(names))):
            A, B = sklearn_neighbourhood(acts[names[a]], k), sklearn_neighbourhood(acts[names[b]], k)
            out[a, b] = m.score(A, B)
            if m.symmetric:
                out[b, a] = out[a, b]
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--k", type=int, default=10)
    args = parser.parse_args()
    torch.set_num_threads(1)
    acts = layers_chain(args.layers, args.samples, args.dim)
    print(f"{args.layers} layers x N = {args.samples} x D = {args.dim}, k = {args.k}, 1 torch thread")
    total_once = total_pair = 0.0
    for measure in MEASURES:
        t = time.perf_counter()
        once = layer_similarity(acts, measure=measure, k=args.k).to_numpy()
        t_once = time.perf_counter() - t
        t = time.perf_counter()
        pairs = per_pair(acts, measure, args.k)
        t_pair = time.perf_counter() - t
        total_once += t_once
        total_pair += t_pair
        print(f"{measure:20s} layer_similarity {t_once:7.2f} s   per-pair sklearn {t_pair:7.2f} s   "
              f"ratio {t_pair / t_once:6.1f}x   max |diff| {np.abs(once - pairs).max():.1e}", flush=True)
    # every measure from one kNN per layer: layer_similarity's plan reuses nothing across measures
    # by itself, so the shared route prepares once and scores all five
    t = time.perf_counter()
    prepared = {name: get_measure("jaccard_knn").prepare_layer(X, k=args.k) for name, X in acts.items()}
    names = list(acts)
    for measure in MEASURES:
        m = get_measure(measure)
        for a in names:
            for b in names:
                m.score(prepared[a], prepared[b])
    t_shared = time.perf_counter() - t
    print(f"\nall five measures, L x L pairs: per-measure layer_similarity {total_once:.2f} s, one kNN per layer "
          f"shared by all five {t_shared:.2f} s, per-pair sklearn (ReSi) {total_pair:.2f} s")
    print(f"ratio per-pair / layer_similarity: {total_pair / total_once:.1f}x; per-pair / shared kNN: "
          f"{total_pair / t_shared:.1f}x")


if __name__ == "__main__":
    main()
