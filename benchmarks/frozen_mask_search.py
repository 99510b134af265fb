"""Sparse subnetworks of a wider trained network with frozen weights: the Lottery Jackpots mask
search against one-shot magnitude and random masks (issue 22, item 7; not part of CI: it trains
networks).

Claim (Zhang et al., "Lottery Jackpots Exist in Pre-trained Models", TPAMI 2023): a sparse
subnetwork of a wider pretrained model works without any weight tuning; only a mask is searched.

Setting: per seed, a 1-D ResNet-20 ``resnet1d(width=--width)`` (default 32, about 4× the weights
of the width-16 network of ``repgraph.workflows.mnist1d``) is trained dense on MNIST-1D for
``--epochs`` epochs with that recipe's ``TRAINING`` (SGD, Nesterov 0.9, weight decay 5e-4, batch
64, cosine from lr 0.05), from ``torch.manual_seed(seed)``; the width-16 network is trained the
same way as a reference line (``--reference-width``, 0 to skip). The masked layers are every
Conv/Linear but the first conv and the classifier (``pruned_layers`` of
``mask_methods_sparsity``). At each target sparsity p (default 50, 80, 90 %) the trained weights
stay frozen — no weight is trained after masking — and the masks compared are:

- jackpot: ``lottery_jackpot`` from the global magnitude mask, ``--search-epochs`` epochs of the
  authors' score SGD (lr 0.1, momentum 0.9, weight decay 5e-4, batch 256, cosine); its ticket is
  evaluated as returned, with the BatchNorm running statistics the search leaves;
- jackpot (random init): the same search from a random mask with magnitude's per-layer counts
  (the paper's ablation);
- magnitude: ``magnitude_masks(scope="global")`` applied with ``apply_masks``, evaluated with the
  dense network's BatchNorm statistics as they are, and as magnitude+bn after recomputing them on
  the training split (``recalibrate_batchnorm``: a cumulative average over one pass in train mode
  with no gradient) — the fair comparison, since the jackpot ticket carries search-time
  statistics;
- random+bn: ``random_masks`` (per layer ``ceil(p·N_l)`` uniformly), BatchNorm recalibrated alike.

Every cell records the measured sparsity (exact zeros over the masked layers' weights), the test
accuracy, whether every parameter equals the dense network's bit for bit apart from the masked
weights, which are 0 (checked, and required of the jackpot), the seconds spent finding the mask,
and the overlap of its mask with the magnitude mask: the fraction of its kept weights that
magnitude keeps too, and the Jaccard index of the two kept sets. The table gives, per target and
method, accuracy mean ± std over seeds and the paired difference to magnitude+bn.

Every (seed, sparsity, mask) result is cached as JSON under ``--out`` (default
results/frozen_mask_search, ignored by git), the dense networks as ``.pt``, so a rerun resumes;
``table.md`` and ``cells.csv`` are written at the end.

    python benchmarks/frozen_mask_search.py [--seeds 3] [--width 32] [--epochs 20]
        [--search-epochs 20] [--sparsities 0.5 0.8 0.9] [--n-train 4000] [--out DIR]

Measured (``--seeds 3 --width 32 --epochs 20 --search-epochs 20 --n-train 4000``, all 4000 / 1000
signals; 20 search epochs so that the run fits an hour on one shared core: the authors use 30 on
CIFAR): ``python benchmarks/frozen_mask_search.py --threads 1`` took 32.5 min (six dense networks
and the defaults 50 / 80 / 90 %), and ``--sparsities 0.5 0.8 0.9 0.95 0.98`` then 23.1 min more
(the first three from the cache), each search 70-115 s. Dense: width 32 99.00 ± 0.36 %, width 16
98.43 ± 0.23 %. The jackpot keeps the dense accuracy with no weight tuned — 99.10 ± 0.20 / 99.17 ±
0.31 / 98.73 ± 0.31 / 98.57 ± 0.47 / 98.47 ± 0.74 % at 50 / 80 / 90 / 95 / 98 %, weights bit-identical
in every cell — where magnitude+bn falls to 96.90 ± 0.26 % at 80 %, 68.47 ± 3.70 % at 90 % and
chance at 95-98 % (+2.3 ± 0.5, +30.3 ± 3.9, +73.7, +84.6 pp for the jackpot). At 50 % the search
swaps nothing (mask identical to magnitude, −0.07 ± 0.06 pp: the two BatchNorm estimates agree);
its mask keeps 98.1 / 79.7 / 61.2 / 46.5 % of magnitude's kept weights at 80-98 %. From a random
mask the search reaches 98.87 / 98.27 / 98.33 / 97.57 / 96.67 % while sharing only 51 / 30 / 28 /
25 / 24 % of magnitude's kept weights (chance: 50 / 20 / 10 / 5 / 2 %). Random masks with
recalibrated BatchNorm are near chance from 50 % on (32.6 % at 50 %). Without recalibration
magnitude loses 2.6 pp at 50 % and is at chance from 80 %: the dense BatchNorm statistics do not fit
the masked network.
"""
from __future__ import annotations

