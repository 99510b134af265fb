"""Recipes on MNIST-1D (Greydanus & Kobak, 2024), shared by ``benchmarks/mnist1d_findings.py`` and
notebook 05: seeded training runs of the 1-D ResNet-20 with snapshots for the training dynamics
(cached on disk), the modularity curve from the raw signals up, and the three comparisons the
papers make — block removal by ΔQ against random and last blocks, filter pruning by criterion, and
the layer-correspondence check across seeds."""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from .._arrays import resolve_device
from ..analyzers import cka_matrix, gbs_matrix, layer_correspondence, modularity_curve
from ..datasets import mnist1d
from ..datasets.tensor_dataset import ArrayDataset
from ..hooks import Activations, capture_activations
from ..models import SEQUENCE_MODELS, get_model
from ..pruning import (prune_filters, redundant_layers, removable_layers, remove_layers, train,
                       uncoupled_convs)
from ._files import atomic_write
from .filter_scores import filter_scores
from .prune_experiment import prune_experiment

MNIST1D_MODEL = "resnet1d"
MNIST1D_CLASSES = 10
# The recipe's training: ``train``'s defaults (SGD, Nesterov momentum 0.9, weight decay 5e-4,
# batches of 64, cosine schedule from lr 0.05). 40 epochs give 98.5-99 % test accuracy.
TRAINING = {"optimizer": "sgd", "lr": 0.05, "momentum": 0.9, "weight_decay": 5e-4, "batch_size": 64}
FILTER_CRITERIA = ("central_filter", "hrank", "chip", "l1", "random")
SIMILARITY_MEASURES = {  # the layer-correspondence check's measures: name -> (acts_a, acts_b) -> (L, L) frame
    "GBS full graph": lambda a, b: gbs_matrix(a, b, k=None, progress=False),
    "GBS kNN (k=5)": lambda a, b: gbs_matrix(a, b, k=5, progress=False),
    "CKA biased": lambda a, b: cka_matrix(a, b, progress=False),
    "CKA debiased": lambda a, b: cka_matrix(a, b, debiased=True, progress=False),
}


def _first(dataset: ArrayDataset, n: int | None, name: str) -> ArrayDataset:
    if n is None:
        return dataset
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 1 <= n <= len(dataset):
        raise ValueError(f"{name} must be an integer in [1, {len(dataset)}] or None (all), got {n!r}.")
    return ArrayDataset(dataset.data[:n], dataset.targets[:n], classes=dataset.classes)


def mnist1d_splits(n_train: int | None = None, n_test: int | None = None) -> tuple[ArrayDataset, ArrayDataset]:
    """``(train, test)``: the published MNIST-1D splits (4000 / 1000 signals of shape (1, 40)), or
    their first ``n_train`` / ``n_test`` signals (the splits are already shuffled).

    Parameters
    ----------
    n_train, n_test : int, optional
        How many signals of each split to keep; default all.

    Returns
    -------
    tuple of ArrayDataset

    Raises
    ------
    ValueError
        If a count is not an integer between 1 and the split's size.

    Examples
    --------
    >>> from repgraph.workflows.mnist1d import mnist1d_splits
    >>> train, test = mnist1d_splits(n_train=500)
    >>> len(train), len(test), tuple(test.data.shape[1:])
    (500, 1000, (1, 40))
    """
    return _first(mnist1d("train"), n_train, "n_train"), _first(mnist1d("test"), n_test, "n_test")


def snapshot_epochs(epochs: int) -> list[int]:
    """The epochs a training run keeps: 0 (the untrained network), every power of two below
    ``epochs``, and ``epochs`` itself — dense early, where the representations change fastest.

    Examples
    --------
    >>> snapshot_epochs(40)
    [0, 1, 2, 4, 8, 16, 32, 40]
    >>> snapshot_epochs(1)
    [0, 1]
    """
    if isinstance(epochs, bool) or not isinstance(epochs, (int, np.integer)) or epochs < 1:
        raise ValueError(f"epochs must be a positive integer, got {epochs!r}.")
    return sorted({0, int(epochs)} | {2**i for i in range(int(epochs).bit_length()) if 2**i < epochs})


