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


def plot_modularity_curve(curve_or_curves, ax=None, *, show_std: bool = True, title: str | None = None):
    """Modularity against depth for one curve (DataFrame from ``modularity_curve``) or several
    (a mapping label -> DataFrame, or a list of DataFrames), with ±std bands across batches."""
    if isinstance(curve_or_curves, pd.DataFrame):
        curves = {"": curve_or_curves}
    elif isinstance(curve_or_curves, Mapping):
        curves = dict(curve_or_curves)
    else:
        curves = {f"run {i}": c for i, c in enumerate(curve_or_curves)}
    if not curves:
        raise ValueError("plot_modularity_curve needs at least one curve.")
    ax = _axes(ax)
    for label, curve in curves.items():
        missing = {"depth", "modularity", "layer"} - set(curve.columns)
        if missing:
            raise ValueError(f"curve {label!r} lacks column(s) {sorted(missing)}; pass modularity_curve output.")
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




def plot_similarity_heatmap(matrix, ax=None, vmin: float = 0.0, vmax: float = 1.0, *, half: bool = False,
                            title: str | None = None, cmap: str = "magma", colorbar: bool = True):
    """Heatmap of a layer × layer similarity DataFrame (``cka_matrix``, ``gbs_matrix``) with
    shortened layer labels; ``half=True`` masks the upper triangle of a symmetric matrix."""
    import numpy as np

    if not isinstance(matrix, pd.DataFrame):
        raise TypeError("matrix must be a DataFrame from cka_matrix or gbs_matrix.")
    values = matrix.to_numpy(dtype=float)
    if half:
        if values.shape[0] != values.shape[1]:
            raise ValueError("half=True needs a square (symmetric) matrix.")
        values = np.where(np.triu(np.ones_like(values, dtype=bool), k=1), np.nan, values)
    ax = _axes(ax)
    image = ax.imshow(values, vmin=vmin, vmax=vmax, cmap=cmap, origin="lower", interpolation="nearest")
    ax.set_xticks(range(values.shape[1]))
    ax.set_xticklabels([short_layer_name(c) for c in matrix.columns], rotation=90, fontsize=7)
    ax.set_yticks(range(values.shape[0]))
    ax.set_yticklabels([short_layer_name(i) for i in matrix.index], fontsize=7)
    ax.set_xlabel(str(matrix.columns.name or "layer"))
    ax.set_ylabel(str(matrix.index.name or "layer"))
    measure = matrix.attrs.get("measure", "similarity")
    detail = matrix.attrs.get("estimator") or (f"k={matrix.attrs['k']}" if "k" in matrix.attrs else "")
    ax.set_title(title or (f"{measure} ({detail})" if detail else measure), fontsize=9)
    if colorbar:
        ax.figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label=measure)
    return ax
