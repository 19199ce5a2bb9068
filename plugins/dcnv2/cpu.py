"""The AdnetDCNv2 CPU twin from Python: `dcnv2_forward` runs build/libadnet_dcn_cpu.so through ctypes.

The twin shares its sampling code and FP16 rounding points with the CUDA kernel (dcnv2_cpu.cpp says where it
rounds), so it is what CI tests and what the ONNX Runtime custom op serves on CPU. The library is built on demand by
make (`make twin`, or the first call here runs that target; make decides whether it is stale) and loaded once per
process. The same library exports the core's validation and field parsing (plugins/dcnv2/abi.py).

    python -m plugins.dcnv2.cpu --build     # build (if stale) and print the library path
"""
from __future__ import annotations

import argparse
import ctypes
import fcntl
import sys
import threading

from plugins.dcnv2 import abi, build
from plugins.dcnv2.contract import FIELD_DEFAULTS
from plugins.dcnv2.errors import PluginArgumentError, PluginBuildError

__all__ = ["dcnv2_forward", "build_library", "load_library", "LIBRARY", "DTYPES"]

LIBRARY = build.ROOT / "build" / "libadnet_dcn_cpu.so"
# dtype name -> (DataType value of dcnv2_core.h, numpy dtype name)
DTYPES = {name: (code, name) for name, code in abi.DTYPES.items()}

_lock = threading.Lock()
_lib: ctypes.CDLL | None = None


def build_library(force: bool = False):
    """Bring build/libadnet_dcn_cpu.so up to date (`make` target; rebuilt when a source is newer); return its path.

    Safe across threads and processes (a file lock; make replaces the library atomically)."""
    LIBRARY.parent.mkdir(parents=True, exist_ok=True)
    with open(LIBRARY.parent / ".libadnet_dcn_cpu.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        build.make(str(LIBRARY.relative_to(build.ROOT)), force=force)
    return LIBRARY


def load_library() -> ctypes.CDLL:
    """The twin library with its C ABI typed (built if needed; loaded once per process)."""
    global _lib
    if _lib is not None:
        return _lib
    with _lock:
        if _lib is None:
            lib = abi.declare(ctypes.CDLL(str(build_library())))
            lib.adnet_dcn_float_to_half.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64]
            lib.adnet_dcn_float_to_half.restype = None
            _lib = lib
    return _lib


def last_error(lib: ctypes.CDLL) -> str:
    return abi.last_error(lib)


def dcnv2_forward(x, offset_mask, weight, bias, *, stride: int = FIELD_DEFAULTS["stride"],
                  padding: int = FIELD_DEFAULTS["padding"], dilation: int = FIELD_DEFAULTS["dilation"],
                  deformable_groups: int = FIELD_DEFAULTS["deformable_groups"], dtype: str = "float32", out=None):
    """AdnetDCNv2 forward on the CPU twin: y [B, Cout, Ho, Wo] as a numpy array of `dtype`.

    x [B, C, H, W]; offset_mask [B, 3*dg*kh*kw, Ho, Wo] (offsets, then mask logits; the sigmoid is applied
    here); weight [Cout, C, kh, kw]; bias [Cout]. Inputs are converted to contiguous `dtype` ("float32" or
    "float16") arrays. `out`, if given, is written in place (C-contiguous, `dtype`, the output shape).
    Raises PluginArgumentError (a ValueError) with the core's message for invalid parameters or shapes.
    """
    import numpy as np

    try:
        name = np.dtype(dtype).name
    except TypeError:
        name = None
    if name not in DTYPES:
        raise PluginArgumentError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    _, np_name = DTYPES[name]
    arrays = []
    for label, value, ndim in (("x", x, 4), ("offset_mask", offset_mask, 4), ("weight", weight, 4),
                               ("bias", bias, 1)):
        a = np.ascontiguousarray(value, dtype=np_name)
        if a.ndim != ndim:
            raise PluginArgumentError(f"AdnetDCNv2: {label} must be {ndim}-D, got shape {a.shape}")
        arrays.append(a)
    x, offset_mask, weight, bias = arrays
    lib = load_library()
    fields = dict(stride=stride, padding=padding, dilation=dilation, deformable_groups=deformable_groups)
    problem = abi.make_problem(np_name, fields, x.shape, offset_mask.shape, weight.shape, bias.shape[0])
    abi.check(lib, problem)
    shape = (x.shape[0], weight.shape[0], offset_mask.shape[2], offset_mask.shape[3])
    if out is None:
        out = np.empty(shape, dtype=np_name)
    elif (not isinstance(out, np.ndarray) or out.shape != shape or out.dtype != np.dtype(np_name)
          or not out.flags.c_contiguous or not out.flags.writeable):
        raise PluginArgumentError(f"AdnetDCNv2: out must be a writeable C-contiguous {np_name} array of shape "
                                  f"{shape}")
    tensors = abi.Tensors(*(a.__array_interface__["data"][0] for a in (x, offset_mask, weight, bias, out)))
    if lib.adnet_dcn_forward_cpu(ctypes.byref(problem), ctypes.byref(tensors)) != 0:
        raise PluginArgumentError(last_error(lib))
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
    except PluginBuildError as exc:
        print(exc, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
