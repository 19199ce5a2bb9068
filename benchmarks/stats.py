"""Latency statistics: median and tail percentiles of a list of samples (milliseconds)."""
from __future__ import annotations

from typing import Sequence

import numpy as np

__all__ = ["summarize", "EMPTY"]

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
