"""The papers' findings on MNIST-1D (Greydanus & Kobak 2024), a benchmark that raw pixels do not
separate (logistic regression 32 %), with several training seeds and mean ± std over them. Not part
of CI (it trains networks). On the 1-D ResNet-20 (``resnet1d``):

  1. layer-wise modularity (Lu et al., ECCV 2022) from the raw input through the stem conv and
     every block, for the trained network, the untrained one (epoch 0 of the same seed) and the
     snapshots in between (the training dynamics);
  2. block removal at a fixed budget: the blocks with the smallest delta Q vs random blocks vs the
     last blocks, each fine-tuned the same way;
  3. the layer-correspondence check across seeds: GBS (full graph and 5-NN graph), biased and
     debiased linear CKA;
  4. filter pruning of the uncoupled convs at equal budgets: Central-Filter, HRank, CHIP, L1, random.

Trained runs are cached under ``--out`` (default results/mnist1d, ignored by git), so a rerun skips
training; every table is printed, saved as CSV and collected as Markdown in ``findings.md``.

    python benchmarks/mnist1d_findings.py [--seeds 3] [--epochs 40] [--finetune-epochs 3] [--blocks 3]
        [--random-draws 3] [--ratios 0.25 0.5] [--threads 1] [--out results/mnist1d]
"""
from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from _bench_common import markdown, mean_std
from repgraph import removable_layers, uncoupled_convs
from repgraph.workflows import mnist1d as recipes


class Report:
    """Prints each table, saves its data as CSV under ``out`` and collects Markdown."""

    def __init__(self, out: Path):
        self.out = out
        self.sections = []

    def table(self, title: str, frame: pd.DataFrame, note: str = ""):
        print(f"\n## {title}\n{frame.to_string(index=False)}\n{note}", flush=True)
        self.sections.append(f"### {title}\n\n{markdown(frame)}\n\n{note}".rstrip() + "\n")

    def save(self, name: str, frame: pd.DataFrame):
        frame.to_csv(self.out / name, index=False)

    def write(self, header: str):
        path = self.out / "findings.md"
        path.write_text(header + "\n\n" + "\n".join(self.sections))
        print(f"\nsaved {path} and the CSVs beside it")


