"""The layer-correspondence sanity check (Kornblith et al. 2019; Chen et al. 2021) on digits:
train several seeds of one architecture, and for every pair of seeds report the fraction of layers
whose most similar layer in the other network has the same index, under GBS on the full cosine
graph (the default, as the authors' code), GBS on k = 5 nearest-neighbour graphs, biased CKA and
debiased CKA; then the mean, spread (std), min and max over the seed pairs. Not part of CI (it
trains networks).

    python benchmarks/layer_correspondence.py [--model resnet20] [--seeds 3] [--epochs 15]
"""
from __future__ import annotations

import argparse
import itertools

import pandas as pd
import torch

from repgraph import capture_activations, cka_matrix, gbs_matrix, layer_correspondence, train
from repgraph.datasets import digits
from repgraph.models import get_model


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet20")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--layers", default="modularity", help="layer preset or pattern to compare")
    parser.add_argument("--out", default="results/layer_correspondence.csv")
    args = parser.parse_args()
    train_set, test_set = digits("train"), digits("test")
    acts = []
    for seed in range(args.seeds):
        torch.manual_seed(seed)
        model = get_model(args.model, num_classes=10, in_channels=1)
        history = train(model, train_set, epochs=args.epochs, seed=seed, eval_data=test_set, progress=False)
        print(f"seed {seed}: test accuracy {history['test_accuracy'].iloc[-1]:.4f}", flush=True)
        acts.append(capture_activations(model, test_set, layers=args.layers, progress=False))
    rows = []
    for a, b in itertools.combinations(range(args.seeds), 2):
        for measure, fn in (("GBS (full graph)", lambda x, y: gbs_matrix(x, y, progress=False)),
                            ("GBS (k=5)", lambda x, y: gbs_matrix(x, y, k=5, progress=False)),
                            ("CKA biased", lambda x, y: cka_matrix(x, y, progress=False)),
                            ("CKA debiased", lambda x, y: cka_matrix(x, y, debiased=True, progress=False))):
            rows.append({"seeds": f"{a}-{b}", "measure": measure,
                         "correspondence": layer_correspondence(fn(acts[a], acts[b]))})
    table = pd.DataFrame(rows)
    print(f"\n{args.model}, {len(acts[0])} layers ({args.layers}), {acts[0].n_samples} test samples")
    print(table.pivot(index="seeds", columns="measure", values="correspondence").to_string())
    summary = table.groupby("measure")["correspondence"].agg(["mean", "std", "min", "max"])
    print(f"\nacross the {table['seeds'].nunique()} seed pairs:")
    print(summary.round(3).to_string())
    from pathlib import Path
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out, index=False)


if __name__ == "__main__":
    main()
