"""The AdnetDCNv2 CPU twin from Python: `dcnv2_forward` runs build/libadnet_dcn_cpu.so through ctypes.

The twin shares its sampling code and FP16 rounding points with the CUDA kernel (dcnv2_cpu.cpp says where it
rounds), so it is what CI tests and what the ONNX Runtime custom op serves on CPU. The library is built on demand
with g++ (`make twin` or the first call) and rebuilt when a source is newer; it is loaded once per process.

    python -m plugins.dcnv2.cpu --build     # build (if stale) and print the library path
"""
from __future__ import annotations

import argparse
import ctypes
import fcntl
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

from plugins.dcnv2.contract import FIELD_DEFAULTS, main as contract_main

__all__ = ["dcnv2_forward", "build_library", "load_library", "LIBRARY", "DTYPES"]

_HERE = Path(__file__).resolve().parent
_ROOT = _HERE.parents[1]
_BUILD = _ROOT / "build"
LIBRARY = _BUILD / "libadnet_dcn_cpu.so"
_CONTRACT_HEADER = _BUILD / "include" / "dcnv2_contract.h"
_SOURCES = ("dcnv2_cpu.cpp", "dcnv2_core.cpp")
_DEPENDS = _SOURCES + ("dcnv2_core.h", "dcnv2_sampling.h", "contract.py", "cpu.py")
# -ffp-contract=off: the sampling arithmetic stays the IEEE float32 sequence written in dcnv2_sampling.h.
CXXFLAGS = ("-O3", "-std=c++17", "-fPIC", "-shared", "-ffp-contract=off", "-Wall", "-Wextra")
OPENMP_FLAG = "-fopenmp"

# dtype name -> (DataType value of dcnv2_core.h, numpy dtype name)
DTYPES = {"float32": (0, "float32"), "float16": (1, "float16")}

_lock = threading.Lock()
_lib: ctypes.CDLL | None = None


def _stale() -> bool:
    if not LIBRARY.exists():
        return True
    built = LIBRARY.stat().st_mtime
    return any((_HERE / name).stat().st_mtime > built for name in _DEPENDS)


def _compile(output: Path, openmp: bool) -> subprocess.CompletedProcess:
    cxx = os.environ.get("CXX", "g++")
    cmd = [cxx, *CXXFLAGS, *([OPENMP_FLAG] if openmp else []), f"-I{_CONTRACT_HEADER.parent}", f"-I{_HERE}",
           *(str(_HERE / s) for s in _SOURCES), "-o", str(output)]
    return subprocess.run(cmd, capture_output=True, text=True)


