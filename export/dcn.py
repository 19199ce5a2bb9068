"""Modulated deformable convolution (DCNv2) in plain PyTorch.

`deform_conv2d` has torchvision's signature and semantics (docs/design.md §2), runs on CPU and CUDA for
float16/32/64 and is differentiable. It dispatches through one `torch.library` custom op,
`adnet::deform_conv2d`, so that ONNX export can emit exactly one standard `DeformConv` node per call
(see `onnx_translation_table`), whatever the eager implementation looks like.

`DCNPack` is the official `DCN_sep` module (same parameter names): offsets and mask are predicted from a
second feature map by `conv_offset_mask` and split with the official chunk/cat/sigmoid.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

IntPair = Union[int, Sequence[int]]

__all__ = ["deform_conv2d", "DCNPack", "deform_conv_output_size", "onnx_translation_table"]


def _pair(value: IntPair, name: str) -> list[int]:
    if isinstance(value, int):
        pair = [value, value]
    else:
        pair = [int(v) for v in value]
    if len(pair) != 2:
        raise ValueError(f"{name} must be an int or a pair of ints, got {value!r}")
    return pair


def deform_conv_output_size(size: int, kernel: int, stride: int, padding: int, dilation: int) -> int:
    """Output length of a (deformable) convolution along one axis, as for nn.Conv2d."""
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def _check_args(input: Tensor, offset: Tensor, weight: Tensor, bias: Optional[Tensor], mask: Optional[Tensor],
                stride: list[int], padding: list[int], dilation: list[int]) -> tuple[int, int]:
    """Validate shapes the way torchvision does; return (weight groups, offset groups)."""
    for name, t in (("input", input), ("offset", offset), ("weight", weight)):
        if t.dim() != 4:
            raise ValueError(f"deform_conv2d: {name} must be 4-D, got shape {tuple(t.shape)}")
    if min(stride) < 1 or min(dilation) < 1 or min(padding) < 0:
        raise ValueError(f"deform_conv2d: need stride >= 1, dilation >= 1, padding >= 0; "
                         f"got stride={stride}, padding={padding}, dilation={dilation}")
    b, c, h, w = input.shape
    c_out, c_per_group, kh, kw = weight.shape
    k = kh * kw
    if c_per_group == 0 or c % c_per_group:
        raise ValueError(f"deform_conv2d: input channels {c} are not a multiple of weight.shape[1]={c_per_group}")
    groups = c // c_per_group
    if c_out % groups:
        raise ValueError(f"deform_conv2d: out channels {c_out} not divisible by the {groups} weight groups")
    if offset.shape[1] == 0 or offset.shape[1] % (2 * k):
        raise ValueError(f"deform_conv2d: offset has {offset.shape[1]} channels; expected a multiple of "
                         f"2*kh*kw = {2 * k}")
    offset_groups = offset.shape[1] // (2 * k)
    if c % offset_groups:
        raise ValueError(f"deform_conv2d: input channels {c} not divisible by the {offset_groups} offset groups "
                         f"implied by offset.shape[1]={offset.shape[1]}")
    ho = deform_conv_output_size(h, kh, stride[0], padding[0], dilation[0])
    wo = deform_conv_output_size(w, kw, stride[1], padding[1], dilation[1])
    if ho <= 0 or wo <= 0:
        raise ValueError(f"deform_conv2d: input {h}x{w} too small for kernel {kh}x{kw} with padding {padding}, "
                         f"dilation {dilation}")
    if tuple(offset.shape) != (b, offset.shape[1], ho, wo):
        raise ValueError(f"deform_conv2d: offset shape {tuple(offset.shape)} does not match output "
                         f"[{b}, {offset.shape[1]}, {ho}, {wo}]")
    if mask is not None and tuple(mask.shape) != (b, offset_groups * k, ho, wo):
        raise ValueError(f"deform_conv2d: mask shape {tuple(mask.shape)}, expected "
                         f"[{b}, {offset_groups * k}, {ho}, {wo}] (offset_groups*kh*kw channels)")
    if bias is not None and tuple(bias.shape) != (c_out,):
        raise ValueError(f"deform_conv2d: bias shape {tuple(bias.shape)}, expected [{c_out}]")
    for name, t in (("offset", offset), ("weight", weight), ("bias", bias), ("mask", mask)):
        if t is not None and (t.dtype != input.dtype or t.device != input.device):
            raise ValueError(f"deform_conv2d: {name} is {t.dtype} on {t.device} but input is {input.dtype} on "
                             f"{input.device}; convert all tensors to one dtype and device")
    return groups, offset_groups


def _deform_conv2d_eager(input: Tensor, offset: Tensor, weight: Tensor, bias: Optional[Tensor],
                         mask: Optional[Tensor], stride: Sequence[int], padding: Sequence[int],
                         dilation: Sequence[int], groups: int, offset_groups: int) -> Tensor:
    """Vectorised DCNv2: bilinear gather of all taps, then one grouped matmul (im2col-style).

    Sampling coordinates and bilinear weights are computed in at least float32 so that float16 inputs keep
    sub-pixel precision at large coordinates (float16 has a spacing of 1 between 1024 and 2048); the
    gathered values and the matmul stay in the input dtype.
    """
    b, c, h, w = input.shape
    c_out, _, kh, kw = weight.shape
    k = kh * kw
    ho, wo = offset.shape[-2:]
    dg = offset_groups
    cg = c // dg
    coord_dtype = torch.promote_types(input.dtype, torch.float32)
    dev = input.device

    # Base sampling grid y = h*s - p + i*d (likewise x), shape [K, Ho, Wo] -> broadcast over [B, dg].
    ki = torch.arange(kh, device=dev, dtype=coord_dtype).repeat_interleave(kw) * dilation[0]
    kj = torch.arange(kw, device=dev, dtype=coord_dtype).repeat(kh) * dilation[1]
    oy = torch.arange(ho, device=dev, dtype=coord_dtype) * stride[0] - padding[0]
    ox = torch.arange(wo, device=dev, dtype=coord_dtype) * stride[1] - padding[1]
    base_y = ki[:, None, None] + oy[None, :, None]
    base_x = kj[:, None, None] + ox[None, None, :]

    off = offset.reshape(b, dg, k, 2, ho, wo).to(coord_dtype)
    py = base_y + off[:, :, :, 0]  # [B, dg, K, Ho, Wo]
    px = base_x + off[:, :, :, 1]

    # A sample counts when -1 < y < H and -1 < x < W; corners outside the image contribute zero.
    inside = (py > -1) & (py < h) & (px > -1) & (px < w)
    y0 = torch.floor(py)
    x0 = torch.floor(px)
    ly = py - y0
    lx = px - x0
    y0i = y0.long()
    x0i = x0.long()
    m = mask.reshape(b, dg, k, ho, wo).to(coord_dtype) if mask is not None else None

    flat = input.reshape(b, dg, cg, h * w)
    cols = None
    for dy, dx, wgt in ((0, 0, (1 - ly) * (1 - lx)), (0, 1, (1 - ly) * lx),
                        (1, 0, ly * (1 - lx)), (1, 1, ly * lx)):
        yy = y0i + dy
        xx = x0i + dx
        valid = inside & (yy >= 0) & (yy < h) & (xx >= 0) & (xx < w)
        coef = wgt * valid.to(coord_dtype)
        if m is not None:
            coef = coef * m
        idx = (yy.clamp(0, h - 1) * w + xx.clamp(0, w - 1)).reshape(b, dg, 1, k * ho * wo)
        vals = torch.gather(flat, 3, idx.expand(b, dg, cg, k * ho * wo))
        term = vals * coef.reshape(b, dg, 1, k * ho * wo).to(input.dtype)
        cols = term if cols is None else cols + term

    # cols: [B, C, K*L] with channel c = g*cg + j -> matmul with weight [G, Cout/G, (C/G)*K].
    cols = cols.reshape(b, groups, (c // groups) * k, ho * wo)
    wmat = weight.reshape(groups, c_out // groups, (c // groups) * k)
    out = torch.matmul(wmat.unsqueeze(0), cols).reshape(b, c_out, ho, wo)
    if bias is not None:
        out = out + bias.reshape(1, c_out, 1, 1)
    return out


@torch.library.custom_op("adnet::deform_conv2d", mutates_args=())
def _deform_conv2d_op(input: Tensor, offset: Tensor, weight: Tensor, bias: Optional[Tensor],
                      mask: Optional[Tensor], stride: list[int], padding: list[int], dilation: list[int],
                      groups: int, offset_groups: int) -> Tensor:
    return _deform_conv2d_eager(input, offset, weight, bias, mask, stride, padding, dilation, groups,
                                offset_groups)


@_deform_conv2d_op.register_fake
def _(input, offset, weight, bias, mask, stride, padding, dilation, groups, offset_groups):
    return input.new_empty((input.shape[0], weight.shape[0], offset.shape[2], offset.shape[3]))


def _setup_context(ctx, inputs, output):
    ctx.save_for_backward(*inputs[:5])
    ctx.conv_args = inputs[5:]


def _backward(ctx, grad_out):
    # Gradients by differentiating the eager implementation again (gather's backward is a scatter-add);
    # first-order only, which is all training and gradcheck need.
    saved = ctx.saved_tensors
    with torch.enable_grad():
        leaves = [t.detach().requires_grad_(t.is_floating_point()) if t is not None else None for t in saved]
        out = _deform_conv2d_eager(*leaves, *ctx.conv_args)
        wanted = [t for t, need in zip(leaves, ctx.needs_input_grad[:5]) if t is not None and need]
        grads = iter(torch.autograd.grad(out, wanted, grad_out, allow_unused=True)) if wanted else iter(())
    result = [next(grads) if t is not None and need else None for t, need in zip(leaves, ctx.needs_input_grad[:5])]
    return (*result, None, None, None, None, None)


_deform_conv2d_op.register_autograd(_backward, setup_context=_setup_context)


def deform_conv2d(input: Tensor, offset: Tensor, weight: Tensor, bias: Optional[Tensor] = None,
                  stride: IntPair = 1, padding: IntPair = 0, dilation: IntPair = 1,
                  mask: Optional[Tensor] = None) -> Tensor:
    """Deformable convolution v2, torchvision.ops.deform_conv2d's signature and semantics.

    input [B, C, H, W]; offset [B, 2*dg*kh*kw, Ho, Wo] with (dy, dx) pairs per tap, dg (offset groups)
    inferred from its channel count; weight [Cout, C/groups, kh, kw]; mask [B, dg*kh*kw, Ho, Wo] (already
    modulated, e.g. a sigmoid output) or None for DCNv1.
    """
    stride_, padding_, dilation_ = _pair(stride, "stride"), _pair(padding, "padding"), _pair(dilation, "dilation")
    groups, offset_groups = _check_args(input, offset, weight, bias, mask, stride_, padding_, dilation_)
    return _deform_conv2d_op(input, offset, weight, bias, mask, stride_, padding_, dilation_, groups, offset_groups)


def _onnx_deform_conv(input, offset, weight, bias, mask, stride, padding, dilation, groups, offset_groups):
    from onnxscript import opset19 as op  # export-time dependency only

    return op.DeformConv(input, weight, offset, bias, mask, dilations=list(dilation), group=groups,
                         offset_group=offset_groups, pads=[padding[0], padding[1], padding[0], padding[1]],
                         strides=list(stride))


def onnx_translation_table() -> dict:
    """`custom_translation_table` for torch.onnx.export(dynamo=True): one DeformConv (opset 19) per call."""
    return {torch.ops.adnet.deform_conv2d.default: _onnx_deform_conv}


class DCNPack(nn.Module):
    """The official DCN_sep: deformable conv whose offsets and mask come from a second feature map.

    Parameter names (`weight`, `bias`, `conv_offset_mask`) match the official checkpoints.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1,
                 padding: int = 1, dilation: int = 1, deformable_groups: int = 1):
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = (kernel_size, kernel_size)
        self.stride = stride
        self.padding = padding
        self.dilation = dilation
        self.deformable_groups = deformable_groups
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.empty(out_channels))
        self.conv_offset_mask = nn.Conv2d(in_channels, deformable_groups * 3 * kernel_size * kernel_size,
                                          kernel_size, stride=stride, padding=padding, bias=True)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # Official initialisation: uniform weight, zero bias, zero offset/mask predictor (offsets start at 0).
        stdv = 1.0 / math.sqrt(self.in_channels * self.kernel_size[0] * self.kernel_size[1])
        nn.init.uniform_(self.weight, -stdv, stdv)
        nn.init.zeros_(self.bias)
        nn.init.zeros_(self.conv_offset_mask.weight)
        nn.init.zeros_(self.conv_offset_mask.bias)

    def forward(self, input: Tensor, fea: Tensor) -> Tensor:
        out = self.conv_offset_mask(fea)
        o1, o2, mask = torch.chunk(out, 3, dim=1)
        offset = torch.cat((o1, o2), dim=1)
        mask = torch.sigmoid(mask)
        return deform_conv2d(input, offset, self.weight, self.bias, self.stride, self.padding, self.dilation, mask)
