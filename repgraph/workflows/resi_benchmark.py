"""A ReSi-style benchmark of the registered similarity measures that runs offline on models
trained here (Klabunde et al., "ReSi: A Comprehensive Benchmark for Representational Similarity
Measures", ICLR 2025; protocol and scoring of github.com/mklabunde/resi, ``repsim/benchmark/``).

Five tests, each on seeded runs of a small model per data set (MNIST-1D: ``cnn1d``; digits:
``small_cnn``; CIFAR-10 from a local folder: ``small_cnn``):

* **monotonicity** — within one model, the similarity of layers i and j should fall with |i − j|:
  ReSi's ``corr_btw_sim_and_layer_distance``, the mean over source layers (forward and backward)
  of Spearman(similarity, −|i − j|) (``monotonicity_spearman``);
* **output correlation** — across seeds, the representational distance of two models' last hidden
  layers against their functional distance: |Δ accuracy|, the mean Jensen–Shannon divergence of
  the softmax outputs (base 2) and the disagreement rate; Pearson, Spearman and Kendall with a
  permutation p-value (``output_correlation``, scipy's ``permutation_test(permutation_type=
  "pairings")`` as ReSi, with fewer resamples);
* **label randomisation**, **shortcut affinity**, **augmentation** — models trained at five levels
  (labels shuffled for 0/25/50/75/100 % of the training set; a class-coded marker in the inputs
  that tells the true class with probability 0/25/50/75/100 %, else a random one; Gaussian input
  noise of std 0/0.25/0.5/0.75/1 × the data's std) form groups: the last hidden layers of a group
  should be more similar to each other than to the other groups' (``group_separation``: ReSi's
  violation rate and AUPRC, averaged over groups). Shortcut models are compared on test inputs
  whose marker is random (ReSi's ``ColorDot_0`` representation data set); the others on the clean
  test inputs.

Every registered measure is scored raw and calibrated (the gated score of ``layer_similarity(...,
calibrate=True)``), and the measures are ranked as ReSi's summary does (``rank_measures``).
"""
from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.special
import scipy.stats
import torch
from sklearn.metrics import average_precision_score

from ..analyzers import layer_similarity, measure_names
from ..datasets.tensor_dataset import ArrayDataset
from ..hooks import capture_activations
from ..models import get_model
from ..pruning import train

RESI = ("Klabunde, Wald, Schumacher, Strohmaier & Lemmerich, \"ReSi: A Comprehensive Benchmark for "
        "Representational Similarity Measures\", ICLR 2025 (github.com/mklabunde/resi, repsim/benchmark/).")
GROUP_TESTS = ("label_randomization", "shortcut", "augmentation")
FUNCTIONAL = ("acc_diff", "jsd", "disagreement")


# --- the quality metrics (ReSi's repsim/benchmark/*.py, on plain matrices) -------------------------
def monotonicity_spearman(sim, higher_is_more_similar: bool = True) -> float:
    """ReSi's layer monotonicity of one model: for every source layer i, Spearman's ρ between the
    similarities to the layers after it and −(j − i) (forward), and to the layers before it and
    −(i − j) (backward); the mean of these ρ ignoring NaN (a row of one entry or constant scores).
    For a distance (``higher_is_more_similar=False``) ρ with +|i − j|.

    Parameters
    ----------
    sim : array (L, L)
        ``sim[i, j]`` the score of source layer i against layer j (layers in forward order).
    higher_is_more_similar : bool

    Returns
    -------
    float in [−1, 1] (1: similarity falls strictly with layer distance), NaN when no row has two
    distinct scores.

    Examples
    --------
    >>> import numpy as np
    >>> i = np.arange(4)
    >>> monotonicity_spearman(1.0 / (1 + np.abs(i[:, None] - i[None, :])))
    1.0
    """
    S = np.asarray(sim, dtype=float)
    if S.ndim != 2 or S.shape[0] != S.shape[1]:
        raise ValueError(f"sim must be a square (L, L) matrix, got shape {S.shape}.")
    corrs = []
    n = len(S)
    for i in range(n):
        for targets in (range(i + 1, n), range(0, i)):
            targets = list(targets)
            if len(targets) < 2:  # scipy gives NaN for fewer than two values; ReSi's nanmean drops it
                corrs.append(np.nan)
                continue
            values = S[i, targets]
            if np.ptp(values) == 0:
                corrs.append(np.nan)
                continue
            rho = scipy.stats.spearmanr(values, [abs(j - i) for j in targets]).statistic
            corrs.append(-rho if higher_is_more_similar else rho)
    corrs = np.asarray(corrs, dtype=float)
    return float(np.nanmean(corrs)) if np.isfinite(corrs).any() else float("nan")


