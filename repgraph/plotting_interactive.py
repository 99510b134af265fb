"""Interactive plots of repgraph results with plotly: hover over a cell or a point to read its
layers and value. An optional backend (``pip install plotly``, or the ``plotly`` extra:
``pip install 'repgraph[plotly]'``); ``repgraph.plotting`` (matplotlib) stays the default and
these functions draw the same results. Each returns a ``plotly.graph_objects.Figure`` and never
shows it (``fig.show()``, or ``fig.write_html(path)`` for a file that needs no Python)."""
from __future__ import annotations

import numpy as np

from .plotting import (axis_title, criterion_label, heatmap_title, heatmap_values, named_curves, redundancy_ranks,
                       short_layer_name)


def _graph_objects():
    """``plotly.graph_objects``, or an ImportError saying how to install plotly."""
    try:
        import plotly.graph_objects as go
    except ImportError as error:
        raise ImportError("repgraph's interactive plots need plotly: pip install plotly (or pip install "
                          "'repgraph[plotly]'); repgraph.plotting draws the same results with matplotlib.") from error
    return go


def interactive_heatmap(matrix, *, vmin: float | None = None, vmax: float | None = None, half: bool = False,
                        title: str | None = None, colorscale: str = "Magma", xlabel: str | None = None,
                        ylabel: str | None = None, fmt: str = ".4f"):
    """An interactive heatmap of a layer × layer similarity table (``cka_matrix``, ``gbs_matrix``,
    ``layer_similarity``): hovering a cell shows its two layers and its value.

    As ``repgraph.plotting.plot_similarity_heatmap``: rows run up the y axis, columns along the
    x axis, the colour range fits the values shown (pass ``vmin=0, vmax=1`` for a fixed scale)
    and the axis titles are the frame's index and columns names (``"layer"`` for none or the
    analyzers' placeholder ``"layer2"``). The layer names are shown whole (zoom in to read
    them).

    Parameters
    ----------
    matrix : DataFrame
        Rows and columns are layers; its ``attrs["measure"]`` names the value in the hover label
        and the colour bar.
    vmin, vmax : float, optional
        The ends of the colour range; None (default) = the smallest / largest value shown.
    half : bool
        Leave out the upper triangle of a square (symmetric) matrix.
    title : str, optional
        Default: the measure and its estimator or graph (``"CKA (biased HSIC)"``).
    colorscale : str
        A plotly colour scale name.
    xlabel, ylabel : str, optional
        The axis titles (also the hover label's names of the two layers). Default: the
        columns' / index's name, as ``plot_similarity_heatmap``.
    fmt : str
        Format of the hovered value (a d3-format spec, as plotly's ``%{z:.4f}``).

    Returns
    -------
    plotly.graph_objects.Figure
        One ``Heatmap`` trace: ``x`` the columns' layer names, ``y`` the index's, ``z`` the values
        (None where left out), ``zmin`` / ``zmax`` the colour range.

    Raises
    ------
    ImportError
        Without plotly (the message says ``pip install plotly``).
    TypeError
        If ``matrix`` is not a DataFrame.
    ValueError
        For ``half=True`` on a matrix that is not square, or ``vmin`` above ``vmax``.

    References
    ----------
    The layer × layer similarity heatmaps of Kornblith et al., "Similarity of Neural Network
    Representations Revisited", ICML 2019; plotly's ``graph_objects.Heatmap`` and its
    ``hovertemplate``.

    Examples
    --------
    >>> import pandas as pd
    >>> M = pd.DataFrame([[1.0, 0.96], [0.96, 1.0]], index=["layer1.0", "layer1.1"],
    ...                  columns=["layer1.0", "layer1.1"])
    >>> M.attrs["measure"] = "GBS"
    >>> fig = interactive_heatmap(M, xlabel="model B", ylabel="model A")
    >>> fig.data[0].zmin, fig.data[0].zmax, fig.layout.xaxis.title.text
    (0.96, 1.0, 'model B')
    """
    values, low, high = heatmap_values(matrix, vmin, vmax, half)
    go = _graph_objects()
    xlabel = axis_title(matrix.columns) if xlabel is None else xlabel
    ylabel = axis_title(matrix.index) if ylabel is None else ylabel
    measure = matrix.attrs.get("measure") or "similarity"
    z = np.where(np.isfinite(values), values, None).tolist()  # None: no cell, no hover
    row, column = (f"{ylabel} (row)", f"{xlabel} (column)") if xlabel == ylabel else (ylabel, xlabel)
    hover = f"{row}: %{{y}}<br>{column}: %{{x}}<br>{measure}: %{{z:{fmt}}}<extra></extra>"
    fig = go.Figure(go.Heatmap(z=z, x=[str(c) for c in matrix.columns], y=[str(i) for i in matrix.index],
                               zmin=low, zmax=high, colorscale=colorscale, hovertemplate=hover,
                               colorbar={"title": {"text": measure}}))
    fig.update_layout(title={"text": title or heatmap_title(matrix)},
                      xaxis={"title": {"text": xlabel}, "type": "category"},
                      yaxis={"title": {"text": ylabel}, "type": "category"})
    return fig


