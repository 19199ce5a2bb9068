"""gpu-check's phases and their budgets (7 minutes in all): what each does is in benchmarks/gpu/__init__.py.

Each is a runner.Phase function fn(ctx) -> dict run in its own process; "rows" in the result are measurements
(the CSV's rows), "summary" is its line in the summary table.
"""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Optional

from benchmarks.gpu.runner import Phase, PhaseContext, Skip

__all__ = ["PHASES", "gpu_reason", "nvcc_path", "nvcc_version", "build_kernels", "env", "build", "correctness",
           "sanitizer", "kernel_speed", "adnet"]

ROOT = Path(__file__).resolve().parents[2]
# nvidia-smi --query-gpu fields, asked one at a time: a field this driver does not know fails alone.
SMI_FIELDS = ("name", "driver_version", "pstate", "clocks.sm", "clocks.max.sm", "clocks.mem", "clocks.max.mem",
              "clocks.applications.graphics", "power.draw", "power.limit", "temperature.gpu", "persistence_mode",
              "memory.total", "ecc.mode.current", "clocks_event_reasons.active", "compute_mode", "mig.mode.current")
SANITIZER_TOOLS = ("memcheck", "racecheck")


def _phase(name: str, budget_s: float, description: str, *, needs_gpu: bool = False, needs: tuple = ()) -> Phase:
    return Phase(name, f"benchmarks.gpu.phases:{name}", budget_s, needs_gpu=needs_gpu, needs=needs,
                 description=description)


PHASES = (
    _phase("env", 30, "GPU, driver, clocks, versions"),
    _phase("build", 120, "the CUDA kernels (make kernels) and the CPU twin"),
    _phase("correctness", 60, "kernel vs float64 and the CPU twin, odd shapes, canaries, side stream",
           needs_gpu=True, needs=("build",)),
    _phase("sanitizer", 60, "compute-sanitizer memcheck + racecheck on the kernel", needs_gpu=True,
           needs=("build",)),
    _phase("kernel_speed", 60, "ours vs im2col+cuBLAS and torchvision at L1/L2/L3, FP16/FP32", needs_gpu=True,
           needs=("build",)),
    _phase("adnet", 90, "whole ADNet at 1060x1900: FP32 (TF32 off/on), FP16, FP16 + our kernel, CUDA graph",
           needs_gpu=True),
)


def gpu_reason(results: dict) -> Optional[str]:
    """Why the GPU phases cannot run, from the env phase's findings (None: a GPU and a CUDA torch are there, or env
    could not tell, in which case the phases find out themselves)."""
    cuda = results.get("env", {}).get("cuda")
    if not cuda or cuda.get("available"):
        return None
    return cuda.get("reason") or "no usable CUDA GPU"


def _run(cmd: list[str], timeout: float = 20.0) -> tuple[int, str]:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return -1, str(exc)
    return proc.returncode, (proc.stdout + proc.stderr).strip()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}"


def nvcc_version(nvcc: Optional[str]) -> Optional[str]:
    if not nvcc:
        return None
    code, text = _run([nvcc, "--version"])
    return next((line.strip() for line in text.splitlines() if "release" in line), None) if code == 0 else None


def nvcc_path() -> Optional[str]:
    """plugins.dcnv2.cuda.find_nvcc(); nvcc on PATH where that cannot look (it may ask make, which a bare box may
    lack)."""
    from plugins.dcnv2.cuda import find_nvcc

    try:
        return find_nvcc()
    except Exception:  # e.g. make missing: build() reports that
        return shutil.which("nvcc")


def _sanitizer_path() -> Optional[str]:
    nvcc = nvcc_path()
    beside = Path(nvcc).parent / "compute-sanitizer" if nvcc else None
    return shutil.which("compute-sanitizer") or (str(beside) if beside and beside.exists() else None)


