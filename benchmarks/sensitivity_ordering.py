"""SBPF's claim (arXiv:2208.04588): a briefly trained model ranks its layers' sensitivity as a fully
trained one does. From one initialisation, train a copy for ``--short`` epochs and another for
``--epochs``, measure ``layer_sensitivity`` of both on the test split, and print the Spearman
correlation of the two rankings (and of the ratios ``sensitivity_ratios`` gives), with accuracies.
Not part of CI (minutes on CPU).

    python benchmarks/sensitivity_ordering.py [--model resnet20] [--short 1] [--epochs 15] [--seeds 0,1]

Measured (2 shared CPU cores, ``--size 8 --repeats 2 --epochs 10 --seeds 0``, Gaussian damage at
0.5·RMS): resnet20, 22 layers, accuracy 0.930 after 1 epoch and 0.985 after 10; Spearman of the
loss changes 0.487, of the ratios at a 0.4 target 0.388. The fully trained model's loss changes are
small (most below 0.01, some negative), so its ranking is noisy at this damage: the claim of the
same ordering is not reproduced here; a larger ``--scale`` and more ``--repeats`` are untried.
"""
from __future__ import annotations

import argparse
import copy
import time
import warnings

import numpy as np
import torch
from scipy.stats import spearmanr

from repgraph import evaluate, layer_sensitivity, sensitivity_ratios, train
from repgraph.datasets import digits
from repgraph.models import get_model


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet20")
    parser.add_argument("--short", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--damage", default="gaussian")
    parser.add_argument("--scale", type=float, default=0.5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--size", type=int, default=16)
    args = parser.parse_args()
    warnings.simplefilter("ignore", UserWarning)
    train_set, test_set = digits("train", size=args.size), digits("test", size=args.size)
    for seed in (int(s) for s in args.seeds.split(",")):
        torch.manual_seed(seed)
        init = get_model(args.model, num_classes=10, in_channels=1)
        tables, accuracies = {}, {}
        for epochs in (args.short, args.epochs):
            start = time.perf_counter()
            model = copy.deepcopy(init)
            train(model, train_set, epochs=epochs, lr=0.05, seed=seed, progress=False)
            accuracies[epochs] = evaluate(model, test_set, progress=False)
            tables[epochs] = layer_sensitivity(model, test_set, damage=args.damage, scale=args.scale,
                                               repeats=args.repeats, seed=seed)
            print(f"seed {seed}: {epochs} epoch(s), accuracy {accuracies[epochs]:.3f}, "
                  f"{time.perf_counter() - start:.0f} s", flush=True)
        short, full = tables[args.short], tables[args.epochs]
        rho = spearmanr(short["loss_change"], full["loss_change"]).statistic
        convs = [n for n in short["layer"] if n != "fc"]
        r_short = sensitivity_ratios(short[short["layer"].isin(convs)], 0.4, max_ratio=0.8)
        r_full = sensitivity_ratios(full[full["layer"].isin(convs)], 0.4, max_ratio=0.8)
        rho_ratios = spearmanr([r_short[n] for n in convs], [r_full[n] for n in convs]).statistic
        print(f"seed {seed}: {len(short)} layers, Spearman(sensitivity) = {rho:.3f}, "
              f"Spearman(ratios at 0.4) = {rho_ratios:.3f}", flush=True)
        print(np.round(np.c_[short["loss_change"], full["loss_change"]], 4).tolist(), flush=True)


if __name__ == "__main__":
    main()
