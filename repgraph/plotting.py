"""Plots of repgraph results. Every function takes ``ax=None``, returns the Axes and never shows."""
from __future__ import annotations

from collections.abc import Mapping


import pandas as pd


def _axes(ax):
    if ax is None:
        import matplotlib.pyplot as plt
        _, ax = plt.subplots(figsize=(7, 4))
    return ax


def short_layer_name(name: str) -> str:
    """``layer2.3`` → ``2.3``, ``features.10`` → ``f10``: compact tick labels."""
    name = str(name)
    for prefix, short in (("layer", ""), ("features.", "f"), ("blocks.", "b")):
        if name.startswith(prefix):
            return short + name[len(prefix):]
    return name


def named_curves(curve_or_curves, caller: str) -> dict[str, pd.DataFrame]:
    """``{label: curve}`` of one ``modularity_curve`` table (label ``""``), a mapping label ->
    table or a list of tables (``"run 0"``, ``"run 1"``, ...), each checked to hold the columns
    ``layer``, ``depth`` and ``modularity``; ``caller`` names the plot in the errors."""
    if isinstance(curve_or_curves, pd.DataFrame):
        curves = {"": curve_or_curves}
    elif isinstance(curve_or_curves, Mapping):
        curves = dict(curve_or_curves)
    else:
        curves = {f"run {i}": c for i, c in enumerate(curve_or_curves)}
    if not curves:
        raise ValueError(f"{caller} needs at least one curve.")
    for label, curve in curves.items():
        missing = {"depth", "modularity", "layer"} - set(curve.columns)
        if missing:
            raise ValueError(f"curve {label!r} lacks column(s) {sorted(missing)}; pass modularity_curve output.")
    return curves


def plot_modularity_curve(curve_or_curves, ax=None, *, show_std: bool = True, title: str | None = None):
    """Modularity against depth for one curve (DataFrame from ``modularity_curve``) or several
    (a mapping label -> DataFrame, or a list of DataFrames), with ±std bands across batches."""
    curves = named_curves(curve_or_curves, "plot_modularity_curve")
    ax = _axes(ax)
    for label, curve in curves.items():
        x, q = curve["depth"].to_numpy(), curve["modularity"].to_numpy()
        line, = ax.plot(x, q, marker="o", ms=3, label=label or None)
        if show_std and "std" in curve and (curve["std"] > 0).any():
            s = curve["std"].to_numpy()
            ax.fill_between(x, q - s, q + s, color=line.get_color(), alpha=0.2, linewidth=0)
    reference = next(iter(curves.values()))
    ax.set_xticks(reference["depth"].to_numpy())
    ax.set_xticklabels([short_layer_name(n) for n in reference["layer"]], rotation=90, fontsize=7)
    ax.set_xlabel("layer (execution order)")
    ax.set_ylabel("modularity Q of the class partition")
    ax.grid(alpha=0.3)
    if title:
        ax.set_title(title)
    if any(curves):
        ax.legend()
    return ax




