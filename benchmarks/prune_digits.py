"""Pruning experiment on digits (not part of CI): train ResNet-56, then on the same model and
fine-tuning budget compare
  (a) layer pruning: the blocks on a modularity plateau vs the same number of removable blocks
      chosen at random (several seeds) vs the last removable blocks;
  (b) filter pruning of the uncoupled convs at one ratio (≈40 % FLOPs) with Central-Filter, HRank,
      CHIP, feature entropy, CLP, L1 and random scores.
Prints a table (params, FLOPs, accuracy before and after fine-tuning) and saves it as CSV. For
Central-Filter it also prints, per conv, the filters pruned against the ceil(C·ratio) asked for, so
the criteria are compared at equal budgets.

    python benchmarks/prune_digits.py [--epochs 30] [--finetune-epochs 5] [--ratio 0.4] [--out results/prune_digits.csv]
    python benchmarks/prune_digits.py --only filters --criteria central_filter   # the Central-Filter row alone
"""
from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from repgraph import (capture_activations, modularity_curve, prune_experiment, prune_filters, redundant_layers,
                      removable_layers, remove_layers, train)
from repgraph.datasets import digits
from repgraph.models import get_model
from repgraph import filter_scores, uncoupled_convs
from repgraph._arrays import prune_count


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet56")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--finetune-epochs", type=int, default=5)
    parser.add_argument("--ratio", type=float, default=0.4)
    parser.add_argument("--blocks", type=int, default=9, help="how many blocks to remove (a third of ResNet-56's 27)")
    parser.add_argument("--random-seeds", type=int, default=3)
    parser.add_argument("--size", type=int, default=16)
    parser.add_argument("--only", choices=["all", "layers", "filters"], default="all",
                        help="run only part (a) (layers) or part (b) (filters)")
    parser.add_argument("--criteria", default="central_filter,hrank,chip,entropy,clp,l1,random",
                        help="comma-separated filter criteria for part (b)")
    parser.add_argument("--out", default="results/prune_digits.csv")
    args = parser.parse_args()
    warnings.simplefilter("ignore", UserWarning)
    train_set, test_set = digits("train", size=args.size), digits("test", size=args.size)
    x = test_set.data[:1]
    torch.manual_seed(0)
    model = get_model(args.model, num_classes=10, in_channels=1)
    t0 = time.perf_counter()
    history = train(model, train_set, epochs=args.epochs, seed=0, eval_data=test_set, progress=False)
    print(f"{args.model} trained in {time.perf_counter() - t0:.0f} s: test accuracy "
          f"{history['test_accuracy'].iloc[-1]:.4f}", flush=True)

    def run(name, prune):
        row = prune_experiment(model, prune, train_set, test_set, example_input=x,
                               finetune_epochs=args.finetune_epochs, name=name)
        print(f"  {name:45s} params -{row['params_reduction']:.1%} FLOPs -{row['flops_reduction']:.1%} "
              f"acc {row['accuracy_pruned']:.4f} -> {row['accuracy_finetuned']:.4f}", flush=True)
        return row

    rows = []
    if args.only != "filters":
        rows += layer_pruning(model, train_set, test_set, x, args, run)
    if args.only != "layers":
        rows += filter_pruning(model, train_set, x, args, run)

    table = pd.DataFrame(rows)
    pd.set_option("display.width", 200)
    cols = ["name", "params_after", "params_reduction", "flops_after", "flops_reduction", "accuracy_before",
            "accuracy_pruned", "accuracy_finetuned"]
    print()
    print(table[cols].to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(out, index=False)
    print(f"saved {out}")


def layer_pruning(model, train_set, test_set, x, args, run):
    """(a): the blocks with the smallest modularity steps vs random and last blocks."""
    rows = []
    acts = capture_activations(model, test_set, layers="modularity", progress=False)
    curve = modularity_curve(acts, k=3, batch_size=250, progress=False)
    removable = removable_layers(model, x)
    # every step of a 56-layer curve is small, so compare at a fixed budget: the removable blocks
    # with the smallest delta Q (plateaus and drops first)
    flags = redundant_layers(curve, tol=float("inf"), removable=removable, max_layers=args.blocks)
    chosen = flags.loc[flags["redundant"], "layer"].tolist()
    n = len(chosen)
    print("modularity curve:", curve["modularity"].round(4).tolist())
    print(f"(a) layer pruning: the {n} of {len(removable)} removable blocks with the smallest delta Q: {chosen}")
    if n:
        rows.append(run(f"modularity, smallest delta Q ({n} blocks)", lambda m: remove_layers(m, chosen)))
        for seed in range(args.random_seeds):
            pick = sorted(np.random.default_rng(seed).choice(removable, n, replace=False).tolist())
            rows.append(run(f"random {n} blocks (seed {seed})", lambda m, p=pick: remove_layers(m, p)))
        rows.append(run(f"last {n} blocks", lambda m: remove_layers(m, removable[-n:])))
    return rows


def filter_pruning(model, train_set, x, args, run):
    """(b): every criterion at one ratio on the uncoupled convs; Central-Filter's counts per conv."""
    rows = []
    convs = uncoupled_convs(model, x)
    modules = dict(model.named_modules())
    print(f"(b) filter pruning of {len(convs)} uncoupled convs, ratio {args.ratio}")
    for criterion in args.criteria.split(","):
        scores = filter_scores(model, criterion, convs=convs, data=train_set, example_input=x, ratio=args.ratio)
        if criterion == "central_filter":
            counts = pd.DataFrame([{"conv": c, "filters": modules[c].out_channels,
                                    "asked ceil(C*ratio)": prune_count(modules[c].out_channels, args.ratio),
                                    "pruned": len(sel.pruned)} for c, sel in scores.selections.items()])
            short = counts[counts["pruned"] != counts["asked ceil(C*ratio)"]]
            print(counts.to_string(index=False))
            print(f"  Central-Filter prunes what it asks in {len(counts) - len(short)} of {len(counts)} convs "
                  f"({counts['pruned'].sum()} of {counts['asked ceil(C*ratio)'].sum()} filters)", flush=True)
        rows.append(run(f"filters: {criterion}",
                        lambda m, s=scores.for_pruning(): prune_filters(m, s, ratio=args.ratio, example_input=x)))
    return rows


if __name__ == "__main__":
    main()