import argparse
import copy
import sys
import time
import warnings
from pathlib import Path

import pandas as pd
import torch
from torch import nn
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bench_common import cached, markdown, mean_std  # noqa: E402
from mask_methods_sparsity import pruned_layers, random_masks  # noqa: E402

from repgraph import apply_masks, evaluate, lottery_jackpot, magnitude_masks, sparsity, train  # noqa: E402
from repgraph.models import resnet1d  # noqa: E402
from repgraph.workflows import mnist1d as recipes  # noqa: E402
from repgraph.workflows._files import atomic_write  # noqa: E402

MASKS = ("jackpot", "jackpot_random", "magnitude", "random")
BASELINE = "magnitude+bn"
BATCHNORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def parse(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3, help="training seeds 0..N-1")
    parser.add_argument("--width", type=int, default=32, help="resnet1d width of the network searched")
    parser.add_argument("--reference-width", type=int, default=16,
                        help="width of a dense reference network trained alike (0: none)")
    parser.add_argument("--epochs", type=int, default=20, help="training epochs of the dense networks")
    parser.add_argument("--search-epochs", type=int, default=20, help="epochs of each jackpot mask search")
    parser.add_argument("--sparsities", type=float, nargs="+", default=[0.5, 0.8, 0.9])
    parser.add_argument("--masks", default=",".join(MASKS), help=f"comma-separated, of {', '.join(MASKS)}")
    parser.add_argument("--bn-batch-size", type=int, default=256, help="batch size of the BatchNorm recalibration")
    parser.add_argument("--n-train", type=int, default=None, help="first N training signals (default all 4000)")
    parser.add_argument("--n-test", type=int, default=None, help="first N test signals (default all 1000)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 on a shared machine)")
    parser.add_argument("--out", default="results/frozen_mask_search")
    args = parser.parse_args(argv)
    unknown = set(args.masks.split(",")) - set(MASKS)
    if unknown:
        parser.error(f"unknown masks {sorted(unknown)}; choose from {MASKS}.")
    if args.width < 1 or args.reference_width < 0:
        parser.error("--width must be >= 1 and --reference-width >= 0.")
    return args


def dense_network(width: int, seed: int, epochs: int, train_set, cache: Path) -> tuple[nn.Module, bool]:
    """``resnet1d(width=width)`` from ``torch.manual_seed(seed)`` trained ``epochs`` epochs with the
    MNIST-1D recipe, in eval mode; read from ``cache`` when stored with the same settings. Returns
    (network, whether it came from the cache)."""
    settings = {"width": width, "seed": seed, "epochs": epochs, "n_train": len(train_set), **recipes.TRAINING}
    path = Path(cache) / f"resnet1d_width{width}_seed{seed}_epochs{epochs}_train{len(train_set)}.pt"
    torch.manual_seed(seed)
    model = resnet1d(width=width)
    if path.is_file():
        stored = torch.load(path, map_location="cpu", weights_only=True)
        if stored["settings"] == settings:
            model.load_state_dict(stored["state"])
            return model.eval(), True
    train(model, train_set, epochs=epochs, seed=seed, progress=False, **recipes.TRAINING)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda p: torch.save({"settings": settings, "state": model.state_dict()}, p))
    return model.eval(), False


def recalibrate_batchnorm(model: nn.Module, data, batch_size: int = 256) -> nn.Module:
    """A copy of ``model`` whose BatchNorm running statistics are recomputed on ``data``.

    Every BatchNorm's statistics are reset and its momentum set to None (a cumulative average);
    the copy then runs once over ``data`` in order, in train mode under ``torch.no_grad()``, so
    each running mean (variance) is the average over the batches of the batch's per-channel mean
    (unbiased variance) — over one batch, the data's own. No parameter changes; the momenta are
    restored and the copy is returned in eval mode.

    Parameters
    ----------
    model : nn.Module
        Not modified.
    data : Dataset
        Of ``(x, y)`` pairs; the labels are not used.
    batch_size : int
        Samples per forward pass; part of the estimate unless the data fit one batch.

    Returns
    -------
    nn.Module
    """
    net = copy.deepcopy(model)
    norms = [m for m in net.modules() if isinstance(m, BATCHNORMS)]
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
    net.train()
    with torch.no_grad():
        for x, _ in DataLoader(data, batch_size=batch_size):
            net(x)
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
    return net.eval()