def plot_similarity_heatmap(matrix, ax=None, vmin: float | None = None, vmax: float | None = None, *,
                            half: bool = False, title: str | None = None, cmap: str = "magma",
                            colorbar: bool = True, xlabel: str | None = None, ylabel: str | None = None,
                            tick_size: float = 7, tick_rotation: float = 90, short_names: bool = True,
                            annotate: bool | None = None, fmt: str = ".3f"):
    """Heatmap of a layer × layer similarity table (``cka_matrix``, ``gbs_matrix``).

    Rows run up the y axis (``origin="lower"``), columns along the x axis. The colour range fits
    the values shown, so a full-graph GBS matrix (values 0.95–1) is not one pale square; pass
    ``vmin=0, vmax=1`` to put several panels on one fixed scale.

    Parameters
    ----------
    matrix : DataFrame
        Rows and columns are layers (``cka_matrix``, ``gbs_matrix``); its ``attrs["measure"]``
        labels the colour bar and the title.
    ax : matplotlib Axes, optional
        Where to draw; default a new 7 × 4 inch figure.
    vmin, vmax : float, optional
        The ends of the colour range; None (default) = the smallest / largest value shown.
    half : bool
        Mask the upper triangle of a square (symmetric) matrix.
    title : str, optional
        Default: the measure and its graph or estimator (``"GBS (full graph)"``).
    cmap : str
        A matplotlib colormap name.
    colorbar : bool
        Draw a colour bar, labelled with ``attrs["measure"]`` when the table has one.
    xlabel, ylabel : str, optional
        The axis titles, e.g. the two models' names for a cross matrix
        (``xlabel="seed 1", ylabel="seed 0"``). Default: the columns' / index's name, and
        ``"layer"`` when it has none or it is the analyzers' placeholder ``"layer2"``.
    tick_size : float
        Font size (points) of the tick labels and the annotated values.
    tick_rotation : float
        Rotation (degrees) of the x tick labels.
    short_names : bool
        Shorten layer names on the ticks (``short_layer_name``: ``layer1.0`` → ``1.0``,
        ``features.10`` → ``f10``); False shows them whole.
    annotate : bool, optional
        Write each value in its cell; None (default) = when the matrix has at most 12 × 12 cells.
    fmt : str
        Format spec of the annotated values (``format(value, fmt)``).

    Returns
    -------
    matplotlib Axes

    Raises
    ------
    TypeError
        If ``matrix`` is not a DataFrame.
    ValueError
        For ``half=True`` on a matrix that is not square, or ``vmin`` above ``vmax``.

    References
    ----------
    The layer × layer similarity heatmaps of Kornblith et al., "Similarity of Neural Network
    Representations Revisited", ICML 2019 (Figure 1 onward).

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import pandas as pd
    >>> M = pd.DataFrame([[1.0, 0.96], [0.96, 1.0]], index=["layer1.0", "layer1.1"],
    ...                  columns=["layer1.0", "layer1.1"])
    >>> M.attrs["measure"] = "GBS"
    >>> ax = plot_similarity_heatmap(M, xlabel="model B", ylabel="model A")
    >>> ax.images[0].get_clim(), ax.get_xlabel(), [t.get_text() for t in ax.texts]
    ((0.96, 1.0), 'model B', ['1.000', '0.960', '0.960', '1.000'])
    """
    import numpy as np

    values, low, high = heatmap_values(matrix, vmin, vmax, half)
    ax = _axes(ax)
    image = ax.imshow(values, vmin=low, vmax=high, cmap=cmap, origin="lower", interpolation="nearest")
    label = short_layer_name if short_names else str
    ax.set_xticks(range(values.shape[1]))
    slanted = tick_rotation % 90 != 0  # a slanted label ends under its column
    ax.set_xticklabels([label(c) for c in matrix.columns], rotation=tick_rotation, fontsize=tick_size,
                       ha="right" if slanted else "center", rotation_mode="anchor" if slanted else "default")
    ax.set_yticks(range(values.shape[0]))
    ax.set_yticklabels([label(i) for i in matrix.index], fontsize=tick_size)
    ax.set_xlabel(axis_title(matrix.columns) if xlabel is None else xlabel)
    ax.set_ylabel(axis_title(matrix.index) if ylabel is None else ylabel)
    if annotate is None:
        annotate = values.size <= 12 * 12
    if annotate:
        for (i, j), v in np.ndenumerate(values):
            if np.isfinite(v):
                r, g, b, _ = image.cmap(image.norm(v))
                ax.text(j, i, format(v, fmt), ha="center", va="center", fontsize=tick_size,
                        color="white" if 0.299 * r + 0.587 * g + 0.114 * b < 0.5 else "black")
    measure = matrix.attrs.get("measure")
    ax.set_title(title or heatmap_title(matrix), fontsize=9)
    if colorbar:
        ax.figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label=measure)
    return ax


def heatmap_values(matrix, vmin=None, vmax=None, half: bool = False):
    """``(values, low, high)`` of a layer × layer table: its float values (the upper triangle NaN
    with ``half``) and the colour range, fitted to the finite values where ``vmin`` / ``vmax`` is
    None; errors name the argument."""
    import numpy as np

    if not isinstance(matrix, pd.DataFrame):
        raise TypeError("matrix must be a DataFrame from cka_matrix or gbs_matrix.")
    values = matrix.to_numpy(dtype=float)
    if half:
        if values.shape[0] != values.shape[1]:
            raise ValueError("half=True needs a square (symmetric) matrix.")
        values = np.where(np.triu(np.ones_like(values, dtype=bool), k=1), np.nan, values)
    shown = values[np.isfinite(values)]
    low, high = (float(shown.min()), float(shown.max())) if shown.size else (0.0, 1.0)
    low, high = low if vmin is None else float(vmin), high if vmax is None else float(vmax)
    if low > high:
        raise ValueError(f"vmin={low:g} lies above vmax={high:g}; pass vmin <= vmax (or None to fit the data).")
    return values, low, high


