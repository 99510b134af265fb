"""The command line's analyses of a user's own model on a data source: its modularity curve with
the removable layers on a plateau, and the model without them."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import torch

from ..analyzers import modularity_curve
from ..hooks import capture_activations, select_layers
from ..hooks.conv_groups import conv_groups
from ..pruning import count_params_flops, redundant_layers, removable_layers, remove_layers
from ._files import atomic_write


def plateau_layers(model, X, y, *, tol: float = 0.01, k: int = 3, batch_size: int = 500, out=None,
                   progress: bool = True) -> pd.DataFrame:
    """The modularity curve of ``model`` on ``(X, y)`` over the ``"modularity"`` preset's layers
    (each conv that opens an ``nn.Sequential(conv, bn, relu)`` group taken as the group, the name
    ``removable_layers`` gives it), flagged by ``redundant_layers`` with ``removable=removable_layers(model, X[:1])`` (Lu et al.,
    ECCV 2022, §4: a removable layer whose ΔQ ≤ ``tol`` is redundant).

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
    if y is None:
        raise ValueError("--data: the modularity of a layer is that of the class partition, so the data need "
                         "labels; pass a source with labels (a .pt file with 'y').")
    group_of = {g.members[0]: g.name for g in conv_groups(model) if g.is_module}
    layers = [group_of.get(name, name) for name in select_layers(model, "modularity")]
    acts = capture_activations(model, (X, y), layers=layers, progress=progress)
    curve = modularity_curve(acts, k=k, batch_size=min(batch_size, len(X)), progress=progress)
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
