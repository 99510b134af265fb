"""Every registered filter criterion at equal budgets on MNIST-1D (issue 22; not part of CI: it
trains networks).

Setting: the 1-D ResNet-20 (``resnet1d``, repgraph's MNIST-1D model) trained per seed with the
recipe of ``repgraph.workflows.mnist1d`` (SGD, Nesterov 0.9, weight decay 5e-4, batch 64, cosine
from lr 0.05). For every criterion of ``repgraph.workflows.criteria_names()`` (l1, clp, fsm, cap,
random, hrank, chip, entropy, central_filter and any registered by the user) the same budget is
pruned: ``ceil(C·ratio)`` filters of every uncoupled conv (the first conv of each residual block;
the others are tied by residual additions), exactly what ``workflows.mnist1d.filter_pruning``
does, then each pruned copy is fine-tuned the same way (SGD, cosine from lr 0.01, the seed's
fine-tuning seed). Map-based criteria read the post-ReLU maps of the first 256 training signals;
cap trains its soft masks on the training split. Reported per criterion: the filters kept per
conv (checked equal across criteria), params and FLOPs removed, test accuracy right after pruning
and after fine-tuning, mean ± std over seeds, and the paired difference to the random control.

Every (seed, criterion) result is cached as JSON under ``--out`` (default
results/filter_criteria_budget, ignored by git) together with its settings, and the trained
networks as ``.pt`` files, so a rerun resumes where it stopped (other ratios reuse the trained
networks); ``table_ratio{r}.md`` and ``cells_ratio{r}.csv`` are written at the end.

    python benchmarks/filter_criteria_budget.py [--seeds 3] [--epochs 40] [--finetune-epochs 3]
        [--ratio 0.5] [--n-train 4000] [--criteria l1,random,...] [--threads 1] [--out DIR]

Measured at a reduced setting (``--seeds 3 --epochs 15 --finetune-epochs 2``, all 4000 training
signals; dense 98.67 ± 0.38 %; 5 + 4 min on 2 shared cores): every criterion prunes the same
8/16, 16/32, 32/64 filters (ratio 0.5; 47.8 % of the params, 48.6 % of the FLOPs) or 12/16,
24/32, 48/64 (ratio 0.75; 71.7 %, 73.0 %). Right after pruning every criterion but cap is at
chance (9-13 %; cap 42.8 ± 6.0 % at 0.5, 9.0 % at 0.75). After 2 fine-tuning epochs at ratio 0.5
all lie within 96.3-98.1 %, random 97.10 ± 0.61 %, no criterion more than 1.1 pp from random
(central_filter 0.8 pp below). At ratio 0.75 they separate: cap 96.67 ± 0.06 and fsm
96.57 ± 0.55 % (+2.9 and +2.8 pp over random's 93.73 ± 0.75 %), chip +2.2, l1 +1.7, clp +0.8,
hrank +0.7 (± 2.0), central_filter 4.1 ± 1.0 pp *below* random (89.67 ± 0.38 %). ``entropy`` does
not run on this model: its birth points need square 2-D maps and resnet1d's are 1-D.
"""
from __future__ import annotations

import argparse
import math
import sys
import time
import warnings
from pathlib import Path

import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bench_common import cached, markdown, mean_std  # noqa: E402

from repgraph import count_params_flops, evaluate, filter_scores, prune_experiment, prune_filters  # noqa: E402
from repgraph.pruning import uncoupled_convs  # noqa: E402
from repgraph.workflows import criteria_names  # noqa: E402
from repgraph.workflows import mnist1d as recipes  # noqa: E402


def parse(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3, help="training seeds 0..N-1")
    parser.add_argument("--epochs", type=int, default=40, help="training epochs of the dense networks")
    parser.add_argument("--finetune-epochs", type=int, default=3)
    parser.add_argument("--ratio", type=float, default=0.5, help="fraction of each uncoupled conv's filters pruned")
    parser.add_argument("--n-train", type=int, default=None, help="first N training signals (default all 4000)")
    parser.add_argument("--n-test", type=int, default=None, help="first N test signals (default all 1000)")
    parser.add_argument("--max-samples", type=int, default=256, help="signals whose maps map-based criteria read")
    parser.add_argument("--criteria", default=None, help="comma-separated; default every registered criterion")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 on a shared machine)")
    parser.add_argument("--out", default="results/filter_criteria_budget")
    return parser.parse_args(argv)