def _oriented(intra, cross, higher_is_more_similar):
    intra, cross = [float(v) for v in intra], [float(v) for v in cross]
    if not higher_is_more_similar:
        top = max(intra + cross)
        intra, cross = [top - v for v in intra], [top - v for v in cross]
    return intra, cross


def violation_rate(intra, cross, higher_is_more_similar: bool = True) -> float:
    """ReSi's violation rate: the fraction of (in-group, cross-group) score pairs where the
    in-group pair is *not* more similar (``intra ≤ cross``; ties count as violations).

    Examples
    --------
    >>> violation_rate([0.9, 0.5], [0.6, 0.1])
    0.25
    """
    intra, cross = _oriented(intra, cross, higher_is_more_similar)
    pairs = list(itertools.product(intra, cross))
    if not pairs:
        return float("nan")
    return sum(a <= b for a, b in pairs) / len(pairs)


def auprc(intra, cross, higher_is_more_similar: bool = True) -> float:
    """ReSi's AUPRC: sklearn's average precision of the scores as predictors of "same group"
    (in-group pairs positive); 1 for a perfect separation. A distance is turned into
    ``(max − d) / max`` first, as ReSi does.

    Examples
    --------
    >>> auprc([0.9, 0.5], [0.6, 0.1])    # ranking: in, cross, in, cross -> (1 + 2/3) / 2
    0.8333333333333333
    """
    intra, cross = [float(v) for v in intra], [float(v) for v in cross]
    if not higher_is_more_similar:
        top = max(intra + cross) or 5e-5
        intra, cross = [(top - v) / top for v in intra], [(top - v) / top for v in cross]
    y_true = np.r_[np.ones(len(intra)), np.zeros(len(cross))]
    y_score = np.r_[intra, cross]
    keep = ~np.isnan(y_score)
    if not keep.any() or not y_true[keep].any():
        return float("nan")
    return float(average_precision_score(y_true[keep], y_score[keep]))


def group_separation(sim, groups, higher_is_more_similar: bool = True) -> dict:
    """ReSi's group-separation scores of one (M, M) matrix over M models: for every group g, the
    in-group scores ``sim[a, b]`` for the pairs a < b of g and the cross-group scores ``sim[a, c]``
    for a in g, c outside; the violation rate and AUPRC of each group, and their means.

    Parameters
    ----------
    sim : array (M, M)
    groups : sequence of M hashables
        The group of each model.
    higher_is_more_similar : bool

    Returns
    -------
    dict
        ``violation_rate``, ``auprc`` (means over groups), ``violation_rate_per_group``,
        ``auprc_per_group`` (lists in the order groups first appear).

    Examples
    --------
    >>> import numpy as np
    >>> S = np.array([[1, .9, .2], [.9, 1, .3], [.2, .3, 1]])
    >>> r = group_separation(S, ["a", "a", "b"])
    >>> r["violation_rate"], r["auprc"]    # group b has no in-group pair: NaN, dropped from the mean
    (0.0, 1.0)
    """
    S = np.asarray(sim, dtype=float)
    groups = list(groups)
    if S.shape != (len(groups), len(groups)):
        raise ValueError(f"sim must be ({len(groups)}, {len(groups)}) for {len(groups)} models, got {S.shape}.")
    vrs, aps = [], []
    for g in dict.fromkeys(groups):
        members = [i for i, h in enumerate(groups) if h == g]
        others = [i for i, h in enumerate(groups) if h != g]
        intra = [S[a, b] for a, b in itertools.combinations(members, 2)]
        cross = [S[a, c] for a, c in itertools.product(members, others)]
        if not intra or not cross:
            vrs.append(np.nan)
            aps.append(np.nan)
            continue
        vrs.append(violation_rate(intra, cross, higher_is_more_similar))
        aps.append(auprc(intra, cross, higher_is_more_similar))

    def mean(values):
        values = np.asarray(values, dtype=float)
        return float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")

    return {"violation_rate": mean(vrs), "auprc": mean(aps), "violation_rate_per_group": vrs,
            "auprc_per_group": aps}


