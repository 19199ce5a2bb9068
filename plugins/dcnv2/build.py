"""make is the one owner of every compile in plugins/dcnv2 (plugins/dcnv2/dcnv2.mk, plugin.mk): this module only
runs its targets and reads its toolchain lookup, so compiler flags and the CUDA location live in one place.

    build.make("build/libadnet_dcn_cpu.so")   # brings a target up to date (raises PluginBuildError)
    build.config()["NVCC"]                     # nvcc as make resolves it ("" when absent)
"""
from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Mapping

from plugins.dcnv2.errors import PluginBuildError

ROOT = Path(__file__).resolve().parents[2]


def _command(targets, variables: Mapping[str, str], force: bool) -> list[str]:
    make = shutil.which("make")
    if make is None:
        raise PluginBuildError("building plugins/dcnv2 needs GNU make, which is not installed: apt-get install make")
    # The contract header is generated with this interpreter (it has the project on its path).
    assigned = {"PYTHON_SYS": sys.executable, "PY": sys.executable, **variables}
    return [make, "--no-print-directory", "-s", "-C", str(ROOT), *(["-B"] if force else []),
            *(f"{k}={v}" for k, v in assigned.items()), *targets]


def make(*targets: str, force: bool = False, **variables: str) -> str:
    """Run `make TARGETS VAR=VALUE...` in the repository; return its output, raise PluginBuildError on failure."""
    result = subprocess.run(_command(targets, variables, force), capture_output=True, text=True,
                            env={**os.environ, "MAKEFLAGS": ""})
    if result.returncode != 0:
        raise PluginBuildError(f"`make {' '.join(targets)}` failed:\n{(result.stderr or result.stdout).strip()}")
    return result.stdout + result.stderr


@functools.lru_cache(maxsize=None)
def config() -> dict[str, str]:
    """The toolchain as dcnv2.mk resolves it (NVCC, CUDA_INCLUDE, CXX, library paths)."""
    lines = make("dcn-config").splitlines()
    return dict(line.split("=", 1) for line in lines if "=" in line)