def heatmap_title(matrix: pd.DataFrame) -> str:
    """A similarity table's default title: its measure and its estimator or graph
    (``"GBS (full graph)"``, ``"CKA (biased HSIC)"``), ``"similarity"`` without ``attrs``."""
    k = matrix.attrs.get("k")
    detail = matrix.attrs.get("estimator") or ("full graph" if k == "full" else f"k={k}" if k is not None else "")
    name = matrix.attrs.get("measure") or "similarity"
    return f"{name} ({detail})" if detail else name


def axis_title(labels: pd.Index) -> str:
    """An axis's default title: the index's name, ``"layer"`` for none or the analyzers' ``"layer2"``."""
    return "layer" if labels.name in (None, "", "layer2") else str(labels.name)


def plot_sample_graph(A, labels, ax=None, *, max_nodes: int = 300, layout: str = "spring", seed: int = 0,
                      title: str | None = None):
    """Draw a sample graph (e.g. ``knn_graph(acts[layer][:N])``) on a subsample of at most
    ``max_nodes`` nodes (the first ones), nodes coloured by class, ``spring`` or ``spectral`` layout."""
    import networkx as nx
    import numpy as np

    from .builders import to_networkx

    if layout not in ("spring", "spectral"):
        raise ValueError(f"layout must be 'spring' or 'spectral', got {layout!r}.")
    labels = np.asarray(labels)
    n = min(max_nodes, A.shape[0])
    G = to_networkx(A[:n, :n], labels[:n])
    pos = nx.spring_layout(G, seed=seed) if layout == "spring" else nx.spectral_layout(G)
    ax = _axes(ax)
    nx.draw_networkx_edges(G, pos, ax=ax, alpha=0.25, width=0.5)
    classes = np.unique(labels[:n])
    cmap = matplotlib_colormap("tab10" if len(classes) <= 10 else "tab20")
    for i, c in enumerate(classes):
        nodes = [v for v in G.nodes if labels[v] == c]
        nx.draw_networkx_nodes(G, pos, nodelist=nodes, node_size=12, node_color=[cmap(i % cmap.N)], ax=ax,
                               label=str(c))
    ax.set_axis_off()
    ax.legend(title="class", fontsize=6, title_fontsize=7, markerscale=1.5, loc="upper right", ncol=2)
    ax.set_title(title or f"sample graph ({n} samples, {G.number_of_edges()} edges)", fontsize=9)
    return ax


def matplotlib_colormap(name: str):
    import matplotlib

    return matplotlib.colormaps[name]


def plot_filter_graph(S, selection=None, ax=None, *, threshold: float | None = None, seed: int = 0,
                      title: str | None = None):
    """The filter-similarity graph (edges ``S > threshold``; default: the selection's threshold),
    central filters in red, pruned delegates in grey, the others in blue, edges to delegates dark."""
    import networkx as nx

    from .builders.filter_graph import similarity_graph

    if threshold is None:
        threshold = selection.threshold if selection is not None else None
    edges = similarity_graph(S, threshold)
    G = nx.from_numpy_array(edges.astype(float))
    pos = nx.spring_layout(G, seed=seed)
    ax = _axes(ax)
    central = set(selection.delegates) if selection is not None else set()
    pruned = set(selection.pruned) if selection is not None else set()
    nx.draw_networkx_edges(G, pos, ax=ax, alpha=0.3, width=0.6)
    if selection is not None:
        delegate_edges = [(c, d) for c, ds in selection.delegates.items() for d in ds]
        nx.draw_networkx_edges(G, pos, edgelist=delegate_edges, ax=ax, width=1.5, edge_color="black")
    groups = (("central filter", central, "tab:red"), ("pruned (delegate)", pruned, "tab:gray"),
              ("kept", set(G.nodes) - central - pruned, "tab:blue"))
    for label, nodes, colour in groups:
        if nodes:
            nx.draw_networkx_nodes(G, pos, nodelist=sorted(nodes), node_size=40, node_color=colour, ax=ax, label=label)
    nx.draw_networkx_labels(G, pos, ax=ax, font_size=5)
    ax.set_axis_off()
    ax.legend(fontsize=7, loc="upper right")
    t = "" if threshold is None else f", edges S > {threshold:.3g}"
    ax.set_title(title or f"filter graph ({len(S)} filters{t})", fontsize=9)
    return ax


