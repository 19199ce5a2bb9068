"""The machine a result belongs to: CPU and GPU names, core count, versions, date, git commit, load.

Every result file carries this block, and its name carries `label()` (e.g. `cpu-2c-intel-xeon-processor`,
`nvidia-h100-80gb-hbm3`), so that numbers from different machines are never mixed up.
"""
from __future__ import annotations

import datetime
import importlib.metadata
import os
import platform
import re
import subprocess
from pathlib import Path
from typing import Optional

__all__ = ["describe", "label", "gpu", "cpu_name", "busy_warning", "load_average"]

ROOT = Path(__file__).resolve().parents[1]
# Distributions whose versions a result depends on (absent ones are recorded as None).
PACKAGES = ("torch", "numpy", "onnx", "onnxruntime", "onnxruntime-gpu", "onnxruntime-extensions", "tritonclient",
            "nvidia-pytriton", "tensorrt", "tensorrt-cu12", "tensorrt-cu13", "cuda-python", "matplotlib")
# nvidia-pytriton 0.7.0 ships Triton Inference Server 2.51.0 (the CPU server of model_repository/server.py).
TRITON_OF_PYTRITON = {"0.7.0": "2.51.0"}


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_count() -> int:
    """CPUs this process may run on (the affinity mask; a container's limit), not the host's total."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def gpu() -> tuple[Optional[dict], Optional[str]]:
    """(GPU 0 as {"name", "compute_capability", "index"}, None) or (None, why there is none); through the CUDA
    driver (export.trt_compat.gpus), so no CUDA build of torch is needed to see the GPU."""
    from export.trt_compat import NoGPU, gpus

    try:
        return gpus()[0], None
    except NoGPU as exc:
        return None, str(exc)


def load_average() -> Optional[float]:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def _versions() -> dict:
    found = {}
    for name in PACKAGES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    pytriton = found.get("nvidia-pytriton")
    if pytriton:
        found["tritonserver (CPU, nvidia-pytriton)"] = TRITON_OF_PYTRITON.get(pytriton, "unknown")
    return found


def _git() -> dict:
    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True,
                                  timeout=10).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            return ""

    commit = git("rev-parse", "--short=12", "HEAD")
    dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    return {"commit": commit or None, "dirty": dirty if commit else None}


def describe() -> dict:
    """The machine block of a result file."""
    device, no_gpu = gpu()
    try:
        memory_gib = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2 ** 30, 1)
    except (ValueError, OSError, AttributeError):
        memory_gib = None
    info = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "hostname": platform.node(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "cpu": cpu_name(),
        "cpu_cores": cpu_count(),
        "memory_gib": memory_gib,
        "gpu": device["name"] if device else None,
        "gpu_compute_capability": device["compute_capability"] if device else None,
        "no_gpu_reason": no_gpu,
        "versions": _versions(),
        "git": _git(),
        "load_average_start": load_average(),
    }
    info["label"] = label(info)
    return info


def _slug(text: str) -> str:
    text = re.sub(r"\((r|tm|c)\)", "", text.lower())
    text = re.sub(r"\b(cpu|processor|@.*)$", "", text.strip())
    return re.sub(r"[^a-z0-9]+", "-", text).strip("-")[:48] or "unknown"


def label(info: dict) -> str:
    """A file-name-safe machine label: the GPU's name on GPU machines, else cpu-<cores>c-<model>."""
    if info.get("gpu"):
        return _slug(info["gpu"])
    return f"cpu-{info['cpu_cores']}c-{_slug(info['cpu'])}"


def busy_warning(info: dict) -> Optional[str]:
    """A warning when the machine was loaded by other work while measuring (1-minute load average above the core
    count at the start or the end): timings are then inflated and noisier."""
    loads = [v for v in (info.get("load_average_start"), info.get("load_average_end")) if v is not None]
    cores = info.get("cpu_cores") or 1
    if loads and max(loads) > cores:
        return (f"the machine was busy with other work (1-min load average up to {max(loads):.1f} on {cores} "
                f"cores): CPU timings are inflated and noisy; re-run on an idle machine for reference numbers")
    return None


def process_memory_mib(pid: int) -> dict[str, float]:
    """{"VmRSS": resident now, "VmHWM": peak resident} of process `pid` in MiB, from /proc/PID/status; {} when the
    process is gone."""
    fields = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                fields[key] = int(value.split()[0]) / 1024
    except OSError:
        pass
    return fields