def _torch_cuda(no_gpu_reason: Optional[str]) -> dict:
    try:
        import torch
    except ImportError as exc:
        return {"available": False, "reason": f"torch is not importable ({exc}): gpu-check needs a CUDA build of "
                                              f"PyTorch"}
    info = {"torch": torch.__version__, "torch_cuda": torch.version.cuda}
    if torch.version.cuda is None:
        return {**info, "available": False,
                "reason": f"torch {torch.__version__} is a CPU-only build: run gpu-check with a Python whose torch is "
                          f"a CUDA build (`make gpu-check GPU_PY=python3`)"}
    if not torch.cuda.is_available():
        return {**info, "available": False,
                "reason": f"torch {torch.__version__} (CUDA {torch.version.cuda}) sees no GPU"
                          + (f": {no_gpu_reason}" if no_gpu_reason else "")}
    props = torch.cuda.get_device_properties(0)
    return {**info, "available": True, "reason": None, "cudnn": torch.backends.cudnn.version(),
            "device": props.name, "compute_capability": f"{props.major}.{props.minor}",
            "sm_count": props.multi_processor_count, "memory_gib": round(props.total_memory / 2 ** 30, 1),
            "l2_cache_mib": round(getattr(props, "L2_cache_size", 0) / 2 ** 20, 1) or None,
            "device_count": torch.cuda.device_count()}


def env(ctx: PhaseContext) -> dict:
    from benchmarks import machine

    info = machine.describe()
    cuda = _torch_cuda(info.get("no_gpu_reason"))
    smi = {}
    if shutil.which("nvidia-smi"):
        for name in SMI_FIELDS:
            code, text = _run(["nvidia-smi", f"--query-gpu={name}", "--format=csv,noheader", "--id=0"], timeout=10)
            smi[name] = text if code == 0 else None
    try:
        import torchvision
        tv = torchvision.__version__
    except Exception as exc:  # a torchvision built for another torch fails with RuntimeError or OSError, not only
        tv = f"not usable: {_first_line(exc)}"
    nvcc = nvcc_path()
    tools = {"nvcc": nvcc, "nvcc_version": nvcc_version(nvcc), "compute_sanitizer": _sanitizer_path(),
             "make": shutil.which("make"), "cxx": shutil.which("g++"), "torchvision": tv}
    if cuda["available"]:
        summary = (f"{cuda['device']} (sm {cuda['compute_capability']}, {cuda['sm_count']} SMs, "
                   f"{cuda['memory_gib']} GiB), driver {smi.get('driver_version')}, SM clock {smi.get('clocks.sm')} "
                   f"of {smi.get('clocks.max.sm')}, torch {cuda['torch']} CUDA {cuda['torch_cuda']}, "
                   f"{tools['nvcc_version'] or 'no nvcc'}")
    else:
        summary = f"no GPU phases: {cuda['reason']}"
    ctx.log(summary)
    return {"cuda": cuda, "nvidia_smi": smi, "tools": tools, "summary": summary}


def build_kernels(timeout: float = 600.0) -> tuple[Path, str]:
    """(kernels library, how it came to be): `make kernels` (make owns the nvcc command lines); without make or nvcc,
    an existing library as it is. Raises Skip when there is neither nvcc nor a library, RuntimeError when the build
    fails or make is missing."""
    from plugins.dcnv2 import cuda

    nvcc, make, library = nvcc_path(), shutil.which("make"), cuda.KERNELS_LIBRARY
    if nvcc and make:
        # DCN_PY: the contract header is generated with this interpreter (a bare box may have no venv, or a venv
        # mounted from another machine whose python does not start here).
        cmd = [make, "--no-print-directory", "kernels", f"NVCC={nvcc}", f"DCN_PY={sys.executable}"]
        code, text = _run(cmd, timeout=timeout)
        if code != 0:
            raise RuntimeError(f"`{' '.join(cmd)}` failed: " + " | ".join(text.splitlines()[-5:]))
        how = "make kernels"
    elif library.is_file():
        how = f"not rebuilt: {'nvcc' if not nvcc else 'make'} not found"
    elif not nvcc:
        raise Skip("nvcc not found (CUDA_HOME, CUDA_PATH, /usr/local/cuda, PATH): install the CUDA toolkit to build "
                   "the kernels")
    else:
        raise RuntimeError("make not found: install make (apt-get install make), which owns the nvcc command lines "
                           "(plugins/dcnv2/dcnv2.mk), or build the kernels elsewhere with `make kernels`")
    if not library.is_file():
        raise RuntimeError(f"{how} ran but {library} is missing")
    return library, how


