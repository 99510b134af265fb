"""Centered kernel alignment (Kornblith et al., ICML 2019) with the biased and the unbiased HSIC
estimator (Song et al., JMLR 2012; Nguyen et al., ICLR 2021), for one pair or all layer pairs."""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from .._arrays import as_features, power_of_two_scaled, row_chunk
from .._results import described
from .._warnings import warn_user
from ..builders.similarity import median
from ..execution.runner import planning
from ..execution.sources import layer_sources
from .hsic_out_of_core import out_of_core_hsic

KERNELS = ("linear", "rbf")


def _centred_features(X, name, device, min_samples):
    """float32 features, scaled by a power of two when float32 products of their values would
    overflow or underflow (``power_of_two_scaled``: exact, CKA is scale invariant), with column
    means (computed in float64) removed: ``X̃ X̃ᵀ = H X Xᵀ H``, so the Gram needs no centring of
    large raw values (no cancellation). Returns the features and the scale's exponent e
    (features × 2^-e)."""
    Xt = as_features(X, name=name, device=device, min_samples=min_samples, check_finite=False)
    Xt, exponent = power_of_two_scaled(Xt, name=name)
    return Xt - Xt.mean(dim=0, dtype=torch.float64, keepdim=True).float(), exponent


class _Kernel:
    """One layer's kernel: blocks of rows of its Gram matrix, plus the sums centring needs."""

    def __init__(self, X: torch.Tensor, kernel: str, sigma: float, debiased: bool, name: str):
        self.X, self.kernel, self.debiased, self.n = X, kernel, debiased, X.shape[0]
        self.sq = (X.double() ** 2).sum(dim=1)
        if kernel == "rbf":
            d2 = self._sq_distances(slice(0, self.n))
            width2 = sigma ** 2 * float(median(d2))
            if not width2 > 0:
                raise ValueError(f"{name}: every sample is identical, so the RBF width "
                                 "sigma·sqrt(median squared distance) is 0; CKA is undefined.")
            self.width2 = width2
        if kernel == "linear":  # K·1 = X̃(X̃ᵀ1) in O(ND); the unbiased estimator drops the diagonal
            row_sums = X.double() @ X.sum(dim=0, dtype=torch.float64)
            if debiased:
                row_sums = row_sums - self.sq
        else:
            row_sums = torch.zeros(self.n, dtype=torch.float64, device=X.device)
            for rows in self._row_blocks():
                row_sums[rows] = self.block(rows).sum(dim=1)
        self.row_sums, self.total = row_sums, row_sums.sum()

    def _row_blocks(self):
        step = row_chunk(self.n, 8 * self.n)  # float64 kernel rows
        return [slice(s, min(self.n, s + step)) for s in range(0, self.n, step)]

    def _sq_distances(self, rows):
        d2 = self.sq[rows, None] + self.sq[None, :] - 2.0 * (self.X[rows] @ self.X.T).double()
        return d2.clamp_min(0.0)

    def block(self, rows: slice) -> torch.Tensor:
        """Rows ``rows`` of the kernel matrix (float64); diagonal zeroed for the unbiased estimator."""
        if self.kernel == "linear":
            K = (self.X[rows] @ self.X.T).double()
        else:
            K = torch.exp(-self._sq_distances(rows) / (2.0 * self.width2))
        if self.debiased:
            local = torch.arange(rows.stop - rows.start, device=K.device)
            K[local, local + rows.start] = 0.0
        return K

    def centred_block(self, rows: slice) -> torch.Tensor:
        """Rows of the centred kernel: ``HKH`` (biased) or the U-centred K̃ (unbiased):
        ``U_ij = K̃_ij − r_i/(n−2) − r_j/(n−2) + s/((n−1)(n−2))`` for i ≠ j, ``U_ii = 0``."""
        K, n = self.block(rows), self.n
        r = self.row_sums
        if self.debiased:
            U = K - r[rows, None] / (n - 2) - r[None, :] / (n - 2) + self.total / ((n - 1) * (n - 2))
            local = torch.arange(rows.stop - rows.start, device=U.device)
            U[local, local + rows.start] = 0.0
            return U
        return K - r[rows, None] / n - r[None, :] / n + self.total / n ** 2