def pruning_table(frame: pd.DataFrame, key: str, seeds) -> pd.DataFrame:
    """One row per value of ``key`` (a method or criterion; one of them "random"): params and FLOPs
    removed, accuracy right after pruning and after fine-tuning — ``mean ± std`` over seeds of each
    seed's mean (the random control's draws are averaged within a seed first) — and the paired
    differences to the random control of the same seed, in percentage points."""
    columns = ["params_reduction", "flops_reduction", "accuracy_pruned", "accuracy_finetuned"]
    per_seed = frame.groupby([key, "seed"], sort=False)[columns].mean()
    keys = list(dict.fromkeys(frame[key]))

    def versus_random(k, column):
        if k == "random":
            return "—"
        return mean_std(per_seed.loc[k][column].loc[seeds] - per_seed.loc["random"][column].loc[seeds], 100, 1)

    return pd.DataFrame({
        key: keys,
        "params removed (%)": [mean_std(per_seed.loc[k]["params_reduction"], 100, 1) for k in keys],
        "FLOPs removed (%)": [mean_std(per_seed.loc[k]["flops_reduction"], 100, 1) for k in keys],
        "acc. pruned (%)": [mean_std(per_seed.loc[k]["accuracy_pruned"], 100, 2) for k in keys],
        "acc. fine-tuned (%)": [mean_std(per_seed.loc[k]["accuracy_finetuned"], 100, 2) for k in keys],
        "pruned − random (pp)": [versus_random(k, "accuracy_pruned") for k in keys],
        "fine-tuned − random (pp)": [versus_random(k, "accuracy_finetuned") for k in keys]})


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3, help="training seeds 0..N-1")
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--finetune-epochs", type=int, default=3)
    parser.add_argument("--blocks", type=int, default=3, help="blocks each method removes")
    parser.add_argument("--random-draws", type=int, default=3, help="random block picks per seed")
    parser.add_argument("--ratios", type=float, nargs="+", default=[0.25, 0.5], help="filter-pruning ratios")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 on a shared machine)")
    parser.add_argument("--out", default="results/mnist1d")
    args = parser.parse_args()
    if args.seeds < 2:
        parser.error("--seeds must be >= 2: the spreads and the correspondence check need several seeds.")
    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore", UserWarning)
    pd.set_option("display.width", 220)
    pd.set_option("display.max_columns", 30)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report = Report(out)
    seeds = list(range(args.seeds))
    start = time.perf_counter()
    stage = {}

    def lap(name):
        stage[name] = time.perf_counter() - start - sum(stage.values())
        print(f"[{name}: {stage[name]:.0f} s]", flush=True)

    train_set, test_set = recipes.mnist1d_splits()
    runs = {}
    for seed in seeds:
        t0 = time.perf_counter()
        runs[seed] = recipes.mnist1d_run(seed=seed, epochs=args.epochs, cache=out, progress=False)
        print(f"seed {seed}: test accuracy {runs[seed].accuracy:.4f} ({runs[seed].source}, "
              f"{time.perf_counter() - t0:.0f} s)", flush=True)
    accuracy = pd.DataFrame({"seed": seeds, "test_accuracy": [runs[s].accuracy for s in seeds]})
    report.save("accuracy.csv", accuracy)
    report.table("Trained networks", pd.DataFrame({
        "model": ["resnet1d (ResNet-20 on Conv1d)"], "epochs": [args.epochs], "seeds": [len(seeds)],
        "test accuracy (%)": [mean_std(accuracy["test_accuracy"], 100, 2)],
        "per seed (%)": [", ".join(f"{100 * a:.2f}" for a in accuracy["test_accuracy"])]}),
        f"SGD (Nesterov 0.9, weight decay 5e-4, batch 64, cosine from lr 0.05) on the 4000 training "
        f"signals; test split of 1000. Published: logistic regression 32 %, MLP 68 %, CNN 94 %.")
    lap("training (or cache)")

    # 1. modularity: input -> stem -> blocks; untrained (epoch 0), trained, and the snapshots between
    curves = pd.concat([recipes.curves_over_epochs(runs[s], test_set, progress=False) for s in seeds],
                       ignore_index=True)
    report.save("dynamics.csv", curves)
    final, untrained = curves[curves["epoch"] == args.epochs], curves[curves["epoch"] == 0]
    layers = list(dict.fromkeys(final["layer"]))
    q = {name: frame.pivot(index="layer", columns="seed", values="modularity").loc[layers]
         for name, frame in (("trained", final), ("untrained", untrained))}
    report.table("Layer-wise modularity Q: trained vs untrained", pd.DataFrame({
        "layer": layers,
        "trained Q": [mean_std(q["trained"].loc[layer]) for layer in layers],
        "untrained Q": [mean_std(q["untrained"].loc[layer]) for layer in layers],
        "trained delta Q": ["" if i == 0 else mean_std(q["trained"].iloc[i] - q["trained"].iloc[i - 1])
                            for i in range(len(layers))]}),
        f"Mean ± std over {len(seeds)} seeds of each seed's Q (kNN k = 3, cosine, 2 batches of 500 test "
        "signals); 'input' is the raw signal. Untrained = the same seed's weights before training (epoch 0).")
    epochs = sorted(curves["epoch"].unique())
    by_epoch = curves.pivot_table(index="layer", columns="epoch", values="modularity", aggfunc=list).loc[layers]
    report.table("Training dynamics: Q per layer after each epoch", pd.DataFrame(
        {"layer": layers, **{f"epoch {e}": [mean_std(v) for v in by_epoch[e]] for e in epochs}}),
        f"Mean ± std over {len(seeds)} seeds; test accuracy after each epoch: " + ", ".join(
            f"{e}: {mean_std([runs[s].history['test_accuracy'].iloc[e - 1] for s in seeds], 100, 1)} %"
            for e in epochs if e > 0))
    lap("modularity curves")

    # 3. layer correspondence across seeds (the stem conv and every block; the input is left out)
    acts = {s: recipes.without_input(recipes.capture_with_input(runs[s].model(), test_set, progress=False))
            for s in seeds}
    corr = recipes.correspondence(acts)
    report.save("correspondence.csv", corr)
    pairs = corr.assign(pair=corr["seed_a"].astype(str) + "-" + corr["seed_b"].astype(str))
    per_pair = pairs.pivot(index="measure", columns="pair", values="correspondence")
    report.table("Layer correspondence across seeds", pd.DataFrame({
        "measure": list(recipes.SIMILARITY_MEASURES),
        "correspondence": [mean_std(per_pair.loc[m]) for m in recipes.SIMILARITY_MEASURES],
        **{f"seeds {p}": [f"{per_pair.loc[m, p]:.2f}" for m in recipes.SIMILARITY_MEASURES]
           for p in per_pair.columns}}),
        f"Fraction of the {len(acts[0])} layers (stem conv + 9 blocks) of network a whose most similar "
        f"layer of network b is the same layer, on the 1000 test signals; mean ± std over the "
        f"{len(per_pair.columns)} seed pairs.")
    lap("correspondence")

    # 2. redundant blocks by delta Q; removal vs random vs last, fine-tuned
    rows, plateaus = [], []
    for seed in seeds:
        model = runs[seed].model()
        curve = final[final["seed"] == seed].reset_index(drop=True)
        removable = removable_layers(model, test_set.data[:1])
        delta = curve.set_index("layer")["modularity"].diff()
        plateaus.append({"seed": seed, **{b: delta[b] for b in removable}})
        table = recipes.block_removal(model, curve, train_set, test_set, n_blocks=args.blocks,
                                      random_draws=args.random_draws, finetune_epochs=args.finetune_epochs,
                                      seed=seed, progress=False)
        rows.append(table.assign(seed=seed))
        print(f"seed {seed}: " + "; ".join(f"{r.method} [{r.blocks}] {r.accuracy_finetuned:.4f}"
                                           for r in table.itertuples()), flush=True)
    blocks = pd.concat(rows, ignore_index=True)
    report.save("block_removal.csv", blocks)
    plateau = pd.DataFrame(plateaus).set_index("seed")
    chosen = blocks[blocks["method"] == "smallest delta Q"].set_index("seed")["blocks"]
    report.table("Delta Q of the removable blocks", pd.DataFrame({
        "block": plateau.columns,
        "delta Q": [mean_std(plateau[b]) for b in plateau.columns],
        "plateau (delta Q <= 0.01) in seeds": [int((plateau[b] <= 0.01).sum()) for b in plateau.columns],
        f"among the {args.blocks} smallest in seeds": [int(sum(b in chosen[s].split(", ") for s in seeds))
                                                       for b in plateau.columns]}),
        f"Removable = shape-preserving residual blocks (the two stage-transition blocks are not). "
        f"Mean ± std over {len(seeds)} seeds.")
    report.table(f"Removing {args.blocks} blocks, fine-tuned {args.finetune_epochs} epochs",
                 pruning_table(blocks, "method", seeds),
                 f"Accuracy before pruning {mean_std(accuracy['test_accuracy'], 100, 2)} %. Mean ± std over "
                 f"{len(seeds)} seeds; random = the mean of {args.random_draws} draws per seed (std over all "
                 f"{len(seeds) * args.random_draws} random runs: fine-tuned "
                 f"{mean_std(blocks.loc[blocks['method'] == 'random', 'accuracy_finetuned'], 100, 2)} %). "
                 "The last two columns are paired differences within each seed. An equal number of blocks is "
                 "not an equal size: blocks of the last stage hold most parameters. Fine-tuning: SGD, cosine "
                 "from lr 0.01, batch 64. Blocks chosen per seed: "
                 + "; ".join(f"seed {s}: {chosen[s]}" for s in seeds))
    lap("block removal")

    # 4. filter pruning at equal budgets
    rows = []
    for seed in seeds:
        model = runs[seed].model()
        for ratio in args.ratios:
            table = recipes.filter_pruning(model, train_set, test_set, ratio=ratio,
                                           finetune_epochs=args.finetune_epochs, seed=seed, progress=False)
            rows.append(table.assign(seed=seed))
            print(f"seed {seed}, ratio {ratio}: " + "; ".join(
                f"{r.criterion} {r.accuracy_pruned:.3f} -> {r.accuracy_finetuned:.4f}" for r in table.itertuples()),
                flush=True)
    filters = pd.concat(rows, ignore_index=True)
    convs = uncoupled_convs(runs[seeds[0]].model(), test_set.data[:1])
    report.save("filter_pruning.csv", filters)
    for ratio in args.ratios:
        at = filters[filters["ratio"] == ratio]
        report.table(f"Filter pruning, ratio {ratio} of every uncoupled conv, fine-tuned "
                     f"{args.finetune_epochs} epochs", pruning_table(at, "criterion", seeds),
                     f"The uncoupled convs ({', '.join(convs)}) are those no residual addition ties to "
                     f"another; ceil(C·{ratio}) filters of each go under every criterion. Map-based "
                     "criteria read the post-ReLU maps of 256 training signals. "
                     f"Mean ± std over {len(seeds)} seeds; the last two columns are paired differences "
                     "within each seed.")
    lap("filter pruning")
    total = time.perf_counter() - start
    report.write(f"# MNIST-1D findings\n\n`python benchmarks/mnist1d_findings.py --seeds {args.seeds} "
                 f"--epochs {args.epochs} --finetune-epochs {args.finetune_epochs} --blocks {args.blocks} "
                 f"--random-draws {args.random_draws} --ratios {' '.join(map(str, args.ratios))} "
                 f"--threads {args.threads}`: {total / 60:.1f} min ("
                 + ", ".join(f"{k} {v / 60:.1f}" for k, v in stage.items()) + ").")


if __name__ == "__main__":
    main()