def jsd(logits_a, logits_b) -> float:
    """ReSi's JSD: the mean over samples of the Jensen–Shannon divergence (base 2, in [0, 1]) of the
    two models' softmax outputs.

    Examples
    --------
    >>> import numpy as np
    >>> jsd(np.array([[50.0, 0.0]]), np.array([[0.0, 50.0]]))
    1.0
    """
    p = scipy.special.softmax(np.asarray(logits_a, dtype=float), axis=1)
    q = scipy.special.softmax(np.asarray(logits_b, dtype=float), axis=1)
    m = (p + q) / 2.0
    js = (scipy.special.rel_entr(p, m).sum(1) + scipy.special.rel_entr(q, m).sum(1)) / np.log(2)
    return float(np.mean(np.clip(js / 2.0, 0, 1)))


def disagreement(logits_a, logits_b) -> float:
    """The fraction of samples on which the two models' top-1 predictions differ."""
    return float(np.mean(np.argmax(logits_a, 1) != np.argmax(logits_b, 1)))


def _pearson_axis(x, y):
    x = x - x.mean(-1, keepdims=True)
    y = y - y.mean()
    denom = np.sqrt((x * x).sum(-1) * (y * y).sum())
    with np.errstate(invalid="ignore", divide="ignore"):
        return (x * y).sum(-1) / denom


def output_correlation(rep, func, higher_is_more_similar: bool = True, *, n_resamples: int = 999,
                       seed: int = 0) -> dict:
    """ReSi's output-correlation scores: the representational scores turned into distances
    (−score for a similarity) against the functional distances, Pearson, Spearman and Kendall
    with two-sided permutation p-values (scipy ``permutation_test``, ``permutation_type="pairings"``,
    ``n_resamples`` pairings; ReSi uses scipy's default 9999).

    Returns
    -------
    dict
        ``{"pearsonr": (r, p), "spearmanr": (ρ, p), "kendalltau": (τ, p)}``; NaN for fewer than 3
        pairs or constant inputs.

    Examples
    --------
    >>> r = output_correlation([0.9, 0.8, 0.5, 0.1], [0.0, 0.1, 0.2, 0.4], n_resamples=99)
    >>> r["spearmanr"][0], r["kendalltau"][0]
    (1.0, 1.0)
    """
    rep = np.asarray(rep, dtype=float)
    func = np.asarray(func, dtype=float)
    dist = -rep if higher_is_more_similar else rep
    out = {}
    ok = len(dist) >= 3 and np.ptp(dist) > 0 and np.ptp(func) > 0
    ranked_func = scipy.stats.rankdata(func)
    statistics = {
        "pearsonr": (lambda x, axis=-1: _pearson_axis(x, func), True),
        "spearmanr": (lambda x, axis=-1: _pearson_axis(scipy.stats.rankdata(x, axis=-1), ranked_func), True),
        "kendalltau": (lambda x: scipy.stats.kendalltau(x, func).statistic, False),
    }
    for name, (statistic, vectorized) in statistics.items():
        if not ok:
            out[name] = (float("nan"), float("nan"))
            continue
        result = scipy.stats.permutation_test((dist,), statistic, permutation_type="pairings",
                                              n_resamples=n_resamples, vectorized=vectorized,
                                              random_state=np.random.default_rng(seed))
        out[name] = (float(result.statistic), float(result.pvalue))
    return out


