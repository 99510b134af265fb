"""Independent implementations of the reference definitions, written from the papers with plain
loops, numpy and gudhi: the tests' oracles and the benchmarks' baselines (both import them from
here, so the two always agree on what "the reference" is)."""
import heapq
import math

import gudhi
import networkx as nx
import numpy as np


def cosine_matrix(X, dtype=np.float64):
    """Cosine similarity of the flattened rows, each divided by max(‖x‖, 1e-8) (Lu et al.)."""
    X = np.asarray(X, dtype=dtype).reshape(len(X), -1)
    Xn = X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), dtype(1e-8))
    return Xn @ Xn.T


def naive_knn(X, k, symmetrize="mean", dtype=np.float64):
    """The kNN sample graph from its definition, one row at a time: each node keeps its k most
    similar other nodes (``heapq.nlargest`` is a stable sort, so ties go to the lowest index;
    similarities are compared after rounding to 9 decimals so exact ties stay ties), directed weight
    s_ij, then the chosen symmetrisation (``mean``: (A + Aᵀ)/2; ``max``; ``mutual``; None)."""
    S = cosine_matrix(X, dtype)
    rounded = np.round(S.astype(np.float64), 9)
    n = len(S)
    D = np.zeros((n, n))
    chosen = np.zeros((n, n), dtype=bool)
    for i in range(n):
        best = heapq.nlargest(k, (j for j in range(n) if j != i), key=rounded[i].take)
        D[i, best] = S[i, best]
        chosen[i, best] = True
    if symmetrize == "mean":
        return (D + D.T) / 2
    if symmetrize == "max":
        return np.where(chosen | chosen.T, S, 0.0)
    if symmetrize == "mutual":
        return np.where(chosen & chosen.T, S, 0.0)
    return D


def naive_gbs(X, Y, k):
    """GBS from its definition: each layer's sample graph (``naive_knn`` with k neighbours, or for
    k=None the full cosine matrix with a zero diagonal), then the mean over samples of the cosine
    between the two graphs' rows (an all-zero row contributes 0)."""
    graphs = []
    for Z in (X, Y):
        if k is None:
            A = cosine_matrix(Z)
            np.fill_diagonal(A, 0)
        else:
            A = naive_knn(Z, k)
        graphs.append(A)
    A, B = graphs
    num = (A * B).sum(1)
    den = np.linalg.norm(A, axis=1) * np.linalg.norm(B, axis=1)
    return float(np.mean(np.where(den > 0, num / np.where(den > 0, den, 1), 0.0)))


def nx_modularity(A, labels, resolution=1.0):
    """networkx's modularity of the label partition of the weighted graph A (dense)."""
    labels = np.asarray(labels)
    G = nx.from_numpy_array(np.asarray(A))
    groups = [set(np.flatnonzero(labels == c).tolist()) for c in np.unique(labels)]
    return nx.community.modularity(G, groups, weight="weight", resolution=resolution)


def reference_modularity_curve(layers, labels, k, batch_size, n_batches, dtype=np.float64):
    """Lu et al.'s pipeline from the definition: per batch ``naive_knn`` (A + Aᵀ)/2 and networkx
    modularity; per layer (name, mean, population std) over the batches."""
    out = []
    for name, X in layers.items():
        values = []
        for b in range(n_batches):
            rows = slice(b * batch_size, (b + 1) * batch_size)
            values.append(nx_modularity(naive_knn(X[rows], k, dtype=dtype), np.asarray(labels)[rows]))
        out.append((name, float(np.mean(values)), float(np.std(values))))
    return out


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


def hsic_biased(K, L):
    """Biased HSIC with the centring matrix H: tr(KHLH)/(n−1)²."""
    n = len(K)
    H = np.eye(n) - np.ones((n, n)) / n
    return np.trace(K @ H @ L @ H) / (n - 1) ** 2


def hsic_unbiased(K, L):
    """Unbiased HSIC, Song et al. (2012), eq. 5, with zero-diagonal K~, L~."""
    n = len(K)
    K, L = K.copy(), L.copy()
    np.fill_diagonal(K, 0)
    np.fill_diagonal(L, 0)
    one = np.ones(n)
    term = np.trace(K @ L) + (one @ K @ one) * (one @ L @ one) / ((n - 1) * (n - 2)) \
        - 2.0 / (n - 2) * (one @ K @ L @ one)
    return term / (n * (n - 3))


def cka_oracle(K, L, hsic):
    """CKA = HSIC(K, L)/sqrt(HSIC(K, K)·HSIC(L, L)) with the given HSIC estimator."""
    return hsic(K, L) / np.sqrt(hsic(K, K) * hsic(L, L))


def naive_block_influence(X_in, X_out, mask=None):
    """Men et al.'s BI from the definition, one token at a time: 1 − the mean over the real tokens
    of (N, T, D) hidden states of cos(x_in, x_out) = x_in·x_out/(‖x_in‖‖x_out‖)."""
    N, T, _ = X_in.shape
    cosines = []
    for n in range(N):
        for t in range(T):
            if mask is None or mask[n, t]:
                a, b = np.asarray(X_in[n, t], np.float64), np.asarray(X_out[n, t], np.float64)
                cosines.append(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))
    return 1.0 - float(np.mean(cosines))


def naive_angular_distance(X, Y):
    """Gromov et al.'s distance from the definition: for (N, T, D) hidden states, the mean over
    samples of arccos(cos(x_T, y_T))/π at the last token T."""
    values = []
    for a, b in zip(np.asarray(X, np.float64)[:, -1], np.asarray(Y, np.float64)[:, -1]):
        values.append(math.acos(np.clip(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)), -1, 1)) / math.pi)
    return float(np.mean(values))
