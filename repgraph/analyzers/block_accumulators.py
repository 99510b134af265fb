"""BlockAccumulator: one block's redundancy criteria gathered batch by batch (``update`` per batch,
``compute`` at the end, as torchmetrics' metrics), so that a model's blocks are scored in one
streamed pass without keeping their (N, T, D) hidden states.

What it keeps, whatever the number of tokens T:

- Block Influence and the relative update norm: float64 running sums over the real tokens —
  Σ cos(x_in,t, x_out,t), Σ ‖x_out,t − x_in,t‖, Σ ‖x_in,t‖ and the token count; the mean and the
  ratio of ``block_influence`` / ``relative_update_norm`` are taken once, at the end;
- the per-sample vectors of the angular distance and of GBS, CKA and modularity: (N, D) float32
  rows (each computed in float64 from its batch's tokens, as ``sample_vectors``), for the input
  and the output, in buffers that double when full (under 2·N rows); one copy when the two
  reductions are the same.

Array forms, the mask and the cosine conventions: ``repgraph.analyzers.block_criteria``.
"""
from __future__ import annotations

import math

import torch

from .block_criteria import _cosines, default_reductions, reduce_tokens, token_mask, token_vectors
from .layer_redundancy import BlockEvidence, check_reductions


class _Rows:
    """Rows appended batch by batch into one buffer that doubles when full: few, large
    allocations instead of one small tensor per batch, which would stay scattered among the
    batches' freed temporaries and keep the allocator's heap from being reused (peak RSS then grows
    with the number of batches although little is held)."""

    def __init__(self):
        self.buffer: torch.Tensor | None = None
        self.n = 0

    def append(self, rows: torch.Tensor) -> None:
        stop = self.n + rows.shape[0]
        if self.buffer is None or stop > self.buffer.shape[0]:  # the row shape is checked by the accumulator
            grown = rows.new_empty((max(stop, 2 * self.n), *rows.shape[1:]))
            if self.buffer is not None:
                grown[:self.n] = self.buffer[:self.n]
            self.buffer = grown
        self.buffer[self.n:stop] = rows
        self.n = stop

    def result(self) -> torch.Tensor:
        return self.buffer[:self.n]


