"""Transformer layer pruning on a small byte-level GPT (not part of CI).

Trains ``byte_gpt`` on the train split of ``byte_corpus`` (the Python standard library's own
sources, read offline), computes the per-block redundancy table (``layer_redundancy``) on held-out
validation windows, then for n = 1…4 removes the n blocks chosen by each criterion, by random
draws (several seeds) and the last n blocks, and measures the test perplexity right after the
removal and after a short heal (``heal_lm``). Prints the tables and saves CSVs under ``--out``.
The trained model and every healed result are cached there, so a rerun skips what is done.

    python benchmarks/llm_layer_pruning.py [--n-embd 256] [--train-steps 800] [--heal-steps 200]
                                           [--random-seeds 5] [--threads 1] [--out results/llm_layer_pruning]

The defaults are the README's run (which used ``--threads 2`` on a quiet machine: 65 min).
"""
from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from _bench_common import markdown
from repgraph import block_redundancy, blocks_to_remove, evaluate_lm, heal_lm, remove_layers
from repgraph.datasets.text import byte_corpus, token_windows
from repgraph.models.byte_gpt import byte_gpt

# Criterion → the column blocks_to_remove ranks by (see layer_redundancy for the definitions).
CRITERIA = {
    "Block Influence (ShortGPT)": "block_influence",
    "angular distance, best span (Gromov)": "angular_distance",
    "ΔQ, next-byte labels (Lu)": "delta_q",
    "GBS in/out (Chen)": "gbs_in_out",
    "CKA in/out, debiased": "cka_in_out",
    "relative update norm": "relative_update_norm",
}


def trained_model(args, out: Path):
    """``(model, settings)``: the trained byte_gpt, from ``out`` when a model with the same settings
    was cached there."""
    settings = {"n_layer": args.n_layer, "n_embd": args.n_embd, "n_head": args.n_head, "seq_len": args.seq_len,
                "train_steps": args.train_steps, "train_lr": args.train_lr, "train_batch": args.train_batch,
                "seed": args.seed}
    path = out / "model.pt"
    if path.is_file():
        cached = torch.load(path, map_location="cpu", weights_only=True)
        if cached["settings"] == settings:
            model = byte_gpt(args.n_layer, args.n_embd, args.n_head, n_positions=args.seq_len, seed=args.seed)
            model.load_state_dict(cached["state_dict"])
            print(f"loaded the trained model from {path} ({cached['train_seconds']:.0f} s of training)", flush=True)
            return model.eval(), settings
    model = byte_gpt(args.n_layer, args.n_embd, args.n_head, n_positions=args.seq_len, seed=args.seed)
    start = time.perf_counter()
    history = heal_lm(model, byte_corpus("train"), steps=args.train_steps, lr=args.train_lr,
                      batch_size=args.train_batch, seq_len=args.seq_len, seed=args.seed, progress=args.progress)
    seconds = time.perf_counter() - start
    out.mkdir(parents=True, exist_ok=True)
    torch.save({"settings": settings, "state_dict": model.state_dict(), "train_seconds": seconds}, path)
    history.to_csv(out / "train_history.csv", index=False)
    print(f"trained {sum(p.numel() for p in model.parameters())} parameters for {args.train_steps} steps in "
          f"{seconds:.0f} s; last-50-step loss {history['loss'].iloc[-50:].mean():.4f} nats", flush=True)
    return model, settings


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-layer", type=int, default=8)
    parser.add_argument("--n-embd", type=int, default=256)
    parser.add_argument("--n-head", type=int, default=4)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--train-steps", type=int, default=800)
    parser.add_argument("--train-lr", type=float, default=2e-3)
    parser.add_argument("--train-batch", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--table-windows", type=int, default=500,
                        help="validation windows for the redundancy table (one modularity batch)")
    parser.add_argument("--eval-windows", type=int, default=256, help="test windows for the perplexity")
    parser.add_argument("--max-removed", type=int, default=4)
    parser.add_argument("--heal-steps", type=int, default=200)
    parser.add_argument("--heal-lr", type=float, default=5e-4)
    parser.add_argument("--heal-batch", type=int, default=8)
    parser.add_argument("--random-seeds", type=int, default=5)
    parser.add_argument("--heal-noise-seeds", type=int, default=3,
                        help="heal the last n blocks with this many seeds to show the heal's own spread")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch intra-op threads; 1 by default: on shared, oversubscribed cores OpenMP threads "
                             "spin while they wait for each other (measured here: 10x the CPU time per step with 2)")
    parser.add_argument("--train-only", action="store_true")
    parser.add_argument("--progress", action="store_true", help="show tqdm bars")
    parser.add_argument("--out", default="results/llm_layer_pruning")
    return parser.parse_args(argv)