def interactive_curve(curve_or_curves, *, show_std: bool = True, title: str | None = None):
    """Interactive modularity curves (``modularity_curve``): modularity against depth, one line per
    curve with its ±std band across batches; hovering a point shows its layer, depth,
    modularity and std.

    As ``repgraph.plotting.plot_modularity_curve``: the x axis is the depth (execution order),
    its ticks the first curve's short layer names.

    Parameters
    ----------
    curve_or_curves : DataFrame, mapping label -> DataFrame or list of DataFrames
        ``modularity_curve`` tables (columns ``layer``, ``depth``, ``modularity`` and, when
        present, ``std``); a list is labelled ``"run 0"``, ``"run 1"``, ...
    show_std : bool
        Draw a ±std band for a curve whose ``std`` is positive somewhere.
    title : str, optional
        The figure's title.

    Returns
    -------
    plotly.graph_objects.Figure
        Per curve, a ``Scatter`` line (``x`` depth, ``y`` modularity, ``customdata`` rows
        ``[layer, std]``, std None without a ``std`` column) after its band (a filled ``Scatter``
        without hover, ``showlegend`` False).

    Raises
    ------
    ImportError
        Without plotly (the message says ``pip install plotly``).
    ValueError
        For no curve, or a curve without the columns ``layer``, ``depth`` and ``modularity``.

    References
    ----------
    Lu et al., "Understanding the Dynamics of DNNs Using Graph Modularity", ECCV 2022 (the
    layer-wise modularity curve); plotly's ``graph_objects.Scatter`` and its ``hovertemplate``.

    Examples
    --------
    >>> import pandas as pd
    >>> curve = pd.DataFrame({"layer": ["layer1.0", "layer2.0"], "depth": [0, 1],
    ...                       "modularity": [0.1, 0.4], "std": [0.01, 0.02]})
    >>> fig = interactive_curve(curve)
    >>> list(fig.data[-1].y), list(fig.data[-1].customdata[1])   # the line, after its band
    ([0.1, 0.4], ['layer2.0', 0.02])
    """
    curves = named_curves(curve_or_curves, "interactive_curve")
    go = _graph_objects()
    from plotly.colors import qualitative

    fig, colours = go.Figure(), qualitative.Plotly
    for i, (label, curve) in enumerate(curves.items()):
        colour = colours[i % len(colours)]
        x, q = curve["depth"].tolist(), curve["modularity"].to_numpy(dtype=float)
        std = curve["std"].to_numpy(dtype=float) if "std" in curve else np.full(len(curve), np.nan)
        if show_std and (std > 0).any():
            fig.add_trace(go.Scatter(x=x + x[::-1], y=np.concatenate([q + std, (q - std)[::-1]]).tolist(),
                                     fill="toself", fillcolor=colour, opacity=0.2, line={"width": 0},
                                     hoverinfo="skip", showlegend=False, name=f"{label} ±std".strip()))
        customdata = [[str(layer), float(s) if np.isfinite(s) else None] for layer, s in zip(curve["layer"], std)]
        fig.add_trace(go.Scatter(x=x, y=q.tolist(), mode="lines+markers", name=label or "modularity",
                                 line={"color": colour}, marker={"size": 5}, customdata=customdata,
                                 showlegend=bool(label),
                                 hovertemplate=("layer: %{customdata[0]}<br>depth: %{x}<br>modularity: %{y:.4f}"
                                                f"<br>std: %{{customdata[1]:.4f}}<extra>{label}</extra>")))
    reference = next(iter(curves.values()))
    fig.update_layout(title={"text": title}, xaxis={"title": {"text": "layer (execution order)"},
                                                    "tickvals": reference["depth"].tolist(),
                                                    "ticktext": [short_layer_name(n) for n in reference["layer"]]},
                      yaxis={"title": {"text": "modularity Q of the class partition"}})
    return fig