class BlockAccumulator:
    """The criteria of one block, fed one batch of its input and output at a time.

    ``update(x_in, x_out, mask)`` adds a batch: its tokens' cosines and norms to float64 running
    sums (padding, where ``mask`` is 0, left out) and its per-sample vectors to the kept rows;
    ``compute()`` gives the ``BlockEvidence`` that ``tabulate_blocks`` turns into the table's row.
    Batches may differ in size and in the number of tokens T (each batch is reduced on its own);
    the feature size must stay. The sums stay on the batches' device until ``compute``.

    Parameters
    ----------
    name : str
        The block's name (its row of the table), used in error messages.
    angular_reduce : {"last_token", "first_token", "token_mean", "flatten"}, optional
        The sample vectors of the angular distance; default by the arrays' rank
        (``default_reductions``: the last real token of (N, T, D) hidden states, the spatial mean
        of feature maps).
    similarity_reduce : {"last_token", "first_token", "token_mean", "flatten"}, optional
        The sample vectors of GBS, CKA and modularity; default by rank (the mean over the real
        tokens of hidden states, the flattened map of feature maps).
    feature_axis : int, optional
        The hidden-feature axis; default −1 for 3-D arrays, 1 otherwise.

    Attributes
    ----------
    n_samples : int
        Samples added so far.
    masked : bool
        Whether some batch came with a mask.
    nbytes : int
        Bytes of memory the accumulator holds (the storage of the sums and of the kept sample
        vectors).

    Raises
    ------
    ValueError
        On construction, for an unknown reduction. In ``update``, for a batch whose input and
        output differ in their sample count, NaN/Inf, a bad mask (see ``block_influence``), or a
        batch whose per-sample shapes do not fit the earlier batches'. In ``compute``, before any
        batch, or when every input token vector was zero (the update norm's ratio is undefined).

    References
    ----------
    Men et al. 2024, ShortGPT (Block Influence, accumulated over the calibration batches);
    Gromov et al. 2024 (angular distance on the last token); the update/compute protocol of
    torchmetrics' ``Metric``.

    Examples
    --------
    Two batches of a block that negates every token: BI 2, update norm 2, angle π.

    >>> import torch
    >>> acc = BlockAccumulator("b0")
    >>> for x in torch.randn(2, 3, 5, 4, generator=torch.Generator().manual_seed(0)):
    ...     acc.update(x, -x)
    >>> evidence = acc.compute()
    >>> round(evidence.block_influence, 6), round(evidence.relative_update_norm, 6), acc.n_samples
    (2.0, 2.0, 6)
    >>> evidence.angular_reduce, evidence.similarity_reduce, tuple(evidence.similarity_in.shape)
    ('last_token', 'token_mean', (6, 4))
    """

    def __init__(self, name: str, *, angular_reduce: str | None = None, similarity_reduce: str | None = None,
                 feature_axis=None):
        check_reductions(angular_reduce, similarity_reduce)
        self.name = name
        self.angular_reduce, self.similarity_reduce = angular_reduce, similarity_reduce
        self.feature_axis = feature_axis
        self.n_samples = 0
        self.masked = False
        self._shapes: tuple | None = None   # per-sample shapes of the first batch's input and output
        self._features: tuple | None = None  # and their feature sizes
        self._sums: torch.Tensor | None = None  # Σ cos, Σ ‖x_out − x_in‖, Σ ‖x_in‖, token count (float64)
        self._kept: dict[str, tuple[_Rows, _Rows]] = {}  # reduction -> rows of the input, of the output

    @property
    def shape_preserving(self) -> bool | None:
        """Whether the block keeps the shape of its input (None before the first batch)."""
        return None if self._shapes is None else self._shapes[0] == self._shapes[1]

    @property
    def nbytes(self) -> int:
        """Bytes of the memory held: the storage behind the running sums and every kept sample
        vector (the whole storage, so that a kept view of a batch would count as the batch)."""
        held = [] if self._sums is None else [self._sums]
        held += [side.buffer for pair in self._kept.values() for side in pair]
        storages = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in held}
        return sum(storages.values())

    def _check_shapes(self, shapes: tuple, features: tuple):
        """Remember the first batch's per-sample shapes (and choose the default reductions by their
        rank); refuse a later batch that changes the features, whether the block keeps the shape,
        or — with a flattened reduction kept — any per-sample shape."""
        if self._shapes is None:
            self._shapes, self._features = shapes, features
            defaults = default_reductions(len(shapes[0]) + 1)
            self.angular_reduce = self.angular_reduce or defaults[0]
            self.similarity_reduce = self.similarity_reduce or defaults[1]
            self._kept = {r: (_Rows(), _Rows()) for r in (self.angular_reduce, self.similarity_reduce)}
            return
        fits = features == self._features and (shapes[0] == shapes[1]) == self.shape_preserving
        if not fits or ("flatten" in self._kept and shapes != self._shapes):
            need = "the same per-sample shapes (flattened sample vectors are kept)" if fits else \
                "the same features (only the number of tokens may change)"
            raise ValueError(f"Block {self.name!r}: a batch gives input {shapes[0]} and output {shapes[1]} per "
                             f"sample but the first gave {self._shapes[0]} and {self._shapes[1]}; every batch "
                             f"needs {need}.")

    def update(self, x_in, x_out, mask=None) -> None:
        """Add one batch: the block's input and output (n, ...) and the batch's mask (1 = real
        token), or None for no padding."""
        if x_in.shape[0] != x_out.shape[0]:
            raise ValueError(f"Block {self.name!r}: a batch of {x_in.shape[0]} inputs gives {x_out.shape[0]} "
                             "outputs; the block must keep the samples.")
        opts = {"feature_axis": self.feature_axis}
        U = token_vectors(x_in, name=f"{self.name}:input", **opts)
        V = token_vectors(x_out, name=self.name, device=U.device, **opts)
        self._check_shapes((tuple(x_in.shape[1:]), tuple(x_out.shape[1:])), (U.shape[-1], V.shape[-1]))
        m_in = token_mask(mask, x_in, name=f"{self.name}:input", device=U.device, **opts)
        m_out = m_in if self.shape_preserving else token_mask(mask, x_out, name=self.name, device=U.device, **opts)
        U, V = U.double(), V.double()  # once: the sums and the reductions' means run in float64
        if self.shape_preserving:
            U64, V64 = U, V
            per_token = torch.stack([_cosines(U64, V64), (V64 - U64).norm(dim=-1), U64.norm(dim=-1),
                                     torch.ones(U.shape[:2], dtype=torch.float64, device=U.device)])
            if m_in is not None:
                per_token = per_token * m_in
            sums = per_token.sum(dim=(1, 2))
            self._sums = sums if self._sums is None else self._sums + sums
        for reduce, (rows_in, rows_out) in self._kept.items():
            rows_in.append(reduce_tokens(U, m_in, reduce))
            rows_out.append(reduce_tokens(V, m_out, reduce))
        self.n_samples += x_in.shape[0]
        self.masked = self.masked or mask is not None

    def _rows(self, reduce: str) -> tuple[torch.Tensor, torch.Tensor]:
        rows_in, rows_out = self._kept[reduce]
        return rows_in.result(), rows_out.result()

    def compute(self) -> BlockEvidence:
        """The block's ``BlockEvidence``: BI and the update norm from the sums (NaN for a block
        that changes the shape), and every batch's sample vectors stacked."""
        if self._shapes is None:
            raise ValueError(f"Block {self.name!r} has seen no batch; call update() before compute().")
        bi = norm = math.nan
        if self.shape_preserving:
            cos_sum, update_sum, input_sum, count = self._sums.tolist()
            if not input_sum > 0:
                raise ValueError(f"Block {self.name!r}: its input is zero at every token, so the update relative "
                                 "to it is undefined.")
            bi, norm = 1.0 - cos_sum / count, update_sum / input_sum
        angular_in, angular_out = self._rows(self.angular_reduce)
        similarity_in, similarity_out = self._rows(self.similarity_reduce)
        return BlockEvidence(name=self.name, shape_preserving=self.shape_preserving, block_influence=bi,
                             relative_update_norm=norm, angular_reduce=self.angular_reduce, angular_in=angular_in,
                             angular_out=angular_out if self.shape_preserving else None,
                             similarity_reduce=self.similarity_reduce, similarity_in=similarity_in,
                             similarity_out=similarity_out)