def hsic_matrix(features, *, kernel: str = "linear", debiased: bool = False, sigma: float = 0.5,
                device=None, names=None, progress: bool = False) -> np.ndarray:
    """HSIC between every pair of the feature matrices in ``features`` (each (N, ...), same N), in
    float64, from one stacked product of the flattened centred Grams per block of rows:
    biased ``Σ_ij (HKH)_ij (HLH)_ij / (n−1)²``; unbiased ``Σ_ij U(K)_ij U(L)_ij / (n(n−3))``.
    Features of extreme magnitude are computed on power-of-two-scaled copies and the linear HSIC
    scaled back in float64 (exact).

    Parameters
    ----------
    features : sequence of arrays or tensors (N, ...)
        The representations, all of the same N samples.
    kernel : {"linear", "rbf"}
    debiased : bool
        The unbiased estimator (needs N ≥ 4).
    sigma : float
        RBF width σ = ``sigma``·sqrt(median of the N×N squared distances, diagonal included).
    device : str or torch.device, optional
    names : list of str, optional
        Names used in error messages.
    progress : bool
        Show a progress bar over the row blocks.

    Returns
    -------
    ndarray (L, L) of float64 HSIC values.

    Raises
    ------
    ValueError
        For different N, too few samples, NaN/Inf, or all-identical samples with the RBF kernel.

    Examples
    --------
    >>> import numpy as np
    >>> from repgraph.analyzers import hsic_matrix
    >>> X = np.array([[0.0], [1.0], [2.0], [3.0]])    # centred Gram: outer(x - 1.5, x - 1.5)
    >>> hsic_matrix([X])    # (Σ_ij K̃_ij²) / (n − 1)² = 5² / 9
    array([[2.77777778]])
    """
    names = names or [f"features[{i}]" for i in range(len(features))]
    min_n = 4 if debiased else 2
    Xs, exponents = zip(*[_centred_features(X, name, device, min_n) for X, name in zip(features, names)])
    sizes = {name: X.shape[0] for name, X in zip(names, Xs)}
    if len(set(sizes.values())) > 1:
        raise ValueError(f"All inputs must hold the same samples (same N); got {sizes}.")
    kernels = [_Kernel(X, kernel, sigma, debiased, name) for X, name in zip(Xs, names)]
    n = Xs[0].shape[0]
    H = torch.zeros(len(Xs), len(Xs), dtype=torch.float64, device=Xs[0].device)
    step = row_chunk(n, 8 * n * len(Xs))  # the stacked float64 block stays within the budget
    for start in tqdm(range(0, n, step), desc="HSIC", disable=not progress, leave=False):
        rows = slice(start, min(n, start + step))
        M = torch.stack([k.centred_block(rows).reshape(-1) for k in kernels])
        H += M @ M.T
    scale = n * (n - 3) if debiased else (n - 1) ** 2
    H = (H / scale).cpu().numpy()
    if kernel == "linear" and any(exponents):  # K = XXᵀ was computed on X·2^-e: HSIC(K, L) scales by 4^-(e_K + e_L)
        e = np.asarray(exponents, dtype=np.float64)
        H = H * np.exp2(2.0 * (e[:, None] + e[None, :]))
    return H


def _normalise(hsic: np.ndarray, names) -> np.ndarray:
    self_hsic = np.diag(hsic)
    bad = [names[i] for i in np.flatnonzero(self_hsic <= 0)]
    if bad:
        raise ValueError(f"HSIC of {bad} with itself is not positive: those features are constant "
                         "across samples (or nearly so), so CKA is undefined for them.")
    return hsic / np.sqrt(np.outer(self_hsic, self_hsic))


def _check_kernel(kernel, debiased, sigma):
    if kernel not in KERNELS:
        raise ValueError(f"kernel must be one of {KERNELS}, got {kernel!r}.")
    if not sigma > 0:
        raise ValueError(f"sigma must be positive, got {sigma!r}.")


def _cross_norm(A: torch.Tensor, B: torch.Tensor) -> float:
    """``‖AᵀB‖_F`` of two float64 column-centred feature matrices (the linear CKA's feature path)."""
    return float(torch.linalg.matrix_norm(A.T @ B))