def plot_persistence_diagram(fmap, ax=None, *, title: str | None = None):
    """Persistence diagram (birth vs death) of one raw H×W map's sublevel cubical complex (gudhi),
    H0 and H1 bars; infinite deaths drawn on a line above the finite ones."""
    import gudhi
    import numpy as np

    fmap = np.asarray(fmap, dtype=np.float64)
    if fmap.ndim != 2:
        raise ValueError(f"plot_persistence_diagram takes one 2-D map, got shape {fmap.shape}.")
    bars = gudhi.CubicalComplex(top_dimensional_cells=fmap).persistence()
    ax = _axes(ax)
    finite = [d for _, (b, d) in bars if np.isfinite(d)]
    top = max(finite + [float(fmap.max())]) * 1.05 + 1e-12
    lo = float(fmap.min())
    for dim, marker in ((0, "o"), (1, "^")):
        pts = [(b, d if np.isfinite(d) else top) for k, (b, d) in bars if k == dim]
        if pts:
            xs, ys = zip(*pts)
            ax.scatter(xs, ys, marker=marker, s=18, label=f"H{dim}")
    ax.plot([lo, top], [lo, top], color="grey", lw=0.8)
    ax.axhline(top, color="grey", ls=":", lw=0.8)
    ax.set_xlabel("birth (map value)")
    ax.set_ylabel("death (map value; dotted line = never)")
    ax.legend(fontsize=7)
    ax.set_title(title or "persistence diagram (sublevel cubical complex)", fontsize=9)
    return ax


def plot_birth_point_histogram(points, ax=None, *, units=None, title: str | None = None):
    """Histogram of birth points (an (N, C) array from ``birth_points``), pooled over the chosen
    ``units`` (default: all); zero (no 1-cycle up to the last level) is its own bar."""
    import numpy as np

    points = np.asarray(points)
    if points.ndim != 2:
        raise ValueError(f"points must be an (N, C) birth-point array, got shape {points.shape}.")
    values = points[:, list(units)] if units is not None else points
    ax = _axes(ax)
    top = int(values.max()) if values.size else 0
    ax.hist(values.ravel(), bins=np.arange(-0.5, top + 1.5, 1.0), color="tab:purple", alpha=0.8)
    ax.set_xlabel("birth point (filtration level; 0 = none)")
    ax.set_ylabel("count (images × units)")
    ax.set_title(title or "birth points", fontsize=9)
    return ax


def _check_table(table, columns, caller: str, hint: str):
    """Raise a clear error unless ``table`` is a non-empty DataFrame holding ``columns``."""
    if not isinstance(table, pd.DataFrame):
        raise TypeError(f"{caller}: table must be a DataFrame, got {type(table).__name__}.")
    missing = [c for c in columns if c not in table.columns]
    if missing or table.empty:
        raise ValueError(f"{caller}: table lacks column(s) {missing} or has no rows; its columns are "
                         f"{list(table.columns)} ({hint}).")


