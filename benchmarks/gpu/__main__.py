"""python -m benchmarks.gpu [--out DIR] [--phases env,build,...] [--list]: gpu-check (see __init__.py).

Exit 0 when no phase failed (skipped phases, e.g. every GPU phase on a machine without one, are no failure), else 1.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Optional

from benchmarks.gpu import phases, results
from benchmarks.gpu.runner import run_phases

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "results"  # committed: runs on a GPU, with the card and the date in the name
NO_GPU_RESULTS = ROOT / "build" / "gpucheck"  # a run whose GPU phases were all skipped is not a result to keep


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help=f"where the JSON and CSV go (default {RESULTS}, or {NO_GPU_RESULTS} "
                                                 f"when no GPU phase ran)")
    parser.add_argument("--phases", help=f"comma-separated subset, in this order: "
                                         f"{','.join(p.name for p in phases.PHASES)}")
    parser.add_argument("--list", action="store_true", help="list the phases and their budgets")
    args = parser.parse_args(argv)
    selected = list(phases.PHASES)
    if args.phases:
        names = [n.strip() for n in args.phases.split(",") if n.strip()]
        unknown = sorted(set(names) - {p.name for p in phases.PHASES})
        if unknown:
            parser.error(f"unknown phase(s) {', '.join(unknown)}; choose from "
                         f"{', '.join(p.name for p in phases.PHASES)}")
        selected = [p for p in phases.PHASES if p.name in names]
    if args.list:
        for phase in phases.PHASES:
            print(f"{phase.name:14} {phase.budget_s:4.0f} s  {phase.description}")
        return 0
    from benchmarks import machine

    started = time.monotonic()
    report = {"format": results.FORMAT, "machine": machine.describe(), "python": sys.executable,
              "total_budget_s": sum(p.budget_s for p in selected)}
    log = lambda message: print(f"gpu-check: {message}", file=sys.stderr, flush=True)  # noqa: E731
    report["phases"] = run_phases(selected, out_dir=args.out or RESULTS, gpu_reason=phases.gpu_reason, log=log)
    report["elapsed_s"] = round(time.monotonic() - started, 1)
    gpu_ran = any(p.needs_gpu and report["phases"][p.name]["status"] != "skip" for p in selected)
    files = results.write(report, args.out or (RESULTS if gpu_ran else NO_GPU_RESULTS))
    print(results.summary_table(report))
    print(f"wrote {files['json']} and {files['csv']}")
    failed = results.failed(report)
    if failed:
        print(f"gpu-check: FAILED phases: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
