"""The ``repgraph`` command: ``demo``, ``report``, ``prune``, ``layers``, ``train``."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import matplotlib
import pandas as pd
import torch

from . import __version__
from .analyzers import (birth_points, central_filters, cka_matrix, filter_similarity, gbs_matrix,
                        layer_filter_report, modularity_curve)
from .datasets import digits
from .hooks import capture_activations, list_layers, select_layers
from .models import IMAGE_MODELS, MODELS, example_input, get_model
from .models.checkpoint import SHIPPED_CHECKPOINT, load_checkpoint
from .plotting import (plot_birth_point_histogram, plot_filter_graph, plot_modularity_curve,
                       plot_similarity_heatmap)
from .report import write_report
from .pruning import (CRITERIA, evaluate, filter_scores, prune_experiment, prune_filters,
                      redundant_layers, removable_layers, remove_layers, train, uncoupled_convs)

DIGITS_CLASSES = 10


def _atomic_write(path: Path, write):
    """Write through a temporary file and rename, so no half-written result is left behind."""
    tmp = path.with_name(path.name + ".part")
    write(tmp)
    os.replace(tmp, path)


def _curves_trained_and_untrained(model, test_set, *, seed: int, k: int, batch_size: int, progress: bool):
    """Modularity curves (hook points of Lu et al.) of ``model`` and of an untrained ResNet-20 made
    with ``seed``, on ``test_set``."""
    torch.manual_seed(seed)
    untrained = get_model("resnet20", num_classes=DIGITS_CLASSES, in_channels=1).eval()
    return {label: modularity_curve(capture_activations(net, test_set, layers="modularity", progress=progress),
                                    k=k, batch_size=batch_size, progress=progress)
            for label, net in (("trained", model), ("untrained", untrained))}


def _train_digits(model_name: str, size: int, epochs: int, seed: int, progress: bool):
    torch.manual_seed(seed)
    model = get_model(model_name, num_classes=DIGITS_CLASSES, in_channels=1)
    train_set, test_set = digits("train", size=size, seed=seed), digits("test", size=size, seed=seed)
    history = train(model, train_set, epochs=epochs, lr=0.05, seed=seed, eval_data=test_set,
                    progress=progress)
    return model, float(history["test_accuracy"].iloc[-1])


def cmd_train(args):
    model, acc = _train_digits(args.model, args.size, args.epochs, args.seed, not args.no_progress)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    payload = {"model": args.model, "size": args.size, "seed": args.seed, "epochs": args.epochs,
               "test_accuracy": acc, "state_dict": model.state_dict(),
               "made_by": f"repgraph {__version__}: repgraph train --model {args.model} --size "
                          f"{args.size} --epochs {args.epochs} --seed {args.seed}"}
    _atomic_write(out, lambda p: torch.save(payload, p))
    print(f"{args.model} on digits {args.size}x{args.size}: test accuracy {acc:.4f}; saved {out}")


def cmd_demo(args):
    progress = not args.no_progress
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model_name, size, seed = "resnet20", args.size, args.seed
    model, trained_now = _digits_model(args, progress)
    source = "trained now" if trained_now else f"checkpoint {SHIPPED_CHECKPOINT.name}"
    test_set = digits("test", size=size, seed=seed)
    accuracy = evaluate(model, test_set)
    curves = _curves_trained_and_untrained(model, test_set, seed=seed, k=args.k, batch_size=args.batch_size,
                                           progress=progress)
    example = test_set.data[:2]
    flags = redundant_layers(curves["trained"], tol=args.tol, removable=removable_layers(model, example))

    table = pd.concat([c.assign(model=label) for label, c in curves.items()], ignore_index=True)
    _atomic_write(out / "modularity.csv", lambda p: table.to_csv(p, index=False))
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(8, 4.5))
    plot_modularity_curve(curves, ax=ax, title=f"{model_name} on sklearn digits (test split, "
                                                f"accuracy {accuracy:.3f})")
    fig.tight_layout()
    _atomic_write(out / "modularity.png", lambda p: fig.savefig(p, dpi=120, format="png"))
    write_report(out / "report.html", "repgraph demo: layer-wise modularity on digits",
                 [("Modularity curves", fig), ("Modularity per layer", table),
                  ("Plateau blocks (removable, delta Q <= tol)", flags)],
                 {"model": model_name, "source": source, "test accuracy": round(accuracy, 4),
                  "digits size": size, "k": args.k, "batch size": args.batch_size, "tol": args.tol, "seed": seed})
    plt.close(fig)

    pd.set_option("display.width", 120)
    print(f"\n{model_name} ({source}), digits {size}x{size}, test accuracy {accuracy:.4f}")
    print(f"Sample graphs: cosine kNN, k={args.k}, batches of {args.batch_size} test samples "
          f"({curves['trained']['n_samples'].iloc[0]} samples used)\n")
    merged = curves["trained"][["layer", "modularity", "std"]].merge(
        curves["untrained"][["layer", "modularity"]], on="layer", suffixes=("_trained", "_untrained"))
    merged["delta_q"] = flags["delta_q"].round(4)
    merged["plateau"] = flags["redundant"]
    print(merged.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    plateau = flags.loc[flags["redundant"], "layer"].tolist()
    print(f"\nFinal modularity: trained {curves['trained']['modularity'].iloc[-1]:.4f}, "
          f"untrained {curves['untrained']['modularity'].iloc[-1]:.4f}")
    print(f"Removable blocks on a plateau (delta Q <= {args.tol}): {', '.join(plateau) or 'none'}")
    print(f"Wrote {out / 'modularity.csv'}, {out / 'modularity.png'} and {out / 'report.html'}")


def _digits_model(args, progress):
    """``(model, trained_now)``: the shipped ResNet-20 digits checkpoint when it matches the
    options, else a ResNet-20 trained now."""
    model = None if args.retrain else load_checkpoint(SHIPPED_CHECKPOINT, "resnet20", args.size, args.seed)
    trained_now = model is None
    if trained_now:
        print(f"Training resnet20 on digits ({args.epochs} epochs) ...", flush=True)
        model, _ = _train_digits("resnet20", args.size, args.epochs, args.seed, progress)
    return model, trained_now


def cmd_prune(args):
    progress = not args.no_progress
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model, _ = _digits_model(args, progress)
    train_set, test_set = digits("train", size=args.size, seed=args.seed), digits("test", size=args.size, seed=args.seed)
    x = test_set.data[:1]
    if args.method == "layers":
        acts = capture_activations(model, test_set, layers="modularity", progress=progress)
        curve = modularity_curve(acts, k=3, batch_size=250, progress=progress)
        flags = redundant_layers(curve, tol=args.tol, removable=removable_layers(model, x))
        names = flags.loc[flags["redundant"], "layer"].tolist()
        if not names:
            print(f"No removable block sits on a modularity plateau (delta Q <= {args.tol}); nothing to prune.")
            return
        label = f"remove {len(names)} plateau blocks: {', '.join(names)}"
        prune = lambda m: remove_layers(m, names)  # noqa: E731
    else:
        convs = uncoupled_convs(model, x)
        scores = filter_scores(model, args.criterion, convs=convs, data=train_set, example_input=x,
                               ratio=args.ratio, seed=args.seed)
        label = f"{args.criterion} filters, ratio {args.ratio} of {len(convs)} convs"
        prune = lambda m: prune_filters(m, scores, ratio=args.ratio, example_input=x)  # noqa: E731
    row = prune_experiment(model, prune, train_set, test_set, example_input=x, finetune_epochs=args.finetune_epochs,
                           seed=args.seed, name=label, progress=progress)
    table = row.to_frame().T
    _atomic_write(out / "prune.csv", lambda p: table.to_csv(p, index=False))
    print(f"\n{label}")
    print(f"params {row['params_before']:,} -> {row['params_after']:,} ({row['params_reduction']:.1%} fewer), "
          f"FLOPs {row['flops_before']:,} -> {row['flops_after']:,} ({row['flops_reduction']:.1%} fewer)")
    print(f"test accuracy {row['accuracy_before']:.4f} -> {row['accuracy_pruned']:.4f} after pruning -> "
          f"{row['accuracy_finetuned']:.4f} after {args.finetune_epochs} fine-tuning epochs")
    print(f"Wrote {out / 'prune.csv'}")


def cmd_report(args):
    import matplotlib.pyplot as plt

    progress = not args.no_progress
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model, trained_now = _digits_model(args, progress)
    test_set = digits("test", size=args.size, seed=args.seed)
    accuracy = evaluate(model, test_set)
    sections = []
    curves = _curves_trained_and_untrained(model, test_set, seed=args.seed, k=3, batch_size=250, progress=progress)
    acts = capture_activations(model, test_set, layers="modularity", progress=progress)
    fig, ax = plt.subplots(figsize=(8, 4))
    plot_modularity_curve(curves, ax=ax, title=f"ResNet-20 on digits (test accuracy {accuracy:.3f})")
    sections += [("Modularity curves: trained vs untrained", fig),
                 ("Modularity per layer", pd.concat([c.assign(model=k) for k, c in curves.items()]))]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    for ax, matrix in zip(axes, (gbs_matrix(acts), cka_matrix(acts), cka_matrix(acts, debiased=True))):
        plot_similarity_heatmap(matrix, ax=ax, half=True, vmin=min(0.0, float(matrix.to_numpy().min())))
    fig.tight_layout()
    sections.append(("Layer similarity: GBS (k=5), biased CKA, debiased CKA", fig))
    layer = "layer1.0.relu1"
    maps = capture_activations(model, test_set, layers=[layer], reduce=None, max_samples=128, progress=False)[layer]
    S = filter_similarity(maps)
    selection = central_filters(S, 0.25)
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    plot_filter_graph(S, selection, ax=axes[0])
    plot_birth_point_histogram(birth_points(maps), ax=axes[1], title=f"birth points of {layer} (128 images)")
    fig.tight_layout()
    sections += [(f"Filters of {layer}: Central-Filter graph and birth points", fig),
                 (f"Filter criteria of {layer}", layer_filter_report(model, test_set, layer, max_samples=128))]
    parameters = {"model": "resnet20", "source": "trained now" if trained_now else SHIPPED_CHECKPOINT.name,
                  "test accuracy": round(accuracy, 4), "digits size": args.size, "seed": args.seed,
                  "modularity": "k=3, batches of 250", "GBS": "k=5", "Central Filter ratio": 0.25}
    path = write_report(out / "report.html", "repgraph report: ResNet-20 on sklearn digits", sections, parameters)
    figures = [item for _, item in sections if hasattr(item, "savefig")]
    for name, fig in zip(("modularity.png", "similarity.png", "filters.png"), figures):
        _atomic_write(out / name, lambda p, fig=fig: fig.savefig(p, dpi=80, format="png", bbox_inches="tight"))
    plt.close("all")
    print(f"Wrote {path} and its figures as PNG")


def cmd_layers(args):
    model = get_model(args.model, num_classes=10, in_channels=args.in_channels)
    x = example_input(args.model, in_channels=args.in_channels, size=args.size)
    table = list_layers(model, x)
    hooks = set(select_layers(model, args.preset))
    table[args.preset] = table["name"].isin(hooks)
    if args.only_preset:
        table = table[table[args.preset]]
    pd.set_option("display.width", 160)
    print(table.to_string(index=False))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="repgraph", description=__doc__)
    parser.add_argument("--version", action="version", version=f"repgraph {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="modularity curves of a trained and an untrained ResNet-20 on digits")
    demo.add_argument("--out", default="results/demo", help="output folder (default: results/demo)")
    demo.add_argument("--retrain", action="store_true", help="train instead of loading the shipped checkpoint")
    demo.add_argument("--epochs", type=int, default=30)
    demo.add_argument("--size", type=int, default=16, help="digits are resized to size x size")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--k", type=int, default=3, help="neighbours per sample in the kNN graph")
    demo.add_argument("--batch-size", type=int, default=250,
                      help="samples per sample graph (the test split has 540; the paper uses 500 on CIFAR)")
    demo.add_argument("--tol", type=float, default=0.01, help="delta Q at or below this is a plateau")
    demo.add_argument("--no-progress", action="store_true")
    demo.set_defaults(func=cmd_demo)

    pr = sub.add_parser("prune", help="prune the digits ResNet-20 (plateau blocks or filters), fine-tune, report")
    pr.add_argument("--method", choices=["layers", "filters"], default="layers")
    pr.add_argument("--criterion", choices=list(CRITERIA), default="l1", help="filter criterion (--method filters)")
    pr.add_argument("--ratio", type=float, default=0.4, help="fraction of each pruned conv's filters")
    pr.add_argument("--tol", type=float, default=0.01, help="delta Q at or below this is a plateau")
    pr.add_argument("--finetune-epochs", type=int, default=5)
    pr.add_argument("--out", default="results/prune")
    pr.add_argument("--retrain", action="store_true")
    pr.add_argument("--epochs", type=int, default=30, help="training epochs when no checkpoint is used")
    pr.add_argument("--size", type=int, default=16)
    pr.add_argument("--seed", type=int, default=0)
    pr.add_argument("--no-progress", action="store_true")
    pr.set_defaults(func=cmd_prune)

    rep = sub.add_parser("report", help="an HTML report of every analysis on the digits ResNet-20")
    rep.add_argument("--out", default="results/report")
    rep.add_argument("--retrain", action="store_true")
    rep.add_argument("--epochs", type=int, default=30)
    rep.add_argument("--size", type=int, default=16)
    rep.add_argument("--seed", type=int, default=0)
    rep.add_argument("--no-progress", action="store_true")
    rep.set_defaults(func=cmd_report)

    layers = sub.add_parser("layers", help="list a model's layers and hook points")
    layers.add_argument("--model", default="resnet20", choices=sorted(MODELS))
    layers.add_argument("--size", type=int, default=None,
                        help="input side (images) or length (sequences); default 32 or 40")
    layers.add_argument("--in-channels", type=int, default=3)
    layers.add_argument("--preset", default="modularity", choices=["blocks", "convs", "relus", "modularity"])
    layers.add_argument("--only-preset", action="store_true", help="show only the preset's layers")
    layers.set_defaults(func=cmd_layers)

    tr = sub.add_parser("train", help="train a model on digits and save a checkpoint")
    tr.add_argument("--model", default="resnet20", choices=sorted(IMAGE_MODELS))
    tr.add_argument("--out", required=True)
    tr.add_argument("--epochs", type=int, default=30)
    tr.add_argument("--size", type=int, default=16)
    tr.add_argument("--seed", type=int, default=0)
    tr.add_argument("--no-progress", action="store_true")
    tr.set_defaults(func=cmd_train)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    matplotlib.use("Agg")  # files only; set here, not at import, so notebooks keep their backend
    try:
        args.func(args)
    except (ValueError, TypeError, FileNotFoundError) as err:
        print(f"repgraph {args.command}: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