def plot_accuracy_before_after(table, ax=None, *, label: str = "name", before: str = "accuracy_pruned",
                               after: str = "accuracy_finetuned", reference: float | None = None,
                               title: str | None = None):
    """Test accuracy of pruned networks as pairs of horizontal bars, right after pruning (grey)
    and after fine-tuning (blue), one pair per row of ``table`` (``prune_experiment`` rows, the
    MNIST-1D ``block_removal`` / ``filter_pruning`` tables), each bar labelled with its value.

    Networks pruned to the same size (equal budgets) would sit on one x in a FLOPs-vs-accuracy
    scatter, their names printed over each other; as rows they stay apart.

    Parameters
    ----------
    table : DataFrame
        One row per pruned network with the columns ``label``, ``before`` and ``after``
        (accuracies as fractions in [0, 1]), drawn top to bottom in table order.
    ax : matplotlib Axes, optional
        Where to draw; default a new figure sized to the rows.
    label, before, after : str
        The columns of the row names and of the two accuracies.
    reference : float, optional
        The unpruned network's accuracy (a fraction), a dashed vertical line.
    title : str, optional

    Returns
    -------
    matplotlib Axes

    Raises
    ------
    TypeError
        If ``table`` is not a DataFrame.
    ValueError
        If a column is missing or ``table`` has no rows.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> rows = pd.DataFrame({"name": ["l1", "random"], "accuracy_pruned": [0.5, 0.25],
    ...                      "accuracy_finetuned": [0.97, 0.96]})
    >>> ax = plot_accuracy_before_after(rows, reference=0.98)
    >>> [t.get_text() for t in ax.get_yticklabels()], [t.get_text() for t in ax.texts]
    (['l1', 'random'], ['50.0', '97.0', '25.0', '96.0'])
    """
    import numpy as np

    _check_table(table, (label, before, after), "plot_accuracy_before_after", "set label=, before=, after=")
    if ax is None:
        import matplotlib.pyplot as plt
        _, ax = plt.subplots(figsize=(7, 0.45 * len(table) + 1.2))
    y = np.arange(len(table))[::-1].astype(float)  # the first row on top
    pruned, tuned = (100 * table[c].to_numpy(dtype=float) for c in (before, after))
    ax.barh(y - 0.2, pruned, height=0.4, color="tab:gray", label="right after pruning")
    ax.barh(y + 0.2, tuned, height=0.4, color="tab:blue", label="fine-tuned")
    for row, p, t in zip(y, pruned, tuned):
        ax.text(p + 0.5, row - 0.2, f"{p:.1f}", va="center", fontsize=7)
        ax.text(t + 0.5, row + 0.2, f"{t:.1f}", va="center", fontsize=7)
    if reference is not None:
        ax.axvline(100 * reference, color="black", ls="--", lw=0.8, label=f"unpruned ({100 * reference:.1f})")
    ax.set_yticks(y, table[label].astype(str).tolist())
    ax.set_xlim(0, 110)  # room for the value labels of bars near 100 %
    ax.set_xlabel("test accuracy (%)")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
    if title:
        ax.set_title(title, fontsize=9)
    return ax


