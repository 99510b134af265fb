"""Extra peak memory of one call in a benchmark's fresh child process (shared by the scripts run as
``python benchmarks/<script>.py``): the kernel's peak-RSS mark is reset (``/proc/self/clear_refs``
← 5, Linux) and ``VmHWM − VmRSS`` at the reset is reported; where the mark cannot be reset,
``ru_maxrss`` minus the RSS before the call (an upper bound, ``exact`` False); on CUDA also the
GPU's peak allocated bytes above the start."""
from __future__ import annotations

import resource
from pathlib import Path

import torch


def _status_kib(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


def extra_peak(run, device) -> dict:
    """``{"host_bytes", "exact", "gpu_bytes"}`` of ``run()`` (its result included, then dropped)."""
    cuda = torch.device(device).type == "cuda"
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        gpu_base = torch.cuda.memory_allocated()
    try:
        Path("/proc/self/clear_refs").write_text("5")  # reset the peak-RSS mark (VmHWM)
        exact = True
    except OSError:
        exact = False
    base = _status_kib("VmRSS") if Path("/proc/self/status").exists() else 0
    result = run()
    if cuda:
        torch.cuda.synchronize()
    peak = _status_kib("VmHWM") if exact else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    del result
    return {"host_bytes": (peak - base) * 1024, "exact": exact,
            "gpu_bytes": torch.cuda.max_memory_allocated() - gpu_base if cuda else None}