def _feature_cka(xy: float, xx: float, yy: float, names) -> float:
    """Linear biased CKA from ``‖ỸᵀX̃‖_F``, ``‖X̃ᵀX̃‖_F`` and ``‖ỸᵀỸ‖_F``: ``xy² / (xx·yy)``."""
    return float(_normalise(np.array([[xx ** 2, xy ** 2], [xy ** 2, yy ** 2]]), names)[0, 1])


def cka(X, Y, *, kernel: str = "linear", debiased: bool = False, sigma: float = 0.5, device=None) -> float:
    """CKA(K, L) = HSIC(K, L) / sqrt(HSIC(K, K) · HSIC(L, L)) with K, L the kernels of X and Y.

    Linear kernel ``K = XXᵀ``; biased HSIC with the centring matrix H, which for column-centred
    X̃, Ỹ equals ``‖ỸᵀX̃‖²_F / (‖X̃ᵀX̃‖_F ‖ỸᵀỸ‖_F)`` (used when N ≥ D, the Gram path otherwise).
    RBF: ``K_ij = exp(−‖x_i − x_j‖²/(2σ²))`` with σ = ``sigma``·sqrt(median squared distance, zero
    diagonal included). ``debiased=True`` uses the unbiased HSIC (U-statistic, Székely–Rizzo
    centring; needs N ≥ 4). Invariant to isotropic scaling: features of extreme magnitude (≈1e30,
    whose float32 Gram would overflow) are scaled by a power of two first, which changes nothing.

    Parameters
    ----------
    X, Y : array or tensor (N, ...)
        Two representations of the same N samples (flattened).
    kernel : {"linear", "rbf"}
    debiased : bool
        The unbiased HSIC estimator (use it when features ≫ samples: the biased one is inflated).
    sigma : float
        RBF width σ = ``sigma``·sqrt(median of the N×N squared distances, diagonal included).
    device : str or torch.device, optional

    Returns
    -------
    float

    Raises
    ------
    ValueError
        For different N, too few samples, NaN/Inf, constant features or a bad option.

    References
    ----------
    Kornblith et al., "Similarity of Neural Network Representations Revisited", ICML 2019;
    Nguyen et al., "Do Wide and Deep Networks Learn the Same Things?", ICLR 2021.

    Examples
    --------
    >>> import numpy as np
    >>> from repgraph import cka
    >>> np.random.seed(1337)    # Kornblith et al.'s demo
    >>> X = np.random.randn(100, 10)
    >>> Y = np.random.randn(100, 10) + X
    >>> round(cka(X, Y), 5), round(cka(X, Y, debiased=True), 5)
    (0.55761, 0.51346)
    """
    _check_kernel(kernel, debiased, sigma)
    if kernel == "linear" and not debiased:
        Xc, _ = _centred_features(X, "X", device, 2)  # CKA is invariant to the power-of-two scales
        Yc, _ = _centred_features(Y, "Y", device, 2)
        if Xc.shape[0] != Yc.shape[0]:
            raise ValueError(f"X has {Xc.shape[0]} samples but Y has {Yc.shape[0]}; CKA compares "
                             "representations of the same samples.")
        if Xc.shape[0] >= max(Xc.shape[1], Yc.shape[1]):  # feature path: D×D products
            Xd, Yd = Xc.double(), Yc.double()
            return _feature_cka(_cross_norm(Yd, Xd), _cross_norm(Xd, Xd), _cross_norm(Yd, Yd), ["X", "Y"])
    hsic = hsic_matrix([X, Y], kernel=kernel, debiased=debiased, sigma=sigma, device=device, names=["X", "Y"])
    return float(_normalise(hsic, ["X", "Y"])[0, 1])


