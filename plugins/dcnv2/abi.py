"""The C ABI of dcnv2_core.h in ctypes, for both libraries (the CPU twin and the CUDA kernels).

A call is described by one `Problem` (AdnetDcnProblem: dtype, the fields, the NCHW dims of x, offset_mask, weight and
the bias length) and one `Tensors` (AdnetDcnTensors: five pointers). `check` runs the core's validation on dims that
may hold -1 (unknown), which is what the Python stand-in plugin does at engine build time.
"""
from __future__ import annotations

import ctypes
from typing import Sequence

from plugins.dcnv2 import contract
from plugins.dcnv2.errors import PluginArgumentError

__all__ = ["DTYPES", "FIELD_TYPES", "Problem", "Tensors", "declare", "make_problem", "check", "last_error"]

# dtype name -> DataType value of dcnv2_core.h
DTYPES = {"float32": 0, "float16": 1}
# Format values: linear = dense NCHW; channels_last = dense NHWC (TensorRT kHWC8 with C % 8 == 0, torch channels_last)
FORMATS = {"linear": 0, "channels_last": 1}
# Variant values: the best kernel for the problem, v1 (NCHW only), v2 (the fast path where it applies)
VARIANTS = {"best": 0, "v1": 1, "v2": 2}
# FieldType values of dcnv2_core.h by TensorRT PluginFieldType name (any other name is kOther).
FIELD_TYPES = {"INT32": 0, "INT64": 1, "INT16": 2, "INT8": 3, "FLOAT32": 4, "FLOAT64": 5, "CHAR": 6}
FIELD_TYPE_OTHER = 7

_Dims = ctypes.c_int64 * 4


class Problem(ctypes.Structure):
    _fields_ = [("dtype", ctypes.c_int32), *[(name, ctypes.c_int32) for name, _ in contract.FIELDS],
                ("x", _Dims), ("offset_mask", _Dims), ("weight", _Dims), ("bias_length", ctypes.c_int64),
                ("x_format", ctypes.c_int32), ("offset_mask_format", ctypes.c_int32), ("y_format", ctypes.c_int32),
                ("variant", ctypes.c_int32)]


class Tensors(ctypes.Structure):
    _fields_ = [("x", ctypes.c_void_p), ("offset_mask", ctypes.c_void_p), ("weight", ctypes.c_void_p),
                ("bias", ctypes.c_void_p), ("y", ctypes.c_void_p)]


def declare(lib: ctypes.CDLL) -> ctypes.CDLL:
    """Type the functions both libraries export (and the launcher that this one has)."""
    i32, i64 = ctypes.c_int32, ctypes.c_int64
    problem, tensors = ctypes.POINTER(Problem), ctypes.POINTER(Tensors)
    for name in ("adnet_dcn_forward_cpu", "adnet_dcn_forward_cuda"):
        if hasattr(lib, name):
            fn = getattr(lib, name)
            fn.argtypes = [problem, tensors] + ([ctypes.c_void_p] if name.endswith("cuda") else [])
            fn.restype = i32
    if hasattr(lib, "adnet_dcn_fast_shared_bytes"):  # the kernels library's launch planner
        lib.adnet_dcn_fast_shared_bytes.argtypes = [problem, i64, ctypes.POINTER(i32)]
        lib.adnet_dcn_fast_shared_bytes.restype = i64
    lib.adnet_dcn_last_error.argtypes = []
    lib.adnet_dcn_last_error.restype = ctypes.c_char_p
    lib.adnet_dcn_check.argtypes = [problem]
    lib.adnet_dcn_check.restype = i32
    lib.adnet_dcn_supports.argtypes = [problem, i32]
    lib.adnet_dcn_supports.restype = i32
    lib.adnet_dcn_output_length.argtypes = [i64, i64, i32, i32, i32]
    lib.adnet_dcn_output_length.restype = i64
    lib.adnet_dcn_set_field.argtypes = [ctypes.POINTER(i32), ctypes.c_char_p, i32, ctypes.c_void_p, i32]
    lib.adnet_dcn_set_field.restype = i32
    lib.adnet_dcn_default_fields.argtypes = [ctypes.POINTER(i32)]
    lib.adnet_dcn_default_fields.restype = None
    return lib


def _code(table: dict, kind: str, name: str) -> int:
    if name not in table:
        raise PluginArgumentError(f"AdnetDCNv2: {kind} must be one of {list(table)}, got {name!r}")
    return table[name]


def make_problem(dtype: str, fields: dict, x: Sequence[int], offset_mask: Sequence[int], weight: Sequence[int],
                 bias_length: int, *, x_format: str = "linear", offset_mask_format: str = "linear",
                 y_format: str = "linear", variant: str = "best") -> Problem:
    """A Problem from a dtype name, the contract fields (missing ones take the defaults), the four logical NCHW
    shapes, the formats of x / offset_mask / y and the kernel variant."""
    values = {**contract.FIELD_DEFAULTS, **fields}
    return Problem(_code(DTYPES, "dtype", dtype), *(int(values[name]) for name, _ in contract.FIELDS), _Dims(*x),
                   _Dims(*offset_mask), _Dims(*weight), int(bias_length),
                   *(_code(FORMATS, "format", f) for f in (x_format, offset_mask_format, y_format)),
                   _code(VARIANTS, "variant", variant))


def last_error(lib: ctypes.CDLL) -> str:
    return lib.adnet_dcn_last_error().decode(errors="replace")


def check(lib: ctypes.CDLL, problem: Problem) -> None:
    """The core's validation of `problem` (-1 dims are skipped); raises PluginArgumentError with its message."""
    if lib.adnet_dcn_check(ctypes.byref(problem)) != 0:
        raise PluginArgumentError(last_error(lib))
