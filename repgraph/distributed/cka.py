"""CKA between every pair of layers on a Dask cluster; the linear kernel out of core."""
from __future__ import annotations

import pandas as pd

from ..analyzers.cka import (MinibatchCKA, _check_kernel, _cka_frame, _minibatch_estimator, _minibatch_plan,
                             _normalise, hsic_matrix)
from .hsic_out_of_core import out_of_core_hsic
from .runner import runner_for
from .sources import layer_sources


def _batch_hsic(layers, start: int, stop: int, names, device):
    """Unbiased linear HSIC of every pair of layers on samples ``start:stop`` (one minibatch)."""
    return hsic_matrix([rows[start:stop] for rows in layers], kernel="linear", debiased=True, device=device,
                       names=names)


def _whole_hsic(layers, kernel, debiased, sigma, device, names):
    """``hsic_matrix`` on the layers read whole into one worker."""
    return hsic_matrix([rows[0:len(rows)] for rows in layers], kernel=kernel, debiased=debiased, sigma=sigma,
                       device=device, names=names)


def cka_matrix(acts, acts2=None, *, kernel: str = "linear", debiased: bool = False, sigma: float = 0.5,
               batch_size: int | None = None, device=None, progress: bool = True, client=None) -> pd.DataFrame:
    """``repgraph.cka_matrix`` on a cluster; the linear kernel out of core.

    ``CKA_ab = HSIC_ab / sqrt(HSIC_aa·HSIC_bb)`` with the biased (``/(n−1)²``, centring matrix)
    or, ``debiased=True``, the unbiased HSIC (Song et al. 2012; needs N ≥ 4). What runs where:

    - ``kernel="linear"`` (the default): out of core, N and the number of layers bounded by disk.
      Per layer one task computes the float64 column means, ``S = Σ x̃`` and ``Σ‖x̃‖²``; then
      **feature space** when ``2·ΣD ≤ N`` and the widest layer's D×D float64 block fits the
      working-memory budget: one task per pair of layer panels accumulates ``X̃_aᵀX̃_b`` in
      float64 over chunks of samples; else **blocked Gram**: one task per tile (R, C), R ≤ C, of
      sample blocks builds the float32 tiles ``X̃_R X̃_Cᵀ`` of every layer, centres them in float64
      and adds their stacked products. Each task reads its own chunks (store files on the worker).
      The Gram path is the in-process computation tiled (equal to ~1e-14); the feature path is
      float64 throughout, so it differs from the in-process float32 Gram by that Gram's rounding
      (~1e-9 relative on generic float data, ~1e-14 where the float32 products are exact).
      The path taken is ``attrs["hsic_path"]``.
    - ``batch_size=...`` (minibatch CKA, linear): one task per batch (``hsic_matrix`` of that
      batch, unbiased); the batch HSICs, weighted by batch size, are summed here in batch order
      by ``MinibatchCKA`` (the batches as in process: a last partial batch of ≥ 4 samples is used,
      a shorter one left out with a warning; ``batch_size`` > N is one batch). Equal to in
      process exactly.
    - ``kernel="rbf"``: one task runs the in-process ``hsic_matrix`` on all layers read into one
      worker (the RBF width needs every pairwise distance): bounded by that worker's memory.

    Parameters
    ----------
    acts, acts2 : Activations, mapping layer -> array, StoreArrays or path of a store
    kernel, debiased, sigma, batch_size, device, progress
        As in ``repgraph.cka_matrix``.
    client : distributed.Client, optional
        Default: the client of the enclosing ``repgraph.parallel`` block; with none, the same
        tasks run in this process (still out of core).

    Returns
    -------
    pandas.DataFrame
        Rows: layers of ``acts``; columns: layers of ``acts2`` (default ``acts``); ``attrs`` record
        kernel, estimator, ``batch_size``, ``n_batches`` and ``n_samples`` as in process and, for
        the linear kernel without ``batch_size``, ``hsic_path``.

    Raises
    ------
    TypeError
        If ``acts`` or ``acts2`` is not a non-empty mapping or store.
    ValueError
        For an unknown kernel, sigma ≤ 0, ``batch_size`` < 4 or with the RBF kernel, mismatched N,
        too few samples, NaN/Inf, or constant features.

    References
    ----------
    Kornblith et al., ICML 2019; Song et al., JMLR 2012; Nguyen et al., ICLR 2021.

    Examples
    --------
    >>> import numpy as np
    >>> from repgraph.distributed import cka_matrix
    >>> np.random.seed(1337); X = np.random.randn(100, 10); Y = np.random.randn(100, 10) + X
    >>> out = cka_matrix({"X": X, "Y": Y}, progress=False)
    >>> round(float(out.loc["X", "Y"]), 5), out.attrs["hsic_path"]
    (0.55761, 'features')
    """
    _check_kernel(kernel, debiased, sigma)
    runner = runner_for(client)
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
        estimator = _minibatch_estimator(n_batches, batch_size)
    else:
        if len(set(sizes.values())) > 1:
            raise ValueError(f"All inputs must hold the same samples (same N); got {sizes}.")
        n, min_n = sources[0].n, (4 if debiased else 2)
        if n < min_n:
            raise ValueError(f"{names[0]} has {n} sample(s); at least {min_n} are needed.")
        if kernel == "linear":
            hsic, path = out_of_core_hsic(sources, runner, debiased=debiased, device=device, progress=progress)
        else:
            task = runner.submit(_whole_hsic, [s.data for s in sources], kernel, debiased, sigma, device, names)
            hsic = runner.results([task], desc="CKA", progress=progress)[0]
        full = _normalise(hsic, names)
        values = full if acts2 is None else full[:len(xs), len(xs):]
        estimator = "unbiased HSIC (debiased CKA)" if debiased else "biased HSIC"
        n_batches, n_used = 1, n
    return _cka_frame(values, rows, cols, kernel=kernel, estimator=estimator, sigma=sigma, batch_size=batch_size,
                      n_batches=n_batches, n_samples=n_used, hsic_path=path)
