"""Which TensorRT this process uses, picked by a small shim, and the environment checks around it.

Two backends share one nvinfer1-style Python API:
- "tensorrt": TensorRT 10.x / 11.x (`import tensorrt`), in the NGC TensorRT / Triton containers on GPU hosts. This is
  what serves: engines are built with the same version as the Triton server that loads them.
- "rtx": TensorRT-RTX (`import tensorrt_rtx`, PyPI `tensorrt-rtx-cu13`), whose builder works without a GPU (it
  compiles ahead of time for RTX compute capabilities). CI uses it to build real engines on CPU-only machines.

Nothing here imports TensorRT at module load, so every module that uses it stays importable without it.

CLI (used by `make setup`, `make engine`):
  python -m export.trt_compat                      # which TensorRT this interpreter has
  python -m export.trt_compat --require tensorrt   # exit 1 with a message naming the fix (also checks for a GPU)
  python -m export.trt_compat --link-rtx [DIR]     # create the libtensorrt_rtx.so link the RTX ONNX parser needs
"""
from __future__ import annotations

import argparse
import ctypes
import importlib
import importlib.util
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Optional

from client.errors import reports_errors
from export.errors import PipelineError

__all__ = ["BACKENDS", "NGC_RELEASE", "NGC_TENSORRT", "POLYGRAPHY_VERSION", "TensorRT", "TensorRTNotFound", "NoGPU",
           "load", "gpus", "require_gpu", "rtx_link_dir", "link_rtx", "check_rtx_parser", "CONTAINER_HINT", "main"]

BACKENDS = ("tensorrt", "rtx")
_MODULES = {"tensorrt": "tensorrt", "rtx": "tensorrt_rtx"}

# The NGC release the GPU path targets, and the TensorRT its TensorRT and Triton containers ship: Triton 2.51 (the
# release the CPU path runs) is NGC 24.10, with TensorRT 10.5.0. model_repository/server.py serves with this tag.
NGC_RELEASE = "24.10"
NGC_TENSORRT = {"24.10": "10.5.0"}
# The Polygraphy the engine chain is written against (requirements.txt pins the same; a test keeps them equal). The
# containers get it with --no-deps, so that pip keeps their numpy.
POLYGRAPHY_VERSION = "0.53.6"

CONTAINER_HINT = (
    "build inside the NGC TensorRT or Triton container of the same version you serve with, e.g.\n"
    "  docker run --gpus all --rm -v $PWD:/workspace/adnet -w /workspace/adnet nvcr.io/nvidia/tensorrt:<yy.mm>-py3 \\\n"
    f"      bash -c 'pip install --no-deps polygraphy=={POLYGRAPHY_VERSION} && make plugin engine ENGINE_PY=python3'\n"
    "with the <yy.mm> of the nvcr.io/nvidia/tritonserver:<yy.mm>-py3 you serve with (both carry the same TensorRT).\n"
    "On a CPU-only machine, `make engine ENGINE_BACKEND=rtx` builds a check-only engine with TensorRT-RTX")

# The RTX ONNX parser dlopens this name; the wheel ships only the versioned file.
RTX_PARSER_LIB = "libtensorrt_rtx.so"


class TensorRTNotFound(PipelineError):
    """The requested TensorRT Python module cannot be imported (or cannot be used as installed)."""


class NoGPU(PipelineError):
    """No usable NVIDIA GPU: no driver, no device, or the driver refuses."""


@dataclass(frozen=True)
class TensorRT:
    """An imported TensorRT module and what the build code needs to know about it."""

    module: ModuleType
    backend: str  # "tensorrt" | "rtx"

    @property
    def version(self) -> str:
        return str(self.module.__version__)

    @property
    def major(self) -> int:
        return int(self.version.split(".")[0])

    @property
    def name(self) -> str:
        return "TensorRT-RTX" if self.backend == "rtx" else "TensorRT"

    @property
    def strongly_typed_only(self) -> bool:
        """TensorRT 11 and TensorRT-RTX build strongly typed networks only (no FP16 builder flag)."""
        return self.backend == "rtx" or self.major >= 11 or not hasattr(self.module.BuilderFlag, "FP16")

    @property
    def library_soname(self) -> str:
        """The core library a plugin built for this TensorRT links against."""
        return f"libtensorrt_rtx.so.{self.major}" if self.backend == "rtx" else f"libnvinfer.so.{self.major}"

    def __str__(self) -> str:
        return f"{self.name} {self.version}"


