"""Independent implementations of the reference definitions, written from the papers with plain
loops, numpy and gudhi: the tests' oracles and the benchmarks' baselines (both import them from
here, so the two always agree on what "the reference" is)."""
import math

import gudhi
import numpy as np


def brute_force_filter_similarity(F):
    """Central Filter's reference semantics: a triple loop of np.corrcoef over (image, filter,
    filter) with the special cases (both constant → +1, one all-zero → −1, one constant → NaN)."""
    n, c = F.shape[:2]
    S = np.zeros((c, c))
    for i in range(c):
        for j in range(c):
            vals = []
            for k in range(n):
                a, b = F[k, i].ravel(), F[k, j].ravel()
                ca, cb = a.max() == a.min(), b.max() == b.min()
                za, zb = not a.any(), not b.any()
                if ca and cb:
                    vals.append(1.0)
                elif za or zb:
                    vals.append(-1.0)
                elif ca or cb:
                    vals.append(np.nan)
                else:
                    vals.append(np.corrcoef(a, b)[0, 1])
            S[i, j] = np.mean(vals)
    np.fill_diagonal(S, 1.0)
    return S


def naive_birth_point(M, max_level=50, density=0.8):
    """The whole flag complex in a gudhi SimplexTree, expanded, persistence over GF(2)."""
    h = M.shape[0]
    S = np.maximum(M, M.T)
    u, v = np.triu_indices(h, 1)
    distinct = sorted(set(S[u, v].tolist()), reverse=True)
    level_of = {val: i for i, val in enumerate(distinct)}
    cutoff = math.ceil(len(u) * density)
    st = gudhi.SimplexTree()
    for i in range(h):
        st.insert([i], 0.0)
    for a, b in zip(u, v):
        if level_of[S[a, b]] < cutoff:
            st.insert([int(a), int(b)], float(level_of[S[a, b]]))
    st.expansion(2)
    st.compute_persistence(homology_coeff_field=2, persistence_dim_max=True)
    births = [b for b, d in st.persistence_intervals_in_dimension(1) if d > b and b <= max_level]
    return int(min(births)) if births else 0
