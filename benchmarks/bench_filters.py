"""Speed of the filter analyses against their baselines, same inputs, same run, equal values:

- ``filter_similarity`` vs the reference semantics (a Python triple loop of ``np.corrcoef`` calls
  with the special cases) on a 64-channel layer, 32 images of 16×16 post-ReLU maps;
- ``closeness_centrality`` vs ``networkx.closeness_centrality(distance=...)`` on a dense
  256-filter graph;
- ``central_filters`` vs the authors' ``rank.py`` selection re-written with Python loops
  (``tests/reference_central_filter.py``) on a 64-filter layer at ratio 0.5 (same kept filters);
- ``birth_points`` vs the naive gudhi route (the whole flag complex in a SimplexTree, expanded to
  triangles, persistence over GF(2)) on 14×14 maps.

    python benchmarks/bench_filters.py [--images 32] [--channels 64] [--cf-filters 64] [--birth-maps 2048]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import networkx as nx
import numpy as np

from repgraph import birth_points, central_filters, closeness_centrality, filter_similarity
from timing import timed

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import reference_central_filter  # noqa: E402  (the tests' oracle of rank.py)
from oracles import brute_force_filter_similarity, naive_birth_point  # noqa: E402  (the tests' oracles)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--channels", type=int, default=64)
    parser.add_argument("--size", type=int, default=16)
    parser.add_argument("--graph-nodes", type=int, default=256)
    parser.add_argument("--cf-filters", type=int, default=64)
    parser.add_argument("--birth-maps", type=int, default=2048)
    args = parser.parse_args()
    rng = np.random.default_rng(0)

    F = np.maximum(rng.normal(size=(args.images, args.channels, args.size, args.size)), 0)
    F[rng.random(F.shape[:2]) < 0.05] = 0.0  # some dead maps, as after ReLU
    t_ref, ref = timed(lambda: brute_force_filter_similarity(F))
    t_ours, ours = timed(lambda: filter_similarity(F))
    same = np.allclose(ours, ref, atol=1e-10, equal_nan=True)
    print(f"filter_similarity  : reference {t_ref:8.3f} s, ours {t_ours:7.4f} s, x{t_ref / t_ours:7.1f}, equal: {same}")

    c = args.graph_nodes
    S = np.tanh(rng.normal(size=(c, c)))
    S = (S + S.T) / 2
    np.fill_diagonal(S, 1.0)
    G = nx.Graph()
    G.add_weighted_edges_from(((i, j, 1.0 - S[i, j]) for i in range(c) for j in range(i + 1, c)), weight="length")
    t_ref, ref = timed(lambda: nx.closeness_centrality(G, distance="length"))
    t_ours, ours = timed(lambda: closeness_centrality(S))
    same = np.allclose(ours, [ref[i] for i in range(c)], atol=1e-12)
    print(f"closeness (dense {c}): networkx {t_ref:8.3f} s, ours {t_ours:7.4f} s, x{t_ref / t_ours:7.1f}, equal: {same}")

    c = args.cf_filters
    groups = rng.integers(0, c // 4, size=c)  # near-duplicate groups, as in a trained layer
    S = np.where(groups[:, None] == groups[None, :], rng.uniform(0.4, 1.0, (c, c)), rng.uniform(-1.0, 0.7, (c, c)))
    S = np.triu(S, 1)
    S = S + S.T
    np.fill_diagonal(S, 1.0)
    t_ref, ref = timed(lambda: reference_central_filter.select(S, 0.5))
    t_ours, ours = timed(lambda: central_filters(S, 0.5))
    same = ours.kept == ref["kept"] and len(ours.pruned) == ours.requested
    print(f"central_filters ({c} filters, ratio 0.5): rank.py loops {t_ref:8.3f} s, ours {t_ours:7.4f} s, "
          f"x{t_ref / t_ours:7.1f}, equal: {same}")

    maps = rng.random((args.birth_maps, 14, 14))
    t_ours, ours = timed(lambda: birth_points(maps[:, None], n_jobs=1).ravel())
    t_ref, ref = timed(lambda: [naive_birth_point(m) for m in maps])
    same = list(ours) == ref
    print(f"birth_points 14x14 ({args.birth_maps} maps, one process): naive gudhi {t_ref:8.3f} s, "
          f"ours {t_ours:7.4f} s, x{t_ref / t_ours:7.1f}, equal: {same}")
    many = rng.random((32768, 14, 14))
    t_serial, _ = timed(lambda: birth_points(many[:, None], n_jobs=1))
    t_parallel, _ = timed(lambda: birth_points(many[:, None]))
    print(f"birth_points on 32768 maps: one process {t_serial:7.3f} s, all cores {t_parallel:7.3f} s "
          f"(x{t_serial / t_parallel:.2f})")


if __name__ == "__main__":
    main()
