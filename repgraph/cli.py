"""The ``repgraph`` command: ``demo``, ``report``, ``prune``, ``layers``, ``train``.

Parse → ``repgraph.workflows`` → print. Only argparse and torch-free tables are imported here;
each command imports what it needs when it runs, so ``repgraph --help`` is instant.
"""
from __future__ import annotations

import argparse
import hashlib
import math
import sys
import time
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


def _output_folder(args) -> None:
    """Set ``args.out`` to the folder this run writes: a fresh ``results/<command>/<time>-<hash>``
    (the hash of the run's arguments) without ``--out``; with ``--out``, that folder, refused when
    it already holds files unless ``--overwrite``, so one run never overwrites another's results."""
    if args.out is None:
        settings = sorted((k, str(v)) for k, v in vars(args).items() if k not in ("func", "out"))
        key = hashlib.sha1(repr(settings).encode()).hexdigest()[:8]
        base = Path("results") / args.command / f"{time.strftime('%Y%m%d-%H%M%S')}-{key}"
        out, n = base, 1
        while out.exists():  # the same arguments within the same second
            n += 1
            out = base.with_name(f"{base.name}-{n}")
    else:
        out = Path(args.out)
        if out.is_dir() and any(out.iterdir()) and not args.overwrite:
            raise ValueError(f"--out {args.out!r} already holds files (another run's results?); pass an empty or "
                             f"new folder, omit --out for a fresh results/{args.command}/<time>-<hash> folder, or "
                             "pass --overwrite to write over them.")
    args.out = str(out)


def _is_user_model(text: str | None) -> bool:
    """Whether ``--model`` names a file or folder rather than a built-in model."""
    return text is not None and (Path(text).exists() or "/" in text or text.endswith((".pt", ".pth")))


def _user_model_and_data(args):
    """The model of ``--model`` (a file or folder) and the ``(X, y)`` of ``--data``."""
    from .datasets.sources import data_source
    from .models.user_model import load_user_model
    from .workflows.user_model import check_input

    if args.data is None:
        raise ValueError(f"--model {args.model}: a model of your own needs --data (digits, mnist1d, cifar10:DIR, "
                         "text:FILE or a tensors .pt file) to run it on.")
    model = load_user_model(args.model, trust_pickle=args.trust_pickle)
    X, y = data_source(args.data, size=args.size or 16, seed=getattr(args, "seed", 0))
    check_input(model, X, args.data)
    return model, (X, y)


def _check_data_needs_model(args) -> None:
    """``--model`` of ``demo``, ``report`` and ``prune`` is a file or folder or the digits ResNet-20,
    and ``--data`` goes with the first only."""
    from .workflows.digits import DEMO_MODEL

    if args.model is not None and not _is_user_model(args.model) and args.model.lower() != DEMO_MODEL:
        raise ValueError(f"--model {args.model!r} is neither an existing file or folder nor the digits "
                         f"ResNet-20 ({DEMO_MODEL!r}): pass the path of a model of your own (a pickled "
                         "nn.Module with --trust-pickle, or a Hugging Face folder), or omit --model.")
    if args.data is not None and not _is_user_model(args.model):
        raise ValueError("--data goes with --model PATH (a model of your own); the digits ResNet-20 runs on digits.")


def _refuse_digits_options(args, options) -> None:
    """The digits workflow's options mean nothing for a user model: refuse them rather than ignore."""
    given = [f"--{name.replace('_', '-')}" for name, default in options.items() if getattr(args, name) != default]
    if given:
        raise ValueError(f"{', '.join(given)} apply to the digits ResNet-20 only, not to --model {args.model}.")


DIGITS_GRAPH_OPTIONS = {"retrain": False, "epochs": 30, "store": None}  # demo's and report's, with their defaults


def cmd_demo(args):
    import pandas as pd

    from .workflows.digits import DEMO_MODEL, demo

    _check_data_needs_model(args)
    _output_folder(args)
    if _is_user_model(args.model):
        return _user_demo(args)

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


