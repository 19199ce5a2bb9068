"""The FLOP floor: ADNet's multiply-accumulates (counted with forward hooks) over the device's measured matmul rate.

- `count_macs(net, h, w)` runs the network once with forward hooks on every nn.Conv2d and every DCNPack (whose
  main 3x3 deformable convolution is not an nn.Conv2d) and adds output elements x input channels per group x
  kernel taps. Bilinear sampling, activations and interpolation are not MACs and are left out. ADNet's cost is
  linear in the pixel count when H and W are multiples of 4 (its two stride-2 pyramid levels), so one count at
  a small size scales exactly to any size (`MacCount.at`).
- `matmul_rate(device, dtype)` times a large square matmul with torch in that dtype (TF32 off on GPUs): the
  device's practical arithmetic ceiling. floor = 2 x MACs / rate: no implementation runs faster than that.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass

from benchmarks.stats import cuda_event_times

__all__ = ["MacCount", "count_macs", "matmul_rate", "DESIGN_TMAC_NTIRE", "NTIRE_SIZE", "padded"]

DESIGN_TMAC_NTIRE = 6.585  # docs/design.md §1: ADNet at 1060x1900 (the NTIRE 2021 frame)
NTIRE_SIZE = (1060, 1900)
MULTIPLE = 4


def padded(h: int, w: int) -> tuple[int, int]:
    """The size the network runs at: the pipeline pads H and W up to multiples of 4."""
    return -(-h // MULTIPLE) * MULTIPLE, -(-w // MULTIPLE) * MULTIPLE


@dataclass(frozen=True)
class MacCount:
    counted_at: tuple[int, int]
    total: int        # MACs at counted_at
    conv: int         # nn.Conv2d layers, offset/mask predictors included
    dcn_main: int     # the deformable 3x3 convolutions themselves (8 calls)

    @property
    def per_pixel(self) -> float:
        return self.total / (self.counted_at[0] * self.counted_at[1])

    def at(self, h: int, w: int) -> float:
        """MACs of one frame of H x W (padded to multiples of 4, as the pipeline runs it)."""
        ph, pw = padded(h, w)
        return self.per_pixel * ph * pw

    def to_dict(self) -> dict:
        d = asdict(self)
        d["counted_at"] = list(self.counted_at)
        d["per_pixel"] = self.per_pixel
        d["tmac_at_1060x1900"] = self.at(*NTIRE_SIZE) / 1e12
        d["dcn_main_tmac_at_1060x1900"] = self.dcn_main / self.total * self.at(*NTIRE_SIZE) / 1e12
        d["design_tmac_at_1060x1900"] = DESIGN_TMAC_NTIRE
        return d


def count_macs(net, h: int = 32, w: int = 48) -> MacCount:
    """Count the MACs of one forward pass of `net` (ADNet, float32, CPU) on [1, 6, h, w] inputs."""
    import torch
    from torch import nn

    from export.dcn import DCNPack

    if h % MULTIPLE or w % MULTIPLE:
        raise ValueError(f"count MACs at a size that is a multiple of {MULTIPLE}, got {h}x{w}")
    totals = {"conv": 0, "dcn_main": 0}

    def conv_hook(module: nn.Conv2d, _inputs, output):
        kh, kw = module.kernel_size
        totals["conv"] += output.numel() * (module.in_channels // module.groups) * kh * kw

    def dcn_hook(module: DCNPack, _inputs, output):
        _, c_per_group, kh, kw = module.weight.shape
        totals["dcn_main"] += output.numel() * c_per_group * kh * kw

    handles = []
    for module in net.modules():
        if isinstance(module, nn.Conv2d):
            handles.append(module.register_forward_hook(conv_hook))
        elif isinstance(module, DCNPack):
            handles.append(module.register_forward_hook(dcn_hook))
    try:
        gen = torch.Generator().manual_seed(0)
        frames = [torch.rand(1, 6, h, w, generator=gen) for _ in range(3)]
        param = next(net.parameters())
        with torch.inference_mode():
            net(*(f.to(param.device, param.dtype) for f in frames))
    finally:
        for handle in handles:
            handle.remove()
    return MacCount((h, w), totals["conv"] + totals["dcn_main"], totals["conv"], totals["dcn_main"])


def matmul_rate(device: str = "cpu", dtype_name: str = "float32", n: int | None = None, repeats: int = 3) -> dict:
    """Measured FLOP/s of an n x n x n torch matmul (median of `repeats` after one warm-up).

    CPU: n = 2048 (17 GFLOP, ~0.1-0.5 s per product on a few cores); GPU: n = 8192, CUDA events, TF32 disabled so
    float32 means float32."""
    import statistics

    import torch

    dtype = {"float32": torch.float32, "float16": torch.float16}[dtype_name]
    n = n or (8192 if device == "cuda" else 2048)
    gen = torch.Generator(device=device).manual_seed(1)
    a = torch.randn(n, n, device=device, dtype=dtype, generator=gen)
    b = torch.randn(n, n, device=device, dtype=dtype, generator=gen)
    times = []
    if device == "cuda":
        tf32 = torch.backends.cuda.matmul.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = False
        try:
            torch.matmul(a, b)
            times = [ms / 1e3 for ms in cuda_event_times(lambda i: torch.matmul(a, b), repeats)]
        finally:
            torch.backends.cuda.matmul.allow_tf32 = tf32
    else:
        torch.matmul(a, b)
        for _ in range(repeats):
            t0 = time.perf_counter()
            torch.matmul(a, b)
            times.append(time.perf_counter() - t0)
    seconds = statistics.median(times)
    return {"device": device, "dtype": dtype_name, "n": n, "threads": torch.get_num_threads(),
            "seconds": seconds, "flops_per_s": 2.0 * n ** 3 / seconds}