def weights_frozen(net: nn.Module, dense: nn.Module, masks: dict) -> bool:
    """Whether every parameter of ``net`` equals ``dense``'s bit for bit, except the weights that
    ``masks`` prune (layer name -> bool, True = kept), which must be exactly 0."""
    dense_params = dict(dense.named_parameters())
    for name, value in net.named_parameters():
        layer, kind = name.rsplit(".", 1) if "." in name else ("", name)
        reference = dense_params[name]
        if kind == "weight" and layer in masks:
            kept = masks[layer]
            if not (torch.equal(value[kept], reference[kept]) and bool((value[~kept] == 0).all())):
                return False
        elif not torch.equal(value, reference):
            return False
    return True


def overlap(masks: dict, reference: dict) -> tuple[float, float]:
    """(fraction of the weights ``masks`` keeps that ``reference`` keeps too, Jaccard index of the
    two kept sets), pooled over the layers."""
    shared = sum(int((masks[n] & reference[n]).sum()) for n in reference)
    kept = sum(int(masks[n].sum()) for n in reference)
    union = sum(int((masks[n] | reference[n]).sum()) for n in reference)
    return shared / kept, shared / union


def measure(method: str, net: nn.Module, dense: nn.Module, masks: dict, magnitude: dict, test_set) -> dict:
    """The row of one masked network: its zeros over the masked layers, test accuracy, frozen
    weights and overlap with the magnitude mask."""
    modules = dict(net.named_modules())
    shared, jaccard = overlap(masks, magnitude)
    return {"method": method, "sparsity": sparsity(net, list(masks)),
            "zeros": sum(int((modules[n].weight == 0).sum()) for n in masks),
            "weights": sum(modules[n].weight.numel() for n in masks), "layers": len(masks),
            "accuracy": evaluate(net, test_set, progress=False),
            "weights_frozen": weights_frozen(net, dense, masks),
            "kept_shared_with_magnitude": shared, "jaccard_with_magnitude": jaccard}


def one_cell(mask: str, dense: nn.Module, p: float, train_set, test_set, args, seed: int) -> dict:
    """Find ``mask``'s mask of the frozen ``dense`` at sparsity ``p`` and measure the masked network
    (for magnitude with and without recalibrated BatchNorm): ``{"rows": [...]}``."""
    layers = pruned_layers(dense)
    magnitude = magnitude_masks(dense, p, layers=layers, scope="global")
    t0 = time.perf_counter()
    if mask in ("jackpot", "jackpot_random"):
        init = "magnitude" if mask == "jackpot" else "random"
        masks, ticket = lottery_jackpot(dense, train_set, sparsity=p, epochs=args.search_epochs, init=init,
                                        layers=layers, scope="global", seed=seed, progress=False)
        search_s = time.perf_counter() - t0
        networks = {"jackpot" if init == "magnitude" else "jackpot (random init)": ticket}
    else:
        masks = magnitude if mask == "magnitude" else random_masks(dense, p, layers, [seed, round(p * 1000)])
        search_s = time.perf_counter() - t0
        masked = apply_masks(dense, masks)
        recalibrated = recalibrate_batchnorm(masked, train_set, args.bn_batch_size)
        networks = ({"magnitude": masked, "magnitude+bn": recalibrated} if mask == "magnitude"
                    else {"random+bn": recalibrated})
    rows = []
    for method, net in networks.items():
        row = measure(method, net, dense, masks, magnitude, test_set)
        if method.startswith("jackpot") and not row["weights_frozen"]:
            raise RuntimeError(f"{method} at sparsity {p}, seed {seed}: the ticket's kept weights differ from the "
                               "dense network's; the search must leave every weight frozen.")
        rows.append({**row, "seed": seed, "target": p, "search_seconds": search_s,
                     "seconds": time.perf_counter() - t0})
    return {"rows": rows}


def summary(cells: pd.DataFrame) -> pd.DataFrame:
    """One row per (target, method): measured sparsity, accuracy, the paired difference to
    magnitude+bn, the overlap with the magnitude mask, frozen weights and search time."""
    rows = []
    for p in dict.fromkeys(cells["target"]):
        at = cells[cells["target"] == p]
        base = at[at["method"] == BASELINE].set_index("seed")["accuracy"]
        for method in dict.fromkeys(at["method"]):
            mine = at[at["method"] == method]
            common = [s for s in mine["seed"] if s in base.index]
            versus = ("—" if method == BASELINE or p == 0 or not common else
                      mean_std([mine.set_index("seed").loc[s, "accuracy"] - base[s] for s in common], 100, 2))
            masked = p > 0
            rows.append({"target sparsity (%)": f"{100 * p:g}", "method": method,
                         "measured sparsity (%)": mean_std(mine["sparsity"], 100, 2) if masked else "0",
                         "accuracy (%)": mean_std(mine["accuracy"], 100, 2), f"− {BASELINE} (pp)": versus,
                         "kept shared with magnitude (%)":
                             mean_std(mine["kept_shared_with_magnitude"], 100, 1) if masked else "—",
                         "Jaccard with magnitude": mean_std(mine["jaccard_with_magnitude"], 1, 3) if masked else "—",
                         "weights frozen": f"{int(mine['weights_frozen'].sum())}/{len(mine)}" if masked else "—",
                         "search (s)": mean_std(mine["search_seconds"], 1, 1) if masked else "—",
                         "seeds": len(mine)})
    return pd.DataFrame(rows)