def _user_demo(args):
    import pandas as pd

    from .workflows.user_model import plateau_layers

    _refuse_digits_options(args, DIGITS_GRAPH_OPTIONS)
    model, (X, y) = _user_model_and_data(args)
    flags = plateau_layers(model, X, y, tol=args.tol, k=args.k, batch_size=args.batch_size, out=args.out,
                           progress=args.progress)
    out = Path(args.out)
    pd.set_option("display.width", 120)
    print(flags.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    plateau = flags.loc[flags["redundant"], "layer"].tolist()
    print(f"\nRemovable layers on a plateau (delta Q <= {args.tol}): {', '.join(plateau) or 'none'}")
    print(f"Wrote {out / 'modularity.csv'}")


def _user_prune(args):
    from .workflows.user_model import prune_user_model

    if args.method != "layers":
        raise ValueError(f"--method {args.method}: a model of your own is pruned by --method layers only.")
    _refuse_digits_options(args, {"retrain": False, "epochs": 30, "finetune_epochs": 5})
    model, (X, y) = _user_model_and_data(args)
    row = prune_user_model(model, X, y, args.out, tol=args.tol, progress=args.progress)
    if row is None:
        print(f"No removable layer sits on a modularity plateau (delta Q <= {args.tol}); nothing to prune.")
        return
    print(f"removed {row['removed']}: params {row['params_before']:,} -> {row['params_after']:,}, "
          f"FLOPs {row['flops_before']:,} -> {row['flops_after']:,}")
    print(f"Wrote {args.out}/prune.csv and {args.out}/pruned.pt (torch.load(path, weights_only=False))")


def cmd_prune(args):
    from .workflows.digits import prune

    _check_data_needs_model(args)
    _output_folder(args)
    if _is_user_model(args.model):
        return _user_prune(args)

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
    print(f"Wrote {Path(args.out) / 'prune.csv'}")


def cmd_report(args):
    from .workflows.digits import report

    _check_data_needs_model(args)
    _output_folder(args)
    if _is_user_model(args.model):
        return _user_report(args)

    path = report(args.out, size=args.size, seed=args.seed, k=args.k, batch_size=args.batch_size,
                  epochs=args.epochs, retrain=args.retrain, device=args.device, store=args.store,
                  progress=args.progress)
    print(f"Wrote {path} and its figures as PNG")


def _user_report(args):
    from .workflows.user_model import user_model_report

    _refuse_digits_options(args, DIGITS_GRAPH_OPTIONS)
    model, (X, y) = _user_model_and_data(args)
    path = user_model_report(model, X, y, args.out, title=f"{args.model} on {args.data}", k=args.k,
                             batch_size=args.batch_size, parameters={"model": args.model, "data": args.data},
                             progress=args.progress)
    print(f"Wrote {path} and its figures as PNG")


def cmd_layers(args):
    import inspect

    from .models import MODELS, example_input, get_model

    if _is_user_model(args.model):
        model, (X, _) = _user_model_and_data(args)
        _print_layers(args, model, X[:1])
        return
    factory = MODELS.get(args.model.lower())
    sized = args.size is not None and factory is not None and "length" in inspect.signature(factory).parameters
    length = {"length": args.size} if sized else {}  # a sequence classifier built for this length
    try:
        model = get_model(args.model, num_classes=10, in_channels=args.in_channels, **length)
    except ValueError as err:
        if not sized:
            raise
        raise ValueError(f"--size {args.size}: {err}") from None
    if args.data is not None:
        from .datasets.sources import data_source

        x = data_source(args.data, size=args.size or 16)[0][:1]
    else:
        x = example_input(args.model, in_channels=args.in_channels, size=args.size)
    _print_layers(args, model, x)


def _print_layers(args, model, x):
    import pandas as pd

    from .hooks import list_layers, select_layers

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


def _user_model() -> argparse.ArgumentParser:
    """Options of a model of the user's own and the data to run it on."""
    user = argparse.ArgumentParser(add_help=False)
    user.add_argument("--trust-pickle", action="store_true",
                      help="allow --model to be a pickled nn.Module (torch.save(model)): unpickling runs code "
                           "named in the file, so pass it only for a file you trust (TorchScript files and "
                           "Hugging Face folders need no trust)")
    user.add_argument("--data", default=None,
                      help="data to run --model on: digits, mnist1d, cifar10:DIR, text:FILE (byte windows of 64, "
                           "labelled by the next byte) or a .pt file holding {'X': X, 'y': y} (y optional)")
    return user


def _results() -> argparse.ArgumentParser:
    """The output folder's options."""
    results = argparse.ArgumentParser(add_help=False)
    results.add_argument("--overwrite", action="store_true",
                         help="write into an --out folder that already holds files")
    return results


def _model(parser) -> None:
    """``--model`` of the commands that run the digits ResNet-20 or a model of the user's own."""
    parser.add_argument("--model", default=None,
                        help="a model of your own: a pickled nn.Module file (torch.save(model), with --trust-pickle) "
                             "or a Hugging Face folder with config.json (loaded offline); TorchScript is refused (it "
                             "takes no hooks); needs --data. Default: the digits ResNet-20")


def _out(parser, command: str) -> None:
    parser.add_argument("--out", type=_folder, default=None,
                        help=f"output folder; it must be empty or new unless --overwrite (default: a fresh "
                             f"results/{command}/<time>-<hash of the arguments> per run)")


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
    common, model, graph, user, results = _common(), _digits_model(), _graph(), _user_model(), _results()

    demo = sub.add_parser("demo", parents=[common, model, graph, user, results],
                          help="modularity curves of a trained and an untrained ResNet-20 on digits, or of "
                               "--model on --data")
    _model(demo)
    _out(demo, "demo")
    demo.add_argument("--tol", type=_finite, default=0.01, help="delta Q at or below this is a plateau")
    demo.set_defaults(func=cmd_demo)

    pr = sub.add_parser("prune", parents=[common, model, user, results],
                        help="prune the digits ResNet-20 (plateau blocks or filters), fine-tune, report; or "
                             "remove --model's plateau layers")
    _model(pr)
    pr.add_argument("--method", choices=["layers", "filters"], default="layers")
    pr.add_argument("--criterion", default="l1",
                    help="filter criterion for --method filters: l1, clp, fsm, random, hrank, chip, entropy, "
                         "central_filter, cap, or one registered with repgraph.register_criterion")
    pr.add_argument("--ratio", type=_fraction, default=0.4, help="fraction of each pruned conv's filters (ceil)")
    pr.add_argument("--tol", type=_finite, default=0.01, help="delta Q at or below this is a plateau")
    pr.add_argument("--finetune-epochs", type=_integer(0), default=5,
                    help="epochs of fine-tuning after pruning; 0 skips it (default 5)")
    _out(pr, "prune")
    pr.set_defaults(func=cmd_prune)

    rep = sub.add_parser("report", parents=[common, model, graph, user, results],
                         help="an HTML report of every analysis on the digits ResNet-20, or on --model with "
                              "--data")
    _model(rep)
    _out(rep, "report")
    rep.set_defaults(func=cmd_report)

    layers = sub.add_parser("layers", parents=[user], help="list a model's layers and hook points")
    layers.add_argument("--model", default="resnet20",
                        help="a model of repgraph.models.MODELS (default resnet20), or a model file or Hugging "
                             "Face folder of your own (with --data for its example input)")
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
