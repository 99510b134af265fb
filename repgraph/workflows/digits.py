"""Recipes on the embedded default data set (sklearn's digits): the demo model, trained-vs-untrained
modularity curves, the report and the pruning runs. The command line and the notebooks call these
same functions."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch

from .. import __version__
from .._arrays import resolve_device
from ..analyzers import modularity_curve
from ..datasets import digits
from ..hooks import capture_activations
from ..models import IMAGE_MODELS, SEQUENCE_MODELS, get_model
from ..models.checkpoint import SHIPPED_CHECKPOINT, load_checkpoint
from ..pruning import (evaluate, prune_filters, redundant_layers, removable_layers, remove_layers, train,
                       uncoupled_convs)
from ..report import write_report
from ._files import atomic_write
from .filter_scores import filter_scores
from .prune_experiment import prune_experiment
from .report_sections import filter_sections, similarity_section, write_figures

DIGITS_CLASSES = 10
DEMO_MODEL = "resnet20"
DIGITS_BATCH = 270  # samples per sample graph: the 540 test digits make two full batches
def digits_splits(size: int = 16, seed: int = 0):
    """``(train, test)``: the digits splits the demo model is trained and evaluated on."""
    return digits("train", size=size, seed=seed), digits("test", size=size, seed=seed)


def train_digits_model(model_name: str = DEMO_MODEL, *, size: int = 16, epochs: int = 30, seed: int = 0,
                       device=None, progress: bool = True):
    """``(model, test accuracy)`` of ``model_name`` trained on the digits train split (seeded), on
    ``device``. ``model_name`` must be an image model (``repgraph.models.IMAGE_MODELS``): digits are
    images (N, 1, size, size)."""
    if isinstance(model_name, str) and model_name.lower() in SEQUENCE_MODELS:
        raise ValueError(f"model {model_name!r} takes sequences (N, C, L), but digits are images (N, 1, H, W); "
                         f"choose an image model: {', '.join(sorted(IMAGE_MODELS))}.")
    torch.manual_seed(seed)
    model = get_model(model_name, num_classes=DIGITS_CLASSES, in_channels=1).to(resolve_device(device))
    train_set, test_set = digits_splits(size, seed)
    history = train(model, train_set, epochs=epochs, lr=0.05, seed=seed, eval_data=test_set, progress=progress)
    return model, float(history["test_accuracy"].iloc[-1])


def save_digits_model(model, path, *, model_name: str, size: int, epochs: int, seed: int, accuracy: float) -> Path:
    """Write a checkpoint that ``digits_model`` (and ``models.checkpoint.load_checkpoint``) reads."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"model": model_name, "size": size, "seed": seed, "epochs": epochs, "test_accuracy": accuracy,
               "state_dict": model.state_dict(),
               "made_by": f"repgraph {__version__}: repgraph train --model {model_name} --size {size} "
                          f"--epochs {epochs} --seed {seed}"}
    atomic_write(path, lambda p: torch.save(payload, p))
    return path


def digits_model(*, seed: int = 0, size: int = 16, epochs: int = 30, retrain: bool = False, device=None,
                 progress: bool = True):
    """``(model, source)``: the shipped ResNet-20 digits checkpoint when it matches ``seed`` and
    ``size`` (and ``retrain`` is False), else a ResNet-20 trained now; ``source`` says which. The
    model is in eval mode on ``device``."""
    model = None if retrain else load_checkpoint(SHIPPED_CHECKPOINT, DEMO_MODEL, size, seed)
    if model is not None:
        return model.to(resolve_device(device)), f"checkpoint {SHIPPED_CHECKPOINT.name}"
    model, _ = train_digits_model(DEMO_MODEL, size=size, epochs=epochs, seed=seed, device=device, progress=progress)
    return model.eval(), "trained now"


def untrained_model(seed: int = 0, device=None):
    """A freshly initialised ResNet-20 for digits, seeded (the control of every comparison)."""
    torch.manual_seed(seed)
    return get_model(DEMO_MODEL, num_classes=DIGITS_CLASSES, in_channels=1).to(resolve_device(device)).eval()