@dataclass
class MNIST1DRun:
    """One seeded training run: its settings, per-epoch ``history`` and the weights at each
    ``snapshot_epochs`` epoch (``states``: epoch -> CPU state dict); ``source`` says whether it was
    trained now or read from the cache."""

    model_name: str
    seed: int
    epochs: int
    n_train: int
    history: pd.DataFrame
    states: dict
    source: str

    @property
    def accuracy(self) -> float:
        """Test accuracy after the last epoch."""
        return float(self.history["test_accuracy"].iloc[-1])

    def model(self, epoch: int | None = None, device=None) -> torch.nn.Module:
        """The network after ``epoch`` epochs (default: the last; 0 is the untrained network of this
        seed), in eval mode on ``device``."""
        epoch = self.epochs if epoch is None else epoch
        if epoch not in self.states:
            raise ValueError(f"No snapshot of epoch {epoch}; this run kept epochs {sorted(self.states)}.")
        model = get_model(self.model_name, num_classes=MNIST1D_CLASSES, in_channels=1)
        model.load_state_dict(self.states[epoch])
        return model.to(resolve_device(device)).eval()


def _cpu_state(model: torch.nn.Module) -> dict:
    return {name: value.detach().cpu().clone() for name, value in model.state_dict().items()}


def mnist1d_run(model_name: str = MNIST1D_MODEL, *, seed: int = 0, epochs: int = 40, n_train: int | None = None,
                cache=None, device=None, progress: bool = True) -> MNIST1DRun:
    """Train ``model_name`` on MNIST-1D (seeded, ``TRAINING`` settings) keeping snapshots, or read
    the run from ``cache``.

    The initial weights come from ``torch.manual_seed(seed)``, the batches from ``train(seed=seed)``;
    the test split is evaluated after every epoch. With ``cache`` (a folder), the run is stored as
    ``{model_name}_seed{seed}_epochs{epochs}_train{n}.pt`` and a file whose recorded settings match
    is loaded instead of training again.

    Parameters
    ----------
    model_name : str, default "resnet1d"
        A sequence model of ``repgraph.models`` (``"resnet1d"`` or ``"cnn1d"``).
    seed : int
    epochs : int
    n_train : int, optional
        Train on the first ``n_train`` training signals only (small runs); default all 4000.
    cache : str or Path, optional
        Folder of cached runs; default: no cache.
    device : str or torch.device, optional
        Where the model trains.
    progress : bool
        Show the training progress bar.

    Returns
    -------
    MNIST1DRun
        ``run.model()`` is the trained network, ``run.model(0)`` the untrained one,
        ``run.model(e)`` the one after ``e`` epochs for ``e`` in ``snapshot_epochs(epochs)``.

    Raises
    ------
    ValueError
        For a model that is not a sequence model, ``epochs`` < 1 or a bad ``n_train``.

    Examples
    --------
    >>> from repgraph.workflows.mnist1d import mnist1d_run
    >>> run = mnist1d_run("cnn1d", epochs=1, n_train=200, progress=False)
    >>> sorted(run.states), run.source, 0.0 <= run.accuracy <= 1.0
    ([0, 1], 'trained now', True)
    """
    if model_name not in SEQUENCE_MODELS:
        raise ValueError(f"MNIST-1D signals are sequences (N, 1, 40): model_name must be one of "
                         f"{sorted(SEQUENCE_MODELS)}, got {model_name!r}.")
    keep = snapshot_epochs(epochs)
    train_set, test_set = mnist1d_splits(n_train)
    settings = {"model": model_name, "seed": int(seed), "epochs": int(epochs), "n_train": len(train_set),
                "snapshots": keep, **TRAINING}
    path = None
    if cache is not None:
        path = Path(cache) / f"{model_name}_seed{seed}_epochs{epochs}_train{len(train_set)}.pt"
        if path.is_file():
            stored = torch.load(path, map_location="cpu", weights_only=True)
            if stored.get("settings") == settings:
                return MNIST1DRun(model_name, seed, epochs, len(train_set), pd.DataFrame(stored["history"]),
                                  stored["states"], f"cache {path}")
    torch.manual_seed(seed)
    model = get_model(model_name, num_classes=MNIST1D_CLASSES, in_channels=1).to(resolve_device(device))
    states = {0: _cpu_state(model)}

    def snapshot(epoch, net):
        if epoch in keep:
            states[epoch] = _cpu_state(net)

    history = train(model, train_set, epochs=epochs, seed=seed, eval_data=test_set, device=device,
                    on_epoch_end=snapshot, progress=progress, **TRAINING)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = {"settings": settings, "history": history.to_dict("list"), "states": states}
        atomic_write(path, lambda p: torch.save(payload, p))
    return MNIST1DRun(model_name, seed, epochs, len(train_set), history, states, "trained now")