class PreparedKernel:
    """One layer prepared once for ``prepared_cka`` against any other layer: what ``cka`` computes
    of X alone, kept so that comparing it with many layers (or with many permutations of another
    layer, for a permutation null) repeats only the pairwise part.

    Holds the float32 column-centred features X̃ (``_centred_features``, as ``cka``), for the
    linear biased estimator the float64 X̃ and ``‖X̃ᵀX̃‖_F`` (the feature path ``cka`` takes when
    N ≥ both widths), and on first need the centred (``HKH``) or U-centred float64 Gram matrix
    with its self inner product (the Gram path, as ``hsic_matrix``). ``permuted(perm)`` is the
    state of ``X[perm]`` by re-indexing: rows of X̃, ``K[perm][:, perm]`` of the Gram (centring
    commutes with a permutation of the samples), the norms unchanged.

    Parameters
    ----------
    X : array or tensor (N, ...)
        One layer's features (flattened).
    kernel : {"linear", "rbf"}
    debiased : bool
        The unbiased HSIC estimator (needs N ≥ 4).
    sigma : float
        RBF width σ = ``sigma``·sqrt(median squared distance, diagonal included).
    device : str or torch.device, optional
    name : str
        Name used in error messages.

    Examples
    --------
    >>> import numpy as np
    >>> from repgraph.analyzers.cka import PreparedKernel, prepared_cka
    >>> X = np.random.default_rng(0).normal(size=(20, 3))
    >>> a = PreparedKernel(X)
    >>> round(prepared_cka(a, PreparedKernel(2 * X + 1)), 6), round(prepared_cka(a, a.permuted(np.arange(20))), 6)
    (1.0, 1.0)
    """

    def __init__(self, X, kernel: str = "linear", debiased: bool = False, sigma: float = 0.5, device=None,
                 name: str = "X"):
        if X is None:  # ``permuted``'s empty shell
            return
        _check_kernel(kernel, debiased, sigma)
        self.kernel, self.debiased, self.sigma, self.name = kernel, debiased, float(sigma), name
        self.features, _ = _centred_features(X, name, device, 4 if debiased else 2)
        self.n, self.width = self.features.shape
        self.double = self.feature_norm = None
        if kernel == "linear" and not debiased and self.n >= self.width:  # cka's feature path may be taken
            self.double = self.features.double()
            self.feature_norm = _cross_norm(self.double, self.double)
        self._gram = None  # (centred Gram, its self inner product), built on first need
        self._origin = self._index = None  # for a permuted state: the state it re-indexes, and how

    def gram(self) -> tuple[torch.Tensor, float]:
        """The centred (biased) or U-centred (unbiased) float64 Gram matrix and ``⟨K̃, K̃⟩``, built on
        first call from the rows in blocks of ``hsic_matrix``'s size for two layers (a permuted
        state re-indexes its origin's, which is built once)."""
        # one assignment of the pair: tasks on threads of one worker share this state, and a
        # thread must never see the Gram without its inner product
        if self._gram is None and self._origin is not None:
            K, inner = self._origin.gram()
            self._gram = (K[self._index][:, self._index], inner)
        elif self._gram is None:
            k = _Kernel(self.features, self.kernel, self.sigma, self.debiased, self.name)
            step = row_chunk(self.n, 8 * self.n * 2)  # the blocks hsic_matrix([X, Y]) takes
            K = torch.cat([k.centred_block(slice(s, min(self.n, s + step))) for s in range(0, self.n, step)])
            flat = K.reshape(-1)
            self._gram = (K, float(flat @ flat))
        return self._gram

    def permuted(self, perm) -> "PreparedKernel":
        """The prepared state of ``X[perm]``, re-indexed from this one (nothing recomputed)."""
        index = torch.as_tensor(np.asarray(perm), dtype=torch.long, device=self.features.device)
        if index.shape != (self.n,):
            raise ValueError(f"perm must be a permutation of the {self.n} samples of {self.name}, got shape "
                             f"{tuple(index.shape)}.")
        out = PreparedKernel(None)
        out.__dict__.update(self.__dict__)
        out.features = self.features[index]
        out.double = None if self.double is None else self.double[index]
        out._origin = self if self._origin is None else self._origin
        out._index = index if self._index is None else self._index[index]
        out._gram = None
        return out


