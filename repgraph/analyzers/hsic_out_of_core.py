"""Linear-kernel HSIC of every pair of layers, out of core: accumulated over chunks of samples
read from the layers' files, so N and the number of layers are bounded by disk, not memory.

The quantities are those of the in-process ``repgraph.analyzers.cka.hsic_matrix``: features
centred in float32 by their float64 column means, ``K = X̃X̃ᵀ``, ``S = Σ_i x̃_i`` (float64),
row sums ``r = K·1 = X̃S`` (unbiased: ``K̃·1 = X̃S − q`` with ``q_i = ‖x̃_i‖²``, K̃ the
zero-diagonal K) and ``1ᵀK̃1 = S·S − Σq``. Two ways to the same numbers:

- **feature space** (``"features"``): ``C_ab = Σ_chunks X̃_aᵀX̃_b`` in float64 (layers grouped
  in panels whose C block fits the budget; per pair of panels one task per range of samples,
  the partial sums added in a fixed tree);
  biased ``tr(HK_aH·HK_bH) = ‖C_ab − S_aS_bᵀ/n‖²_F``; unbiased (Song et al. 2012, eq. 5)
  ``tr(K̃_aK̃_b) = ‖C_ab‖²_F − Σ_i q_a,i q_b,i`` and ``1ᵀK̃_aK̃_b1 = Σ_i r_a,i r_b,i``.
  Cost N·(ΣD)²; memory one D_a×D_b block per task.
- **blocked Gram** (``"gram"``): tiles ``K[R, C] = X̃_R X̃_Cᵀ`` (float32 product, as in process)
  of every layer, centred (``HKH`` or U-centred) in float64 and stacked, ``Σ M Mᵀ`` over the
  tiles R ≤ C (off-diagonal tiles twice). Cost N²·ΣD; memory L tiles per task.

``hsic_path`` picks the feature space when ``2·ΣD ≤ N`` and the widest layer's D×D float64
block fits the working-memory budget, else the Gram tiles.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from .._arrays import as_features, resolve_device, row_chunk
from .._config import get_config
from ..execution.runner import tree_sum

PATHS = ("features", "gram")
SAMPLE_RANGES = 8
#: bytes per feature of one sample that a kernel holds at most while it reads and centres a chunk
#: of one layer: the float32 rows read (4), the finiteness mask (1), the centred float32 copy (4)
#: and one float64 copy of it (8), rounded up; the budgets below count it, so that the working
#: memory bounds what a task allocates, not only its largest array
CHUNK_BYTES = 20
#: float64 C blocks a feature-space task holds at once: the running sum, a chunk's product and, in
#: the tree of partial sums, their sum
PANEL_BLOCKS = 3


@dataclass(frozen=True)
class Moments:
    """One layer's centring: ``mean32`` (the float32 column means subtracted), ``col_sum`` =
    ``S = Σ_i x̃_i`` and ``sq_sum`` = ``Σ_i ‖x̃_i‖²`` (float64)."""

    mean32: np.ndarray
    col_sum: np.ndarray
    sq_sum: float


def _chunk(rows, start, stop, name, device) -> torch.Tensor:
    return as_features(rows[start:stop], name=f"{name} (samples {start}:{stop})", device=device, min_samples=1)


def _centred(rows, start, stop, name, device, moments: Moments) -> torch.Tensor:
    X = _chunk(rows, start, stop, name, device)
    return X - torch.as_tensor(moments.mean32, device=X.device)


def _layer_moments(rows, n: int, name: str, device=None) -> Moments:
    """Two passes over the layer's samples, in chunks within the working memory: the float64
    column means, then ``S`` and ``Σ‖x̃‖²``."""
    width = math.prod(rows.shape[1:])
    step = row_chunk(n, (CHUNK_BYTES + 8) * width)  # and the float64 squares
    total = torch.zeros(width, dtype=torch.float64)
    for start in range(0, n, step):
        total += _chunk(rows, start, min(n, start + step), name, device).sum(dim=0, dtype=torch.float64).cpu()
    moments = Moments((total / n).float().numpy(), np.zeros(width), 0.0)
    col_sum, sq_sum = torch.zeros(width, dtype=torch.float64), 0.0
    for start in range(0, n, step):
        Xc = _centred(rows, start, min(n, start + step), name, device, moments)
        col_sum += Xc.sum(dim=0, dtype=torch.float64).cpu()
        sq_sum += float((Xc.double() ** 2).sum())
    return Moments(moments.mean32, col_sum.numpy(), sq_sum)


def _panel_limit(budget_bytes: int) -> int:
    """The widest panel: ``PANEL_BLOCKS`` float64 P×P blocks within half the budget (the other
    half holds the chunks they are summed from)."""
    return max(1, math.isqrt(budget_bytes // (2 * PANEL_BLOCKS * 8)))


def hsic_path(n: int, widths, *, budget_bytes: int | None = None) -> str:
    """``"features"`` when ``2·ΣD ≤ n`` (the D×D products cost less than the N×N ones) and the
    widest layer is a feature panel of its own within ``budget_bytes`` (default: the working
    memory; see ``feature_panels``), else ``"gram"``."""
    budget = get_config()["working_memory"] * 2**20 if budget_bytes is None else budget_bytes
    return "features" if 2 * sum(widths) <= n and max(widths) <= _panel_limit(budget) else "gram"


def feature_panels(widths, budget_bytes: int) -> list[list[int]]:
    """Consecutive layers grouped so that each group's total width P has ``PANEL_BLOCKS`` float64
    P×P blocks within half the budget (a layer wider than that is a group of its own)."""
    limit = _panel_limit(budget_bytes)
    panels, width = [], 0
    for index, w in enumerate(widths):
        if panels and width + w <= limit:
            panels[-1].append(index)
            width += w
        else:
            panels.append([index])
            width = w
    return panels


def _panel_chunk(layers, start, stop, device):
    """The centred chunk of each layer of a panel, float64, side by side (each layer written into
    its columns: no second copy); and per layer ``q_i = ‖x̃_i‖²`` and ``r_i = (K̃·1)_i = x̃_i·S − q_i``
    (for the unbiased terms)."""
    Z, q, r, left = None, [], [], 0
    for rows, name, moments in layers:
        Xc = _centred(rows, start, stop, name, device, moments)
        if Z is None:
            Z = torch.empty(stop - start, sum(_width(layers)), dtype=torch.float64, device=Xc.device)
        block = Z[:, left:left + Xc.shape[1]]
        block.copy_(Xc)
        del Xc
        qi = (block ** 2).sum(dim=1)
        q.append(qi)
        r.append(block @ torch.as_tensor(moments.col_sum, device=Z.device) - qi)
        left += block.shape[1]
    return Z, torch.stack(q), torch.stack(r)


def _width(layers) -> list[int]:
    return [math.prod(rows.shape[1:]) for rows, _, _ in layers]


def _feature_panel_sums(panel_a, panel_b, start: int, stop: int, device=None) -> tuple:
    """Sums over samples ``start:stop`` (in chunks within the working memory) for the layers of two
    panels (lists of (rows, name, Moments); ``panel_b=None``: ``panel_a`` with itself):
    ``Σ X̃_aᵀX̃_b`` over the panels' columns, ``Σ q_a q_bᵀ`` and ``Σ r_a r_bᵀ`` (layers × layers),
    float64 numpy."""
    same = panel_b is None
    widths_a, widths_b = _width(panel_a), ([] if same else _width(panel_b))
    # the running sums and a chunk's products (two P_a×P_b blocks), then per sample the panels'
    # float64 columns and one layer being read
    blocks = 2 * 8 * sum(widths_a) * sum(widths_b or widths_a)
    per_row = 8 * (sum(widths_a) + sum(widths_b)) + CHUNK_BYTES * max(widths_a + widths_b)
    budget = get_config()["working_memory"] * 2**20
    step = int(max(1, min(stop - start, (budget - blocks) // per_row)))
    sums = None
    for begin in range(start, stop, step):
        end = min(stop, begin + step)
        Za, qa, ra = _panel_chunk(panel_a, begin, end, device)
        Zb, qb, rb = (Za, qa, ra) if same else _panel_chunk(panel_b, begin, end, device)
        parts = (Za.T @ Zb, qa @ qb.T, ra @ rb.T)
        del Za, Zb
        if sums is None:
            sums = parts
        else:
            for s, p in zip(sums, parts):
                s += p  # in place: the same sums as s + p, without a third block
        del parts
    return tuple(s.cpu().numpy() for s in sums)


def _add_sums(x: tuple, y: tuple) -> tuple:
    """Element-wise sum of two tuples of partial sums."""
    return tuple(a + b for a, b in zip(x, y))


def _panel_terms(sums: tuple, panel_a, panel_b, n: int, debiased: bool) -> np.ndarray:
    """The HSIC numerators of every layer a of ``panel_a`` with every b of ``panel_b``, from the
    panels' sums over all samples: biased ``‖C_ab − S_aS_bᵀ/n‖²``; unbiased
    ``tr(K̃_aK̃_b) + 1ᵀK̃_a1·1ᵀK̃_b1/((n−1)(n−2)) − 2/(n−2)·1ᵀK̃_aK̃_b1`` with
    ``tr(K̃_aK̃_b) = ‖C_ab‖² − Σq_aq_b``, ``1ᵀK̃1 = S·S − Σq``, ``1ᵀK̃_aK̃_b1 = Σr_ar_b``."""
    C, qq, rr = sums
    edges_a, edges_b = np.cumsum([0, *_width(panel_a)]), np.cumsum([0, *_width(panel_b)])
    out = np.zeros((len(panel_a), len(panel_b)))
    for i, (_, _, ma) in enumerate(panel_a):
        for j, (_, _, mb) in enumerate(panel_b):
            block = C[edges_a[i]:edges_a[i + 1], edges_b[j]:edges_b[j + 1]]
            if debiased:
                ones_a = float(ma.col_sum @ ma.col_sum) - ma.sq_sum
                ones_b = float(mb.col_sum @ mb.col_sum) - mb.sq_sum
                trace = float((block ** 2).sum()) - float(qq[i, j])
                out[i, j] = trace + ones_a * ones_b / ((n - 1) * (n - 2)) - 2.0 / (n - 2) * float(rr[i, j])
            else:
                out[i, j] = float(((block - np.outer(ma.col_sum, mb.col_sum) / n) ** 2).sum())
    return out


def _centred_tile(out, Xr, Xc, rows: slice, cols: slice, moments: Moments, n: int, debiased: bool):
    """Write rows ``rows``, columns ``cols`` of HKH (biased) or of the U-centred K̃ (unbiased) into
    ``out`` (float64), centring it in place: the float32 product is the only other tile."""
    out.copy_(Xr @ Xc.T)
    S = torch.as_tensor(moments.col_sum, device=out.device)

    def row_sums(X):  # one float64 copy of X at a time
        Xd = X.double()
        r = Xd @ S
        return r - Xd.square_().sum(dim=1) if debiased else r
    r_rows = row_sums(Xr)
    r_cols = r_rows if rows == cols else row_sums(Xc)
    total = float(S @ S)
    if debiased:
        total -= moments.sq_sum
        out.sub_(r_rows[:, None] / (n - 2)).sub_(r_cols[None, :] / (n - 2)).add_(total / ((n - 1) * (n - 2)))
        if rows == cols:
            out.fill_diagonal_(0.0)
    else:
        out.sub_(r_rows[:, None] / n).sub_(r_cols[None, :] / n).add_(total / n ** 2)


def _fill_tile(out, data, name, moments: Moments, rows: slice, cols: slice, n: int, debiased: bool, device):
    """One layer's centred tile into ``out``; its chunks are freed on return, before the next layer's
    are read."""
    Xr = _centred(data, rows.start, rows.stop, name, device, moments)
    Xc = Xr if rows == cols else _centred(data, cols.start, cols.stop, name, device, moments)
    _centred_tile(out, Xr, Xc, rows, cols, moments, n, debiased)


def _gram_tile_terms(layers, rows: slice, cols: slice, n: int, debiased: bool, device=None) -> np.ndarray:
    """The tile (rows, cols) of every layer's centred Gram, stacked: ``w·M Mᵀ`` (L × L), w = 2
    for an off-diagonal tile (it stands for its mirror too), 1 on the diagonal. ``layers``: a
    list of (rows, name, Moments)."""
    shape = (rows.stop - rows.start, cols.stop - cols.start)
    M = torch.empty(len(layers), shape[0] * shape[1], dtype=torch.float64, device=resolve_device(device))
    for index, (data, name, moments) in enumerate(layers):
        _fill_tile(M[index].view(shape), data, name, moments, rows, cols, n, debiased, device)
    return ((M @ M.T) * (1.0 if rows == cols else 2.0)).cpu().numpy()


def _sample_ranges(n: int, parts: int = SAMPLE_RANGES) -> list[tuple[int, int]]:
    """The samples cut into ``parts`` consecutive ranges (fewer when N is small): one feature-space
    task per range and pair of panels. Fixed by N, not by the cluster, so the float64 sums (added
    in a fixed tree) are the same on any cluster."""
    size = math.ceil(n / max(1, min(parts, n)))
    return [(a, min(n, a + size)) for a in range(0, n, size)]


def _gram_block_rows(n: int, widths, budget_bytes: int) -> int:
    """Rows (and columns) B of a Gram tile: the L float64 B×B tiles, the float32 product and the
    widest layer's chunks (``CHUNK_BYTES`` per feature of each of B samples) within the budget:
    ``8(L+1)B² + CHUNK_BYTES·D·B ≤ budget``."""
    a, b = 8 * (len(widths) + 1), CHUNK_BYTES * max(widths)
    return int(max(1, min(n, (math.isqrt(b * b + 4 * a * budget_bytes) - b) // (2 * a))))


def out_of_core_hsic(sources, runner, *, debiased: bool, device=None, path: str = "auto",
                     progress: bool = False) -> tuple[np.ndarray, str]:
    """``(H, path)``: the (L, L) linear HSIC matrix of the layers ``sources`` (``LayerSource``s,
    same N) — biased ``/(n−1)²`` or unbiased ``/(n(n−3))`` — and the path that computed it.
    One moments task per layer, then tasks per (pair of feature panels, range of samples) or per
    Gram tile, each reading its own chunks. Partial sums are added in a fixed order (a fixed tree
    for the panels' sums, tile order here), so the result does not depend on the cluster."""
    if path not in ("auto", *PATHS):
        raise ValueError(f"path must be 'auto', 'features' or 'gram', got {path!r}.")
    n = sources[0].n
    widths = [math.prod(s.shape[1:]) for s in sources]
    budget = get_config()["working_memory"] * 2**20
    chosen = hsic_path(n, widths, budget_bytes=budget) if path == "auto" else path
    # the moments stay where they were computed; tasks receive them as handles
    layers = [(s.data, s.name, runner.submit(_layer_moments, s.data, n, s.name, device)) for s in sources]
    H = np.zeros((len(sources), len(sources)))
    if chosen == "features":
        panels = feature_panels(widths, budget)
        groups = [[layers[i] for i in panel] for panel in panels]
        ranges = _sample_ranges(n)
        pairs = [(a, b) for a in range(len(panels)) for b in range(a, len(panels))]
        terms = []
        for a, b in pairs:
            partial = [runner.submit(_feature_panel_sums, groups[a], groups[b] if b != a else None, start, stop,
                                     device) for start, stop in ranges]
            terms.append(runner.submit(_panel_terms, tree_sum(runner, _add_sums, partial), groups[a], groups[b], n,
                                       debiased))
        for (a, b), block in zip(pairs, runner.results(terms, desc="HSIC panels", progress=progress)):
            H[np.ix_(panels[a], panels[b])] = block
            H[np.ix_(panels[b], panels[a])] = block.T
    else:
        step = _gram_block_rows(n, widths, budget)
        blocks = [slice(s, min(n, s + step)) for s in range(0, n, step)]
        tiles = [(r, c) for i, r in enumerate(blocks) for c in blocks[i:]]
        tasks = [runner.submit(_gram_tile_terms, layers, r, c, n, debiased, device) for r, c in tiles]
        for terms in runner.results(tasks, desc="HSIC tiles", progress=progress):
            H += terms
    return H / (n * (n - 3) if debiased else (n - 1) ** 2), chosen