def capture_with_input(model: torch.nn.Module, data: ArrayDataset, *, layers="modularity",
                       progress: bool = True) -> Activations:
    """The raw signals (as layer ``"input"``, flattened) followed by the outputs of ``layers`` of
    ``model`` on ``data``, with the labels: the modularity curve of this starts at the input's Q.

    Parameters
    ----------
    model : nn.Module
    data : ArrayDataset
        Signals (N, 1, L) and labels, e.g. the MNIST-1D test split.
    layers : default "modularity"
        Any layer selection of ``capture_activations`` (the preset: stem conv + every residual block).
    progress : bool

    Returns
    -------
    Activations
        ``"input"`` first, then the selected layers in execution order.

    Examples
    --------
    >>> from repgraph.models import resnet1d
    >>> from repgraph.workflows.mnist1d import capture_with_input, mnist1d_splits
    >>> _, test = mnist1d_splits(n_test=20)
    >>> acts = capture_with_input(resnet1d().eval(), test, progress=False)
    >>> acts.layers[:3], acts["input"].shape
    (['input', 'conv1', 'layer1.0'], (20, 40))
    """
    acts = capture_activations(model, data, layers=layers, progress=progress)
    return Activations({"input": data.data.reshape(len(data), -1), **acts}, acts.labels)


def block_removal(model: torch.nn.Module, curve: pd.DataFrame, train_data, test_data, *, n_blocks: int = 3,
                  random_draws: int = 3, finetune_epochs: int = 3, seed: int = 0,
                  progress: bool = True) -> pd.DataFrame:
    """Remove ``n_blocks`` removable residual blocks chosen three ways — the smallest ΔQ of
    ``curve`` (Lu et al.), ``random_draws`` uniform random picks, the last ones — fine-tune each
    pruned copy the same way and measure it (``prune_experiment``).

    Parameters
    ----------
    model : nn.Module
        A trained network with residual blocks; it is not modified.
    curve : DataFrame
        Its modularity curve (``modularity_curve``), blocks in depth order.
    train_data, test_data
        Fine-tuning and evaluation data.
    n_blocks : int
        How many blocks each method removes (the same budget for all).
    random_draws : int
        Random picks; draw ``d`` uses ``numpy.random.default_rng([seed, d])``.
    finetune_epochs : int
    seed : int
        Seed of the random picks and of the fine-tuning.
    progress : bool

    Returns
    -------
    DataFrame
        One row per pruned model: ``method`` ("smallest delta Q", "random", "last"), ``draw``,
        ``blocks`` (comma-separated names) and the columns of ``prune_experiment``.

    Raises
    ------
    ValueError
        If fewer than ``n_blocks`` blocks are removable.

    References
    ----------
    Lu et al., "Understanding the Dynamics of DNNs Using Graph Modularity", ECCV 2022, §4.

    Examples
    --------
    >>> import torch
    >>> from repgraph.models import resnet1d
    >>> from repgraph.workflows.mnist1d import block_removal, capture_with_input, mnist1d_splits
    >>> from repgraph import modularity_curve
    >>> train, test = mnist1d_splits(n_train=32, n_test=32)
    >>> _ = torch.manual_seed(0)
    >>> model = resnet1d().eval()
    >>> curve = modularity_curve(capture_with_input(model, test, progress=False), progress=False)
    >>> table = block_removal(model, curve, train, test, n_blocks=2, random_draws=1, finetune_epochs=0,
    ...                       progress=False)
    >>> table["method"].tolist(), table["blocks"].iloc[-1]
    (['smallest delta Q', 'random', 'last'], 'layer3.1, layer3.2')
    """
    x = test_data.data[:1].to(resolve_device(None, like=model))
    removable = removable_layers(model, x)
    if not 1 <= n_blocks <= len(removable):
        raise ValueError(f"n_blocks must be between 1 and the {len(removable)} removable blocks "
                         f"({removable}), got {n_blocks}.")
    flags = redundant_layers(curve, tol=float("inf"), removable=removable, max_layers=n_blocks)
    picks = [("smallest delta Q", 0, flags.loc[flags["redundant"], "layer"].tolist())]
    picks += [("random", d, sorted(map(str, np.random.default_rng([seed, d]).choice(removable, n_blocks,
                                                                                    replace=False))))
              for d in range(random_draws)]
    picks.append(("last", 0, removable[-n_blocks:]))
    rows = []
    for method, draw, names in picks:
        row = prune_experiment(model, lambda m, names=names: remove_layers(m, names), train_data, test_data,
                               example_input=x, finetune_epochs=finetune_epochs, seed=seed,
                               name=f"{method}: {', '.join(names)}", progress=progress)
        rows.append({"method": method, "draw": draw, "blocks": ", ".join(names), **row.to_dict()})
    return pd.DataFrame(rows)


