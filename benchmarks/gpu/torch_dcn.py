"""Our CUDA kernels called on torch CUDA tensors, and ADNet with them in place of export.dcn's DCN op.

Built on the C ABI of the kernels library as plugins/dcnv2/cuda.py declares it (adnet_dcn_forward_cuda; the library
from `make kernels`): no torch extension to compile. The call runs on the current torch stream, so it composes with
torch's streams and CUDA graph capture.

    kernel = kernels(load_kernels(path))[0]            # one per variant: plugins.dcnv2.cuda.VARIANTS, else ("v1",)
    y = kernel(x, offset_mask_logits, weight, bias, stride=1, padding=1, dilation=1, deformable_groups=8)
    with our_dcn(net, kernel): net(x1, x2, x3)         # every DCNPack runs `kernel` on conv_offset_mask's output

Variant "v1" is adnet_dcn_forward_cuda; another variant V is looked up as adnet_dcn_forward_cuda_V with the same
signature.
"""
from __future__ import annotations

import contextlib
import ctypes
from typing import Iterator

__all__ = ["KernelError", "Kernel", "variants", "kernels", "our_dcn"]


class KernelError(RuntimeError):
    """The kernel library refused a call (invalid arguments, failed launch); the message is the library's."""


def variants() -> tuple[str, ...]:
    """The kernel variants the kernels library offers (plugins.dcnv2.cuda.VARIANTS, else the one v1)."""
    from plugins.dcnv2 import cuda

    return tuple(getattr(cuda, "VARIANTS", ("v1",)))


class Kernel:
    """One variant's entry point: fn(dtype, x, offset_mask, weight, bias, y, n, c, h, w, cout, kh, kw, stride,
    padding, dilation, deformable_groups, workspace, stream) -> 0 | -1 (message in adnet_dcn_last_error)."""

    def __init__(self, lib: ctypes.CDLL, variant: str, fn):
        self.lib, self.variant, self.fn = lib, variant, fn

    def launch(self, x, offset_mask, weight, bias, out, *, stride: int, padding: int, dilation: int,
               deformable_groups: int, stream=None) -> None:
        """Write the forward of the given CUDA tensors into `out` (float32 or float16, all one dtype, contiguous),
        on `stream` (default: the current torch stream)."""
        import torch

        tensors = (x, offset_mask, weight, bias, out)
        dtype = x.dtype
        if dtype not in (torch.float32, torch.float16):
            raise KernelError(f"AdnetDCNv2 kernel: float32 or float16 tensors, got {dtype}")
        for t in tensors:
            if t.dtype != dtype or not t.is_cuda or not t.is_contiguous():
                raise KernelError(f"AdnetDCNv2 kernel: all tensors must be contiguous CUDA {dtype}; got {t.dtype} "
                                  f"on {t.device}, contiguous={t.is_contiguous()}")
        stream = stream if stream is not None else torch.cuda.current_stream()
        n, c, h, w = x.shape
        cout, _, kh, kw = weight.shape
        status = self.fn(1 if dtype == torch.float16 else 0, *(t.data_ptr() for t in tensors), n, c, h, w, cout,
                         kh, kw, stride, padding, dilation, deformable_groups, None, stream.cuda_stream)
        if status != 0:
            raise KernelError(self.lib.adnet_dcn_last_error().decode(errors="replace"))

    def __call__(self, x, offset_mask, weight, bias, *, stride: int = 1, padding: int = 1, dilation: int = 1,
                 deformable_groups: int = 8):
        """y [B, Cout, Ho, Wo] (Ho, Wo from offset_mask), a new tensor, on the current stream."""
        import torch

        out = torch.empty((x.shape[0], weight.shape[0], offset_mask.shape[2], offset_mask.shape[3]),
                          dtype=x.dtype, device=x.device)
        self.launch(x.contiguous(), offset_mask.contiguous(), weight.contiguous(), bias.contiguous(), out,
                    stride=stride, padding=padding, dilation=dilation, deformable_groups=deformable_groups)
        return out


def kernels(lib: ctypes.CDLL) -> list:
    """(variant, Kernel or the reason it is missing) for every variant."""
    found = []
    for variant in variants():
        symbol = "adnet_dcn_forward_cuda" if variant == "v1" else f"adnet_dcn_forward_cuda_{variant}"
        try:
            fn = getattr(lib, symbol)
        except AttributeError:
            found.append((variant, f"the kernels library exports no {symbol}"))
            continue
        fn.argtypes = lib.adnet_dcn_forward_cuda.argtypes
        fn.restype = lib.adnet_dcn_forward_cuda.restype
        found.append((variant, Kernel(lib, variant, fn)))
    return found


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
