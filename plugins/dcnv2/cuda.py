"""The only way Python reaches the AdnetDCNv2 CUDA kernels (`make kernels` -> build/libadnet_dcn_kernels.so).

Used by the GPU test, the kernel benchmark and gpu-check. Loading needs the NVIDIA driver (the library links cudart
statically), building needs nvcc (make finds it: `find_nvcc`).

    lib = load_kernels()
    forward(lib, x, offset_mask, weight, bias, y, deformable_groups=8, stream=torch.cuda.current_stream())

`forward` takes CUDA tensors with `data_ptr()`, `shape` and `dtype` (torch tensors; float32 or float16, dense
NCHW) and raises PluginArgumentError with the core's message when the launch is refused, PluginError when CUDA
fails it.
"""
from __future__ import annotations

import ctypes
from pathlib import Path
from typing import Any, Optional

from plugins.dcnv2 import abi, build
from plugins.dcnv2.contract import FIELD_DEFAULTS
from plugins.dcnv2.errors import PluginArgumentError, PluginError

__all__ = ["KERNELS_LIBRARY", "find_nvcc", "load_kernels", "forward"]

KERNELS_LIBRARY = build.ROOT / "build" / "libadnet_dcn_kernels.so"


def find_nvcc() -> Optional[str]:
    """nvcc as `make kernels` would use it (CUDA_HOME, CUDA_PATH, /usr/local/cuda, PATH), else None."""
    return build.config().get("NVCC") or None


def load_kernels(path: Path = KERNELS_LIBRARY) -> ctypes.CDLL:
    """Load the kernels library with its C ABI typed (plugins/dcnv2/abi.py)."""
    return abi.declare(ctypes.CDLL(str(path)))


def _dtype_name(tensor: Any) -> str:
    name = str(tensor.dtype).rsplit(".", 1)[-1]  # torch.float16 -> float16
    if name not in abi.DTYPES:
        raise PluginArgumentError(f"AdnetDCNv2: tensors must be float32 or float16, got {tensor.dtype}")
    return name


def forward(lib: ctypes.CDLL, x, offset_mask, weight, bias, y, *, stride: int = FIELD_DEFAULTS["stride"],
            padding: int = FIELD_DEFAULTS["padding"], dilation: int = FIELD_DEFAULTS["dilation"],
            deformable_groups: int = FIELD_DEFAULTS["deformable_groups"], stream: Any = None) -> None:
    """Enqueue y = AdnetDCNv2(x, offset_mask, weight, bias) on `stream` (a torch.cuda.Stream, a raw cudaStream_t
    as int, or None for the legacy default stream). Does not synchronise."""
    problem = abi.make_problem(_dtype_name(x), dict(stride=stride, padding=padding, dilation=dilation,
                                                    deformable_groups=deformable_groups),
                               tuple(x.shape), tuple(offset_mask.shape), tuple(weight.shape), bias.shape[0])
    tensors = abi.Tensors(*(t.data_ptr() for t in (x, offset_mask, weight, bias, y)))
    handle = getattr(stream, "cuda_stream", stream)
    status = lib.adnet_dcn_forward_cuda(ctypes.byref(problem), ctypes.byref(tensors), handle)
    if status != 0:  # -1: refused by the core's validation; > 0: a cudaError_t from the launch
        error = PluginArgumentError if status < 0 else PluginError
        raise error(f"adnet_dcn_forward_cuda returned {status}: {abi.last_error(lib)}")
