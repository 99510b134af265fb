"""A ReSi-style benchmark of every registered similarity measure (raw and calibrated), offline on
models trained here: layer monotonicity, correlation with output differences across seeds, and
the label-randomisation, shortcut and augmentation grouping tests (Klabunde et al., ICLR 2025;
``repgraph.workflows.resi_benchmark``). Not part of CI (it trains ~140 networks); the test runs
the small setting.

    nice -n 15 python benchmarks/resi_offline.py [--small] [--datasets mnist1d digits]
        [--cifar10 PATH] [--seeds 5] [--permutations 19] [--out results/resi_offline]

Full setting: 5 seeds × 5 levels per test, 8 epochs, 300 test samples per representation, K = 19
permutations for the calibrated scores (the smallest K at which α = 0.05 can gate), about 30-40 min
on 2 cores at nice priority. ``--small``: 3 seeds × 3 levels, 2 epochs, < 2 min.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import time

import torch

from repgraph.workflows.resi_benchmark import FULL, SMALL, rank_table, run_benchmark


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="the small setting (< 2 min)")
    parser.add_argument("--datasets", nargs="+", default=["mnist1d", "digits", "cifar10"])
    parser.add_argument("--cifar10", default=None, help="a local CIFAR-10 folder (python batches); skipped without")
    parser.add_argument("--seeds", type=int, default=None)
    parser.add_argument("--permutations", type=int, default=None, help="K of the calibrated scores")
    parser.add_argument("--measures", nargs="+", default=None, help="default: every registered measure")
    parser.add_argument("--raw-only", action="store_true", help="score the raw measures only (no calibration)")
    parser.add_argument("--out", default="results/resi_offline")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    setting = SMALL if args.small else FULL
    changes = {k: v for k, v in (("n_seeds", args.seeds), ("n_permutations", args.permutations),
                                 ("measures", tuple(args.measures) if args.measures else None),
                                 ("calibrations", (False,) if args.raw_only else None)) if v is not None}
    setting = dataclasses.replace(setting, **changes)
    out = f"{args.out}/{'small' if args.small else 'full'}{'_raw' if args.raw_only else ''}"
    print(f"setting: {setting}", flush=True)
    result = run_benchmark(setting, args.datasets, cifar10_root=args.cifar10, out=out,
                           log=lambda msg: print(msg, flush=True))
    records, summary = result["records"], result["summary"]
    print(f"\n{len(result['models'])} models trained, {result['seconds'] / 60:.1f} min; results in {out}/")
    print("\ntest accuracy per test and level (mean ± std over seeds):")
    acc = result["models"].groupby(["dataset", "test", "level"])["test_accuracy"].agg(["mean", "std"])
    print(acc.round(3).to_string())
    print("\nmean rank per test (over data sets) and the overall median rank (ReSi's summary):")
    print(rank_table(result["ranks"], summary).round(2).to_string())
    print("\nrank spread over experiments:")
    print(summary.round(2).to_string())
    mono = records[records["test"] == "monotonicity"].groupby(["dataset", "measure"])["value"].agg(["mean", "std"])
    print("\nmonotonicity (Spearman, mean ± std over seeds):")
    print(mono.unstack("dataset").round(3).to_string())
    groups = records[records["quality"].isin(["auprc", "violation_rate"])]
    print("\ngrouping tests (value; spread = std over groups):")
    print(groups.pivot_table(index="measure", columns=["dataset", "test", "quality"], values="value").round(3)
          .to_string())
    corr = records[records["quality"] == "spearmanr"]
    print("\noutput correlation (Spearman ρ, permutation p):")
    print(corr.pivot_table(index="measure", columns=["dataset", "test"], values=["value", "p_value"]).round(3)
          .to_string())
    return result


if __name__ == "__main__":
    start = time.perf_counter()
    main(sys.argv[1:])
