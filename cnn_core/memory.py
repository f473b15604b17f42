"""Peak memory of a piece of work, measured: what a training step of a run costs (Train page, bench --conv)."""

from __future__ import annotations

import json
import tempfile
import threading
from collections.abc import Callable

import torch

_PROFILING = threading.Lock()  # one profiler at a time in the process: runs of a pair measure their first steps in turn


def peak_bytes(fn: Callable[[], object], device: torch.device) -> int:
    """Peak of the bytes allocated while ``fn`` runs, above what was allocated before it.

    CPU: torch.profiler(profile_memory=True) records every allocation and free of the CPU allocator made by the
    calling thread (checked: another thread training at the same time does not change the number); the peak of
    their running sum. CUDA: the caching allocator's own counter (torch.cuda.max_memory_allocated), which counts
    the whole device — runs sharing a GPU see each other's memory there.
    """
    with _PROFILING:
        if device.type == "cuda":
            torch.cuda.synchronize()
            before = torch.cuda.memory_allocated()
            torch.cuda.reset_peak_memory_stats()
            fn()
            torch.cuda.synchronize()
            return max(0, torch.cuda.max_memory_allocated() - before)
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            fn()
        with tempfile.TemporaryDirectory() as tmp:
            prof.export_chrome_trace(f"{tmp}/trace.json")
            with open(f"{tmp}/trace.json") as fh:
                events = json.load(fh)["traceEvents"]
    live = peak = 0
    for e in sorted((e for e in events if e.get("name") == "[memory]"), key=lambda e: e["ts"]):
        live += e["args"]["Bytes"]  # negative for a free
        peak = max(peak, live)
    return peak