class Runs:
    """Perplexity right after removing a set of blocks and after healing, cached in ``runs.json`` by
    the removed set (every method that picks the same blocks shares one heal)."""

    def __init__(self, model, args, out: Path, settings: dict):
        self.model, self.args, self.path = model, args, out / "runs.json"
        self.test = token_windows(byte_corpus("test"), args.seq_len, max_windows=args.eval_windows)
        self.train = byte_corpus("train")
        self.settings = settings
        cached = json.loads(self.path.read_text()) if self.path.is_file() else {}
        self.done = cached.get("runs", {}) if cached.get("settings") == settings else {}

    def perplexity(self, model) -> float:
        return evaluate_lm(model, self.test, batch_size=32, progress=False).perplexity

    def __call__(self, blocks, heal: bool = True, seed: int = 0) -> dict:
        key = ",".join(sorted(blocks, key=lambda b: int(b.rsplit(".", 1)[1]))) + (f" heal seed {seed}" if seed else "")
        entry = self.done.get(key, {})
        if "removed" not in entry or (heal and "healed" not in entry):
            pruned = remove_layers(self.model, blocks) if blocks else copy.deepcopy(self.model)
            entry["removed"] = self.perplexity(pruned)
            if heal:
                start = time.perf_counter()
                heal_lm(pruned, self.train, steps=self.args.heal_steps, lr=self.args.heal_lr,
                        batch_size=self.args.heal_batch, seq_len=self.args.seq_len, seed=seed, progress=False)
                entry["healed"] = self.perplexity(pruned)
                print(f"  removed [{key}]: perplexity {entry['removed']:.3f} -> healed {entry['healed']:.3f} "
                      f"({time.perf_counter() - start:.0f} s)", flush=True)
            self.done[key] = entry
            self.path.write_text(json.dumps({"settings": self.settings, "runs": self.done}, indent=1))
        return entry


def short(blocks) -> str:
    return " ".join(b.rsplit(".", 1)[1] for b in blocks)


