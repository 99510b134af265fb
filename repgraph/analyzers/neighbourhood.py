"""kNN-neighbourhood similarity of two representations of the same N samples: how far each
sample's k nearest neighbours (by cosine) agree between them (ReSi's Jaccard, rank and
second-order cosine similarities; the platonic-representation paper's mutual kNN and CKNNA).

Each representation's neighbours are found once (``neighbourhood``) and the ``Neighbourhood``
object is reused for every pair and every measure; the measures themselves are O(N·k) (O(N·k·D)
for the second-order cosine) vectorised passes over the prepared neighbour lists.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import scipy.sparse as sp
import torch

from .._arrays import as_features, check_count, row_chunk
from ..builders.knn import TIE_RTOL, topk_lowest_index

RESI = ("Klabunde, Wald, Schumacher, Strohmaier & Lemmerich, \"ReSi: A Comprehensive Benchmark for "
        "Representational Similarity Measures\", ICLR 2025 (code: github.com/mklabunde/resi, "
        "repsim/measures/nearest_neighbor.py).")
PLATONIC = ("Huh, Cheung, Wang & Isola, \"The Platonic Representation Hypothesis\", ICML 2024 "
            "(code: github.com/minyoungg/platonic-rep, metrics.py).")


class _DefaultK(int):
    """The default ``k`` (10), told apart from an explicit ``k=10`` by identity: with
    ``Neighbourhood`` inputs a k left out takes theirs, while an explicit one must agree."""


_DEFAULT_K = _DefaultK(10)


def _read_only(array: np.ndarray) -> np.ndarray:
    view = array.view()
    view.flags.writeable = False
    return view


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class Neighbourhood:
    """One representation's prepared cosine kNN, reused for every pair and every measure.

    Build it with ``neighbourhood(X, k)``; the constructor only stores (and checks the shapes
    of) what that function computed. ``indices[i]`` are the k nearest *other* samples of sample
    i by cosine distance ``1 − cos(x_i, x_j)``, nearest first. The sample itself is excluded by
    index (a sample that coincides with i in direction is a neighbour at distance 0, not a
    stand-in for i), and ties go to the lower index: values within ``1e-12``
    (``repgraph.builders.knn.TIE_RTOL``) count as tied, both for which samples make the k and
    for their order. The arrays are read-only views, as the object is shared.

    Parameters
    ----------
    indices : np.ndarray
        (N, k) int64 neighbour indices, nearest first.
    similarities : np.ndarray
        (N, k) float64 cosines ``cos(x_i, x_indices[i, a])``, non-increasing along each row.
    unit : np.ndarray
        (N, D) float64 L2-normalised rows ``x_i / ‖x_i‖`` (the second-order cosine needs the
        cosines to the other representation's neighbours too).
    name : str
        The representation's name in error messages.

    Attributes
    ----------
    n : int
        Number of samples N.
    k : int
        Neighbours per sample.

    References
    ----------
    Klabunde et al., ICLR 2025 (ReSi); Huh et al., ICML 2024 (platonic representation hypothesis).

    Examples
    --------
    >>> import numpy as np
    >>> from repgraph.analyzers import neighbourhood
    >>> nb = neighbourhood(np.array([[1.0, 0.0], [1.0, 0.1], [0.0, 1.0], [0.2, 1.0]]), k=1)
    >>> nb.n, nb.k, nb.indices.ravel().tolist()
    (4, 1, [1, 0, 3, 2])
    """

    indices: np.ndarray
    similarities: np.ndarray
    unit: np.ndarray
    name: str = "X"
    _cache: dict = dataclasses.field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self):
        indices = np.asarray(self.indices)
        similarities = np.asarray(self.similarities, dtype=np.float64)
        unit = np.asarray(self.unit, dtype=np.float64)
        if indices.ndim != 2 or not np.issubdtype(indices.dtype, np.integer):
            raise ValueError(f"indices must be an (N, k) integer array, got shape {indices.shape} and dtype "
                             f"{indices.dtype}; build a Neighbourhood with neighbourhood(X, k).")
        if similarities.shape != indices.shape or unit.ndim != 2 or unit.shape[0] != indices.shape[0]:
            raise ValueError(f"similarities must have the shape of indices {indices.shape} and unit N = "
                             f"{indices.shape[0]} rows, got {similarities.shape} and {unit.shape}; build a "
                             "Neighbourhood with neighbourhood(X, k).")
        object.__setattr__(self, "indices", _read_only(indices.astype(np.int64, copy=False)))
        object.__setattr__(self, "similarities", _read_only(similarities))
        object.__setattr__(self, "unit", _read_only(unit))

    @property
    def n(self) -> int:
        return int(self.indices.shape[0])

    @property
    def k(self) -> int:
        return int(self.indices.shape[1])

    def __repr__(self) -> str:
        return f"Neighbourhood(name={self.name!r}, n={self.n}, k={self.k}, d={self.unit.shape[1]})"

    def permuted(self, perm) -> "Neighbourhood":
        """The neighbourhood of ``X[perm]`` by re-indexing, without a new kNN search: row r is
        the old row ``perm[r]`` with every index j relabelled to its new position ``perm⁻¹[j]``.

        On tie-free data this equals ``neighbourhood(X[perm], k)``. Where neighbours tie, it
        keeps the choices made in the original order (ties went to the lower *original* index,
        and tied neighbours keep their original order), so it can differ from a fresh search,
        which gives them to the lower *new* index; every measure then can differ too.

        Parameters
        ----------
        perm : array-like of int
            A permutation of ``range(n)`` (numpy array, list or torch tensor).

        Returns
        -------
        Neighbourhood
        """
        perm = _permutation(perm, self.n)
        inverse = np.empty_like(perm)
        inverse[perm] = np.arange(self.n)
        return Neighbourhood(inverse[self.indices[perm]], self.similarities[perm], self.unit[perm], name=self.name)


def _permutation(perm, n: int) -> np.ndarray:
    if isinstance(perm, torch.Tensor):
        perm = perm.detach().cpu().numpy()
    perm = np.asarray(perm)
    if perm.shape != (n,) or not (np.issubdtype(perm.dtype, np.integer) and not perm.dtype == np.bool_):
        raise ValueError(f"perm must be a 1-D integer array of length n={n} (a permutation of range({n})), "
                         f"got shape {perm.shape} and dtype {perm.dtype}.")
    if not np.array_equal(np.sort(perm), np.arange(n)):
        raise ValueError(f"perm must be a permutation of range({n}): each index 0..{n - 1} exactly once.")
    return perm.astype(np.int64)


def _unit_rows(X, name: str) -> torch.Tensor:
    """``X`` (N, ...) flattened to (N, D) float64 rows of norm 1. Each row is first divided by its
    largest |value|, so the norm neither overflows (1e200) nor underflows (1e-200) and the cosines
    are those of any isotropic rescaling of the row. NaN/Inf or an all-zero row raise naming
    ``name`` (the cosine with a zero vector is undefined)."""
    t = as_features(X, name=name, dtype=torch.float64)
    peak = t.abs().amax(dim=1)
    zero = peak == 0
    if bool(zero.any()):
        rows = zero.nonzero().flatten().tolist()
        raise ValueError(f"{name} has {len(rows)} all-zero sample(s) (row {rows[0]}"
                         f"{', …' if len(rows) > 1 else ''}): the cosine distance to a zero vector is undefined, "
                         "so it has no nearest neighbours; drop those samples (from both representations).")
    t = t / peak[:, None]
    return t / torch.linalg.vector_norm(t, dim=1, keepdim=True)


def neighbourhood(X, k: int = 10, *, name: str = "X") -> Neighbourhood:
    """The k nearest other samples of every sample of ``X`` by cosine distance, prepared once for
    any number of pairs and measures.

    ``d(i, j) = 1 − cos(x_i, x_j)`` on the float64 L2-normalised rows; sample i itself is excluded
    by index; ties (cosines within 1e-12) go to the lower index, for the set and for its order
    (``repgraph.builders.knn.topk_lowest_index``). The float64 Gram ``U Uᵀ`` is computed in row
    chunks bounded by the working-memory budget (``repgraph.get_config()``), on the device of ``X``.
    ``k ≥ N − 1`` would make every other sample a neighbour: ``k = N − 1`` is allowed (then the
    Jaccard and mutual-kNN similarities are trivially 1), ``k ≥ N`` raises.

    Parameters
    ----------
    X : array or tensor (N, ...)
        One representation of N samples (numpy or torch, any device), flattened to (N, D).
    k : int
        Neighbours per sample, 1 ≤ k ≤ N − 1.
    name : str
        Name of ``X`` in error messages.

    Returns
    -------
    Neighbourhood

    Raises
    ------
    ValueError
        If ``X`` has fewer than 2 samples, NaN/Inf, an all-zero row (named), or ``k ≥ N``.
    TypeError
        If ``k`` is not an integer.

    References
    ----------
    Klabunde et al., ICLR 2025 (ReSi), §nearest-neighbour measures.

    Examples
    --------
    >>> import numpy as np
    >>> from repgraph.analyzers import neighbourhood
    >>> X = np.array([[1.0, 0.0], [1.0, 0.1], [0.0, 1.0], [0.2, 1.0], [1.0, 1.0]])
    >>> neighbourhood(X, k=2).indices.tolist()
    [[1, 4], [0, 4], [3, 4], [2, 4], [3, 1]]
    """
    k = check_count(k, "k")
    U = _unit_rows(X, name)
    n = U.shape[0]
    if k >= n:
        raise ValueError(f"k={k} but {name} has N={n} samples: each has only N − 1 = {n - 1} others; use "
                         f"k <= {n - 1}.")
    indices = torch.empty(n, k, dtype=torch.long, device=U.device)
    sims = torch.empty(n, k, dtype=torch.float64, device=U.device)
    step = row_chunk(n, 32 * n)  # the float64 row and topk_lowest_index's masks and counts
    for r0 in range(0, n, step):
        r1 = min(n, r0 + step)
        S = U[r0:r1] @ U.T
        local = torch.arange(r1 - r0, device=U.device)
        S[local, local + r0] = -torch.inf  # self excluded by index
        pick = topk_lowest_index(S, k)  # ascending index
        values = S.gather(1, pick)
        # nearest first; a stable sort of the index-ordered picks keeps tied values lowest index first
        order = torch.argsort(torch.round(values / TIE_RTOL), dim=1, descending=True, stable=True)
        indices[r0:r1], sims[r0:r1] = pick.gather(1, order), values.gather(1, order)
    return Neighbourhood(indices.cpu().numpy(), sims.cpu().numpy(), U.cpu().numpy(), name=name)


def _samples(value):
    """N of an input without preparing it (None when it cannot be told cheaply)."""
    if isinstance(value, Neighbourhood):
        return value.n
    shape = getattr(value, "shape", None)
    return int(shape[0]) if shape is not None and len(shape) else None


def _pair(X, Y, k) -> tuple[Neighbourhood, Neighbourhood]:
    """The two inputs as ``Neighbourhood`` objects of the same N and k (arrays are prepared with
    ``k``, or with the k of the Neighbourhood passed alongside when ``k`` is left out)."""
    explicit = k is not _DEFAULT_K
    k = check_count(k, "k")
    given = {name: v for name, v in (("X", X), ("Y", Y)) if isinstance(v, Neighbourhood)}
    if len({v.k for v in given.values()}) > 1:
        raise ValueError(f"X has k={X.k} neighbours per sample but Y has k={Y.k}; prepare both with the same k.")
    if given:
        theirs = next(iter(given.values())).k
        if explicit and k != theirs:
            raise ValueError(f"k={k} but the Neighbourhood passed as {' and '.join(given)} has k={theirs}; leave k "
                             f"out (it is taken from the Neighbourhood) or prepare it with neighbourhood(..., k={k}).")
        k = theirs
    nx, ny = _samples(X), _samples(Y)
    if nx is not None and ny is not None and nx != ny:
        raise ValueError(f"X has N={nx} samples but Y has N={ny}: the measures compare two representations of the "
                         "same samples, in the same order.")
    A = X if isinstance(X, Neighbourhood) else neighbourhood(X, k, name="X")
    B = Y if isinstance(Y, Neighbourhood) else neighbourhood(Y, k, name="Y")
    if A.n != B.n:
        raise ValueError(f"X has N={A.n} samples but Y has N={B.n}: the measures compare two representations of the "
                         "same samples, in the same order.")
    return A, B


def _common(A: Neighbourhood, B: Neighbourhood) -> tuple[np.ndarray, np.ndarray]:
    """``(found, rank)`` (N, k): whether ``A.indices[i, a]`` is also among B's neighbours of i,
    and if so its 0-based position in ``B.indices[i]`` (one sorted search over keys i·N + j)."""
    n, k = A.indices.shape
    base = np.arange(n, dtype=np.int64)[:, None] * n
    keys_b = (base + B.indices).ravel()
    order = np.argsort(keys_b, kind="stable")
    sorted_b = keys_b[order]
    keys_a = (base + A.indices).ravel()
    pos = np.searchsorted(sorted_b, keys_a).clip(max=len(sorted_b) - 1)
    found = sorted_b[pos] == keys_a
    return found.reshape(n, k), (order[pos] % k).reshape(n, k)


def _intersections(A, B) -> np.ndarray:
    return _common(A, B)[0].sum(axis=1)


def jaccard_knn(X, Y, k: int = _DEFAULT_K) -> float:
    """Jaccard similarity of the kNN sets: ``(1/N) Σ_i |N_k^X(i) ∩ N_k^Y(i)| / |N_k^X(i) ∪ N_k^Y(i)|``.

    ``N_k^X(i)``: the k nearest other samples of i in X by cosine distance (``neighbourhood``).
    ReSi's ``JaccardSimilarity``. In [0, 1]; 1 for identical neighbour sets (trivially so for
    k = N − 1); symmetric; invariant to orthogonal transforms and isotropic scaling of X or Y.

    Deviations from ReSi's code, which takes the k + 1 nearest points of scikit-learn's search
    and drops the first: here sample i is excluded by index, so where points coincide (distance
    0) i never counts as its own neighbour and no coinciding point is dropped in its place; and
    ties go to the lower index (scikit-learn's tie order is its implementation's). On data
    without ties the two agree to rounding.

    Parameters
    ----------
    X, Y : array, tensor or Neighbourhood
        Two representations (N, ...) of the same N samples, or their ``neighbourhood`` objects
        (of the same N and k; an array passed with a Neighbourhood is prepared with its k).
    k : int
        Neighbours per sample (1 ≤ k ≤ N − 1). With Neighbourhood inputs leave it out (their k is
        used) or pass the same value; another raises ``ValueError``.

    Returns
    -------
    float

    Raises
    ------
    ValueError
        For different N, Neighbourhoods of different k, k ≥ N, NaN/Inf or an all-zero row.

    References
    ----------
    Klabunde et al., ICLR 2025 (ReSi): ``JaccardSimilarity``.

    Examples
    --------
    >>> import numpy as np
    >>> from repgraph.analyzers import jaccard_knn
    >>> X = np.random.default_rng(0).normal(size=(30, 5))
    >>> jaccard_knn(X, 3.0 * X, k=4)
    1.0
    """
    A, B = _pair(X, Y, k)
    inter = _intersections(A, B)
    return float(np.mean(inter / (2 * A.k - inter)))


def mutual_knn(X, Y, k: int = _DEFAULT_K) -> float:
    """Mutual k-nearest-neighbour alignment: ``(1/N) Σ_i |N_k^X(i) ∩ N_k^Y(i)| / k``.

    As platonic-rep's ``mutual_knn`` computes it, on L2-normalised rows (its kNN takes the k
    largest inner products ``x̂_i·x̂_j``, j ≠ i: the cosine kNN of ``neighbourhood``). In [0, 1];
    1 for identical neighbour sets (trivially so for k = N − 1); symmetric; invariant to
    orthogonal transforms and isotropic scaling. Ties go to the lower index (the reference's
    ``argsort`` leaves their order to torch); self is excluded by index, as in the reference.

    Parameters
    ----------
    X, Y : array, tensor or Neighbourhood
        Two representations (N, ...) of the same N samples, or their ``neighbourhood`` objects
        (of the same N and k; an array passed with a Neighbourhood is prepared with its k).
    k : int
        Neighbours per sample (1 ≤ k ≤ N − 1). With Neighbourhood inputs leave it out (their k is
        used) or pass the same value; another raises ``ValueError``.

    Returns
    -------
    float

    Raises
    ------
    ValueError
        For different N, Neighbourhoods of different k, k ≥ N, NaN/Inf or an all-zero row.

    References
    ----------
    Huh et al., ICML 2024 (platonic representation hypothesis), §2: mutual nearest neighbours.

    Examples
    --------
    >>> import numpy as np
    >>> from repgraph.analyzers import mutual_knn
    >>> X = np.array([[1.0, 0.0], [1.0, 0.1], [0.0, 1.0], [0.1, 1.0]])
    >>> mutual_knn(X, X[:, ::-1], k=1)
    1.0
    """
    A, B = _pair(X, Y, k)
    return float(np.mean(_intersections(A, B) / A.k))


def rank_similarity(X, Y, k: int = _DEFAULT_K) -> float:
    """Rank similarity of the kNN lists, as ReSi's code computes it:

    ``(1/N) Σ_i v_i``, ``v_i = (1/H_{m_i}) Σ_{j ∈ N_k^X(i) ∩ N_k^Y(i)} 2 / ((1 + |r_X(j) − r_Y(j)|)(r_X(j) + r_Y(j)))``

    with ``r_X(j)`` the 1-based rank of j in i's nearest-first neighbour list in X, ``m_i`` the
    size of the intersection, ``H_m = Σ_{t=1}^m 1/t`` the harmonic number (ReSi's code normalises
    by the intersection's size, not by k), and ``v_i = 0`` for an empty intersection. In [0, 1];
    symmetric; invariant to orthogonal transforms and isotropic scaling.

    Deviations from ReSi's code: sample i is excluded by index (ReSi drops the first of k + 1
    neighbours, which can be another point coinciding with i, leaving i in its own list), and
    ties go to the lower index both for which samples make the k and for their ranks.

    Parameters
    ----------
    X, Y : array, tensor or Neighbourhood
        Two representations (N, ...) of the same N samples, or their ``neighbourhood`` objects
        (of the same N and k; an array passed with a Neighbourhood is prepared with its k).
    k : int
        Neighbours per sample (1 ≤ k ≤ N − 1). With Neighbourhood inputs leave it out (their k is
        used) or pass the same value; another raises ``ValueError``.

    Returns
    -------
    float

    Raises
    ------
    ValueError
        For different N, Neighbourhoods of different k, k ≥ N, NaN/Inf or an all-zero row.

    References
    ----------
    Klabunde et al., ICLR 2025 (ReSi): ``RankSimilarity`` (after Wang et al., 2020).

    Examples
    --------
    >>> import numpy as np
    >>> from repgraph.analyzers import rank_similarity
    >>> X = np.random.default_rng(0).normal(size=(30, 5))
    >>> rank_similarity(X, X, k=4)
    1.0
    """
    A, B = _pair(X, Y, k)
    found, rank_b = _common(A, B)
    rank_a = np.broadcast_to(np.arange(1, A.k + 1), found.shape)
    rank_b = rank_b + 1
    terms = np.where(found, 2.0 / ((1 + np.abs(rank_a - rank_b)) * (rank_a + rank_b)), 0.0)
    harmonic = np.concatenate([[1.0], np.cumsum(1.0 / np.arange(1, A.k + 1))])  # H_0 unused (score 0)
    return float(np.mean(terms.sum(axis=1) / harmonic[found.sum(axis=1)]))


def _cross_cosines(unit: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """``unit[i]·unit[indices[i, a]]`` (N, k): one representation's cosines to the neighbours
    the other representation chose, in row chunks within the working-memory budget."""
    n, k = indices.shape
    out = np.empty((n, k))
    step = row_chunk(n, 8 * k * unit.shape[1])
    for r0 in range(0, n, step):
        r1 = min(n, r0 + step)
        out[r0:r1] = np.einsum("nd,nkd->nk", unit[r0:r1], unit[indices[r0:r1]])
    return out


def _distances(cosines: np.ndarray) -> np.ndarray:
    return np.clip(1.0 - cosines, 0.0, 2.0)  # scikit-learn's cosine distance, clipped to [0, 2]


def second_order_cosine(X, Y, k: int = _DEFAULT_K) -> float:
    """Second-order cosine similarity, as ReSi's code computes it: for each sample i, the cosine
    between its vectors of cosine *distances* to the union of its neighbours in X and in Y,

    ``(1/N) Σ_i cos((d_X(i, j))_{j ∈ U_i}, (d_Y(i, j))_{j ∈ U_i})``, ``U_i = N_k^X(i) ∪ N_k^Y(i)``,

    ``d_X(i, j) = 1 − cos(x_i, x_j)`` clipped to [0, 2] (scikit-learn's cosine distance; ReSi
    compares distances, not similarities as the paper's formula reads) and each per-sample cosine
    clipped to [−1, 1] (scipy's). Symmetric; invariant to orthogonal transforms and isotropic
    scaling.

    Deviations from ReSi's code: sample i is excluded by index (ReSi drops the first of k + 1
    neighbours, which can be another point coinciding with i) and ties go to the lower index. A
    sample whose distances to all of ``U_i`` are 0 in X or in Y (its neighbours all point its
    way) makes the cosine 0/0, which ReSi returns as NaN: here it raises ``ValueError`` naming it.

    Parameters
    ----------
    X, Y : array, tensor or Neighbourhood
        Two representations (N, ...) of the same N samples, or their ``neighbourhood`` objects
        (of the same N and k; an array passed with a Neighbourhood is prepared with its k).
    k : int
        Neighbours per sample (1 ≤ k ≤ N − 1). With Neighbourhood inputs leave it out (their k is
        used) or pass the same value; another raises ``ValueError``.

    Returns
    -------
    float

    Raises
    ------
    ValueError
        For different N, Neighbourhoods of different k, k ≥ N, NaN/Inf, an all-zero row, or a
        sample at distance 0 from all its neighbours (named).

    References
    ----------
    Klabunde et al., ICLR 2025 (ReSi): ``SecondOrderCosineSimilarity`` (after Hamilton et al., 2016).

    Examples
    --------
    >>> import numpy as np
    >>> from repgraph.analyzers import second_order_cosine
    >>> X = np.random.default_rng(0).normal(size=(30, 5))
    >>> round(second_order_cosine(X, X, k=4), 12)
    1.0
    """
    A, B = _pair(X, Y, k)
    b_in_a = _common(B, A)[0]
    only_b = ~b_in_a  # B's neighbours that A's list lacks: the rest of the union
    # on A's neighbours: both distances; on B's neighbours that A lacks: both, else 0 (counted once)
    da_a, db_a = _distances(A.similarities), _distances(_cross_cosines(B.unit, A.indices))
    da_b = np.where(only_b, _distances(_cross_cosines(A.unit, B.indices)), 0.0)
    db_b = np.where(only_b, _distances(B.similarities), 0.0)
    uv = (da_a * db_a).sum(axis=1) + (da_b * db_b).sum(axis=1)
    uu = (da_a * da_a).sum(axis=1) + (da_b * da_b).sum(axis=1)
    vv = (db_a * db_a).sum(axis=1) + (db_b * db_b).sum(axis=1)
    for norms, name in ((uu, A.name), (vv, B.name)):
        if (norms == 0).any():
            i = int(np.argmax(norms == 0))
            raise ValueError(f"sample {i} is at cosine distance 0 from all its neighbours in {name} (they point "
                             "its way), so its second-order cosine is 0/0; drop coinciding samples or use a larger k.")
    return float(np.mean(np.clip(uv / np.sqrt(uu * vv), -1.0, 1.0)))


def _masked_hsic(n: int, rows, cols, kv, lv) -> float:
    """The unbiased HSIC (Song et al., 2012, eq. 5) of the (N, N) matrices K̃, L̃ that are 0 except
    at the off-diagonal positions ``(rows, cols)``, where they hold ``kv`` and ``lv``:

    ``[Σ_ij K̃_ij L̃_ji + (Σ K̃)(Σ L̃)/((N−1)(N−2)) − 2·1ᵀK̃L̃1/(N−2)] / (N(N−3))``

    (``Σ_ij K̃_ij L̃_ji`` as the reference's ``sum(K̃ ∘ L̃ᵀ)``: the matrices need not be symmetric)."""
    K = sp.csr_matrix((kv, (rows, cols)), shape=(n, n))
    L = sp.csr_matrix((lv, (rows, cols)), shape=(n, n))
    trace = float(K.multiply(L.T).sum())
    cross = float(np.bincount(cols, weights=kv, minlength=n) @ np.bincount(rows, weights=lv, minlength=n))
    return (trace + kv.sum() * lv.sum() / ((n - 1) * (n - 2)) - 2.0 * cross / (n - 2)) / (n * (n - 3))


def _self_hsic(A: Neighbourhood) -> float:
    """HSIC_u(M ∘ K, M ∘ K) of A's own kNN mask M and cosine kernel K, cached on A."""
    if "hsic" not in A._cache:
        rows = np.repeat(np.arange(A.n), A.k)
        sims = A.similarities.ravel()
        A._cache["hsic"] = _masked_hsic(A.n, rows, A.indices.ravel(), sims, sims)
    return A._cache["hsic"]


def cknna(X, Y, k: int = _DEFAULT_K) -> float:
    """Centered kernel nearest-neighbour alignment (CKNNA): CKA of the cosine kernels restricted
    to the pairs that are neighbours in both representations, as platonic-rep's ``cknna`` computes
    it (its default ``unbiased=True``), on L2-normalised rows:

    ``CKNNA = HSIC_u(M ∘ K, M ∘ L) / sqrt(HSIC_u(M_X ∘ K, M_X ∘ K) · HSIC_u(M_Y ∘ L, M_Y ∘ L))``

    with ``K_ij = cos(x_i, x_j)``, ``L_ij = cos(y_i, y_j)``, the one-directional kNN masks
    ``(M_X)_ij = 1`` if j ∈ N_k^X(i) (not symmetrised, as the reference), ``M = M_X ∘ M_Y``, and
    HSIC_u the unbiased estimator of Song et al. (2012, eq. 5). CKNNA(X, X) = 1; invariant to
    orthogonal transforms and isotropic scaling; k = N − 1 gives the unbiased CKA of the cosine
    kernels. Not exactly symmetric, as the reference: the masked kernels are not symmetric
    matrices, so HSIC_u's term ``1ᵀ(M ∘ K)(M ∘ L)1`` changes when X and Y swap (slightly: the
    row and column sums of the masked kernels differ only through the one-directional mask).

    The reference adds ``1e-6`` to the denominator; it is dropped here, so the value does not
    depend on that absolute constant (HSIC_u of kNN-masked kernels scales like k/N and is often
    1e-4 or smaller, where the 1e-6 shifts the value by a percent). platonic-rep's value is this
    one times ``s / (s + 1e-6)``, ``s`` the denominator above. Where either self-term is not
    positive (e.g. all neighbour cosines 0) CKNNA is undefined and ``ValueError`` names the
    representation (the reference would give NaN or divide by its 1e-6). Ties go to the lower
    index (the reference's ``topk`` leaves them to torch); self is excluded by index, as there.

    Parameters
    ----------
    X, Y : array, tensor or Neighbourhood
        Two representations (N, ...) of the same N ≥ 4 samples, or their ``neighbourhood``
        objects (of the same N and k; an array passed with a Neighbourhood is prepared with its k).
    k : int
        Neighbours per sample (2 ≤ k ≤ N − 1: the reference refuses k < 2). With Neighbourhood
        inputs leave it out (their k is used) or pass the same value; another raises ``ValueError``.

    Returns
    -------
    float

    Raises
    ------
    ValueError
        For different N, N < 4, Neighbourhoods of different k, k < 2 or k ≥ N, NaN/Inf, an
        all-zero row, or a self-term that is not positive.

    References
    ----------
    Huh et al., ICML 2024 (platonic representation hypothesis), Appendix: CKNNA. Song et al.,
    "Feature Selection via Dependence Maximization", JMLR 2012 (unbiased HSIC).

    Examples
    --------
    >>> import numpy as np
    >>> from repgraph.analyzers import cknna
    >>> X = np.random.default_rng(0).normal(size=(30, 5))
    >>> round(cknna(X, 2.0 * X, k=5), 12)
    1.0
    """
    A, B = _pair(X, Y, k)
    if A.k < 2:
        raise ValueError(f"k={A.k} but CKNNA needs k >= 2 (as the reference); use a larger k.")
    if A.n < 4:
        raise ValueError(f"X and Y have N={A.n} samples but CKNNA's unbiased HSIC needs N >= 4.")
    found, rank_b = _common(A, B)
    rows = np.broadcast_to(np.arange(A.n)[:, None], found.shape)[found]
    kv = A.similarities[found]
    lv = np.take_along_axis(B.similarities, rank_b, axis=1)[found]
    joint = _masked_hsic(A.n, rows, A.indices[found], kv, lv)
    selves = []
    for nb in (A, B):
        value = _self_hsic(nb)
        if not value > 0:
            raise ValueError(f"{nb.name}'s cosine kernel restricted to its own kNN pairs has HSIC {value:.3g} with "
                             "itself, not positive (e.g. its neighbours' cosines are all 0), so CKNNA is undefined.")
        selves.append(value)
    return float(joint / np.sqrt(selves[0] * selves[1]))