def one_cell(model, criterion, train_set, test_set, args, seed) -> dict:
    """Score, prune, fine-tune and measure one criterion on one seed's network: the row of
    ``prune_experiment`` plus the widths of every scored conv before and after pruning; for a
    criterion whose scoring refuses the model (``ValueError``), ``error`` holds the reason."""
    x = test_set.data[:1]
    convs = uncoupled_convs(model, x)
    before = {c: m.out_channels for c, m in model.named_modules() if c in convs}
    widths = {}
    t0 = time.perf_counter()
    try:
        scores = filter_scores(model, criterion, convs=convs, data=train_set, example_input=x, ratio=args.ratio,
                               max_samples=args.max_samples, seed=seed, progress=False)
    except ValueError as error:  # a criterion that refuses this model (entropy: 2-D maps only)
        return {"criterion": criterion, "seed": seed, "ratio": args.ratio, "error": str(error).split("\n")[0]}
    score_s = time.perf_counter() - t0

    def prune(m, s=scores.for_pruning()):
        pruned = prune_filters(m, s, ratio=args.ratio, example_input=x)
        widths.update({c: mod.out_channels for c, mod in pruned.named_modules() if c in convs})
        return pruned

    row = prune_experiment(model, prune, train_set, test_set, example_input=x, finetune_epochs=args.finetune_epochs,
                           seed=seed, name=f"{criterion}, ratio {args.ratio}", progress=False)
    return {"criterion": criterion, "seed": seed, "ratio": args.ratio,
            **{k: (v.item() if hasattr(v, "item") else v) for k, v in row.to_dict().items() if k != "name"},
            "widths_before": before, "widths_after": widths, "score_seconds": score_s,
            "seconds": time.perf_counter() - t0}


def summary(cells: pd.DataFrame, seeds: list) -> pd.DataFrame:
    """One row per criterion: filters pruned per conv (with ×count), params / FLOPs removed,
    accuracy pruned / fine-tuned (mean ± std over seeds) and the paired difference to random."""
    if "error" not in cells:
        cells = cells.assign(error=None)
    failed = cells[cells["error"].notna()]
    cells = cells[cells["error"].isna()]
    criteria = list(dict.fromkeys(cells["criterion"]))
    by = cells.set_index(["criterion", "seed"])

    def vs_random(c, column):
        if c == "random" or "random" not in criteria:
            return "—"
        common = [s for s in seeds if (c, s) in by.index and ("random", s) in by.index]
        return mean_std([by.loc[(c, s), column] - by.loc[("random", s), column] for s in common], 100, 2)

    def pruned_filters(c):
        rows = cells[cells["criterion"] == c]
        counts = {}
        for b, a in zip(rows["widths_before"], rows["widths_after"]):
            for conv in b:
                counts.setdefault(conv, set()).add(f"{b[conv] - a[conv]}/{b[conv]}")
        runs = []
        for conv, v in counts.items():
            label = ",".join(sorted(v))
            if runs and runs[-1][0] == label:
                runs[-1][1] += 1
            else:
                runs.append([label, 1])
        return " ".join(f"{label}×{n}" for label, n in runs)

    rows = []
    for c in criteria:
        at = cells[cells["criterion"] == c]
        rows.append({"criterion": c, "filters pruned per conv": pruned_filters(c),
                     "params removed (%)": mean_std(at["params_reduction"], 100, 1),
                     "FLOPs removed (%)": mean_std(at["flops_reduction"], 100, 1),
                     "acc. pruned (%)": mean_std(at["accuracy_pruned"], 100, 2),
                     "acc. fine-tuned (%)": mean_std(at["accuracy_finetuned"], 100, 2),
                     "pruned − random (pp)": vs_random(c, "accuracy_pruned"),
                     "fine-tuned − random (pp)": vs_random(c, "accuracy_finetuned"),
                     "score time (s)": mean_std(at["score_seconds"], 1, 1), "seeds": len(at)})
    for c in dict.fromkeys(failed["criterion"]):
        reason = failed.loc[failed["criterion"] == c, "error"].iloc[0]
        rows.append({"criterion": c, "filters pruned per conv": f"not run: {reason}",
                     **{k: "n/a" for k in ("params removed (%)", "FLOPs removed (%)", "acc. pruned (%)",
                                           "acc. fine-tuned (%)", "pruned − random (pp)",
                                           "fine-tuned − random (pp)", "score time (s)")},
                     "seeds": 0})
    return pd.DataFrame(rows)


