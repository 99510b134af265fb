"""The ``repgraph`` command: ``demo``, ``report``, ``prune``, ``layers``, ``train``.

Parse → ``repgraph.workflows`` → print. Only argparse and torch-free tables are imported here;
each command imports what it needs when it runs, so ``repgraph --help`` is instant.
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from . import __version__
from .hooks.presets import PRESETS


def cmd_train(args):
    from .workflows.digits import save_digits_model, train_digits_model

    model, acc = train_digits_model(args.model, size=args.size, epochs=args.epochs, seed=args.seed,
                                    device=args.device, progress=args.progress)
    path = save_digits_model(model, args.out, model_name=args.model, size=args.size, epochs=args.epochs,
                             seed=args.seed, accuracy=acc)
    print(f"{args.model} on digits {args.size}x{args.size}: test accuracy {acc:.4f}; saved {path}")


def cmd_demo(args):
    import pandas as pd

    from .workflows.digits import DEMO_MODEL, demo

    result = demo(args.out, size=args.size, seed=args.seed, k=args.k, batch_size=args.batch_size, tol=args.tol,
                  epochs=args.epochs, retrain=args.retrain, device=args.device, store=args.store,
                  progress=args.progress)
    trained, untrained = result.curves["trained"], result.curves["untrained"]
    pd.set_option("display.width", 120)
    print(f"\n{DEMO_MODEL} ({result.source}), digits {args.size}x{args.size}, test accuracy {result.accuracy:.4f}")
    print(f"Sample graphs: cosine kNN, k={args.k}, batches of {args.batch_size} test samples "
          f"({trained['n_samples'].iloc[0]} samples used)\n")
    merged = trained[["layer", "modularity", "std"]].merge(untrained[["layer", "modularity"]], on="layer",
                                                           suffixes=("_trained", "_untrained"))
    merged["delta_q"] = result.flags["delta_q"].round(4)
    merged["plateau"] = result.flags["redundant"]
    print(merged.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    plateau = result.flags.loc[result.flags["redundant"], "layer"].tolist()
    print(f"\nFinal modularity: trained {trained['modularity'].iloc[-1]:.4f}, "
          f"untrained {untrained['modularity'].iloc[-1]:.4f}")
    print(f"Removable blocks on a plateau (delta Q <= {args.tol}): {', '.join(plateau) or 'none'}")
    print(f"Wrote {', '.join(str(p) for p in result.files)}")


def cmd_prune(args):
    from .workflows.digits import prune

    row = prune(args.out, method=args.method, criterion=args.criterion, ratio=args.ratio, tol=args.tol,
                finetune_epochs=args.finetune_epochs, size=args.size, seed=args.seed, epochs=args.epochs,
                retrain=args.retrain, device=args.device, progress=args.progress)
    if row is None:
        print(f"No removable block sits on a modularity plateau (delta Q <= {args.tol}); nothing to prune.")
        return
    print(f"\n{row['name']}")
    print(f"params {row['params_before']:,} -> {row['params_after']:,} ({row['params_reduction']:.1%} fewer), "
          f"FLOPs {row['flops_before']:,} -> {row['flops_after']:,} ({row['flops_reduction']:.1%} fewer)")
    print(f"test accuracy {row['accuracy_before']:.4f} -> {row['accuracy_pruned']:.4f} after pruning -> "
          f"{row['accuracy_finetuned']:.4f} after {args.finetune_epochs} fine-tuning epochs")
    print(f"Wrote {args.out}/prune.csv")


def cmd_report(args):
    from .workflows.digits import report

    path = report(args.out, size=args.size, seed=args.seed, k=args.k, batch_size=args.batch_size,
                  epochs=args.epochs, retrain=args.retrain, device=args.device, store=args.store,
                  progress=args.progress)
    print(f"Wrote {path} and its figures as PNG")


def cmd_layers(args):
    import inspect

    import pandas as pd

    from .hooks import list_layers, select_layers
    from .models import MODELS, example_input, get_model

    factory = MODELS.get(args.model.lower())
    sized = args.size is not None and factory is not None and "length" in inspect.signature(factory).parameters
    length = {"length": args.size} if sized else {}  # a sequence classifier built for this length
    try:
        model = get_model(args.model, num_classes=10, in_channels=args.in_channels, **length)
    except ValueError as err:
        if not sized:
            raise
        raise ValueError(f"--size {args.size}: {err}") from None
    x = example_input(args.model, in_channels=args.in_channels, size=args.size)
    table = list_layers(model, x)
    table[args.preset] = table["name"].isin(set(select_layers(model, args.preset)))
    if args.only_preset:
        table = table[table[args.preset]]
    pd.set_option("display.width", 160)
    print(table.to_string(index=False))


def _integer(minimum: int, why: str = ""):
    """An argparse type: an integer ``>= minimum``."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < minimum:
            raise argparse.ArgumentTypeError(f"must be an integer >= {minimum}{why}, got {text!r}")
        return value
    return parse


def _finite(text: str) -> float:
    """An argparse type: a finite number."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def _fraction(text: str) -> float:
    """An argparse type: a fraction in [0, 1)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"must be a fraction in [0, 1), got {text!r}")
    return value


