"""Test oracle: the Central-Filter selection as the authors' ``rank.py`` computes it, re-written
with plain Python loops from reading it (github.com/8ubpshLR23/Central-Filter, ``rank.py``:
``get_dels``, ``get_threshold``, ``get_closeness_2``, ``del_filter``; ``main_win.py``:
``adjust_filter``; commit 8bc0411829639e195c1abf838212fc1a0a814e28).

What the reference does, and what these functions keep of it:

- Threshold (``get_threshold``): bisection on t between min(S) − 1e-7 and max(S) + 1e-7 (whole
  matrix, diagonal included) for ``#nodes with an edge − #components among them = ceil(C·ratio)``;
  an edge is ``S[i, j] > t`` read row by row. Below the target: ``r = m − 1e-7``; above: remember
  ``l`` and set ``l = m + 1e-7``; no exact hit: the remembered ``l``, or ``r₀`` (an empty graph)
  if it never over-shot. A NaN anywhere makes min/max NaN, the loop never runs, and the layer
  prunes nothing (kept here, to show repgraph's documented deviation).
- Score (``get_closeness_2``): ``deg_i / Σ_j (1024 − S_ij)`` over the neighbours, 0 if isolated.
- Selection (``del_filter``): nodes in descending score; a node with score > 0 that is undecided
  and whose component has no representative yet is kept as central; then every visited node with
  score > 0 prunes its undecided neighbours (ascending index), filing them under itself; at most
  ``ceil(C·ratio)`` prunes. The reference's tie order is ``np.argsort``'s (numpy < 1.25: higher
  index first on ≤ 16 elements); these oracles visit ties lower index first (DESIGN §4.4), the
  only change.
- Compensation (``adjust_filter``): in index order j, ``W′[:, j] += Σ_{k filed under j} W′[:, k]``,
  in place (so a filter filed under an already-pruned node never reaches the central filter).
"""
import math

import numpy as np

STEP = 1e-7
OFFSET = 1024.0


def components(S, t):
    """Union-find over the row-wise edges S[i, j] > t (i ≠ j): (#nodes touched, #components among
    them, root of every node)."""
    c = len(S)
    parent = list(range(c))

    def root(x):
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    touched = set()
    for i in range(c):
        for j in range(c):
            if i != j and S[i][j] > t:
                touched.update((i, j))
                parent[root(j)] = root(i)
    roots = [root(i) for i in range(c)]
    return len(touched), len({roots[i] for i in touched}), roots


def threshold(S, ratio):
    """rank.py's bisection; returns (t, roots)."""
    S = np.asarray(S, dtype=np.float64)
    target = math.ceil(len(S) * ratio)
    lo, hi = float(S.min()) - STEP, float(S.max()) + STEP
    remembered = hi
    while lo < hi:
        mid = (lo + hi) / 2
        touched, n_comp, roots = components(S, mid)
        if touched - n_comp < target:
            hi = mid - STEP
        elif touched - n_comp > target:
            remembered = lo
            lo = mid + STEP
        else:
            return mid, roots
    return remembered, components(S, remembered)[2]


def neighbours(S, t):
    """Row-wise adjacency lists, ascending index."""
    c = len(S)
    return [[j for j in range(c) if j != i and S[i][j] > t] for i in range(c)]


def scores(S, graph):
    out = []
    for i, nbs in enumerate(graph):
        total = 0.0
        for j in nbs:
            total += OFFSET - S[i][j]
        out.append(len(nbs) / total if total > 0 else 0.0)
    return out


def select(S, ratio):
    """The whole rank.py selection with lower-index-first ties. Returns a dict: kept, pruned
    (sorted), central (sorted), filed (node -> the filters it pruned, as rank.py's delegate_G),
    threshold, scores, roots (component label of each filter)."""
    S = np.asarray(S, dtype=np.float64)
    c = len(S)
    t, roots = threshold(S, ratio)
    graph = neighbours(S, t)
    score = scores(S, graph)
    target = math.ceil(c * ratio)
    order = sorted(range(c), key=lambda i: (-score[i], i))
    central, pruned, represented = set(), set(), set()
    filed = {i: [] for i in range(c)}
    count = 0
    for node in order:
        if not score[node] > 0:
            continue
        if node not in pruned and node not in central and roots[node] not in represented:
            central.add(node)
            represented.add(roots[node])
        for nb in graph[node]:
            if nb not in pruned and nb not in central:
                count += 1
                if count > target:
                    return _result(c, pruned, central, filed, t, score, roots)
                pruned.add(nb)
                filed[node].append(nb)
    return _result(c, pruned, central, filed, t, score, roots)


def _result(c, pruned, central, filed, t, score, roots):
    return dict(kept=sorted(set(range(c)) - pruned), pruned=sorted(pruned), central=sorted(central),
                filed={k: v for k, v in filed.items() if v}, threshold=t, scores=score, roots=roots)


def compensate(next_weight, filed):
    """adjust_filter: in place, j ascending, W′[:, j] += Σ_{k filed under j} W′[:, k]."""
    W = np.array(next_weight, dtype=np.float64, copy=True)
    for j in range(W.shape[1]):
        for k in filed.get(j, []):
            W[:, j] += W[:, k]
    return W
