"""The sections that the HTML reports of ``repgraph report`` share, for the digits ResNet-20
(``digits.report``) and for a model of one's own (``user_model.user_model_report``), and the
report's figures written as PNG files."""
from __future__ import annotations

from pathlib import Path

from ..analyzers import birth_points, central_filters, cka_matrix, gbs_matrix
from ..builders import filter_similarity
from ..hooks import capture_activations
from ._files import atomic_write
from .filter_report import layer_filter_report

REPORT_FIGURES = ("modularity.png", "similarity.png", "filters.png")  # the report's figures, as PNG files


def similarity_section(acts, *, progress: bool = True):
    """The report's layer-similarity section: GBS (on the full cosine graph), biased CKA and
    debiased CKA of every pair of the captured layers, side by side, each heatmap on its own
    fitted colour range.

    Parameters
    ----------
    acts : Activations
        The layers' activations, as ``capture_activations`` returns them.
    progress : bool, default True
        Show progress bars.

    Returns
    -------
    tuple of (str, matplotlib.figure.Figure)
        The section's heading and figure, a ``write_report`` section.
    """
    import matplotlib.pyplot as plt

    from ..plotting import plot_similarity_heatmap

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    matrices = (gbs_matrix(acts, progress=progress), cka_matrix(acts, progress=progress),
                cka_matrix(acts, debiased=True, progress=progress))
    for ax, matrix in zip(axes, matrices):
        plot_similarity_heatmap(matrix, ax=ax, half=True)
    fig.tight_layout()
    return "Layer similarity: GBS (full graph), biased CKA, debiased CKA", fig


def filter_sections(model, data, layer: str, *, ratio: float = 0.25, n_maps: int = 128, progress: bool = True):
    """The report's filter sections of one layer: its Central-Filter graph (Wang et al.) at
    ``ratio`` beside the histogram of its filters' birth points, then every filter criterion of
    it (``layer_filter_report``), all on the maps of the first ``n_maps`` samples of ``data``.

    Parameters
    ----------
    model : nn.Module
        The network.
    data : tensor, (X, y), Dataset or any form ``capture_activations`` takes
        The samples; labels, when present, group them into classes for feature entropy.
    layer : str
        A layer whose output is channel maps, typically a post-ReLU module.
    ratio : float, default 0.25
        The Central-Filter selection's pruning ratio.
    n_maps : int, default 128
        Samples whose maps are read.
    progress : bool, default True
        Show progress bars.

    Returns
    -------
    list of (str, item)
        Two ``write_report`` sections: the figure, and the criteria table (one row per filter).
    """
    import matplotlib.pyplot as plt

    from ..plotting import plot_birth_point_histogram, plot_filter_graph

    maps = capture_activations(model, data, layers=[layer], reduce=None, max_samples=n_maps,
                               progress=progress)[layer]
    S = filter_similarity(maps)
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    plot_filter_graph(S, central_filters(S, ratio), ax=axes[0])
    plot_birth_point_histogram(birth_points(maps), ax=axes[1], title=f"birth points of {layer} ({len(maps)} samples)")
    fig.tight_layout()
    return [(f"Filters of {layer}: Central-Filter graph and birth points", fig),
            (f"Filter criteria of {layer}",
             layer_filter_report(model, data, layer, max_samples=n_maps, progress=progress))]


def write_figures(out, sections, names=REPORT_FIGURES) -> list:
    """Write the figures of ``sections``, in order, as PNG files ``out/<name>`` of ``names``
    (a figure beyond the names is not written).

    Parameters
    ----------
    out : str or Path
        An existing folder.
    sections : list of (str, item)
        ``write_report``'s sections; the items that are figures are written.
    names : sequence of str, default REPORT_FIGURES
        One file name per figure: the report's modularity, similarity and filter figures.

    Returns
    -------
    list of Path
        The files written.
    """
    figures = [item for _, item in sections if hasattr(item, "savefig")]
    paths = [Path(out) / name for name in names[:len(figures)]]
    for path, fig in zip(paths, figures):
        atomic_write(path, lambda p, fig=fig: fig.savefig(p, dpi=80, format="png", bbox_inches="tight"))
    return paths
