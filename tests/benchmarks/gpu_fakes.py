"""Phase functions that pass, fail, hang, crash or skip on purpose: they exercise gpu-check's phase runner
(benchmarks/gpu/runner.py) where the real phases need a GPU. Test-only."""
import os
import time

from benchmarks.gpu.runner import Skip


def passes(ctx):
    return {"summary": "fine", "rows": [{"item": "a", "ms": 1.5}, {"item": "b", "ms": 2.5, "extra": True}]}


def fails(ctx):
    raise ValueError("the kernel wrote NaN")


def reports_failure(ctx):
    return {"status": "fail", "reason": "3 of 28 checks failed"}


def skips(ctx):
    raise Skip("compute-sanitizer not found")


def hangs(ctx):
    time.sleep(600)


def crashes(ctx):
    os.abort()


def reads_previous(ctx):
    return {"saw": ctx.results["first"]["summary"], "budget_s": ctx.budget_s,
            "remaining_ok": 0 < ctx.remaining() <= ctx.budget_s}