def plot_perplexity_change(table, ax=None, *, label: str = "criterion", before: str = "perplexity removed",
                           after: str = "perplexity healed", reference: float | None = None,
                           title: str | None = None):
    """Perplexity of pruned language models on a log axis, right after the removal (grey circle)
    and after healing (blue dot), joined by a line per row of ``table``.

    Points, not bars: a bar on a log axis has no zero to start from, so its length shows where
    the axis happens to begin rather than the value; the points' positions are the values.

    Parameters
    ----------
    table : DataFrame
        One row per pruned model with the columns ``label``, ``before`` and ``after`` (positive
        perplexities), drawn top to bottom in table order.
    ax : matplotlib Axes, optional
        Where to draw; default a new figure sized to the rows.
    label, before, after : str
        The columns of the row names and of the two perplexities.
    reference : float, optional
        The intact model's perplexity, a dashed vertical line.
    title : str, optional

    Returns
    -------
    matplotlib Axes

    Raises
    ------
    TypeError
        If ``table`` is not a DataFrame.
    ValueError
        If a column is missing, ``table`` has no rows, or a perplexity is not positive and finite.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> rows = pd.DataFrame({"criterion": ["BI", "last 1"], "perplexity removed": [12.0, 900.0],
    ...                      "perplexity healed": [9.0, 40.0]})
    >>> ax = plot_perplexity_change(rows, reference=8.0)
    >>> ax.get_xscale(), [t.get_text() for t in ax.get_yticklabels()]
    ('log', ['BI', 'last 1'])
    """
    import numpy as np

    _check_table(table, (label, before, after), "plot_perplexity_change", "set label=, before=, after=")
    removed, healed = (table[c].to_numpy(dtype=float) for c in (before, after))
    values = np.r_[removed, healed, [] if reference is None else [reference]]
    if not (np.isfinite(values) & (values > 0)).all():
        raise ValueError("plot_perplexity_change: every perplexity (and reference) must be positive and finite "
                         "for a log axis.")
    if ax is None:
        import matplotlib.pyplot as plt
        _, ax = plt.subplots(figsize=(7, 0.35 * len(table) + 1.2))
    y = np.arange(len(table))[::-1].astype(float)
    ax.hlines(y, np.minimum(removed, healed), np.maximum(removed, healed), color="lightgray", lw=2, zorder=1)
    ax.scatter(removed, y, s=36, facecolors="white", edgecolors="tab:gray", zorder=2, label="right after removal")
    ax.scatter(healed, y, s=30, color="tab:blue", zorder=3, label="healed")
    if reference is not None:
        ax.axvline(reference, color="black", ls="--", lw=0.8, label=f"intact ({reference:.3g})")
    ax.set_xscale("log")
    low, high = np.log(values.min()), np.log(values.max())
    pad = 0.08 * max(high - low, np.log(1.02))  # the points fill the axis, however close they are
    ax.set_xlim(np.exp(low - pad), np.exp(high + pad))
    if high - low < np.log(10):  # within a decade a log axis has no labelled tick: label plain values
        from matplotlib.ticker import MaxNLocator, NullFormatter, NullLocator, ScalarFormatter

        ax.xaxis.set_major_locator(MaxNLocator(nbins=6))
        ax.xaxis.set_major_formatter(ScalarFormatter(useOffset=False))
        ax.xaxis.set_minor_locator(NullLocator())
        ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_yticks(y, table[label].astype(str).tolist())
    ax.set_xlabel("test perplexity (log scale)")
    ax.grid(axis="x", which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
    if title:
        ax.set_title(title, fontsize=9)
    return ax


def plot_filter_closeness(closeness, selection, ax=None, *, kind: str = "shortest_path", title: str | None = None):
    """Each filter's closeness in the Central-Filter graph (``closeness_centrality(S, kind=kind,
    threshold=selection.threshold)``) as bars coloured like ``plot_filter_graph``: central filters
    red, their pruned delegates grey, the others blue.

    ``kind="shortest_path"`` draws the scores as they are. ``kind="cf_local"`` draws the
    Central-Filter reference score through the mean similarity of a filter to its neighbours,
    ``m_i = 1024 − 1/c_i``: the score ``c_i = deg_i / Σ_{j∈N(i)} (1024 − S_ij)`` equals
    ``1/(1024 − m_i)``, so for similarities in (0, 1] all scores lie in (1/1024, 1/1023] and their
    bars would look equal; ``m_i`` orders the filters as ``c_i`` does. Isolated filters (score 0)
    get no bar and an "isolated" mark.

    Parameters
    ----------
    closeness : array (C,)
        ``closeness_centrality(S, kind=kind, threshold=selection.threshold)``.
    selection : CentralFilters
        ``central_filters(S, ...)``: the roles and the threshold.
    ax : matplotlib Axes, optional
    kind : {"shortest_path", "cf_local"}
        Which closeness ``closeness`` holds.
    title : str, optional

    Returns
    -------
    matplotlib Axes

    Raises
    ------
    ValueError
        For an unknown ``kind``, or ``closeness`` not one finite non-negative value per filter of
        ``selection``.

    References
    ----------
    Duan et al., "Network Compression via Central Filter", arXiv 2112.05493, §3.2.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import numpy as np
    >>> from repgraph import central_filters, closeness_centrality
    >>> S = np.array([[1.0, 0.9, 0.8], [0.9, 1.0, 0.1], [0.8, 0.1, 1.0]])
    >>> selection = central_filters(S, ratio=0.34)
    >>> c = closeness_centrality(S, kind="cf_local", threshold=selection.threshold)
    >>> ax = plot_filter_closeness(c, selection, kind="cf_local")
    >>> [round(float(p.get_height()), 3) for p in ax.patches]    # mean similarity to the neighbours
    [0.85, 0.9, 0.8]
    """
    import numpy as np
    from matplotlib.patches import Patch

    from .builders.filter_graph import CF_OFFSET

    if kind not in ("shortest_path", "cf_local"):
        raise ValueError(f"kind must be 'shortest_path' or 'cf_local', got {kind!r}.")
    score = np.asarray(closeness, dtype=float)
    filters = len(selection.kept) + len(selection.pruned)
    if score.shape != (filters,) or not np.isfinite(score).all() or (score < 0).any():
        raise ValueError(f"closeness must hold one finite, non-negative value per filter ({filters}), got shape "
                         f"{score.shape}; pass closeness_centrality(S, kind=kind, threshold=selection.threshold).")
    connected = score > 0
    heights = score if kind == "shortest_path" else np.where(connected, CF_OFFSET - 1 / np.where(connected, score, 1), 0)
    central, pruned = set(selection.delegates), set(selection.pruned)
    colours = ["tab:red" if i in central else "tab:gray" if i in pruned else "tab:blue" for i in range(filters)]
    ax = _axes(ax)
    ax.bar(np.arange(filters), heights, color=colours)
    for i in np.flatnonzero(~connected):
        ax.text(i, 0, "isolated", rotation=90, ha="center", va="bottom", fontsize=6, color="dimgray")
    ax.set_xticks(np.arange(filters))
    ax.tick_params(axis="x", labelsize=7)
    ax.set_xlabel("filter")
    if kind == "shortest_path":
        ax.set_ylabel("closeness on 1 − S (shortest paths)")
    else:
        ax.set_ylabel("mean S to its neighbours (= 1024 − 1/cf_local score)")
        ax.set_ylim(0.0, 1.0)
        ax.axhline(selection.threshold, color="black", ls=":", lw=0.8)  # every neighbour lies above it
    handles = [Patch(color=c, label=n) for c, n in (("tab:red", "central filter"), ("tab:gray", "pruned (delegate)"),
                                                      ("tab:blue", "kept"))]
    ax.legend(handles=handles, fontsize=7)
    ax.set_title(title or f"{kind} closeness at S > {selection.threshold:.3g}", fontsize=9)
    return ax

_CRITERION_LABELS = {"delta_q": "ΔQ", "block_influence": "Block Influence", "relative_update_norm": "update norm",
                     "gbs_in_out": "GBS in/out", "cka_in_out": "CKA in/out"}


def criterion_label(column: str) -> str:
    """A criterion column's short label: ``"angular n=2"``, ``"ΔQ"``, ``"CKA in/out"``, ..."""
    if column.startswith("angular_distance_"):
        return f"angular n={column.rsplit('_', 1)[1]}"
    return _CRITERION_LABELS.get(column, column)


def plot_layer_redundancy(table, ax=None, *, criteria=None, annotate: bool = True, title: str | None = None,
                          cmap: str = "YlOrRd", colorbar: bool = True):
    """The ``layer_redundancy`` table as a criterion × block heatmap: each cell shows the raw value
    and is coloured by the block's redundancy rank within its criterion (the table's
    ``attrs["redundant_when"]``: darkest = most redundant), so columns where every row is dark
    are blocks all criteria agree on. NaN cells (undefined: a span past the last block, a block
    that changes the shape) stay blank. ``criteria`` picks and orders the rows (default: every
    criterion column). An angular-distance row's cell ℓ is the span of n blocks starting at ℓ."""
    import numpy as np

    criteria, values, ranks = redundancy_ranks(table, criteria)
    ax = _axes(ax)
    image = ax.imshow(np.ma.masked_invalid(ranks), vmin=0.0, vmax=1.0, cmap=cmap, aspect="auto",
                      interpolation="nearest")
    names = table["block"].astype(str).tolist()
    prefix = names[0].rpartition(".")[0] + "." if len(names) > 1 and "." in names[0] else ""
    if not prefix or not all(n.startswith(prefix) for n in names):
        prefix = ""
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels([short_layer_name(n[len(prefix):]) for n in names], rotation=90, fontsize=7)
    ax.set_yticks(range(len(criteria)))
    ax.set_yticklabels([criterion_label(c) for c in criteria], fontsize=8)
    ax.set_xlabel(f"block{f' ({prefix}…)' if prefix else ''}")
    if annotate:
        for (i, j), v in np.ndenumerate(values):
            if not np.isnan(v):
                ax.text(j, i, f"{v:.3g}", ha="center", va="center", fontsize=6,
                        color="white" if ranks[i, j] > 0.6 else "black")
    ax.set_title(title or "block redundancy (colour: rank within each criterion)", fontsize=9)
    if colorbar:
        bar = ax.figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04, ticks=[0.0, 1.0])
        bar.ax.set_yticklabels(["least", "most\nredundant"], fontsize=7)
    return ax