def build(ctx: PhaseContext) -> dict:
    """The kernels library (build_kernels) and the CPU twin, which the correctness phase compares with."""
    from plugins.dcnv2.cpu import build_library

    try:
        twin, twin_error = str(build_library()), None
    except RuntimeError as exc:
        twin, twin_error = None, str(exc).strip().splitlines()[0]
    library, how = build_kernels(timeout=max(ctx.remaining() - 5, 10))
    version = nvcc_version(nvcc_path())
    summary = (f"{library} ({how}) with {version or 'no nvcc'}; "
               f"CPU twin {'built' if twin else f'not built: {twin_error}'}")
    ctx.log(summary)
    return {"library": str(library), "how": how, "nvcc_version": version, "twin": twin,
            "twin_error": twin_error, "summary": summary}


def _library(ctx: PhaseContext):
    from plugins.dcnv2.cuda import load_kernels

    return load_kernels(Path(ctx.results["build"]["library"]))


def correctness(ctx: PhaseContext) -> dict:
    from benchmarks.gpu import dcn_checks
    from benchmarks.gpu.torch_dcn import kernels

    twin = ctx.results["build"].get("twin") is not None
    rows, complete = [], True
    for variant, kernel in kernels(_library(ctx)):
        checks = [(case.name, dtype, False, lambda c=case, d=dtype: dcn_checks.run_case(kernel, c, d, twin=twin))
                  for case in dcn_checks.CASES for dtype in ("float32", "float16")]
        if kernel.channels_last:
            checks += [(case.name, "float16", True, lambda c=case: dcn_checks.run_case(
                kernel, c, "float16", twin=twin, channels_last=True))
                for case in dcn_checks.CASES + dcn_checks.CHANNELS_LAST_CASES
                if dcn_checks.channels_last_applies(case, "float16")]
        checks.append(("side-stream", "float32", False, lambda: dcn_checks.stream_check(kernel)))
        for name, dtype, channels_last, check in checks:
            if ctx.remaining() < 8:
                complete = False
                break
            try:
                row = check()
            except Exception as exc:  # a check that breaks (refused launch, CUDA error) is a failed check
                row = {"check": name, "dtype": dtype, "layout": "channels-last" if channels_last else "nchw",
                       "passed": False, "failures": f"{type(exc).__name__}: {exc}"}
            rows.append({"variant": variant, **row})
            if not row["passed"]:
                ctx.log(f"{variant} {name} {dtype} {row.get('layout', '')}: FAILED: {row['failures']}")
        rows.append({"variant": variant, **dcn_checks.invalid_arguments_check(kernel)})
    failed = [r for r in rows if not r["passed"]]
    twin_note = "on" if twin else f"off: {ctx.results['build'].get('twin_error')}"
    summary = (f"{len(rows) - len(failed)}/{len(rows)} checks passed ({len(dcn_checks.CASES)} shapes x FP32/FP16, "
               f"FP16 channels-last where a variant takes it, side stream, invalid arguments; twin {twin_note})"
               + ("" if complete else "; ran out of its budget before the end"))
    return {"status": "fail" if failed or not complete else "pass", "summary": summary, "rows": rows}