def interactive_redundancy(table, *, criteria=None, title: str | None = None, colorscale: str = "YlOrRd"):
    """The ``layer_redundancy`` / ``block_redundancy`` table as an interactive criterion × block
    heatmap: each cell is coloured by the block's redundancy rank within its criterion (darkest
    = most redundant) and hovering it shows the block, the criterion and its raw value.

    As ``repgraph.plotting.plot_layer_redundancy``: the ranks follow the table's
    ``attrs["redundant_when"]``; NaN cells (a span past the last block, a block that changes the
    shape) stay blank; an angular-distance row's cell ℓ is the span of n blocks starting at ℓ.

    Parameters
    ----------
    table : DataFrame
        The table of ``layer_redundancy`` or ``block_redundancy``.
    criteria : list of str, optional
        The criterion columns to show, in order (default: every criterion of
        ``attrs["redundant_when"]``).
    title : str, optional
        Default ``"block redundancy (colour: rank within each criterion)"``.
    colorscale : str
        A plotly colour scale name.

    Returns
    -------
    plotly.graph_objects.Figure
        One ``Heatmap`` trace: ``x`` the blocks, ``y`` the criteria's labels (``"ΔQ"``,
        ``"angular n=2"``, ...), ``z`` the ranks (1 = most redundant, 0 = least; None where
        undefined), ``customdata`` the raw values, ``text`` them formatted.

    Raises
    ------
    ImportError
        Without plotly (the message says ``pip install plotly``).
    TypeError
        If ``table`` is not a redundancy table (a DataFrame with a ``block`` column).
    ValueError
        For criteria that are not criterion columns of the table.

    References
    ----------
    Men et al. 2024 (ShortGPT, Block Influence); Gromov et al. 2024 (angular distance); Lu et
    al., ECCV 2022 (ΔQ): the criteria of ``layer_redundancy``; plotly's ``graph_objects.Heatmap``.

    Examples
    --------
    >>> import pandas as pd
    >>> table = pd.DataFrame({"block": ["h.0", "h.1"], "block_influence": [0.2, 0.05]})
    >>> table.attrs["redundant_when"] = {"block_influence": "low"}
    >>> fig = interactive_redundancy(table)
    >>> list(fig.data[0].z[0]), list(fig.data[0].customdata[0])   # h.1 has the lower BI: most redundant
    ([0.0, 1.0], [0.2, 0.05])
    """
    criteria, values, ranks = redundancy_ranks(table, criteria)
    go = _graph_objects()
    defined = np.isfinite(values)
    fig = go.Figure(go.Heatmap(
        z=np.where(defined, ranks, None).tolist(), x=table["block"].astype(str).tolist(),
        y=[criterion_label(c) for c in criteria], zmin=0.0, zmax=1.0, colorscale=colorscale,
        customdata=np.where(defined, values, None).tolist(),
        text=[[f"{v:.3g}" if ok else "" for v, ok in zip(row, row_ok)] for row, row_ok in zip(values, defined)],
        texttemplate="%{text}", hovertemplate="block: %{x}<br>criterion: %{y}<br>value: %{customdata:.4g}"
                                              "<br>redundancy rank: %{z:.2f} (1 = most)<extra></extra>",
        colorbar={"title": {"text": "redundancy rank"}, "tickvals": [0.0, 1.0], "ticktext": ["least", "most"]}))
    fig.update_layout(title={"text": title or "block redundancy (colour: rank within each criterion)"},
                      xaxis={"title": {"text": "block"}, "type": "category"},
                      yaxis={"title": {"text": "criterion"}, "type": "category", "autorange": "reversed"})
    return fig