def _import(backend: str) -> ModuleType:
    name = _MODULES[backend]
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name != name:  # the package is there but one of its own imports is not
            raise TensorRTNotFound(f"`import {name}` failed ({exc}); reinstall it or {CONTAINER_HINT}") from exc
        raise
    except (ImportError, OSError) as exc:  # e.g. libnvinfer.so.N missing next to the bindings
        raise TensorRTNotFound(f"`import {name}` failed ({exc}); reinstall it or {CONTAINER_HINT}") from exc


def load(backend: str = "auto") -> TensorRT:
    """Import TensorRT: backend "tensorrt", "rtx", or "auto" (`tensorrt` if installed, else `tensorrt_rtx`).

    For "rtx" this also checks that the ONNX parser can find libtensorrt_rtx.so (see check_rtx_parser)."""
    if backend not in ("auto",) + BACKENDS:
        raise PipelineError(f"unknown TensorRT backend {backend!r}; choose auto, tensorrt or rtx")
    candidates = BACKENDS if backend == "auto" else (backend,)
    for candidate in candidates:
        try:
            module = _import(candidate)
        except ModuleNotFoundError:
            continue
        if candidate == "rtx":
            check_rtx_parser()
        return TensorRT(module, candidate)
    if backend == "rtx":
        raise TensorRTNotFound(f"TensorRT-RTX not found: `import tensorrt_rtx` failed in {sys.executable}. It is "
                               f"pinned in requirements.txt: run `make setup` and use .venv/bin/python")
    raise TensorRTNotFound(f"TensorRT not found: `import tensorrt` failed in {sys.executable}; {CONTAINER_HINT}")


def rtx_link_dir() -> Path:
    """Where `make setup` puts the libtensorrt_rtx.so link: <venv>/lib/tensorrt_rtx_links."""
    return Path(sys.prefix) / "lib" / "tensorrt_rtx_links"


def _rtx_versioned_library() -> Path:
    spec = importlib.util.find_spec("tensorrt_rtx_libs")  # located without importing (which loads 230 MB)
    if spec is None or not spec.submodule_search_locations:
        raise TensorRTNotFound("TensorRT-RTX libraries not found (package tensorrt_rtx_libs, from the "
                               "tensorrt-rtx-cu13 wheel): run `make setup`")
    folder = Path(list(spec.submodule_search_locations)[0])
    found = sorted(p for p in folder.glob(RTX_PARSER_LIB + ".*")
                   if re.fullmatch(r"\.\d+", p.name[len(RTX_PARSER_LIB):]))
    if not found:
        raise TensorRTNotFound(f"{folder} has no {RTX_PARSER_LIB}.<N>; reinstall tensorrt-rtx-cu13 (make setup)")
    return found[-1]


def link_rtx(directory: Optional[Path] = None) -> Path:
    """Create (or repair) DIR/libtensorrt_rtx.so -> the wheel's libtensorrt_rtx.so.N; idempotent. Returns the link."""
    directory = Path(directory) if directory else rtx_link_dir()
    target = _rtx_versioned_library()
    directory.mkdir(parents=True, exist_ok=True)
    link = directory / RTX_PARSER_LIB
    relative = Path(os.path.relpath(target, directory))
    if link.is_symlink() and Path(os.readlink(link)) == relative:
        return link
    tmp = directory / f".{RTX_PARSER_LIB}.{os.getpid()}"
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(relative)
    tmp.replace(link)  # atomic: a concurrent reader sees the old or the new link, never none
    return link


def check_rtx_parser() -> None:
    """Raise (instead of letting the process abort later) when the RTX ONNX parser could not dlopen
    libtensorrt_rtx.so. The parser resolves the name through LD_LIBRARY_PATH as it was when the process started,
    so the same lookup is done here."""
    try:
        ctypes.CDLL(RTX_PARSER_LIB)
    except OSError as exc:
        link_dir = rtx_link_dir()
        fix = (f"start Python with LD_LIBRARY_PATH={link_dir} (make test and make engine ENGINE_BACKEND=rtx set it; "
               f"setting it inside a running process has no effect)")
        if not (link_dir / RTX_PARSER_LIB).exists():
            fix = (f"create the link with `{sys.executable} -m export.trt_compat --link-rtx` (make setup does), "
                   f"then {fix}")
        raise TensorRTNotFound(
            f"TensorRT-RTX's ONNX parser needs {RTX_PARSER_LIB} (unversioned) on the library path and aborts the "
            f"process without it; the wheel ships only the versioned file ({exc}). Fix: {fix}") from exc