def sanitizer(ctx: PhaseContext) -> dict:
    exe = _sanitizer_path()
    if exe is None:
        raise Skip("compute-sanitizer not found (it ships with the CUDA toolkit, next to nvcc)")
    from benchmarks.gpu.torch_dcn import variants

    runs = [(tool, variant) for variant in variants() for tool in SANITIZER_TOOLS]
    rows = []
    for number, (tool, variant) in enumerate(runs):
        timeout = ctx.remaining() / (len(runs) - number) - 1
        cmd = [exe, "--tool", tool, "--error-exitcode", "99", "--print-limit", "20", sys.executable, "-m",
               "benchmarks.gpu.sanitizer_case", "--library", ctx.results["build"]["library"], "--variant", variant]
        code, text = _run(cmd, timeout=max(timeout, 5))
        found = re.search(r"(ERROR SUMMARY: \d+ errors?|RACECHECK SUMMARY: [^\n]*)", text)
        row = {"tool": tool, "variant": variant, "exit_code": code,
               "sanitizer_summary": found.group(1) if found else None,
               "passed": code == 0 and "sanitizer case: ok" in text,
               "failures": "" if code == 0 else " | ".join(text.splitlines()[-6:])}
        rows.append(row)
        ctx.log(f"{tool} {variant}: {'ok' if row['passed'] else 'FAILED'} ({row['sanitizer_summary']})")
    failed = [r for r in rows if not r["passed"]]
    summary = ", ".join(f"{r['tool']} {r['variant']}: {r['sanitizer_summary'] or 'exit %d' % r['exit_code']}"
                        for r in rows)
    return {"status": "fail" if failed or not rows else "pass", "rows": rows, "summary": summary}


def _torchvision_ops():
    try:
        import torchvision.ops as ops
    except Exception as exc:  # PyPI's torchvision must match the torch build exactly, else it fails to import
        return None, f"torchvision not usable here ({_first_line(exc)})"
    return ops, None


def kernel_speed(ctx: PhaseContext) -> dict:
    import torch

    from benchmarks.gpu import dcn_speed
    from benchmarks.gpu.torch_dcn import kernels

    found = [k for _, k in kernels(_library(ctx))]
    tv_ops, tv_reason = _torchvision_ops()
    peaks = dcn_speed.device_peaks(iters=10)
    ctx.log(f"copy {peaks['copy_GBps']:.0f} GB/s, matmul FP16 {peaks['matmul_float16_TFLOPs']:.0f} / FP32 "
            f"{peaks['matmul_float32_TFLOPs']:.1f} TFLOP/s")
    rows, complete = [], True
    for dtype in ("float16", "float32"):
        for h, w in dcn_speed.SIZES:
            if ctx.remaining() < 12:
                complete = False
                break
            rows += dcn_speed.bench_size(found, dtype, h, w, iters=20, warmup=3, sets=3, peaks=peaks,
                                         tv_ops=tv_ops, log=ctx.log)
            torch.cuda.empty_cache()
    l1 = [r for r in rows if r["dtype"] == "float16" and (r["H"], r["W"]) == dcn_speed.SIZES[0]
          and r["impl"].startswith("ours") and r["ms"]]
    summary = "; ".join(f"{r['impl']} FP16 L1 {r['ms']:.3f} ms = {r['of_floor']:.0%} of the floor, "
                        f"{r['speedup_vs_im2col'] or 0:.1f}x im2col" for r in l1) or "no FP16 L1 measurement"
    if tv_reason:
        summary += f"; {tv_reason}"
    return {"status": "pass" if complete else "fail", "peaks": peaks, "rows": rows, "torchvision": tv_reason,
            "summary": summary + ("" if complete else "; ran out of its budget before the end")}


def adnet(ctx: PhaseContext) -> dict:
    from benchmarks.gpu import adnet_check
    from benchmarks.gpu.torch_dcn import best_kernel

    kernel, reason = None, ""
    build_result = ctx.results.get("build", {})
    if build_result.get("status") == "pass":
        kernel = best_kernel(_library(ctx))
    else:
        reason = f"needs the build phase ({build_result.get('status')}: {build_result.get('reason', '')})"
    rows = adnet_check.run(kernel, kernel_reason=reason, remaining=ctx.remaining, log=ctx.log)
    bad = [r for r in rows if r.get("status") == "error" or r.get("finite") is False]
    best = adnet_check.fastest(rows)
    summary = ", ".join(f"{r['variant']} {r['median_ms']:.0f} ms" for r in rows if r.get("status") == "ok")
    if best is not None:
        summary += f"; fastest {best['variant']}"
    return {"status": "fail" if bad else "pass", "rows": rows,
            "summary": summary or "no variant ran" + (f" ({bad[0].get('note')})" if bad else "")}