def trained_vs_untrained(model, data, *, seed: int = 0, k: int = 3, batch_size: int = DIGITS_BATCH, store=None,
                         progress: bool = True):
    """``(curves, acts)``: modularity curves (Lu et al.'s hook points) of ``model`` and of an
    untrained ResNet-20 made with ``seed`` on ``data``, and the trained model's activations (so a
    caller analysing them further captures once). With ``store``, the captures stream to
    ``store/trained`` and ``store/untrained`` and are reused when they match."""
    nets = {"trained": model, "untrained": untrained_model(seed, resolve_device(None, like=model))}
    acts = {label: capture_activations(net, data, layers="modularity", progress=progress,
                                       store=None if store is None else Path(store) / label)
            for label, net in nets.items()}
    device = resolve_device(None, like=model)
    curves = {label: modularity_curve(a, k=k, batch_size=batch_size, device=device, progress=progress)
              for label, a in acts.items()}
    return curves, acts["trained"]


def _modularity_study(out: Path, *, size, seed, k, batch_size, epochs, retrain, device, store, progress):
    """What demo and report share: the output folder made, the digits model (checkpoint or trained),
    its test accuracy and the trained-vs-untrained curves.
    Returns (model, source, test set, accuracy, curves, the trained model's activations)."""
    out.mkdir(parents=True, exist_ok=True)
    model, source = digits_model(seed=seed, size=size, epochs=epochs, retrain=retrain, device=device,
                                 progress=progress)
    _, test_set = digits_splits(size, seed)
    accuracy = evaluate(model, test_set, progress=progress)
    curves, acts = trained_vs_untrained(model, test_set, seed=seed, k=k, batch_size=batch_size, store=store,
                                        progress=progress)
    return model, source, test_set, accuracy, curves, acts


@dataclass
class DemoResult:
    """What ``demo`` computed and where it wrote it."""

    source: str
    accuracy: float
    curves: dict
    flags: pd.DataFrame
    files: list


def demo(out, *, size: int = 16, seed: int = 0, k: int = 3, batch_size: int = DIGITS_BATCH, tol: float = 0.01,
         epochs: int = 30, retrain: bool = False, device=None, store=None, progress: bool = True) -> DemoResult:
    """The demo: modularity curves of the digits ResNet-20 and an untrained copy, the plateau
    blocks (ΔQ ≤ ``tol``, removable), written to ``out`` as ``modularity.csv``, ``modularity.png``
    and ``report.html``. ``device``: where the models run and the graphs are built; ``store``: a
    folder for the activation stores (see ``trained_vs_untrained``)."""
    import matplotlib.pyplot as plt

    from ..plotting import plot_modularity_curve

    out = Path(out)
    study = _modularity_study(out, size=size, seed=seed, k=k, batch_size=batch_size, epochs=epochs,
                              retrain=retrain, device=device, store=store, progress=progress)
    model, source, test_set, accuracy, curves, _ = study
    flags = redundant_layers(curves["trained"], tol=tol, removable=removable_layers(model, test_set.data[:2]))
    table = pd.concat([c.assign(model=label) for label, c in curves.items()], ignore_index=True)
    atomic_write(out / "modularity.csv", lambda p: table.to_csv(p, index=False))
    fig, ax = plt.subplots(figsize=(8, 4.5))
    plot_modularity_curve(curves, ax=ax, title=f"{DEMO_MODEL} on sklearn digits (test split, accuracy {accuracy:.3f})")
    fig.tight_layout()
    atomic_write(out / "modularity.png", lambda p: fig.savefig(p, dpi=120, format="png"))
    write_report(out / "report.html", "repgraph demo: layer-wise modularity on digits",
                 [("Modularity curves", fig), ("Modularity per layer", table),
                  ("Plateau blocks (removable, delta Q <= tol)", flags)],
                 {"model": DEMO_MODEL, "source": source, "test accuracy": round(accuracy, 4), "digits size": size,
                  "k": k, "batch size": batch_size, "tol": tol, "seed": seed})
    plt.close(fig)
    return DemoResult(source, accuracy, curves, flags,
                      [out / "modularity.csv", out / "modularity.png", out / "report.html"])