def main(argv=None) -> dict:
    """Run the benchmark; returns ``{"cells": DataFrame (one row per seed and criterion), "table":
    the summary DataFrame, "markdown": the text written to table.md, "out": Path}``."""
    args = parse(argv)
    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore", UserWarning)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    criteria = args.criteria.split(",") if args.criteria else criteria_names()
    seeds = list(range(args.seeds))
    train_set, test_set = recipes.mnist1d_splits(args.n_train, args.n_test)
    start = time.perf_counter()
    rows, dense = [], []
    for seed in seeds:
        run = recipes.mnist1d_run(seed=seed, epochs=args.epochs, n_train=args.n_train, cache=out, progress=False)
        model = run.model()
        dense.append(evaluate(model, test_set, progress=False))
        print(f"seed {seed}: dense test accuracy {dense[-1]:.4f} ({run.source})", flush=True)
        for criterion in criteria:
            settings = {"model": recipes.MNIST1D_MODEL, "seed": seed, "epochs": args.epochs,
                        "n_train": len(train_set), "n_test": len(test_set), "ratio": args.ratio,
                        "finetune_epochs": args.finetune_epochs, "max_samples": args.max_samples,
                        "criterion": criterion}
            cell, hit = cached(out / "cells" / f"seed{seed}_ratio{args.ratio:g}_{criterion}.json", settings,
                               lambda: one_cell(model, criterion, train_set, test_set, args, seed))
            rows.append(cell)
            if "error" in cell:
                print(f"  {criterion:15s} not run: {cell['error']}", flush=True)
                continue
            took = "cached" if hit else f"{cell['seconds']:.0f} s"
            print(f"  {criterion:15s} acc {cell['accuracy_pruned']:.4f} -> {cell['accuracy_finetuned']:.4f}, "
                  f"params -{cell['params_reduction']:.1%}, FLOPs -{cell['flops_reduction']:.1%} ({took})",
                  flush=True)
    cells = pd.DataFrame(rows)
    table = summary(cells, seeds)
    x = test_set.data[:1]
    n_convs = len(uncoupled_convs(model, x))
    params, flops = count_params_flops(recipes.mnist1d_run(seed=0, epochs=args.epochs, n_train=args.n_train,
                                                           cache=out, progress=False).model(), x)
    command = (f"python benchmarks/filter_criteria_budget.py --seeds {args.seeds} --epochs {args.epochs} "
               f"--finetune-epochs {args.finetune_epochs} --ratio {args.ratio} --n-train {len(train_set)}"
               + (f" --n-test {len(test_set)}" if args.n_test else ""))
    note = (f"resnet1d ({params} params, {flops} FLOPs), trained {args.epochs} epochs on {len(train_set)} "
            f"MNIST-1D signals: dense test accuracy {mean_std(dense, 100, 2)} % on {len(test_set)} test signals. "
            f"ceil(C·{args.ratio}) filters of each of the {n_convs} uncoupled convs "
            f"pruned under every criterion, then {args.finetune_epochs} fine-tuning epochs (SGD, cosine from "
            f"lr 0.01). Mean ± std over {len(seeds)} seeds; the '− random' columns are paired differences "
            "within a seed. 'filters pruned per conv' lists pruned/total for consecutive convs (×count).")
    text = (f"## Filter criteria at equal budgets (ratio {args.ratio})\n\n`{command}` "
            f"({(time.perf_counter() - start) / 60:.1f} min this call)\n\n{markdown(table)}\n\n{note}\n")
    (out / f"table_ratio{args.ratio:g}.md").write_text(text)
    cells.to_csv(out / f"cells_ratio{args.ratio:g}.csv", index=False)
    print("\n" + text, flush=True)
    return {"cells": cells, "table": table, "markdown": text, "out": out}


if __name__ == "__main__":
    main()
