"""The command line's analyses of a user's own model on a data source: its modularity curve with
the removable layers on a plateau, the model without them, and the HTML report."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import torch

from ..analyzers import modularity_curve
from ..hooks import capture_activations, list_layers, select_layers
from ..hooks.batches import input_dtype
from ..hooks.conv_groups import conv_groups
from ..models.user_model import expected_input
from ..pruning import count_params_flops, redundant_layers, removable_layers, remove_layers
from ..report import write_report
from ._files import atomic_write
from .report_sections import filter_sections, similarity_section, write_figures


def check_input(model, X, spec: str) -> None:
    """Run ``model`` on the first sample of ``X`` (floating inputs cast to the model's dtype, as
    ``capture_activations`` casts them) and turn a failure into an error that names ``--data``,
    what the sample is and what the model takes (``expected_input``).

    Parameters
    ----------
    model : nn.Module
        The model.
    X : torch.Tensor
        The inputs of the data source.
    spec : str
        The data source as given on the command line.

    Raises
    ------
    ValueError
        When the model does not run on ``X[:1]``.
    """
    x, dtype = X[:1], input_dtype(model)
    if x.is_floating_point() and dtype is not None:
        x = x.to(dtype)
    try:
        with torch.no_grad():
            model(x)
    except Exception as err:
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise ValueError(f"--data {spec}: the model does not run on its samples, {tuple(X.shape[1:])} "
                         f"{X.dtype} each ({type(err).__name__}: {reason}); --model expects "
                         f"{expected_input(model)}. Pass a --data source of that form.") from err


def modularity_layers(model) -> list[str]:
    """The layers a user's model is analysed at: the ``"modularity"`` preset's, each conv that
    opens an ``nn.Sequential(conv, bn, relu)`` group taken as the group (the name
    ``removable_layers`` gives it).

    Parameters
    ----------
    model : nn.Module
        The model.

    Returns
    -------
    list of str
        Module names, in registration order.
    """
    group_of = {g.members[0]: g.name for g in conv_groups(model) if g.is_module}
    return [group_of.get(name, name) for name in select_layers(model, "modularity")]


def _modularity_study(model, X, y, *, k, batch_size, progress):
    """``(activations, curve)``: the activations of ``model`` on ``(X, y)`` at its
    ``modularity_layers`` and their ``modularity_curve`` (``k`` neighbours, graphs of
    ``batch_size`` samples or all of them when fewer)."""
    if y is None:
        raise ValueError("--data: the modularity of a layer is that of the class partition, so the data need "
                         "labels; pass a source with labels (a .pt file with 'y').")
    acts = capture_activations(model, (X, y), layers=modularity_layers(model), progress=progress)
    return acts, modularity_curve(acts, k=k, batch_size=min(batch_size, len(X)), progress=progress)


def plateau_layers(model, X, y, *, tol: float = 0.01, k: int = 3, batch_size: int = 500, out=None,
                   progress: bool = True) -> pd.DataFrame:
    """The modularity curve of ``model`` on ``(X, y)`` over its ``modularity_layers``, flagged by
    ``redundant_layers`` with ``removable=removable_layers(model, X[:1])`` (Lu et al., ECCV 2022,
    §4: a removable layer whose ΔQ ≤ ``tol`` is redundant).

    Parameters
    ----------
    model : nn.Module
        The model.
    X, y : torch.Tensor
        Inputs and their class labels.
    tol : float
        ``redundant_layers``' tolerance.
    k, batch_size : int
        ``modularity_curve``'s neighbours and samples per graph.
    out : str or Path, optional
        A folder (made if missing) to write the table to, as ``modularity.csv``.
    progress : bool
        Show progress bars.

    Returns
    -------
    DataFrame (layer, modularity, delta_q, removable, redundant)
    """
    _, curve = _modularity_study(model, X, y, k=k, batch_size=batch_size, progress=progress)
    flags = redundant_layers(curve, tol=tol, removable=removable_layers(model, X[:1]))
    if out is not None:
        Path(out).mkdir(parents=True, exist_ok=True)
        atomic_write(Path(out) / "modularity.csv", lambda p: flags.to_csv(p, index=False))
    return flags


def prune_user_model(model, X, y, out, *, tol: float = 0.01, k: int = 3, batch_size: int = 500,
                     progress: bool = True) -> dict | None:
    """Remove the plateau layers (``plateau_layers``) of ``model``, save the pruned module to
    ``out/pruned.pt`` (``torch.save``, read back with ``torch.load(weights_only=False)``) and its
    parameters and FLOPs before and after to ``out/prune.csv``.

    Parameters
    ----------
    model : nn.Module
        The model; not modified.
    X, y : torch.Tensor
        Inputs and their class labels.
    out : str or Path
        The output folder (made if missing).
    tol, k, batch_size, progress
        As ``plateau_layers``.

    Returns
    -------
    dict or None
        The row written, or None when no removable layer sits on a plateau (nothing written).
    """
    flags = plateau_layers(model, X, y, tol=tol, k=k, batch_size=batch_size, progress=progress)
    names = flags.loc[flags["redundant"], "layer"].tolist()
    if not names:
        return None
    x = X[:1]
    pruned = remove_layers(model, names, example_input=x)
    (params_before, flops_before), (params_after, flops_after) = (count_params_flops(model, x),
                                                                   count_params_flops(pruned, x))
    row = {"removed": ", ".join(names), "params_before": params_before, "params_after": params_after,
           "flops_before": flops_before, "flops_after": flops_after}
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / "pruned.pt", lambda p: torch.save(pruned, p))
    atomic_write(out / "prune.csv", lambda p: pd.DataFrame([row]).to_csv(p, index=False))
    return row


def filter_layer(model, x) -> str | None:
    """The layer whose filters a user's report studies: the first ``nn.ReLU`` module that runs
    after a convolution and outputs square 2-D channel maps (N, C, H, H), as birth points need
    them; None when there is none (a transformer, an MLP, a 1-D CNN, a model whose ReLUs are
    functions).

    Parameters
    ----------
    model : nn.Module
        The model.
    x : torch.Tensor
        An example input (one sample suffices).

    Returns
    -------
    str or None
    """
    after_conv = False
    for row in list_layers(model, x).itertuples():
        module = model.get_submodule(row.name)
        after_conv = after_conv or isinstance(module, torch.nn.modules.conv._ConvNd)
        shape = row.output_shape
        if after_conv and isinstance(module, torch.nn.ReLU) and isinstance(shape, tuple) and len(shape) == 4 \
                and shape[2] == shape[3]:
            return row.name
    return None


def user_model_report(model, X, y, out, *, title: str, k: int = 3, batch_size: int = 500, ratio: float = 0.25,
                      parameters: dict | None = None, progress: bool = True) -> Path:
    """The HTML report of a user's model on ``(X, y)`` in ``out/report.html``, its figures also as
    PNG (``modularity.png``, ``similarity.png``, ``filters.png``), as ``repgraph.workflows.digits.report``
    writes it for the digits ResNet-20: the modularity curve at the ``modularity_layers`` and its
    table; GBS (full graph), biased and debiased CKA of every pair of those layers; the
    Central-Filter graph, birth points and every filter criterion of the ``filter_layer``
    (left out, with a line saying why, when the model has none). There is no untrained control:
    a model of one's own has no generic re-initialisation.

    Parameters
    ----------
    model : nn.Module
        The model, in eval mode (as ``load_user_model`` returns it); not modified.
    X, y : torch.Tensor
        Inputs and their class labels.
    out : str or Path
        The output folder (made if missing).
    title : str
        What the report is of, e.g. the model's path and the data source.
    k, batch_size : int
        ``modularity_curve``'s neighbours and samples per graph (all samples when fewer).
    ratio : float, default 0.25
        The Central-Filter selection's pruning ratio.
    parameters : dict, optional
        More rows of the report's parameter table (e.g. where the model and data came from).
    progress : bool, default True
        Show progress bars.

    Returns
    -------
    Path
        The report page.
    """
    import matplotlib.pyplot as plt

    from ..plotting import plot_modularity_curve

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    acts, curve = _modularity_study(model, X, y, k=k, batch_size=batch_size, progress=progress)
    fig, ax = plt.subplots(figsize=(8, 4))
    plot_modularity_curve(curve, ax=ax, title=title)
    sections = [("Modularity curve", fig), ("Modularity per layer", curve), similarity_section(acts, progress=progress)]
    layer = filter_layer(model, X[:1])
    if layer is None:
        sections.append(("Filters", "No nn.ReLU module outputs a convolution's square 2-D channel maps, so there are "
                                    "no filters to study; the Central-Filter and filter-criteria sections are left "
                                    "out."))
    else:
        sections += filter_sections(model, (X, y), layer, ratio=ratio, progress=progress)
    table = {**(parameters or {}), "model class": type(model).__name__, "samples": len(X),
             "input per sample": f"{tuple(X.shape[1:])} {X.dtype}", "layers": ", ".join(curve["layer"]),
             "modularity": f"k={k}, batches of {min(batch_size, len(X))}", "GBS": "full cosine graph",
             "filter layer": layer or "none", "Central Filter ratio": ratio}
    path = write_report(out / "report.html", f"repgraph report: {title}", sections, table)
    write_figures(out, sections)
    plt.close("all")
    return path
