"""Costs of trustworthy capture: peak memory, the reuse check, resuming a killed capture.

    python benchmarks/bench_store.py memory   [--n 2048]   # in-memory capture: peak RSS, time vs bare forward
    python benchmarks/bench_store.py store    [--gb 2]     # store capture of >= GB GiB: peak RSS stays near a batch
    python benchmarks/bench_store.py reuse    [--n 2048]   # reuse check (hash all data + verify checksums) vs capture
    python benchmarks/bench_store.py resume   [--n 2048]   # kill -9 at 50 %, then resume, vs a full capture

Peak memory is the rise of the process's peak resident set (``VmHWM`` of ``/proc/self/status``,
reset through ``/proc/self/clear_refs``, Linux only) above its size before the capture: it
counts torch's buffers, which tracemalloc does not see. Each measurement runs in a forked child.
Times are wall clock, best of ``--repeat``; on a shared machine read the ratios, not the seconds.
``memory`` runs against any repgraph on PYTHONPATH (the old one too), for before/after numbers.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import re
import shutil
import signal
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

import repgraph as rg
from repgraph.models import resnet20


def _status(key: str) -> int:
    return int(re.search(key + r":\s+(\d+) kB", Path("/proc/self/status").read_text()).group(1)) * 1024


def _reset_peak():
    Path("/proc/self/clear_refs").write_text("5")


def _in_child(fn, *args):
    ctx = multiprocessing.get_context("fork")
    parent, child = ctx.Pipe()

    def run():
        torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "1")))
        child.send(fn(*args))
    proc = ctx.Process(target=run)
    proc.start()
    result = parent.recv()
    proc.join()
    return result


def _images(n):
    return torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(0))


def _resnet():
    torch.manual_seed(0)
    return resnet20().eval()


def _best(fn, repeat):
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def memory(n, repeat, batch_size=256):
    """In-memory capture of ResNet-20's blocks (flatten) on n CIFAR-shaped images."""
    def child():
        model, X = _resnet(), _images(n)
        rg.capture_activations(model, X[:batch_size], layers="blocks", progress=False, batch_size=batch_size)
        _reset_peak()
        before = _status("VmRSS")
        acts = rg.capture_activations(model, X, layers="blocks", progress=False, batch_size=batch_size)
        growth = _status("VmHWM") - before
        result = sum(a.nbytes for a in acts.values())
        del acts

        def bare():
            with torch.no_grad():
                for i in range(0, n, batch_size):
                    model(X[i:i + batch_size])
        t_bare = _best(bare, repeat)
        t_capture = _best(lambda: rg.capture_activations(model, X, layers="blocks", progress=False,
                                                         batch_size=batch_size), repeat)
        return {"n": n, "result_MiB": result / 2**20, "peak_growth_MiB": growth / 2**20,
                "peak_over_result": growth / result, "bare_forward_s": t_bare, "capture_s": t_capture,
                "capture_over_bare": t_capture / t_bare}
    return _in_child(child)


class Wide(nn.Module):
    def __init__(self, width):
        super().__init__()
        torch.manual_seed(0)
        self.lin = nn.Linear(8, width)

    def forward(self, x):
        return self.lin(x)


def store(gb, batch_size=512, width=8192):
    """Store capture of >= gb GiB of float32 activations (one layer of ``width`` features)."""
    n = int(gb * 2**30 // (width * 4)) + 1

    def child():
        folder = Path(tempfile.mkdtemp()) / "acts"
        model, X = Wide(width), torch.randn(n, 8, generator=torch.Generator().manual_seed(0))
        rg.capture_activations(model, X[:batch_size], layers=["lin"], batch_size=batch_size, progress=False)
        _reset_peak()  # after one warm-up batch, as in ``memory``
        before = _status("VmRSS")
        start = time.perf_counter()
        acts = rg.capture_activations(model, X, layers=["lin"], store=folder, batch_size=batch_size, progress=False)
        seconds = time.perf_counter() - start
        growth = _status("VmHWM") - before
        size = acts["lin"].nbytes
        start = time.perf_counter()
        rg.capture_activations(model, X, layers=["lin"], store=folder, batch_size=batch_size, progress=False)
        reuse = time.perf_counter() - start
        shutil.rmtree(folder.parent)
        return {"store_GiB": size / 2**30, "batch_MiB": batch_size * width * 4 / 2**20,
                "peak_growth_MiB": growth / 2**20, "capture_s": seconds, "reuse_check_s": reuse,
                "reuse_over_capture": reuse / seconds}
    return _in_child(child)


def reuse(n, repeat, batch_size=256):
    """Capture ResNet-20's blocks into a store, then time the reuse check (data hash + CRC verify)."""
    def child():
        model, X = _resnet(), _images(n)
        y = torch.arange(n) % 10
        times = {"capture_s": [], "reuse_check_s": []}
        for _ in range(repeat):
            folder = Path(tempfile.mkdtemp()) / "acts"
            for key in times:
                start = time.perf_counter()
                rg.capture_activations(model, (X, y), layers="blocks", store=folder, batch_size=batch_size,
                                       progress=False)
                times[key].append(time.perf_counter() - start)
            size = sum(p.stat().st_size for p in folder.iterdir())
            shutil.rmtree(folder.parent)
        out = {k: min(v) for k, v in times.items()}
        return {"n": n, "store_MiB": size / 2**20, **out, "reuse_over_capture": out["reuse_check_s"] / out["capture_s"]}
    return _in_child(child)


def _capture_timed(folder, n, batch_size, out):
    model, X = _resnet(), _images(n)
    with torch.no_grad():
        model(X[:batch_size])  # warm up (first-call kernel set-up), in both timed children alike
    start = time.perf_counter()
    rg.capture_activations(model, X, layers="blocks", store=folder, batch_size=batch_size, progress=False)
    Path(out).write_text(str(time.perf_counter() - start))


def resume(n, batch_size=128):
    """kill -9 a store capture once half its samples are committed; time the capture that resumes."""
    tmp = Path(tempfile.mkdtemp())
    ctx = multiprocessing.get_context("fork")

    def run(folder, out):
        proc = ctx.Process(target=lambda: (torch.set_num_threads(1), _capture_timed(folder, n, batch_size, out)))
        proc.start()
        return proc

    full = run(tmp / "full", tmp / "t_full")
    full.join()
    killed = run(tmp / "acts", tmp / "t_killed")
    progress = tmp / "acts.partial" / "manifest.json"
    while True:
        try:
            if json.loads(progress.read_text())["committed"] >= n // 2:
                break
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.005)
    os.kill(killed.pid, signal.SIGKILL)
    killed.join()
    committed = json.loads(progress.read_text())["committed"]
    again = run(tmp / "acts", tmp / "t_resumed")
    again.join()
    t_full, t_resumed = float((tmp / "t_full").read_text()), float((tmp / "t_resumed").read_text())
    shutil.rmtree(tmp)
    return {"n": n, "killed_at_sample": committed, "full_capture_s": t_full, "resumed_capture_s": t_resumed,
            "saved_fraction": 1 - t_resumed / t_full}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["memory", "store", "reuse", "resume"])
    parser.add_argument("--n", type=int, default=2048)
    parser.add_argument("--gb", type=float, default=2.0)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    result = {"memory": lambda: memory(args.n, args.repeat), "store": lambda: store(args.gb),
              "reuse": lambda: reuse(args.n, args.repeat), "resume": lambda: resume(args.n)}[args.what]()
    print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in result.items()}))


if __name__ == "__main__":
    main()