def prepared_cka(a: PreparedKernel, b: PreparedKernel) -> float:
    """``cka(X, Y)`` of two prepared layers (``PreparedKernel``, same kernel and estimator): the
    feature path ``‖ỸᵀX̃‖²_F / (‖X̃ᵀX̃‖_F ‖ỸᵀỸ‖_F)`` where ``cka`` takes it (linear, biased,
    N ≥ both widths), else ``⟨K̃, L̃⟩ / sqrt(⟨K̃, K̃⟩⟨L̃, L̃⟩)`` of the (U-)centred Grams; equal to
    ``cka`` up to the order of float64 sums.

    Parameters
    ----------
    a, b : PreparedKernel

    Returns
    -------
    float

    Raises
    ------
    ValueError
        For layers of different N or prepared with different options, or a constant layer.

    Examples
    --------
    >>> import numpy as np
    >>> from repgraph.analyzers.cka import PreparedKernel, cka, prepared_cka
    >>> rng = np.random.default_rng(0)
    >>> X, Y = rng.normal(size=(30, 4)), rng.normal(size=(30, 6))
    >>> abs(prepared_cka(PreparedKernel(X), PreparedKernel(Y)) - cka(X, Y)) < 1e-12
    True
    """
    if a.n != b.n:
        raise ValueError(f"{a.name} has {a.n} samples but {b.name} has {b.n}; CKA compares representations "
                         "of the same samples.")
    if (a.kernel, a.debiased, a.sigma) != (b.kernel, b.debiased, b.sigma):
        raise ValueError(f"{a.name} and {b.name} were prepared with different CKA options "
                         f"({(a.kernel, a.debiased, a.sigma)} vs {(b.kernel, b.debiased, b.sigma)}).")
    names = [a.name, b.name]
    if a.double is not None and b.double is not None and a.n >= max(a.width, b.width):
        return _feature_cka(_cross_norm(b.double, a.double), a.feature_norm, b.feature_norm, names)
    (K, kk), (L, ll) = a.gram(), b.gram()
    scale = a.n * (a.n - 3) if a.debiased else (a.n - 1) ** 2
    kl = float(K.reshape(-1) @ L.reshape(-1))
    return float(_normalise(np.array([[kk, kl], [kl, ll]]) / scale, names)[0, 1])


MIN_BATCH = 4  # the unbiased HSIC needs n >= 4 samples