def main(argv=None) -> dict:
    """Run the benchmark; returns ``{"cells": DataFrame (one row per seed, target and method; the
    dense networks at target 0), "table": the summary DataFrame, "markdown": the text of table.md,
    "trained": how many dense networks were trained now (not cached), "out": Path}``."""
    args = parse(argv)
    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore", UserWarning)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    masks = args.masks.split(",")
    seeds = list(range(args.seeds))
    train_set, test_set = recipes.mnist1d_splits(args.n_train, args.n_test)
    start = time.perf_counter()
    rows, trained = [], 0
    for seed in seeds:
        widths = [args.width] + ([args.reference_width] if args.reference_width else [])
        for width in widths:
            net, hit = dense_network(width, seed, args.epochs, train_set, out)
            trained += not hit
            if width == args.width:
                dense = net
            rows.append({"method": f"dense, width {width}", "seed": seed, "target": 0.0, "weights_frozen": True,
                         "accuracy": evaluate(net, test_set, progress=False)})
            print(f"seed {seed}: dense width {width} accuracy {rows[-1]['accuracy']:.4f} "
                  f"({'cached' if hit else 'trained now'})", flush=True)
        for p in args.sparsities:
            for mask in masks:
                settings = {"width": args.width, "seed": seed, "epochs": args.epochs, "n_train": len(train_set),
                            "n_test": len(test_set), "target": p, "mask": mask, "training": recipes.TRAINING,
                            **({"search_epochs": args.search_epochs} if mask.startswith("jackpot")
                               else {"bn_batch_size": args.bn_batch_size})}
                cell, hit = cached(out / "cells" / f"seed{seed}_p{p:g}_{mask}.json", settings,
                                   lambda: one_cell(mask, dense, p, train_set, test_set, args, seed))
                for row in cell["rows"]:
                    rows.append(row)
                    took = "cached" if hit else f"{row['seconds']:.0f} s"
                    print(f"  {100 * p:g} % {row['method']:22s} sparsity {row['sparsity']:.4f} "
                          f"accuracy {row['accuracy']:.4f} kept shared with magnitude "
                          f"{row['kept_shared_with_magnitude']:.3f} ({took})", flush=True)
    cells = pd.DataFrame(rows)
    table = summary(cells)
    command = (f"python benchmarks/frozen_mask_search.py --seeds {args.seeds} --width {args.width} "
               f"--reference-width {args.reference_width} --epochs {args.epochs} "
               f"--search-epochs {args.search_epochs} --sparsities {' '.join(f'{p:g}' for p in args.sparsities)} "
               f"--n-train {len(train_set)}" + (f" --n-test {len(test_set)}" if args.n_test else ""))
    masked = cells[cells["target"] > 0]
    note = (f"resnet1d(width={args.width}) trained dense {args.epochs} epochs on {len(train_set)} MNIST-1D "
            f"training signals, then frozen; {len(test_set)} test signals. Masked layers: the "
            f"{int(masked['layers'].iloc[0])} Conv/Linear layers between the first conv and the classifier "
            f"({int(masked['weights'].iloc[0])} weights); sparsity = their fraction of exact zeros. No weight is "
            f"trained after masking ('weights frozen': every parameter bit-identical to the dense one but the "
            f"pruned weights, which are 0). jackpot: {args.search_epochs} epochs of mask search, evaluated with "
            f"the search's BatchNorm statistics; '+bn': BatchNorm statistics recomputed on the training split "
            f"(batches of {args.bn_batch_size}). Mean ± std over {len(seeds)} seeds; '− {BASELINE}' is the "
            f"paired difference to {BASELINE} of the same seed and sparsity. 'kept shared with magnitude': the "
            f"fraction of the mask's kept weights that the global magnitude mask keeps too.")
    text = (f"## Frozen-weight mask search on a wider network\n\n`{command}` "
            f"({(time.perf_counter() - start) / 60:.1f} min this call)\n\n{markdown(table)}\n\n{note}\n")
    (out / "table.md").write_text(text)
    cells.to_csv(out / "cells.csv", index=False)
    print("\n" + text, flush=True)
    return {"cells": cells, "table": table, "markdown": text, "trained": trained, "out": out}


if __name__ == "__main__":
    main()