def report(out, *, size: int = 16, seed: int = 0, k: int = 3, batch_size: int = DIGITS_BATCH, layer: str = "layer1.0.relu1",
           ratio: float = 0.25, epochs: int = 30, retrain: bool = False, device=None, store=None,
           progress: bool = True) -> Path:
    """The full HTML report of the digits ResNet-20 in ``out/report.html``, its figures also as
    PNG: trained vs untrained modularity; GBS (full graph), biased and debiased CKA of every block
    pair; the Central-Filter graph and birth points of ``layer``; every filter criterion of it.
    Each layer set is captured once."""
    import matplotlib.pyplot as plt

    from ..plotting import plot_modularity_curve

    out = Path(out)
    study = _modularity_study(out, size=size, seed=seed, k=k, batch_size=batch_size, epochs=epochs,
                              retrain=retrain, device=device, store=store, progress=progress)
    model, source, test_set, accuracy, curves, acts = study
    fig, ax = plt.subplots(figsize=(8, 4))
    plot_modularity_curve(curves, ax=ax, title=f"ResNet-20 on digits (test accuracy {accuracy:.3f})")
    sections = [("Modularity curves: trained vs untrained", fig),
                ("Modularity per layer", pd.concat([c.assign(model=name) for name, c in curves.items()])),
                similarity_section(acts, progress=progress),
                *filter_sections(model, test_set, layer, ratio=ratio, progress=progress)]
    parameters = {"model": DEMO_MODEL, "source": source, "test accuracy": round(accuracy, 4), "digits size": size,
                  "seed": seed, "modularity": f"k={k}, batches of {batch_size}", "GBS": "full cosine graph",
                  "Central Filter ratio": ratio}
    path = write_report(out / "report.html", "repgraph report: ResNet-20 on sklearn digits", sections, parameters)
    write_figures(out, sections)
    plt.close("all")
    return path


def prune(out, *, method: str = "layers", criterion: str = "l1", ratio: float = 0.4, tol: float = 0.01,
          finetune_epochs: int = 5, size: int = 16, seed: int = 0, epochs: int = 30, retrain: bool = False,
          device=None, progress: bool = True):
    """Prune the digits ResNet-20 — the removable blocks on a modularity plateau (``method="layers"``)
    or the uncoupled convs' filters by ``criterion`` (``"filters"``) — fine-tune, and write
    ``out/prune.csv``. Returns the experiment row (``prune_experiment``), or None when no block
    sits on a plateau."""
    if method not in ("layers", "filters"):
        raise ValueError(f"method must be 'layers' or 'filters', got {method!r}.")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model, _ = digits_model(seed=seed, size=size, epochs=epochs, retrain=retrain, device=device, progress=progress)
    train_set, test_set = digits_splits(size, seed)
    x = test_set.data[:1].to(resolve_device(None, like=model))
    if method == "layers":
        acts = capture_activations(model, test_set, layers="modularity", progress=progress)
        curve = modularity_curve(acts, k=3, batch_size=DIGITS_BATCH, progress=progress)
        flags = redundant_layers(curve, tol=tol, removable=removable_layers(model, x))
        names = flags.loc[flags["redundant"], "layer"].tolist()
        if not names:
            return None
        label = f"remove {len(names)} plateau blocks: {', '.join(names)}"

        def pruner(m):
            return remove_layers(m, names)
    else:
        convs = uncoupled_convs(model, x)
        scores = filter_scores(model, criterion, convs=convs, data=train_set, example_input=x, ratio=ratio,
                               seed=seed, progress=progress)
        label = f"{criterion} filters, ratio {ratio} of {len(convs)} convs"

        def pruner(m):
            return prune_filters(m, scores.for_pruning(), ratio=ratio, example_input=x)
    row = prune_experiment(model, pruner, train_set, test_set, example_input=x, finetune_epochs=finetune_epochs,
                           seed=seed, name=label, progress=progress)
    atomic_write(out / "prune.csv", lambda p: row.to_frame().T.to_csv(p, index=False))
    return row
