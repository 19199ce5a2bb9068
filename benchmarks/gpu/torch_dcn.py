"""Our CUDA kernels called on device arrays (torch CUDA tensors), and ADNet with them in place of export.dcn's DCN op.

Through plugins/dcnv2/cuda.py only (load_kernels, forward): no torch extension to compile. A call runs on the stream it is given, by default the current torch stream, so it
composes with torch's streams and CUDA graph capture.

    kernel = kernels(load_kernels(path))[0][1]       # one per variant: plugins.dcnv2.cuda.VARIANTS
    y = kernel(x, offset_mask_logits, weight, bias, stride=1, padding=1, dilation=1, deformable_groups=8)
    with our_dcn(net, best_kernel(lib)): net(x1, x2, x3)    # every DCNPack runs the kernel on conv_offset_mask's output

A device array is anything with data_ptr(), shape, stride() and dtype (torch.float16 or a numpy dtype name): torch
tensors, or sanitizer_case's raw driver buffers. Dense NCHW everywhere; channels-last (NHWC) x, offset_mask and y
where the library's fast path takes them (`Kernel.channels_last`).
"""
from __future__ import annotations

import contextlib
import ctypes
from typing import Any, Iterator, Optional

__all__ = ["KernelError", "Kernel", "variants", "kernels", "best_kernel", "our_dcn", "is_channels_last"]


class KernelError(RuntimeError):
    """The kernel library, or this wrapper, refused a call; the message says why."""


def _cuda():
    from plugins.dcnv2 import cuda

    return cuda


def variants() -> tuple[str, ...]:
    """The kernel variants the kernels library offers (plugins.dcnv2.cuda.VARIANTS)."""
    return tuple(_cuda().VARIANTS)


def _dtype_name(array: Any) -> str:
    return str(array.dtype).rsplit(".", 1)[-1]  # torch.float16 -> float16; numpy's float16 -> float16


def _strides(array: Any) -> tuple[int, ...]:
    return tuple(array.stride())


def _dense_nchw(array: Any) -> bool:
    shape = tuple(array.shape)
    expected, step = [], 1
    for size in reversed(shape):
        expected.insert(0, step)
        step *= size
    return _strides(array) == tuple(expected) or step == 0


def is_channels_last(array: Any) -> bool:
    """Whether a 4-D array is dense NHWC in logical NCHW shape (torch's channels_last), and not also dense NCHW."""
    n, c, h, w = tuple(array.shape)
    return _strides(array) == (h * w * c, 1, w * c, c) and not _dense_nchw(array)


class Kernel:
    """One variant of the forward: launch(x, offset_mask_logits, weight, bias, out, fields..., stream)."""

    def __init__(self, lib: Optional[ctypes.CDLL], variant: str):
        self.lib, self.variant = lib, variant

    @property
    def channels_last(self) -> bool:
        """Whether this variant takes channels-last x (the fast path: FP16, C/dg a multiple of 8, 3x3)."""
        return self.variant != "v1"

    def launch(self, x, offset_mask, weight, bias, out, *, stride: int, padding: int, dilation: int,
               deformable_groups: int, stream: Any = None) -> None:
        """Enqueue the forward of the given device arrays into `out` (all float32 or all float16) on `stream` (a torch
        stream or a raw cudaStream_t; default the current torch stream)."""
        arrays = (x, offset_mask, weight, bias, out)
        names = {_dtype_name(a) for a in arrays}
        if len(names) != 1 or not names <= {"float32", "float16"}:
            raise KernelError(f"AdnetDCNv2 kernel: all tensors float32 or all float16, got {sorted(names)}")
        if any(getattr(a, "is_cuda", True) is False for a in arrays):
            raise KernelError("AdnetDCNv2 kernel: every tensor must be in CUDA memory")
        if stream is None:
            import torch

            stream = torch.cuda.current_stream()
        handle = getattr(stream, "cuda_stream", stream)
        fields = dict(stride=stride, padding=padding, dilation=dilation, deformable_groups=deformable_groups)
        try:
            _cuda().forward(self.lib, *arrays, **fields, variant=self.variant, stream=handle)
        except Exception as exc:  # PluginArgumentError / PluginError: the core's or CUDA's message
            raise KernelError(str(exc)) from exc

    def __call__(self, x, offset_mask, weight, bias, *, stride: int = 1, padding: int = 1, dilation: int = 1,
                 deformable_groups: int = 8):
        """y [B, Cout, Ho, Wo] (Ho, Wo from offset_mask), a new torch tensor on the current stream; channels-last
        when x is and this variant takes it (and Cout is a multiple of 8), else dense NCHW."""
        import torch

        layout = torch.contiguous_format
        if self.channels_last and is_channels_last(x):
            layout = torch.channels_last
            if not (is_channels_last(offset_mask) or _dense_nchw(offset_mask)):
                offset_mask = offset_mask.contiguous()
        else:
            x, offset_mask = x.contiguous(), offset_mask.contiguous()
        if layout is torch.channels_last and weight.shape[0] % 8:
            layout = torch.contiguous_format
        out = torch.empty((x.shape[0], weight.shape[0], offset_mask.shape[2], offset_mask.shape[3]),
                          dtype=x.dtype, device=x.device, memory_format=layout)
        self.launch(x, offset_mask, weight.contiguous(), bias.contiguous(), out, stride=stride, padding=padding,
                    dilation=dilation, deformable_groups=deformable_groups)
        return out


def kernels(lib: ctypes.CDLL) -> list[tuple[str, Kernel]]:
    """(variant, Kernel) for every variant the library offers."""
    return [(variant, Kernel(lib, variant)) for variant in variants()]


def best_kernel(lib: ctypes.CDLL) -> Kernel:
    """What the TensorRT plugin would run for the same tensors ("best")."""
    return Kernel(lib, "best")


@contextlib.contextmanager
def our_dcn(net, kernel: Kernel) -> Iterator[None]:
    """Within the block, every export.dcn.DCNPack in `net` hands conv_offset_mask's output (offsets, then mask
    logits: the plugin's input, sigmoid inside the kernel) to `kernel` instead of splitting it and calling
    export.dcn.deform_conv2d; the forwards are restored afterwards."""
    from export.dcn import DCNPack

    packs = [m for m in net.modules() if isinstance(m, DCNPack)]

    def fused(module):
        def forward(input, fea):
            return kernel(input, module.conv_offset_mask(fea), module.weight, module.bias, stride=module.stride,
                          padding=module.padding, dilation=module.dilation,
                          deformable_groups=module.deformable_groups)
        return forward

    for module in packs:
        module.forward = fused(module)
    try:
        yield
    finally:
        for module in packs:
            del module.forward  # back to the class's forward