def rank_measures(records: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Rank the measures as ReSi's summary (``tables_and_plots.ipynb``): within each column
    (data set × test × model), rank by the value, best = 1 (``rank(ascending=False,
    method="min")``), on AUPRC for the grouping tests, Spearman for the output correlations and
    the monotonicity correlation; the monotonicity ranks are averaged over the models of a data
    set, so each experiment weighs once; then the median (and mean) rank of each measure over the
    experiments.

    Parameters
    ----------
    records : DataFrame
        Columns ``dataset``, ``test``, ``model``, ``measure``, ``quality``, ``value`` (as
        ``run_benchmark`` returns); rows of other quality metrics are ignored.

    Returns
    -------
    (ranks, summary)
        ``ranks``: one row per (dataset, test, measure) with ``rank``; ``summary``: per measure
        ``median_rank``, ``mean_rank``, ``q25``, ``q75`` and ``n`` (experiments), sorted by median
        then mean rank.

    Examples
    --------
    >>> import pandas as pd
    >>> rec = pd.DataFrame({"dataset": "d", "test": "t", "model": "agg", "measure": ["a", "b", "c"],
    ...                     "quality": "auprc", "value": [0.9, 0.5, 0.9]})
    >>> rank_measures(rec)[1]["median_rank"].to_dict()
    {'a': 1.0, 'c': 1.0, 'b': 3.0}
    """
    keep = records[records["quality"].isin(["auprc", "spearmanr", "monotonicity"])].copy()
    keep["rank"] = keep.groupby(["dataset", "test", "model"])["value"].rank(ascending=False, method="min",
                                                                             na_option="keep")
    ranks = keep.groupby(["dataset", "test", "measure"], as_index=False)["rank"].mean()
    grouped = ranks.groupby("measure")["rank"]
    summary = pd.DataFrame({"median_rank": grouped.median(), "mean_rank": grouped.mean(),
                            "q25": grouped.quantile(0.25), "q75": grouped.quantile(0.75),
                            "n": grouped.count()})
    summary = summary.sort_values(["median_rank", "mean_rank"], kind="stable")
    return ranks, summary


# --- the experiments: data, perturbations, training ------------------------------------------------
@dataclass(frozen=True)
class BenchmarkSetting:
    """How big a run is: seeds per level, the levels, training length and subset sizes, the
    representation samples and the calibration's permutations."""

    n_seeds: int = 5
    levels: tuple = (0.0, 0.25, 0.5, 0.75, 1.0)
    epochs: int = 8
    n_train: int | None = None
    n_repr: int = 300
    n_permutations: int = 19
    n_resamples: int = 999
    measures: tuple | None = None  # None: every registered measure
    calibrations: tuple = (False, True)  # raw and/or calibrated variants
    tests: tuple = ("monotonicity", "output_correlation", *GROUP_TESTS)


FULL = BenchmarkSetting()
SMALL = BenchmarkSetting(n_seeds=3, levels=(0.0, 0.5, 1.0), epochs=2, n_train=300, n_repr=100)


@dataclass
class Task:
    """One data set with its model: training and test splits, the layers compared for
    monotonicity (in forward order), the last hidden layer for the other tests, and the training
    settings."""

    name: str
    model_name: str
    train: ArrayDataset
    test: ArrayDataset
    layers: list
    last_hidden: str
    in_channels: int = 1
    training: dict = field(default_factory=dict)


def mnist1d_task(n_train=None) -> Task:
    """MNIST-1D (4000 / 1000 signals) with the 1-D CNN (``cnn1d``, 5 285 weights), SGD as the recipe."""
    from .mnist1d import mnist1d_splits
    tr, te = mnist1d_splits(n_train)
    return Task("mnist1d", "cnn1d", tr, te,
                ["conv1", "bn1", "relu1", "conv2", "bn2", "relu2", "conv3", "bn3", "relu3", "fc"], "relu3",
                training={"optimizer": "sgd", "lr": 0.05})


def digits_task(n_train=None) -> Task:
    """sklearn's digits at their 8 × 8 resolution (1257 / 540) with the small CNN (``small_cnn``),
    Adam lr 0.01."""
    from .digits import digits_splits
    tr, te = digits_splits(8)
    if n_train is not None:
        tr = ArrayDataset(tr.data[:n_train], tr.targets[:n_train], classes=tr.classes)
    return Task("digits", "small_cnn", tr, te,
                ["conv1", "bn1", "relu1", "pool1", "conv2", "bn2", "relu2", "pool2", "fc"], "pool2",
                training={"optimizer": "adam", "lr": 0.01, "weight_decay": 0.0})


def cifar10_task(root, n_train=None) -> Task:
    """CIFAR-10 from a local folder (never downloaded) with the small CNN; first ``n_train``
    (default 10 000) training images."""
    from ..datasets import cifar10
    tr = cifar10(root, train=True, max_samples=n_train or 10000)
    te = cifar10(root, train=False, max_samples=2000)
    return Task("cifar10", "small_cnn", tr, te,
                ["conv1", "bn1", "relu1", "pool1", "conv2", "bn2", "relu2", "pool2", "fc"], "pool2",
                in_channels=3, training={"optimizer": "adam", "lr": 0.01, "weight_decay": 0.0})


def shuffled_labels(targets: torch.Tensor, fraction: float, seed: int = 0) -> torch.Tensor:
    """The labels with those of a random ``fraction`` of the samples shuffled among themselves
    (the class counts are kept). The subset and the shuffle depend on ``seed`` only."""
    rng = np.random.default_rng(seed)
    y = targets.clone()
    n = int(round(fraction * len(y)))
    if n > 1:
        idx = rng.choice(len(y), n, replace=False)
        y[idx] = y[idx[rng.permutation(n)]]
    return y


def with_marker(data: torch.Tensor, targets: torch.Tensor, reliability: float, n_classes: int = 10,
                seed: int = 0) -> torch.Tensor:
    """Inputs with a class-coded marker (ReSi's colour dot, here a position code): each sample gets
    the marker of its class with probability ``reliability``, else that of a uniformly random class
    (as ReSi's ``ColorDotShortcut``). Signals (N, C, L): 2 samples set to 4 at position 2 + ⌊c·(L − 4)
    / (n_classes − 1)⌋ in every channel; images (N, C, H, W): a 2 × 2 patch set to 4 at a class's
    place on the top or bottom edge."""
    rng = np.random.default_rng(seed)
    x = data.clone()
    n = len(x)
    cls = targets.numpy().copy()
    swap = rng.random(n) > reliability
    cls[swap] = rng.integers(n_classes, size=int(swap.sum()))
    if x.ndim == 3:
        length = x.shape[-1]
        for c in range(n_classes):
            pos = 2 + (c * (length - 4)) // max(n_classes - 1, 1)
            x[torch.from_numpy(cls == c), :, pos:pos + 2] = 4.0
    elif x.ndim == 4:
        width = x.shape[-1]
        half = (n_classes + 1) // 2
        for c in range(n_classes):
            col = (c % half) * (width - 2) // max(half - 1, 1)
            row = 0 if c < half else x.shape[-2] - 2
            x[torch.from_numpy(cls == c), :, row:row + 2, col:col + 2] = 4.0
    else:
        raise ValueError(f"with_marker takes signals (N, C, L) or images (N, C, H, W), got shape {tuple(x.shape)}.")
    return x


class NoisyDataset(torch.utils.data.Dataset):
    """Training samples with fresh Gaussian noise of std ``sigma`` on every draw (drawn from torch's
    global generator, which ``train`` seeds)."""

    def __init__(self, data: ArrayDataset, sigma: float):
        self.data, self.sigma = data, float(sigma)

    def __len__(self):
        return len(self.data)

    def __getitem__(self, index):
        x, y = self.data[index]
        return x + self.sigma * torch.randn_like(x), y


@dataclass
class TrainedModel:
    """What the tests need of one run: the layers on the representation inputs, the logits and
    the accuracy on the clean test inputs."""

    test: str
    level: float
    seed: int
    acts: dict
    logits: np.ndarray
    accuracy: float
    train_accuracy: float

    @property
    def key(self) -> str:
        return f"{self.test}@{self.level:g}#s{self.seed}"


def _train_one(task: Task, setting: BenchmarkSetting, test: str, level: float, seed: int,
               repr_data, clean_test) -> TrainedModel:
    tr = task.train
    if test == "label_randomization" and level > 0:
        tr = ArrayDataset(tr.data, shuffled_labels(tr.targets, level, seed=1000 + int(round(100 * level))),
                          classes=tr.classes)
    elif test == "shortcut":
        tr = ArrayDataset(with_marker(tr.data, tr.targets, level, seed=2000 + seed), tr.targets, classes=tr.classes)
    elif test == "augmentation" and level > 0:
        tr = NoisyDataset(tr, level * float(task.train.data.std()))
    torch.manual_seed(seed)
    model = get_model(task.model_name, num_classes=10, in_channels=task.in_channels)
    history = train(model, tr, epochs=setting.epochs, seed=seed, progress=False, **task.training)
    layers = task.layers if test == "base" else [task.last_hidden, task.layers[-1]]
    acts = capture_activations(model, repr_data, layers=layers, progress=False)
    logits_acts = acts if repr_data is clean_test else capture_activations(model, clean_test, layers=[task.layers[-1]],
                                                                           progress=False)
    logits = np.asarray(logits_acts[task.layers[-1]], dtype=np.float64)
    accuracy = float(np.mean(logits.argmax(1) == clean_test[1].numpy()))
    return TrainedModel(test, level, seed, {k: np.asarray(acts[k]) for k in layers}, logits, accuracy,
                        float(history["train_accuracy"].iloc[-1]))


def train_models(task: Task, setting: BenchmarkSetting, *, log=print) -> list[TrainedModel]:
    """Every run of ``task``: the base runs (level 0, all layers captured; they are level 0 of the
    label-randomisation and augmentation groups as well), and each group test's other levels;
    ``n_seeds`` seeds each."""
    n = min(setting.n_repr, len(task.test))
    clean = (task.test.data[:n], task.test.targets[:n])
    marked = (with_marker(clean[0], clean[1], 0.0, seed=99), clean[1])
    plan = [("base", 0.0)]
    if "label_randomization" in setting.tests:
        plan += [("label_randomization", lv) for lv in setting.levels if lv > 0]
    if "augmentation" in setting.tests:
        plan += [("augmentation", lv) for lv in setting.levels if lv > 0]
    if "shortcut" in setting.tests:
        plan += [("shortcut", lv) for lv in setting.levels]
    models = []
    for test, level in plan:
        start = time.perf_counter()
        for seed in range(setting.n_seeds):
            models.append(_train_one(task, setting, test, level, seed, marked if test == "shortcut" else clean,
                                     clean))
        done = [m for m in models if m.test == test and m.level == level]
        log(f"  {task.name} {test} level {level:g}: {setting.n_seeds} seeds in {time.perf_counter() - start:.1f} s, "
            f"test acc {np.mean([m.accuracy for m in done]):.3f} ± {np.std([m.accuracy for m in done]):.3f}, "
            f"train acc {np.mean([m.train_accuracy for m in done]):.3f}")
    return models


def _group_members(models, test):
    members = [m for m in models if m.test == test]
    if test != "shortcut":
        members = [m for m in models if m.test == "base"] + members
    return members


def _variants(setting):
    names = setting.measures or measure_names()
    return [(name, calibrated) for name in names for calibrated in setting.calibrations]


def _matrix(acts, name, calibrated, setting):
    frame = layer_similarity(acts, measure=name, calibrate=calibrated, n_permutations=setting.n_permutations,
                             seed=0)
    return frame.to_numpy(), bool(frame.attrs["higher_is_more_similar"])


def score_task(task_name: str, models: list[TrainedModel], setting: BenchmarkSetting, *, log=print) -> pd.DataFrame:
    """The quality values of every measure variant (raw and calibrated) on the trained ``models``
    of one data set: one row per (test, model, measure, quality) with ``value`` (and ``p_value``
    for the output correlations; ``spread``, the std over groups, for the grouping tests)."""
    rows = []
    base = [m for m in models if m.test == "base"]
    for name, calibrated in _variants(setting):
        variant = f"{name}{' (cal)' if calibrated else ''}"
        start = time.perf_counter()

        def add(test, quality, value, model="agg", **extra):
            rows.append({"dataset": task_name, "test": test, "model": model, "measure": variant, "base_measure": name,
                         "calibrated": calibrated, "quality": quality, "value": value, **extra})

        if "monotonicity" in setting.tests:
            for m in base:
                S, higher = _matrix(m.acts, name, calibrated, setting)
                add("monotonicity", "monotonicity", monotonicity_spearman(S, higher), model=f"seed{m.seed}")
        if "output_correlation" in setting.tests and len(base) >= 2:
            hidden = {m.key: _last_hidden(m) for m in base}
            S, higher = _matrix(hidden, name, calibrated, setting)
            pairs = list(itertools.combinations(range(len(base)), 2))
            rep = [S[a, b] for a, b in pairs]
            funcs = {"acc_diff": [abs(base[a].accuracy - base[b].accuracy) for a, b in pairs],
                     "jsd": [jsd(base[a].logits, base[b].logits) for a, b in pairs],
                     "disagreement": [disagreement(base[a].logits, base[b].logits) for a, b in pairs]}
            for func, values in funcs.items():
                for quality, (stat, p) in output_correlation(rep, values, higher, n_resamples=setting.n_resamples,
                                                             seed=0).items():
                    add(f"output_{func}", quality, stat, p_value=p)
        for test in GROUP_TESTS:
            if test not in setting.tests:
                continue
            members = _group_members(models, test)
            S, higher = _matrix({m.key: _last_hidden(m) for m in members}, name, calibrated, setting)
            result = group_separation(S, [m.level for m in members], higher)
            add(test, "auprc", result["auprc"], spread=float(np.nanstd(result["auprc_per_group"])))
            add(test, "violation_rate", result["violation_rate"],
                spread=float(np.nanstd(result["violation_rate_per_group"])))
        log(f"  {task_name} {variant}: {time.perf_counter() - start:.1f} s")
    return pd.DataFrame(rows)


def _last_hidden(m: TrainedModel):
    return m.acts[list(m.acts)[-2]]


def run_benchmark(setting: BenchmarkSetting = FULL, tasks=("mnist1d", "digits"), *, cifar10_root=None,
                  out=None, log=print) -> dict:
    """Train the models of every task and score every measure variant; with ``out``, write
    ``records.csv``, ``ranks.csv``, ``summary.csv`` and ``models.csv`` there.

    Parameters
    ----------
    setting : BenchmarkSetting
        ``FULL`` (5 seeds × 5 levels, 8 epochs, 300 representation samples, K = 19 permutations) or
        ``SMALL`` (3 seeds × 3 levels, 2 epochs on 300 training samples, 100 representation samples).
    tasks : sequence of {"mnist1d", "digits", "cifar10"} or Task
    cifar10_root : str or Path, optional
        A local CIFAR-10 folder; ``"cifar10"`` is skipped (logged) without it.
    out : str or Path, optional
    log : callable

    Returns
    -------
    dict
        ``records`` (every quality value), ``ranks``, ``summary`` (``rank_measures``), ``models``
        (one row per trained model: test, level, seed, accuracies), ``setting``, ``seconds``.
    """
    torch.set_num_threads(1)
    start = time.perf_counter()
    builders = {"mnist1d": lambda: mnist1d_task(setting.n_train), "digits": lambda: digits_task(setting.n_train),
                "cifar10": lambda: cifar10_task(cifar10_root, setting.n_train)}
    records, model_rows = [], []
    for task in tasks:
        if task == "cifar10" and cifar10_root is None:
            log("cifar10: skipped (no local folder given)")
            continue
        task = builders[task]() if isinstance(task, str) else task
        log(f"{task.name}: training ({task.model_name}, {len(task.train)} training samples)")
        models = train_models(task, setting, log=log)
        model_rows += [{"dataset": task.name, "test": m.test, "level": m.level, "seed": m.seed,
                        "test_accuracy": m.accuracy, "train_accuracy": m.train_accuracy} for m in models]
        log(f"{task.name}: scoring {len(_variants(setting))} measure variants")
        records.append(score_task(task.name, models, setting, log=log))
        if out is not None:  # what is done so far, should a long run be stopped
            Path(out).mkdir(parents=True, exist_ok=True)
            pd.concat(records, ignore_index=True).to_csv(Path(out) / "records.csv", index=False)
            pd.DataFrame(model_rows).to_csv(Path(out) / "models.csv", index=False)
    records = pd.concat(records, ignore_index=True)
    ranks, summary = rank_measures(records)
    result = {"records": records, "ranks": ranks, "summary": summary, "models": pd.DataFrame(model_rows),
              "setting": setting, "seconds": time.perf_counter() - start}
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        records.to_csv(out / "records.csv", index=False)
        ranks.to_csv(out / "ranks.csv", index=False)
        summary.to_csv(out / "summary.csv")
        result["models"].to_csv(out / "models.csv", index=False)
    return result


def rank_table(ranks: pd.DataFrame, summary: pd.DataFrame) -> pd.DataFrame:
    """Measures × tests: the mean rank of each test over data sets, with the overall median rank."""
    wide = ranks.pivot_table(index="measure", columns="test", values="rank", aggfunc="mean")
    wide.insert(0, "median_rank", summary["median_rank"])
    return wide.loc[summary.index]


def plot_ranks(ranks: pd.DataFrame, summary: pd.DataFrame, ax=None):
    """ReSi's rank plot: one box of ranks (one per experiment) per measure, measures sorted by median
    rank; calibrated variants in a second colour."""
    import matplotlib.pyplot as plt
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 0.32 * len(summary) + 1))
    order = list(summary.index)
    data = [ranks.loc[ranks["measure"] == m, "rank"].dropna().to_numpy() for m in order]
    box = ax.boxplot(data, vert=False, patch_artist=True)
    ax.set_yticks(range(1, len(order) + 1), order)
    for patch, name in zip(box["boxes"], order):
        patch.set_facecolor("tab:orange" if name.endswith("(cal)") else "tab:blue")
        patch.set_alpha(0.6)
    ax.invert_yaxis()
    ax.set_xlabel("rank per experiment (1 = best)")
    ax.set_title("ReSi-style ranking (orange: calibrated)")
    return ax


__all__ = ["BenchmarkSetting", "FULL", "SMALL", "Task", "TrainedModel", "auprc", "cifar10_task", "digits_task",
           "disagreement", "group_separation", "jsd", "mnist1d_task", "monotonicity_spearman", "output_correlation",
           "plot_ranks", "rank_measures", "rank_table", "run_benchmark", "shuffled_labels", "train_models",
           "violation_rate", "with_marker", "NoisyDataset", "score_task"]
