"""Model latency of one backend at one size: warm-up, then timed runs over rotating input sets.

The number of timed runs is `runs`, cut down (to no fewer than `min_runs`) when the warm-up says they would take
longer than `max_seconds`, so that a slow backend cannot stall the whole benchmark. GPU backends are timed with
CUDA events around each run (recorded back to back, read after one synchronisation); CPU backends with the
host's monotonic clock around a synchronous call.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

from benchmarks.backends import Backend
from benchmarks.inputs import Frame
from benchmarks.stats import cuda_event_times, summarize

__all__ = ["Timing", "measure"]


@dataclass
class Timing:
    samples_ms: list
    warmup: int
    runs: int
    input_sets: int
    capped: bool  # runs were cut to fit max_seconds

    def summary(self) -> dict:
        return summarize(self.samples_ms)


def _event_times(backend: Backend, prepared: list, n: int) -> list[float]:
    return cuda_event_times(lambda i: backend.run(prepared[i % len(prepared)]), n)


def _wall_times(backend: Backend, prepared: list, n: int) -> list[float]:
    samples = []
    for i in range(n):
        t0 = time.perf_counter()
        backend.run(prepared[i % len(prepared)])
        backend.synchronize()
        samples.append((time.perf_counter() - t0) * 1e3)
    return samples


class _HostCalls(Backend):
    """`backend` seen through infer(): host arrays in, host array out, synchronous (what an in-process caller
    gets; the serving overhead's denominator)."""

    def __init__(self, backend: Backend):
        self.backend = backend

    def prepare(self, frames):
        return frames

    def run(self, frame):
        return self.backend.infer(frame)

    def release(self):
        self.backend.release()


def measure(backend: Backend, frames: list[Frame], *, warmup: int, runs: int, min_runs: int = 3,
            max_seconds: float = 60.0, host: bool = False) -> Timing:
    """Time `backend` on `frames` (cycled): `warmup` untimed runs (at least one), then up to `runs` timed ones.
    host=True times infer() with the host clock (copies to and from the device included) whatever the backend."""
    if host:
        backend = _HostCalls(backend)
    prepared = backend.prepare(frames)
    try:
        warmup = max(1, warmup)
        t0 = time.perf_counter()
        for i in range(warmup):
            backend.run(prepared[i % len(prepared)])
        backend.synchronize()
        per_run = (time.perf_counter() - t0) / warmup
        n = runs
        if per_run * runs > max_seconds:
            n = max(min_runs, min(runs, int(max_seconds / max(per_run, 1e-9))))
        times = _event_times if backend.timer == "cuda-events" else _wall_times
        samples = times(backend, prepared, n)
        return Timing(samples, warmup, n, len(prepared), n < runs)
    finally:
        del prepared
        backend.release()