def filter_pruning(model: torch.nn.Module, train_data, test_data, *, ratio: float = 0.5,
                   criteria=FILTER_CRITERIA, finetune_epochs: int = 3, max_samples: int = 256, seed: int = 0,
                   progress: bool = True) -> pd.DataFrame:
    """Prune ``ceil(C·ratio)`` filters of every uncoupled conv (those not tied to another by a
    residual addition) by each criterion, fine-tune each pruned copy the same way and measure it.

    Map-based criteria read the post-ReLU maps of the first ``max_samples`` training signals.

    Parameters
    ----------
    model : nn.Module
        A trained network; it is not modified.
    train_data, test_data
    ratio : float
        Fraction of each conv's filters to prune: the same budget for every criterion.
    criteria : sequence of str
        Registered criteria (``repgraph.workflows.criteria_names()``).
    finetune_epochs, max_samples, seed : int
    progress : bool

    Returns
    -------
    DataFrame
        One row per criterion: ``criterion``, ``ratio`` and the columns of ``prune_experiment``.

    Raises
    ------
    ValueError
        For an unknown criterion or a ratio outside [0, 1).

    Examples
    --------
    >>> import torch
    >>> from repgraph.models import resnet1d
    >>> from repgraph.workflows.mnist1d import filter_pruning, mnist1d_splits
    >>> train, test = mnist1d_splits(n_train=32, n_test=32)
    >>> _ = torch.manual_seed(0)
    >>> table = filter_pruning(resnet1d().eval(), train, test, ratio=0.5, criteria=["l1", "random"],
    ...                        finetune_epochs=0, progress=False)
    >>> table["criterion"].tolist(), table["params_after"].nunique()  # the same size under each criterion
    (['l1', 'random'], 1)
    """
    x = test_data.data[:1].to(resolve_device(None, like=model))
    convs = uncoupled_convs(model, x)
    rows = []
    for criterion in criteria:
        scores = filter_scores(model, criterion, convs=convs, data=train_data, example_input=x, ratio=ratio,
                               max_samples=max_samples, seed=seed, progress=progress)
        prunable = scores.for_pruning()
        row = prune_experiment(model, lambda m, s=prunable: prune_filters(m, s, ratio=ratio, example_input=x),
                               train_data, test_data, example_input=x, finetune_epochs=finetune_epochs, seed=seed,
                               name=f"{criterion}, ratio {ratio}", progress=progress)
        rows.append({"criterion": criterion, "ratio": ratio, **row.to_dict()})
    return pd.DataFrame(rows)


def correspondence(acts_by_seed: dict, measures: dict | None = None) -> pd.DataFrame:
    """The layer-correspondence check (Kornblith et al. 2019; Chen et al. 2021) for every pair of
    seeds: the fraction of layers of network a whose most similar layer of network b is the same
    layer (``layer_correspondence``), under each measure.

    Parameters
    ----------
    acts_by_seed : dict
        seed -> ``Activations`` of one architecture's layers on the same samples.
    measures : dict, optional
        name -> function ``(acts_a, acts_b) -> (L, L) DataFrame``; default ``SIMILARITY_MEASURES``
        (GBS on the full graph and on a 5-NN graph, biased and debiased linear CKA).

    Returns
    -------
    DataFrame
        (seed_a, seed_b, measure, correspondence), one row per pair and measure.

    Raises
    ------
    ValueError
        With fewer than two networks.

    References
    ----------
    Kornblith et al., "Similarity of Neural Network Representations Revisited", ICML 2019;
    Chen et al., "Graph-Based Similarity of Neural Network Representations", 2021.

    Examples
    --------
    >>> import numpy as np
    >>> from repgraph.hooks import Activations
    >>> from repgraph.workflows.mnist1d import correspondence
    >>> rng = np.random.default_rng(0)
    >>> layers = {name: rng.normal(size=(20, 6)) for name in ("a", "b", "c")}
    >>> table = correspondence({0: Activations(layers), 1: Activations(layers)})  # two identical networks
    >>> table["correspondence"].tolist()
    [1.0, 1.0, 1.0, 1.0]
    """
    if len(acts_by_seed) < 2:
        raise ValueError(f"The correspondence check compares networks of different seeds; got {len(acts_by_seed)}.")
    measures = SIMILARITY_MEASURES if measures is None else measures
    rows = [{"seed_a": a, "seed_b": b, "measure": name,
             "correspondence": layer_correspondence(similarity(acts_by_seed[a], acts_by_seed[b]))}
            for a, b in itertools.combinations(acts_by_seed, 2) for name, similarity in measures.items()]
    return pd.DataFrame(rows)