class MinibatchCKA:
    """Streaming CKA across minibatches (Nguyen et al., ICLR 2021), torchmetrics-style.

    ``update(xs, ys=None)``: ``xs`` (and ``ys``) a list of one batch's features per layer. The
    unbiased HSIC of every layer pair, weighted by the batch's size n_b, is summed over batches in
    float64; ``compute()`` normalises once at the end:
    ``CKA_ij = Σ_b n_b·HSIC_b(i, j) / sqrt(Σ_b n_b·HSIC_b(i, i) · Σ_b n_b·HSIC_b(j, j))``.
    With equal batches this is the plain sum of Nguyen et al.; a shorter (last) batch counts in
    proportion to its samples (their code, which drops the 1/(n(n−3)) of each batch, weights by
    ~n_b² instead). With ``ys`` the result is the (L, L′) cross block between two models;
    without, (L, L). Linear kernel (as in Nguyen et al.). Each batch needs at least 4 samples.
    ``n_batches`` and ``n_samples`` count what was fed.

    Parameters
    ----------
    device : str or torch.device, optional
        Where each batch's HSIC products run (default: where the batch is; CPU for numpy).

    Attributes
    ----------
    hsic : ndarray (L + L′, L + L′) of float64 or None
        The running sum Σ_b n_b·HSIC_b over every layer of ``xs`` then ``ys``; None before the
        first ``update``.
    n_x : int or None
        The number of layers in ``xs`` (the rows of the result).
    n_batches : int
        Batches fed so far.
    n_samples : int
        Samples fed so far.

    Raises
    ------
    ValueError
        From ``update``: a batch with another number of layers than the earlier ones, layers of
        different sizes within a batch, fewer than 4 samples, or NaN/Inf. From ``compute``: no
        batch fed yet, or a layer constant across the samples (its self-HSIC is not positive).

    Notes
    -----
    Nguyen et al.'s ``efficient_CKA.py`` sums per-batch unbiased HSIC without its 1/(n(n−3))
    factor, which weights a batch by about n_b²; here each batch's HSIC is weighted by n_b, so a
    short last batch counts in proportion to its samples. With equal batches both give the same
    CKA.

    References
    ----------
    Nguyen, Raghu & Kornblith, "Do Wide and Deep Networks Learn the Same Things?", ICLR 2021
    (arXiv 2010.15327); github.com/google-research/google-research
    ``do_wide_and_deep_networks_learn_the_same_things/efficient_CKA.py``. The ``update()`` /
    ``compute()`` interface follows torchmetrics' ``Metric``.

    Examples
    --------
    >>> import numpy as np
    >>> from repgraph import MinibatchCKA
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(100, 5))
    >>> acc = MinibatchCKA()
    >>> for s in range(0, 100, 50):
    ...     acc.update([X[s:s + 50], 2 * X[s:s + 50] + 1])
    >>> acc.compute().round(6), acc.n_samples
    (array([[1., 1.],
           [1., 1.]]), 100)
    """

    def __init__(self, device=None):
        self.device = device
        self.hsic = None
        self.n_x = None
        self.n_batches = 0
        self.n_samples = 0

    def update(self, xs, ys=None):
        """Add one batch: ``xs`` (and ``ys``) a list or mapping of each layer's (n_b, ...) features."""
        xs = list(xs.values()) if isinstance(xs, Mapping) else list(xs)
        ys = None if ys is None else (list(ys.values()) if isinstance(ys, Mapping) else list(ys))
        features = xs + (ys or [])
        names = [f"xs[{i}]" for i in range(len(xs))] + [f"ys[{i}]" for i in range(len(ys or []))]
        if self.n_x is not None and (self.n_x, self.hsic.shape[0]) != (len(xs), len(features)):
            raise ValueError(f"update() got {len(xs)} + {len(ys or [])} layers but earlier batches had "
                             f"{self.n_x} + {self.hsic.shape[0] - self.n_x}.")
        hsic = hsic_matrix(features, kernel="linear", debiased=True, device=self.device, names=names)
        self._add(hsic, len(features[0]), len(xs))

    def _add(self, hsic: np.ndarray, n_b: int, n_x: int):
        """Add one batch's unbiased HSIC matrix of ``n_b`` samples; its first ``n_x`` layers are ``xs``."""
        h = n_b * hsic
        self.hsic = h if self.hsic is None else self.hsic + h
        self.n_x = n_x
        self.n_batches += 1
        self.n_samples += n_b

    def compute(self) -> np.ndarray:
        """The CKA matrix of everything fed so far."""
        if self.hsic is None:
            raise ValueError("MinibatchCKA.compute() before any update(): feed at least one batch.")
        names = [f"layer {i}" for i in range(self.hsic.shape[0])]
        cka_all = _normalise(self.hsic, names)
        if self.n_x == self.hsic.shape[0]:
            return cka_all
        return cka_all[:self.n_x, self.n_x:]


def minibatch_bounds(n: int, batch_size: int) -> list[tuple[int, int]]:
    """Consecutive batches of ``batch_size`` over ``n`` samples, the last partial one included when
    it has at least 4 samples (the unbiased HSIC's minimum); a shorter remainder is left out with a
    warning that gives its size. ``batch_size > n`` gives one batch of all n."""
    bounds = [(s, min(n, s + batch_size)) for s in range(0, n, batch_size)]
    if len(bounds) > 1 and bounds[-1][1] - bounds[-1][0] < MIN_BATCH:
        start, stop = bounds.pop()
        warn_user(f"minibatch CKA: the last {stop - start} of {n} samples are left out: a batch needs at "
                  f"least {MIN_BATCH} samples for the unbiased HSIC (batch_size={batch_size}); choose a "
                  f"batch_size whose remainder is 0 or >= {MIN_BATCH} to use them.")
    return bounds


