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