def build_library(force: bool = False) -> Path:
    """Build build/libadnet_dcn_cpu.so if it is missing or older than its sources; return its path.

    Safe across threads and processes (a file lock; the library is replaced atomically)."""
    if not force and not _stale():
        return LIBRARY
    cxx = os.environ.get("CXX", "g++")
    if shutil.which(cxx) is None:
        raise RuntimeError(f"cannot build the AdnetDCNv2 CPU twin: C++ compiler '{cxx}' not found; install g++ "
                           f"(apt-get install g++) or set CXX")
    _BUILD.mkdir(parents=True, exist_ok=True)
    with open(_BUILD / ".libadnet_dcn_cpu.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not force and not _stale():  # another process built it while we waited
            return LIBRARY
        contract_main(["--header", str(_CONTRACT_HEADER)])
        tmp = LIBRARY.with_name(f".{LIBRARY.name}.{os.getpid()}.tmp")
        result = _compile(tmp, openmp=True)
        if result.returncode != 0 and OPENMP_FLAG in result.stderr:  # no OpenMP runtime: plain loops
            result = _compile(tmp, openmp=False)
        if result.returncode != 0:
            tmp.unlink(missing_ok=True)
            raise RuntimeError(f"building the AdnetDCNv2 CPU twin failed ({' '.join(result.args)}):\n"
                               f"{result.stderr}")
        os.replace(tmp, LIBRARY)
    return LIBRARY


def load_library() -> ctypes.CDLL:
    """The twin library with its C ABI typed (built if needed; loaded once per process)."""
    global _lib
    if _lib is not None:
        return _lib
    with _lock:
        if _lib is None:
            lib = ctypes.CDLL(str(build_library()))
            i32, i64, ptr = ctypes.c_int32, ctypes.c_int64, ctypes.c_void_p
            lib.adnet_dcn_forward_cpu.argtypes = [i32, ptr, ptr, ptr, ptr, ptr, *[i64] * 7, *[i32] * 4]
            lib.adnet_dcn_forward_cpu.restype = i32
            lib.adnet_dcn_last_error.argtypes = []
            lib.adnet_dcn_last_error.restype = ctypes.c_char_p
            dims = ctypes.POINTER(i64)
            lib.adnet_dcn_check.argtypes = [i32, i32, i32, i32, dims, dims, dims, i64]
            lib.adnet_dcn_check.restype = i32
            lib.adnet_dcn_set_field.argtypes = [ctypes.POINTER(i32), ctypes.c_char_p, i32, ptr, i32]
            lib.adnet_dcn_set_field.restype = i32
            lib.adnet_dcn_default_fields.argtypes = [ctypes.POINTER(i32)]
            lib.adnet_dcn_default_fields.restype = None
            lib.adnet_dcn_float_to_half.argtypes = [ptr, ptr, i64]
            lib.adnet_dcn_float_to_half.restype = None
            _lib = lib
    return _lib


def last_error(lib: ctypes.CDLL) -> str:
    return lib.adnet_dcn_last_error().decode(errors="replace")


def _dims(shape) -> ctypes.Array:
    return (ctypes.c_int64 * 4)(*shape)


def dcnv2_forward(x, offset_mask, weight, bias, *, stride: int = FIELD_DEFAULTS["stride"],
                  padding: int = FIELD_DEFAULTS["padding"], dilation: int = FIELD_DEFAULTS["dilation"],
                  deformable_groups: int = FIELD_DEFAULTS["deformable_groups"], dtype: str = "float32", out=None):
    """AdnetDCNv2 forward on the CPU twin: y [B, Cout, Ho, Wo] as a numpy array of `dtype`.

    x [B, C, H, W]; offset_mask [B, 3*dg*kh*kw, Ho, Wo] (offsets, then mask logits; the sigmoid is applied
    here); weight [Cout, C, kh, kw]; bias [Cout]. Inputs are converted to contiguous `dtype` ("float32" or
    "float16") arrays. `out`, if given, is written in place (C-contiguous, `dtype`, the output shape).
    Raises ValueError with the core's message for invalid parameters or shapes.
    """
    import numpy as np

    try:
        name = np.dtype(dtype).name
    except TypeError:
        name = None
    if name not in DTYPES:
        raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    code, np_name = DTYPES[name]
    arrays = []
    for label, value, ndim in (("x", x, 4), ("offset_mask", offset_mask, 4), ("weight", weight, 4),
                               ("bias", bias, 1)):
        a = np.ascontiguousarray(value, dtype=np_name)
        if a.ndim != ndim:
            raise ValueError(f"AdnetDCNv2: {label} must be {ndim}-D, got shape {a.shape}")
        arrays.append(a)
    x, offset_mask, weight, bias = arrays
    lib = load_library()
    if lib.adnet_dcn_check(stride, padding, dilation, deformable_groups, _dims(x.shape), _dims(offset_mask.shape),
                           _dims(weight.shape), bias.shape[0]) != 0:
        raise ValueError(last_error(lib))
    shape = (x.shape[0], weight.shape[0], offset_mask.shape[2], offset_mask.shape[3])
    if out is None:
        out = np.empty(shape, dtype=np_name)
    elif (not isinstance(out, np.ndarray) or out.shape != shape or out.dtype != np.dtype(np_name)
          or not out.flags.c_contiguous or not out.flags.writeable):
        raise ValueError(f"AdnetDCNv2: out must be a writeable C-contiguous {np_name} array of shape {shape}")
    n, c, h, w = x.shape
    ptrs = [a.__array_interface__["data"][0] for a in (x, offset_mask, weight, bias, out)]  # cheaper than .ctypes
    rc = lib.adnet_dcn_forward_cpu(code, *ptrs, n, c, h, w, weight.shape[0], weight.shape[2], weight.shape[3],
                                   stride, padding, dilation, deformable_groups)
    if rc != 0:
        raise ValueError(last_error(lib))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m plugins.dcnv2.cpu", description=__doc__.splitlines()[0])
    parser.add_argument("--build", action="store_true", help="build the twin library if stale, print its path")
    parser.add_argument("--force", action="store_true", help="rebuild even if up to date")
    args = parser.parse_args(argv)
    if not (args.build or args.force):
        parser.print_help()
        return 2
    try:
        print(build_library(force=args.force))
    except RuntimeError as exc:
        print(exc, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