def _minibatch_plan(kernel: str, batch_size, sizes: dict) -> list[tuple[int, int]]:
    """The checked batches of minibatch CKA over layers of ``sizes`` (name -> N) samples."""
    if kernel != "linear":
        raise ValueError("Minibatch CKA (batch_size=...) is defined for the linear kernel only.")
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < MIN_BATCH:
        raise ValueError(f"batch_size must be an integer >= {MIN_BATCH} for the unbiased HSIC, got {batch_size!r}.")
    if len(set(sizes.values())) > 1:
        raise ValueError(f"All layers must hold the same samples (same N); got {sizes}.")
    n = next(iter(sizes.values()))
    if n < MIN_BATCH:
        raise ValueError(f"Minibatch CKA needs at least {MIN_BATCH} samples; the layers hold N={n}.")
    return minibatch_bounds(n, int(batch_size))


#: ``attrs["cka_estimator"]`` of every CKA table (``cka_matrix``; ``layer_redundancy`` and
#: ``block_redundancy``, whose ``cka_in_out`` defaults to the debiased one)
CKA_ESTIMATORS = {True: "debiased (unbiased HSIC)", False: "biased"}
MINIBATCH_ESTIMATOR = "debiased (minibatch unbiased HSIC)"


def _minibatch_estimator(n_batches: int, batch_size: int) -> str:
    return (f"minibatch unbiased HSIC, {n_batches} batch(es) of up to {batch_size}, weighted by size "
            "(Nguyen et al. 2021)")


def _cka_frame(values, rows, cols, *, kernel, estimator, cka_estimator, sigma, **parameters) -> pd.DataFrame:
    """The CKA matrix as a table (rows: layers of ``acts``, columns: of ``acts2``) with its ``attrs``."""
    out = pd.DataFrame(values, index=pd.Index(rows, name="layer"), columns=pd.Index(cols, name="layer2"))
    return described(out, "CKA", "Kornblith et al., ICML 2019; Nguyen et al., ICLR 2021", kernel=kernel,
                     estimator=estimator, cka_estimator=cka_estimator, sigma=sigma if kernel == "rbf" else None,
                     **parameters)


def _batch_hsic(layers, start: int, stop: int, names, device):
    """Unbiased linear HSIC of every pair of layers on samples ``start:stop`` (one minibatch)."""
    return hsic_matrix([rows[start:stop] for rows in layers], kernel="linear", debiased=True, device=device,
                       names=names)


def _whole_hsic(layers, kernel, debiased, sigma, device, names, progress=False):
    """``hsic_matrix`` on the layers read whole (one task: the RBF width needs every distance)."""
    return hsic_matrix([rows[0:len(rows)] for rows in layers], kernel=kernel, debiased=debiased, sigma=sigma,
                       device=device, names=names, progress=progress)


