"""The only way Python reaches the AdnetDCNv2 CUDA kernels (`make kernels` -> build/libadnet_dcn_kernels.so).

Used by the GPU test, the kernel benchmark and gpu-check. Loading needs the NVIDIA driver (the library links cudart
statically), building needs nvcc (make finds it: `find_nvcc`).

    lib = load_kernels()
    for variant in VARIANTS:                               # ("v1", "v2")
        forward(lib, x, offset_mask, weight, bias, y, deformable_groups=8, variant=variant,
                stream=torch.cuda.current_stream())

`forward` takes CUDA tensors with `data_ptr()`, `shape`, `stride()` and `dtype` (torch tensors; float32 or float16)
in logical NCHW shape, each either contiguous (dense NCHW) or channels-last (`x.to(memory_format=
torch.channels_last)`, dense NHWC; weight and bias contiguous). `variant` picks the kernel:
- "v1": the generic kernel (every shape and dtype; NCHW tensors only), the baseline of the comparison benchmark;
- "v2": the fast path where it applies: FP16, x channels-last, C/dg a multiple of 8, a 3x3 kernel, C <= 1024
  (offset_mask and y may each be channels-last when their channel count is a multiple of 8); with linear x the
  generic kernel;
- "best" (default): what the TensorRT plugin runs for the same tensors (today the same choice as "v2").
It raises PluginArgumentError with the core's message when the launch is refused (e.g. v1 on channels-last
tensors), PluginError when CUDA fails it.
"""
from __future__ import annotations

import ctypes
from pathlib import Path
from typing import Any, Optional

from plugins.dcnv2 import abi, build
from plugins.dcnv2.contract import FIELD_DEFAULTS
from plugins.dcnv2.errors import PluginArgumentError, PluginError

__all__ = ["KERNELS_LIBRARY", "VARIANTS", "find_nvcc", "load_kernels", "forward", "tensor_format"]

KERNELS_LIBRARY = build.ROOT / "build" / "libadnet_dcn_kernels.so"
# The kernel variants a benchmark or test can compare (forward's `variant`).
VARIANTS = ("v1", "v2")


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


def tensor_format(tensor: Any) -> str:
    """"linear" for a dense NCHW tensor, "channels_last" for a dense NHWC one (by its strides)."""
    n, c, h, w = tuple(tensor.shape)
    strides = tuple(tensor.stride())
    if strides == (c * h * w, h * w, w, 1) or n * c * h * w == 0:
        return "linear"
    if strides == (h * w * c, 1, w * c, c):
        return "channels_last"
    raise PluginArgumentError(f"AdnetDCNv2: tensors must be dense NCHW or channels-last NHWC, got shape "
                              f"{tuple(tensor.shape)} with strides {strides}")


def forward(lib: ctypes.CDLL, x, offset_mask, weight, bias, y, *, stride: int = FIELD_DEFAULTS["stride"],
            padding: int = FIELD_DEFAULTS["padding"], dilation: int = FIELD_DEFAULTS["dilation"],
            deformable_groups: int = FIELD_DEFAULTS["deformable_groups"], variant: str = "best",
            stream: Any = None) -> None:
    """Enqueue y = AdnetDCNv2(x, offset_mask, weight, bias) with the kernel `variant` ("v1", "v2", "best") on
    `stream` (a torch.cuda.Stream, a raw cudaStream_t as int, or None for the legacy default stream). The formats
    of x, offset_mask and y follow their strides. Does not synchronise."""
    problem = abi.make_problem(_dtype_name(x), dict(stride=stride, padding=padding, dilation=dilation,
                                                    deformable_groups=deformable_groups),
                               tuple(x.shape), tuple(offset_mask.shape), tuple(weight.shape), bias.shape[0],
                               x_format=tensor_format(x), offset_mask_format=tensor_format(offset_mask),
                               y_format=tensor_format(y), variant=variant)
    tensors = abi.Tensors(*(t.data_ptr() for t in (x, offset_mask, weight, bias, y)))
    handle = getattr(stream, "cuda_stream", stream)
    status = lib.adnet_dcn_forward_cuda(ctypes.byref(problem), ctypes.byref(tensors), handle)
    if status != 0:  # -1: refused by the core's validation; > 0: a cudaError_t from the launch
        error = PluginArgumentError if status < 0 else PluginError
        raise error(f"adnet_dcn_forward_cuda returned {status}: {abi.last_error(lib)}")