def without_input(acts: Activations) -> Activations:
    """``acts`` less its ``"input"`` layer (the same signals in every network, so it would match
    itself trivially in the correspondence check).

    Parameters
    ----------
    acts : Activations
        E.g. from ``capture_with_input``.

    Returns
    -------
    Activations
        The other layers, in order, with the same labels.

    Examples
    --------
    >>> import numpy as np
    >>> from repgraph.hooks import Activations
    >>> from repgraph.workflows.mnist1d import without_input
    >>> without_input(Activations({"input": np.zeros((4, 2)), "conv1": np.ones((4, 3))})).layers
    ['conv1']
    """
    return Activations({name: acts[name] for name in acts.layers if name != "input"}, acts.labels)


def curves_over_epochs(run: MNIST1DRun, data: ArrayDataset, *, k: int = 3, batch_size: int = 500,
                       device=None, progress: bool = True) -> pd.DataFrame:
    """The modularity curve (input, stem conv, every block) of ``run``'s network after each
    snapshot epoch on ``data`` — Lu et al.'s training dynamics; epoch 0 is the untrained network.

    Parameters
    ----------
    run : MNIST1DRun
    data : ArrayDataset
        Signals with labels, e.g. the test split.
    k, batch_size : int
        Of ``modularity_curve`` (Lu et al.: 3 neighbours, batches of 500).
    device : optional
        Where the models run and the graphs are built.
    progress : bool
        Show a progress bar over the snapshots.

    Returns
    -------
    DataFrame
        seed, epoch, layer, depth, modularity, std (over batches), n_samples.

    References
    ----------
    Lu et al., "Understanding the Dynamics of DNNs Using Graph Modularity", ECCV 2022.

    Examples
    --------
    >>> from repgraph.workflows.mnist1d import curves_over_epochs, mnist1d_run, mnist1d_splits
    >>> run = mnist1d_run(epochs=1, n_train=64, progress=False)
    >>> curves = curves_over_epochs(run, mnist1d_splits(n_test=100)[1], batch_size=100, progress=False)
    >>> curves.groupby("epoch")["layer"].apply(list)[1][:3]
    ['input', 'conv1', 'layer1.0']
    """
    curves = []
    for epoch in tqdm(sorted(run.states), desc="epochs", disable=not progress, leave=False):
        acts = capture_with_input(run.model(epoch, device), data, progress=False)
        curve = modularity_curve(acts, k=k, batch_size=batch_size, device=device, progress=False)
        curves.append(curve.assign(seed=run.seed, epoch=epoch))
    return pd.concat(curves, ignore_index=True)[["seed", "epoch", "layer", "depth", "modularity", "std", "n_samples"]]


def mean_curve(curves: pd.DataFrame, by=("layer",)) -> pd.DataFrame:
    """Modularity curves of several seeds (rows with a ``seed`` column, as from
    ``curves_over_epochs``) as one curve per group of ``by``: ``modularity`` is the mean over
    seeds, ``std`` their sample standard deviation (ddof = 1; NaN for one seed), ``n_seeds`` the
    count; ``depth`` and the order are those of the input. ``plot_modularity_curve`` draws the
    std as a band.

    Examples
    --------
    >>> import pandas as pd
    >>> curves = pd.DataFrame({"seed": [0, 0, 1, 1], "layer": ["a", "b", "a", "b"], "depth": [0, 1, 0, 1],
    ...                        "modularity": [0.2, 0.6, 0.4, 0.8]})
    >>> mean_curve(curves).round(3).values.tolist()
    [['a', 0, 0.3, 0.141, 2], ['b', 1, 0.7, 0.141, 2]]
    """
    if "seed" not in curves.columns:
        raise ValueError("curves needs a 'seed' column (one curve per seed) to average over seeds.")
    by = list(by)
    grouped = curves.groupby(by, sort=False)
    out = grouped.agg(depth=("depth", "first"), modularity=("modularity", "mean"), std=("modularity", "std"),
                      n_seeds=("seed", "nunique")).reset_index()
    return out[by + ["depth", "modularity", "std", "n_seeds"]]


__all__ = ["FILTER_CRITERIA", "MNIST1DRun", "MNIST1D_MODEL", "SIMILARITY_MEASURES", "TRAINING", "block_removal",
           "capture_with_input", "correspondence", "curves_over_epochs", "filter_pruning", "mean_curve",
           "mnist1d_run", "mnist1d_splits", "snapshot_epochs", "without_input"]