def _check_ancestors(path: Path, text: str) -> None:
    """The nearest existing folder above ``path`` must be a folder, so the missing ones can be made."""
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise argparse.ArgumentTypeError(f"{text!r} lies under {str(parent)!r}, which is a file, not a "
                                                 "folder; pass a path under a folder")
            return


def _folder(text: str) -> str:
    """An argparse type: a folder that exists or can be made (created when the command runs)."""
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} is a file, not a folder; pass a folder (made if missing)")
    _check_ancestors(path, text)
    return text


def _file(text: str) -> str:
    """An argparse type: a file path that can be written (its missing folders are made)."""
    path = Path(text)
    if not text or path.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} is a folder, not a file; pass a file path such as "
                                         f"{str(path / 'model.pt')!r}")
    _check_ancestors(path, text)
    return text


COUNT = _integer(1)
DIGITS_SIZE = _integer(8, " (the digits' own resolution is 8)")
SEED = _integer(0)


def _common() -> argparse.ArgumentParser:
    """Options every command shares."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--size", type=DIGITS_SIZE, default=16, help="digits are resized to size x size (default 16)")
    common.add_argument("--seed", type=SEED, default=0, help="seed of the data split and of training (default 0)")
    common.add_argument("--device", default=None, help="where the model runs and graphs are built: cpu, "
                        "cuda, cuda:1 (default: cpu)")
    common.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")
    return common


def _digits_model() -> argparse.ArgumentParser:
    """Options of the commands that use the digits ResNet-20."""
    model = argparse.ArgumentParser(add_help=False)
    model.add_argument("--retrain", action="store_true", help="train instead of loading the shipped checkpoint")
    model.add_argument("--epochs", type=COUNT, default=30, help="training epochs when no checkpoint is used")
    return model


def _graph() -> argparse.ArgumentParser:
    """Options of the sample graphs."""
    graph = argparse.ArgumentParser(add_help=False)
    graph.add_argument("--k", type=COUNT, default=3, help="neighbours per sample in the kNN graph (default 3)")
    graph.add_argument("--batch-size", type=_integer(2), default=270,
                       help="samples per sample graph (default 270: two batches of the 540 test digits; "
                            "the paper uses 500 on CIFAR)")
    graph.add_argument("--store", type=_folder, default=None,
                       help="folder for activation stores: captures stream to disk and are reused next time")
    return graph


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="repgraph", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"repgraph {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    common, model, graph = _common(), _digits_model(), _graph()

    demo = sub.add_parser("demo", parents=[common, model, graph],
                          help="modularity curves of a trained and an untrained ResNet-20 on digits")
    demo.add_argument("--out", type=_folder, default="results/demo", help="output folder (default: results/demo)")
    demo.add_argument("--tol", type=_finite, default=0.01, help="delta Q at or below this is a plateau")
    demo.set_defaults(func=cmd_demo)

    pr = sub.add_parser("prune", parents=[common, model],
                        help="prune the digits ResNet-20 (plateau blocks or filters), fine-tune, report")
    pr.add_argument("--method", choices=["layers", "filters"], default="layers")
    pr.add_argument("--criterion", default="l1",
                    help="filter criterion for --method filters: l1, clp, fsm, random, hrank, chip, entropy, "
                         "central_filter, cap, or one registered with repgraph.register_criterion")
    pr.add_argument("--ratio", type=_fraction, default=0.4, help="fraction of each pruned conv's filters (ceil)")
    pr.add_argument("--tol", type=_finite, default=0.01, help="delta Q at or below this is a plateau")
    pr.add_argument("--finetune-epochs", type=_integer(0), default=5,
                    help="epochs of fine-tuning after pruning; 0 skips it (default 5)")
    pr.add_argument("--out", type=_folder, default="results/prune")
    pr.set_defaults(func=cmd_prune)

    rep = sub.add_parser("report", parents=[common, model, graph],
                         help="an HTML report of every analysis on the digits ResNet-20")
    rep.add_argument("--out", type=_folder, default="results/report")
    rep.set_defaults(func=cmd_report)

    layers = sub.add_parser("layers", help="list a model's layers and hook points")
    layers.add_argument("--model", default="resnet20", help="a model of repgraph.models.MODELS (default resnet20)")
    layers.add_argument("--size", type=COUNT, default=None,
                        help="input side (images) or length (sequences); default 32 or 40")
    layers.add_argument("--in-channels", type=COUNT, default=3)
    layers.add_argument("--preset", default="modularity", choices=list(PRESETS),
                        help="; ".join(f"{name}: {text}" for name, text in PRESETS.items()))
    layers.add_argument("--only-preset", action="store_true", help="show only the preset's layers")
    layers.set_defaults(func=cmd_layers)

    tr = sub.add_parser("train", parents=[common], help="train a model on digits and save a checkpoint")
    tr.add_argument("--model", default="resnet20", help="a model of repgraph.models.MODELS (default resnet20)")
    tr.add_argument("--out", type=_file, required=True, help="the checkpoint file to write")
    tr.add_argument("--epochs", type=COUNT, default=30)
    tr.set_defaults(func=cmd_train)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    import matplotlib

    matplotlib.use("Agg")  # files only; set here, not at import, so notebooks keep their backend
    try:
        args.func(args)
    except (ValueError, TypeError, OSError) as err:  # OSError: a path the system refuses
        print(f"repgraph {args.command}: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
