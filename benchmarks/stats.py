"""Latency samples and their statistics: CUDA-event timing of GPU work, median and tail percentiles (milliseconds)."""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

__all__ = ["summarize", "cuda_event_times", "EMPTY"]

EMPTY = {"n": 0, "median_ms": None, "p90_ms": None, "p99_ms": None, "mean_ms": None, "min_ms": None,
         "max_ms": None}


def summarize(samples_ms: Sequence[float]) -> dict:
    """n, median, p90, p99 (linear interpolation between samples: with fewer than ~100 samples p99 is close to the
    maximum), mean, min, max."""
    a = np.asarray(samples_ms, dtype=np.float64)
    if a.size == 0:
        return dict(EMPTY)
    p50, p90, p99 = np.percentile(a, [50, 90, 99])
    return {"n": int(a.size), "median_ms": float(p50), "p90_ms": float(p90), "p99_ms": float(p99),
            "mean_ms": float(a.mean()), "min_ms": float(a.min()), "max_ms": float(a.max())}


def cuda_event_times(fn: Callable[[int], object], n: int) -> list[float]:
    """Milliseconds of fn(0) ... fn(n-1) on the current CUDA stream, each between two events; the events are
    recorded back to back and read after one synchronisation, so timing adds no host round trip per run."""
    import torch

    events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(n)]
    for i, (start, end) in enumerate(events):
        start.record()
        fn(i)
        end.record()
    torch.cuda.synchronize()
    return [start.elapsed_time(end) for start, end in events]