def main(argv=None):
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    began = time.perf_counter()
    model, settings = trained_model(args, out)
    names = [f"transformer.h.{i}" for i in range(args.n_layer)]

    # the redundancy table on held-out windows: validation text, next-byte labels for ΔQ
    windows = token_windows(byte_corpus("validation"), args.seq_len + 1, max_windows=args.table_windows)
    ids, next_byte = windows[:, :-1], windows[:, -1].numpy()
    start = time.perf_counter()
    table = block_redundancy(model, ids, next_byte, n_max=args.max_removed, similarity_reduce="last_token",
                             modularity_batch_size=len(ids), progress=args.progress)
    print(f"redundancy table of {len(ids)} validation windows in {time.perf_counter() - start:.0f} s", flush=True)

    runs = Runs(model, args, out, {**settings, "heal_steps": args.heal_steps, "heal_lr": args.heal_lr,
                                   "heal_batch": args.heal_batch, "eval_windows": args.eval_windows})
    intact = runs([])
    print(f"intact model: test perplexity {intact['removed']:.3f}; after the same heal {intact['healed']:.3f}",
          flush=True)
    # ground truth for single blocks: the perplexity after removing each block alone (no heal)
    table["perplexity_without_block"] = [runs([b], heal=False)["removed"] for b in names]

    rows = []
    for n in range(1, args.max_removed + 1):
        picks = {label: blocks_to_remove(table, n, by=column) for label, column in CRITERIA.items()}
        picks[f"last {n}"] = names[-n:]
        for label, blocks in picks.items():
            rows.append({"n": n, "method": label, "blocks": short(blocks), **runs(blocks)})
        for seed in range(args.random_seeds):
            blocks = sorted(np.random.default_rng([seed, n]).choice(names, n, replace=False).tolist(),
                            key=names.index)
            rows.append({"n": n, "method": f"random (seed {seed})", "blocks": short(blocks), **runs(blocks)})
        # how much of a difference after healing is the heal's own noise: the last n blocks healed
        # with other seeds of the window draws
        for seed in range(1, args.heal_noise_seeds):
            rows.append({"n": n, "method": f"heal noise (seed {seed})", "blocks": short(names[-n:]),
                         **runs(names[-n:], seed=seed)})
    results = pd.DataFrame(rows)

    # summary: each criterion and the last n; the random draws as mean ± std over the seeds
    summary = []
    for n, group in results.groupby("n", sort=True):
        fixed = group[~group["method"].str.startswith(("random", "heal noise"))]
        summary += [{"n": n, "method": r.method, "blocks": r.blocks, "perplexity removed": f"{r.removed:.2f}",
                     "perplexity healed": f"{r.healed:.3f}"} for r in fixed.itertuples()]
        rand = group[group["method"].str.startswith("random")]
        summary.append({"n": n, "method": f"random ({len(rand)} seeds)", "blocks": " / ".join(rand["blocks"]),
                        "perplexity removed": f"{rand['removed'].mean():.2f} ± {rand['removed'].std(ddof=1):.2f}",
                        "perplexity healed": f"{rand['healed'].mean():.3f} ± {rand['healed'].std(ddof=1):.3f}"})
        noise = pd.concat([fixed[fixed["method"] == f"last {n}"], group[group["method"].str.startswith("heal noise")]])
        if len(noise) > 1:
            summary.append({"n": n, "method": f"last {n}, {len(noise)} heal seeds", "blocks": noise["blocks"].iloc[0],
                            "perplexity removed": f"{noise['removed'].iloc[0]:.2f}",
                            "perplexity healed": f"{noise['healed'].mean():.3f} ± {noise['healed'].std(ddof=1):.3f}"})
    summary = pd.DataFrame(summary)

    per_block = ["delta_q", "block_influence", "angular_distance_1", "relative_update_norm", "gbs_in_out",
                 "cka_in_out"]
    rho = table[per_block + ["perplexity_without_block"]].corr(method="spearman")
    orientation = table.attrs["redundant_when"]
    agreement = pd.DataFrame({"criterion": per_block,
                              "Spearman with perplexity without the block (oriented: 1 = ranks like the damage)":
                              [rho.loc[c, "perplexity_without_block"] * (1 if orientation[c] == "low" else -1)
                               for c in per_block]})

    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "redundancy_table.csv", index=False)
    results.to_csv(out / "runs.csv", index=False)
    report = [f"byte_gpt: {args.n_layer} blocks, width {args.n_embd}, {args.n_head} heads, context {args.seq_len}; "
              f"trained {args.train_steps} steps × {args.train_batch} windows (lr {args.train_lr}, seed {args.seed}) "
              f"on byte_corpus('train') ({len(runs.train)} bytes of the Python standard library's sources).",
              f"Redundancy table on {len(ids)} validation windows of {args.seq_len} bytes; test perplexity on "
              f"{len(runs.test)} test windows ({len(runs.test) * (args.seq_len - 1)} predicted bytes); heal = "
              f"{args.heal_steps} AdamW steps × {args.heal_batch} windows, lr {args.heal_lr} cosine, seed 0; random "
              f"blocks: seeds 0…{args.random_seeds - 1}; spreads are sample std (ddof 1).",
              f"Intact: test perplexity {intact['removed']:.3f}; after the same heal {intact['healed']:.3f}.", "",
              "Redundancy table (layer_redundancy):", "",
              markdown(table[["block"] + per_block + [f"angular_distance_{n}" for n in range(2, args.max_removed + 1)]
                             + ["perplexity_without_block"]].assign(block=lambda f: f["block"].map(
                                 lambda b: b.rsplit(".", 1)[1])), 3), "",
              "Best spans (angular distance): " + "; ".join(
                  f"n={n}: blocks {short(v['blocks'])} (d = {v['angular_distance']:.3f})"
                  for n, v in table.attrs["best_spans"].items()), "",
              "Spearman rank correlations between the criteria over the blocks:", "",
              markdown(rho.reset_index(names="criterion"), 2), "",
              markdown(agreement, 2), "",
              "Removing n blocks (test perplexity right after removal and after the heal):", "",
              markdown(summary), "",
              f"Total time {time.perf_counter() - began:.0f} s (threads: {args.threads})."]
    (out / "report.md").write_text("\n".join(report) + "\n")
    print("\n".join(report))


if __name__ == "__main__":
    main()