def plot_complexity_next_to_modularity(curve, complexity, ax=None, *, column: str = "complexity",
                                       title: str | None = None):
    """The modularity curve (``modularity_curve``, left axis) and the transformation complexity of
    the same layers (``transformation_complexity``, right axis, a twin of ``ax``) against depth,
    so one sees where class communities form relative to where the gating patterns diversify.

    Layers are matched by name: the complexity of each layer of ``curve`` that ``complexity``
    also has is drawn at that layer's depth in ``curve``; layers of only one table are left out.
    ``column`` picks the complexity column (``"complexity"``, ``"cumulative_complexity"``, or a
    label-information column). Returns the left Axes; the twin is ``ax.right_ax``.
    """
    for name, table, needed in (("curve", curve, {"layer", "depth", "modularity"}),
                                ("complexity", complexity, {"layer", column})):
        if not isinstance(table, pd.DataFrame):
            raise TypeError(f"{name} must be a DataFrame (modularity_curve / transformation_complexity output), "
                            f"got {type(table).__name__}.")
        missing = needed - set(table.columns)
        if missing:
            raise ValueError(f"{name} lacks column(s) {sorted(missing)}; pass modularity_curve and "
                             f"transformation_complexity output (column= names a complexity column).")
    values = dict(zip(complexity["layer"].astype(str), complexity[column]))
    shared = curve[curve["layer"].astype(str).isin(values)]
    if shared.empty:
        raise ValueError("curve and complexity share no layer name; compute both on the same layers (e.g. the "
                         "ReLU outputs) so they can be drawn side by side.")
    ax = _axes(ax)
    x = curve["depth"].to_numpy()
    ax.plot(x, curve["modularity"].to_numpy(), marker="o", ms=3, color="C0", label="modularity Q")
    ax.set_ylabel("modularity Q of the class partition", color="C0")
    right = ax.twinx()
    right.plot(shared["depth"].to_numpy(), [values[str(n)] for n in shared["layer"]], marker="s", ms=3,
               color="C3", label=column.replace("_", " "))
    unit = complexity.attrs.get("base")
    suffix = " (bits)" if unit == 2.0 else " (nats)" if unit is not None and abs(unit - 2.718281828) < 1e-6 else ""
    right.set_ylabel(column.replace("_", " ") + suffix, color="C3")
    ax.right_ax = right
    ax.set_xticks(x)
    ax.set_xticklabels([short_layer_name(n) for n in curve["layer"]], rotation=90, fontsize=7)
    ax.set_xlabel("layer (execution order)")
    ax.grid(alpha=0.3)
    ax.set_title(title or "modularity and transformation complexity", fontsize=9)
    return ax


