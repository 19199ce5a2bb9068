"""Phases with their own time budget, each in a child process, the run going on after a failure.

A phase is a function `fn(ctx: PhaseContext) -> dict` named by "module:function". It returns its result (status
"pass" unless the dict says "fail"), raises Skip("reason") when it cannot run here, or raises anything else (a
failure, with the error). Running it in a child process means that a hung kernel is killed at the budget, a crash
(illegal address, abort) is recorded as a failure, and a CUDA context left broken does not poison the next phase.

    results = run_phases(PHASES, out_dir=..., gpu_reason=...)    # {name: {"status": "pass|fail|skip", ...}}
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

__all__ = ["Phase", "PhaseContext", "Skip", "STATUSES", "run_phase", "run_phases", "main"]

ROOT = Path(__file__).resolve().parents[2]
STATUSES = ("pass", "fail", "skip")
# Seconds past the budget before the child is killed: its own soft deadline (ctx.remaining) comes first.
KILL_GRACE_S = 5.0


class Skip(Exception):
    """The phase cannot run on this machine; the message says why (and what would make it run)."""


@dataclass(frozen=True)
class Phase:
    name: str
    target: str  # "module:function"
    budget_s: float
    needs_gpu: bool = False
    needs: tuple[str, ...] = ()  # phases that must have passed
    description: str = ""


@dataclass
class PhaseContext:
    """What a phase gets: its budget, the results of the phases before it, where to write files."""

    name: str
    budget_s: float
    results: dict = field(default_factory=dict)
    out_dir: str = ""
    started: float = field(default_factory=time.monotonic)

    def remaining(self) -> float:
        """Seconds left of the budget (negative when over)."""
        return self.budget_s - (time.monotonic() - self.started)

    def log(self, message: str) -> None:
        print(f"[{self.name}] {message}", file=sys.stderr, flush=True)


def _resolve(target: str) -> Callable[[PhaseContext], dict]:
    module, _, function = target.partition(":")
    return getattr(importlib.import_module(module), function)


def _outcome(fn: Callable[[PhaseContext], dict], ctx: PhaseContext) -> dict:
    """Run fn; its result with "status" set (pass / fail / skip) and "reason" on skip or failure."""
    try:
        result = dict(fn(ctx) or {})
    except Skip as exc:
        return {"status": "skip", "reason": str(exc)}
    except Exception as exc:  # a phase that breaks is a finding, not the end of the run
        return {"status": "fail", "reason": f"{type(exc).__name__}: {exc}"[:2000],
                "traceback": traceback.format_exc(limit=8)}
    result.setdefault("status", "pass")
    if result["status"] not in STATUSES:
        return {"status": "fail", "reason": f"phase returned status {result['status']!r}", "result": result}
    return result


def _child(target: str, context_path: Path, result_path: Path) -> int:
    ctx_data = json.loads(Path(context_path).read_text())
    ctx = PhaseContext(name=ctx_data["name"], budget_s=ctx_data["budget_s"], results=ctx_data["results"],
                       out_dir=ctx_data["out_dir"])
    result = _outcome(_resolve(target), ctx)
    Path(result_path).write_text(json.dumps(result, default=str))
    return 0


def _blocked(phase: Phase, results: dict, gpu_reason: Optional[str]) -> Optional[str]:
    if phase.needs_gpu and gpu_reason:
        return gpu_reason
    for need in phase.needs:
        status = results.get(need, {}).get("status")
        if status != "pass":
            return f"needs the {need} phase, which {'did not run' if status is None else f'ended in {status}'}"
    return None


def run_phase(phase: Phase, results: dict, out_dir: Path, *, python: str = sys.executable) -> dict:
    """Run one phase in a child process under its budget; returns its result with "seconds" and "budget_s"."""
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix=f"gpucheck-{phase.name}-") as tmp:
        context_path, result_path = Path(tmp) / "context.json", Path(tmp) / "result.json"
        context_path.write_text(json.dumps({"name": phase.name, "budget_s": phase.budget_s, "results": results,
                                            "out_dir": str(out_dir)}, default=str))
        cmd = [python, "-m", "benchmarks.gpu.runner", "--child", phase.target, "--context", str(context_path),
               "--result", str(result_path)]
        # Its own process group, so that a timeout also ends what the phase started (nvcc, compute-sanitizer).
        proc = subprocess.Popen(cmd, cwd=ROOT, start_new_session=True)
        try:
            proc.wait(timeout=phase.budget_s + KILL_GRACE_S)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            result = {"status": "fail", "reason": f"exceeded its budget of {phase.budget_s:.0f} s and was killed"}
        else:
            if result_path.is_file():
                result = json.loads(result_path.read_text())
            elif proc.returncode < 0:
                result = {"status": "fail", "reason": f"crashed: {signal.Signals(-proc.returncode).name}"}
            else:
                result = {"status": "fail", "reason": f"exited {proc.returncode} without a result"}
    result["seconds"] = round(time.monotonic() - started, 2)
    result["budget_s"] = phase.budget_s
    return result


def run_phases(phases: Sequence[Phase], *, out_dir: Path, gpu_reason: Callable[[dict], Optional[str]],
               python: str = sys.executable, log: Callable[[str], None] = print) -> dict:
    """Every phase in order; a phase whose GPU or prerequisite is missing is skipped with the reason.
    gpu_reason(results so far) says why there is no usable GPU (None when there is one)."""
    results: dict = {}
    for phase in phases:
        reason = _blocked(phase, results, gpu_reason(results) if phase.needs_gpu else None)
        if reason:
            results[phase.name] = {"status": "skip", "reason": reason, "seconds": 0.0, "budget_s": phase.budget_s}
            log(f"{phase.name}: skip ({reason})")
            continue
        log(f"{phase.name}: running (budget {phase.budget_s:.0f} s) -- {phase.description}")
        results[phase.name] = run_phase(phase, results, out_dir, python=python)
        outcome = results[phase.name]
        log(f"{phase.name}: {outcome['status']} in {outcome['seconds']:.1f} s"
            + (f" ({outcome['reason']})" if outcome.get("reason") else ""))
    return results


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu.runner", description=__doc__.splitlines()[0])
    parser.add_argument("--child", required=True, metavar="MODULE:FUNCTION")
    parser.add_argument("--context", type=Path, required=True)
    parser.add_argument("--result", type=Path, required=True)
    args = parser.parse_args(argv)
    return _child(args.child, args.context, args.result)


if __name__ == "__main__":
    # Through the module's import name, so that phases raise the same Skip class that _outcome catches.
    from benchmarks.gpu import runner

    raise SystemExit(runner.main())