# CUdevice_attribute values (cuda.h): compute capability major / minor.
_CC_MAJOR, _CC_MINOR = 75, 76
_CUDA_ERROR_NAMES = {100: "CUDA_ERROR_NO_DEVICE", 999: "CUDA_ERROR_UNKNOWN", 35: "CUDA_ERROR_INSUFFICIENT_DRIVER",
                     3: "CUDA_ERROR_NOT_INITIALIZED", 101: "CUDA_ERROR_INVALID_DEVICE"}
_GPU_FIX = ("run on a host with an NVIDIA GPU and driver, inside the container with `docker run --gpus all ...` "
            "(CUDA_VISIBLE_DEVICES must not hide every GPU)")


def gpus() -> list[dict]:
    """[{"index", "name", "compute_capability": "8.6"}] for the visible GPUs, through the CUDA driver API (ctypes,
    no CUDA Python package needed). Raises NoGPU naming the cause."""
    try:
        cuda = ctypes.CDLL("libcuda.so.1")
    except OSError as exc:
        raise NoGPU(f"no GPU: the NVIDIA driver library libcuda.so.1 is not loadable ({exc}); {_GPU_FIX}") from exc

    def check(status: int, call: str) -> None:
        if status != 0:
            name = _CUDA_ERROR_NAMES.get(status, "see cuda.h")
            raise NoGPU(f"no GPU: {call} returned {status} ({name}); {_GPU_FIX}")

    check(cuda.cuInit(0), "cuInit")
    count = ctypes.c_int(0)
    check(cuda.cuDeviceGetCount(ctypes.byref(count)), "cuDeviceGetCount")
    if count.value < 1:
        raise NoGPU(f"no GPU: the driver sees 0 devices; {_GPU_FIX}")
    found = []
    for index in range(count.value):
        device, major, minor = ctypes.c_int(0), ctypes.c_int(0), ctypes.c_int(0)
        name = ctypes.create_string_buffer(256)
        check(cuda.cuDeviceGet(ctypes.byref(device), index), "cuDeviceGet")
        check(cuda.cuDeviceGetName(name, len(name), device), "cuDeviceGetName")
        check(cuda.cuDeviceGetAttribute(ctypes.byref(major), _CC_MAJOR, device), "cuDeviceGetAttribute")
        check(cuda.cuDeviceGetAttribute(ctypes.byref(minor), _CC_MINOR, device), "cuDeviceGetAttribute")
        found.append({"index": index, "name": name.value.decode(errors="replace"),
                      "compute_capability": f"{major.value}.{minor.value}"})
    return found


def require_gpu() -> dict:
    """The GPU TensorRT builds for and runs on (device 0 of the visible ones); raises NoGPU."""
    return gpus()[0]


@reports_errors
def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m export.trt_compat", description=__doc__.splitlines()[0])
    parser.add_argument("--require", choices=("auto",) + BACKENDS,
                        help="fail (exit 1) with a message naming the fix unless this TensorRT is usable; "
                             "'tensorrt' also requires a GPU")
    parser.add_argument("--link-rtx", nargs="?", const="", metavar="DIR",
                        help=f"create DIR/{RTX_PARSER_LIB} -> the wheel's versioned library (default: "
                             f"<venv>/lib/tensorrt_rtx_links)")
    args = parser.parse_args(argv)
    if args.link_rtx is not None:
        link = link_rtx(Path(args.link_rtx) if args.link_rtx else None)
        print(f"{link} -> {os.readlink(link)}")
        return 0
    trt = load(args.require or "auto")
    where = Path(trt.module.__file__).parent
    if trt.backend == "tensorrt" and args.require == "tensorrt":
        gpu = require_gpu()
        print(f"{trt} ({where}); GPU 0: {gpu['name']} (compute capability {gpu['compute_capability']})")
    else:
        print(f"{trt} ({where})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