def redundancy_ranks(table, criteria=None):
    """``(criteria, values, ranks)`` of a ``layer_redundancy`` / ``block_redundancy`` table: the
    criterion columns (default all of ``attrs["redundant_when"]``, in its order), their values
    (criteria × blocks) and each block's redundancy rank within its criterion, scaled to 1 = most
    redundant, 0 = least (NaN where the value is); errors name the argument."""
    import numpy as np

    if not isinstance(table, pd.DataFrame) or "block" not in table.columns:
        raise TypeError("table must be the DataFrame returned by layer_redundancy or block_redundancy.")
    orientation = table.attrs.get("redundant_when") or {}
    criteria = list(orientation) if criteria is None else list(criteria)
    unknown = [c for c in criteria if c not in orientation or c not in table.columns]
    if not criteria or unknown:
        raise ValueError(f"Unknown criteria {unknown}; the table's criterion columns are {list(orientation)}.")
    values = table[criteria].to_numpy(dtype=float).T
    ranks = np.full_like(values, np.nan)
    for i, column in enumerate(criteria):
        ranked = table[column].rank(ascending=orientation[column] == "low", method="min").to_numpy(float)
        count = np.count_nonzero(~np.isnan(ranked))
        ranks[i] = 1.0 - (ranked - 1.0) / max(count - 1, 1)  # 1 = most redundant, 0 = least
    return criteria, values, ranks