def cka_matrix(acts, acts2=None, *, kernel: str = "linear", debiased: bool = False, sigma: float = 0.5,
               batch_size: int | None = None, device=None, progress: bool = True, client=None) -> pd.DataFrame:
    """CKA between every layer of ``acts`` and every layer of ``acts2`` (default: ``acts`` itself).

    All pairs come from one stacked product of the layers' centred Gram matrices (``hsic_matrix``),
    not a loop over pairs. With ``batch_size`` the samples are split into consecutive batches of
    that size and ``MinibatchCKA`` accumulates the unbiased HSIC (linear kernel; the estimator is
    then always the unbiased one): the last, shorter batch is used when it has at least 4 samples,
    otherwise its samples are left out with a warning; ``batch_size`` ≥ N is one batch of all N.

    Parameters
    ----------
    acts : Activations or mapping layer -> array (N, ...)
    acts2 : Activations or mapping, optional
        A second network's layers on the same samples; default ``acts``.
    kernel : {"linear", "rbf"}
    debiased : bool, default False
        Unbiased HSIC (always, with ``batch_size``). The default is the biased estimator
        (Kornblith et al.'s CKA, as ``layer_similarity(measure="cka")``; ``"cka_debiased"`` is the
        other), whereas ``layer_redundancy`` and ``block_redundancy`` default to the debiased one
        (``cka_debiased=True``), so their ``cka_in_out`` of two layers is
        ``cka_matrix(..., debiased=True)``'s value, not this default's: the biased CKA is inflated
        when the features outnumber the samples. ``attrs["cka_estimator"]`` of every one of these
        tables names the estimator used.
    sigma : float
        RBF width σ = ``sigma``·sqrt(median of the N×N squared distances, diagonal included).
    batch_size : int, optional
        Minibatch CKA over consecutive batches (Nguyen et al.); at least 4.
    device : str or torch.device, optional
    progress : bool
        Show a progress bar.
    client : distributed.Client, optional
        Compute on this Dask cluster; default: an enclosing ``repgraph.parallel`` block's, else here.

    Returns
    -------
    DataFrame (rows: layers of ``acts``, columns: layers of ``acts2``); ``attrs`` record the
    kernel, the estimator (``estimator`` in words; ``cka_estimator``: ``"biased"``,
    ``"debiased (unbiased HSIC)"`` or ``"debiased (minibatch unbiased HSIC)"``), ``batch_size``,
    ``n_batches`` and ``n_samples`` (the samples used).

    Raises
    ------
    TypeError
        If ``acts`` or ``acts2`` is not a non-empty mapping.
    ValueError
        For layers with different N, too few samples, NaN/Inf or constant features, a bad option,
        ``batch_size`` < 4, or an RBF kernel with ``batch_size``.

    Warns
    -----
    UserWarning
        When a last batch of fewer than 4 samples is left out (the message gives the count).

    References
    ----------
    Kornblith et al., ICML 2019; Nguyen et al., "Do Wide and Deep Networks Learn the Same
    Things?", ICLR 2021 (minibatch CKA).

    Examples
    --------
    >>> import numpy as np
    >>> from repgraph import cka_matrix
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(130, 6))
    >>> M = cka_matrix({"a": X, "b": X @ rng.normal(size=(6, 6))}, batch_size=50, progress=False)
    >>> M.attrs["n_batches"], M.attrs["n_samples"]    # 50 + 50 + 30: the last batch is used
    (3, 130)
    """
    _check_kernel(kernel, debiased, sigma)
    with planning(client) as runner:
        xs, _ = layer_sources(acts, runner)
        ys = [] if acts2 is None else layer_sources(acts2, runner, what="acts2", suffix=" (acts2)")[0]
        sources = xs + ys
        names = [s.name for s in sources]
        sizes = {s.name: s.n for s in sources}
        rows, cols = [s.layer for s in xs], [s.layer for s in (ys or xs)]
        path = None
        if batch_size is not None:
            bounds = _minibatch_plan(kernel, batch_size, sizes)
            data = [s.data for s in sources]
            parts = runner.results([runner.submit(_batch_hsic, data, a, b, names, device) for a, b in bounds],
                                   desc="minibatch CKA", progress=progress)
            acc = MinibatchCKA()
            for (a, b), part in zip(bounds, parts):
                acc._add(part, b - a, len(xs))
            values, n_batches, n_used = acc.compute(), acc.n_batches, acc.n_samples
            estimator, cka_estimator = _minibatch_estimator(n_batches, batch_size), MINIBATCH_ESTIMATOR
        else:
            if len(set(sizes.values())) > 1:
                raise ValueError(f"All inputs must hold the same samples (same N); got {sizes}.")
            n, min_n = sources[0].n, (4 if debiased else 2)
            if n < min_n:
                raise ValueError(f"{names[0]} has {n} sample(s); at least {min_n} are needed.")
            if kernel == "linear" and not all(s.in_memory for s in sources):
                hsic, path = out_of_core_hsic(sources, runner, debiased=debiased, device=device, progress=progress)
            else:
                task = runner.submit(_whole_hsic, [s.data for s in sources], kernel, debiased, sigma, device, names,
                                     progress)
                hsic = runner.results([task], desc="CKA", progress=False)[0]
                path = "memory" if kernel == "linear" else None
            full = _normalise(hsic, names)
            values = full if acts2 is None else full[:len(xs), len(xs):]
            estimator = "unbiased HSIC (debiased CKA)" if debiased else "biased HSIC"
            cka_estimator = CKA_ESTIMATORS[bool(debiased)]
            n_batches, n_used = 1, n
    return _cka_frame(values, rows, cols, kernel=kernel, estimator=estimator, cka_estimator=cka_estimator,
                      sigma=sigma, batch_size=batch_size,
                      n_batches=n_batches, n_samples=n_used, hsic_path=path)
