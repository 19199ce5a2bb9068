"""The deployable ADNet pipeline: the public contract (client/contract.py) around the bare network.

Everything between decoded frames and linear HDR happens inside this module, so that after export it runs in
the same graph as the network (in TensorRT on a GPU), not in Python:

  LDR [B,3,H,W,3] uint8|fp16 ─► [0,1] ─► NCHW ─► pad to /4 ─► EV alignment ─► 3 x [B,6,H',W']
      ─► ADNet ─► crop to H,W ─► x**2.24 ─► HDR [B,H,W,3] fp32 linear

Choices:
- Padding: replicate (edge) on the bottom/right. Defined for every size, 1x1 included (reflect padding by up to
  3 rows needs at least 4), and it adds no mirrored structure for the alignment to chase. Cropping back is a
  plain slice.
- EV alignment: ((ldr**g) * 2**-ev) ** (1/g) == ldr * 2**(-ev/g) for ldr >= 0. The graph uses the right-hand
  side: one scale per frame instead of two per-pixel powers, and no pow() of small numbers in low precision.
- Precision: pre-processing (normalisation, EV alignment) and post-processing (crop, linearisation) are float32
  in every variant; `compute_dtype` only sets the network's dtype (float16 for TensorRT's strongly typed FP16
  engines). The network output is cast back to float32 before x**2.24, which would amplify float16 rounding.
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from client import contract
from client.hdr_math import NTIRE_GAMMA
from export.adnet import SIZE_MULTIPLE

__all__ = ["ADNetPipeline", "ADNetCore", "pad_amount"]

_LDR_SCALE = {torch.uint8: 1.0 / 255.0, torch.float16: 1.0, torch.float32: 1.0}


def pad_amount(size):
    """Rows/columns to add so that `size` becomes a multiple of SIZE_MULTIPLE (works on symbolic sizes)."""
    return (SIZE_MULTIPLE - size % SIZE_MULTIPLE) % SIZE_MULTIPLE


def _in_dtype(net: nn.Module, dtype: torch.dtype) -> nn.Module:
    """`net` itself when it already has `dtype`, else a converted copy: the caller's network is never changed."""
    if all(p.dtype == dtype for p in net.parameters()):
        return net
    return copy.deepcopy(net).to(dtype)


class ADNetPipeline(nn.Module):
    """LDR [B,3,H,W,3] + EV [B,3] -> linear HDR [B,H,W,3] float32, any H and W."""

    def __init__(self, net: nn.Module, compute_dtype: torch.dtype = torch.float32, gamma: float = NTIRE_GAMMA):
        super().__init__()
        self.net = _in_dtype(net, compute_dtype)
        self.compute_dtype = compute_dtype
        self.gamma = gamma

    def frames(self, ldr: Tensor, ev: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """The three padded [B, 6, H', W'] network inputs (float32): LDR in channels 0:3, aligned in 3:6."""
        if ldr.dtype not in _LDR_SCALE:
            raise TypeError(f"LDR must be uint8 or float16 (float32 for tests), got {ldr.dtype}")
        b, n, h, w, c = ldr.shape
        x = ldr.to(torch.float32) * _LDR_SCALE[ldr.dtype]
        x = x.permute(0, 1, 4, 2, 3).reshape(b, n * c, h, w)
        x = F.pad(x, (0, pad_amount(w), 0, pad_amount(h)), mode="replicate")
        x = x.reshape(b, n, c, x.shape[-2], x.shape[-1])
        rel = ev.to(torch.float32) - ev[:, 1:2].to(torch.float32)
        scale = torch.exp2(rel * (-1.0 / self.gamma))
        short = torch.cat((x[:, 0], x[:, 0] * scale[:, 0].view(b, 1, 1, 1)), dim=1)
        medium = torch.cat((x[:, 1], x[:, 1]), dim=1)  # the reference frame's aligned half is its LDR
        long = torch.cat((x[:, 2], x[:, 2] * scale[:, 2].view(b, 1, 1, 1)), dim=1)
        return short, medium, long

    def forward(self, ldr: Tensor, ev: Tensor) -> Tensor:
        h, w = ldr.shape[2], ldr.shape[3]
        frames = [f.to(self.compute_dtype) for f in self.frames(ldr, ev)]
        out = self.net(*frames).to(torch.float32)[:, :, :h, :w]
        return torch.pow(out, self.gamma).permute(0, 2, 3, 1)


class ADNetCore(nn.Module):
    """The bare network for users who pre-process themselves: x1, x2, x3 [B,6,H,W] float32 (H, W multiples
    of 4) -> gamma-domain HDR [B,3,H,W] float32; `compute_dtype` sets the dtype inside."""

    def __init__(self, net: nn.Module, compute_dtype: torch.dtype = torch.float32):
        super().__init__()
        self.net = _in_dtype(net, compute_dtype)
        self.compute_dtype = compute_dtype

    def forward(self, x1: Tensor, x2: Tensor, x3: Tensor) -> Tensor:
        dt = self.compute_dtype
        return self.net(x1.to(dt), x2.to(dt), x3.to(dt)).to(torch.float32)
