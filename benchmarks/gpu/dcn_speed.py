"""Speed of the AdnetDCNv2 CUDA kernel at ADNet's DCN shapes, against im2col + cuBLAS and the device's limits.

Shapes: x [1, 64, H, W], 3x3, 8 deformable groups, 64 output channels, at 1060x1900 (the NTIRE frame: pyramid level
L1), 530x950 (L2) and 265x475 (L3); FP16 and FP32. Implementations: ours (every kernel variant on NCHW tensors, and
in FP16 on channels-last tensors for the variants with that fast path), im2col + GEMM:
export.dcn.deform_conv2d on CUDA (a gather into a C*K*Ho*Wo column buffer + cuBLAS matmul: the algorithm of
TensorRT's built-in ModulatedDeformConv2d), and torchvision.ops.deform_conv2d where torchvision imports.

Timing: CUDA events around each call (benchmarks.stats.cuda_event_times), warm-up, median, inputs rotating over
several fresh random sets (more bytes than L2 holds) so that no run reads the previous run's data from cache.
Limits, measured on the device: copy bandwidth (read + write of 1 GiB) gives the memory floor of moving x,
offset_mask, weight, bias and y once; the matmul rate (8192^3, TF32 off) the compute floor of 2*Cout*C*K MACs per
output pixel.

Used by gpu-check's kernel_speed phase and by benchmarks/kernels/bench_dcn.py (`make bench-kernels`).
"""
from __future__ import annotations

import statistics
from typing import Callable, Optional

from benchmarks.stats import cuda_event_times

__all__ = ["SIZES", "C", "COUT", "KH", "KW", "DG", "traffic_and_flops", "floors", "time_ms", "device_peaks",
           "make_sets", "bench_size"]

SIZES = ((1060, 1900), (530, 950), (265, 475))
C = COUT = 64
KH = KW = 3
DG = 8
K = KH * KW
ELEMENT_BYTES = {"float16": 2, "float32": 4}


def traffic_and_flops(h: int, w: int, dtype: str) -> tuple[int, float]:
    """(bytes x, offset_mask, weight, bias and y take when moved once, FLOPs) of one DCN at H x W (stride 1)."""
    moved = (C * h * w + 3 * DG * K * h * w + COUT * C * K + COUT + COUT * h * w) * ELEMENT_BYTES[dtype]
    return moved, 2.0 * COUT * C * K * h * w


def floors(moved: int, flops: float, peaks: dict, dtype: str) -> dict:
    """Memory and compute floors (ms) from the measured peaks ({"copy_GBps", "matmul_<dtype>_TFLOPs"})."""
    memory_ms = moved / (peaks["copy_GBps"] * 1e9) * 1e3
    compute_ms = flops / (peaks[f"matmul_{dtype}_TFLOPs"] * 1e12) * 1e3
    return {"memory_floor_ms": memory_ms, "compute_floor_ms": compute_ms, "floor_ms": max(memory_ms, compute_ms)}


def time_ms(fn: Callable[[int], object], iters: int, warmup: int) -> float:
    """Median of `iters` CUDA-event timings of fn(i) on the current stream, after `warmup` calls."""
    for i in range(warmup):
        fn(i)
    return statistics.median(cuda_event_times(lambda i: fn(warmup + i), iters))


def device_peaks(iters: int = 20) -> dict:
    """Measured copy bandwidth (GB/s, read + write of a 1 GiB buffer) and matmul rate (TFLOP/s, 8192^3, no TF32)."""
    import torch

    src = torch.empty(1 << 28, dtype=torch.float32, device="cuda")
    dst = torch.empty_like(src)
    ms = time_ms(lambda i: dst.copy_(src), iters, 3)
    peaks = {"copy_GBps": 2 * src.numel() * 4 / ms / 1e6}
    del src, dst
    tf32 = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        n = 8192
        for name, dtype in (("float16", torch.float16), ("float32", torch.float32)):
            a = torch.randn(n, n, device="cuda", dtype=dtype)
            b = torch.randn(n, n, device="cuda", dtype=dtype)
            ms = time_ms(lambda i: torch.matmul(a, b), max(5, iters // 4), 2)
            peaks[f"matmul_{name}_TFLOPs"] = 2 * n ** 3 / ms / 1e9
            del a, b
    finally:
        torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.cuda.empty_cache()
    return peaks


def make_sets(h: int, w: int, dtype, count: int) -> list:
    """`count` fresh random (x, offset_mask, weight, bias) sets on the GPU; offsets of a few pixels."""
    import torch

    gen = torch.Generator(device="cuda").manual_seed(torch.seed())
    sets = []
    for _ in range(count):
        x = torch.randn(1, C, h, w, device="cuda", dtype=dtype, generator=gen)
        om = torch.randn(1, 3 * DG * K, h, w, device="cuda", dtype=dtype, generator=gen)
        om[:, :2 * DG * K] *= 2.0  # offsets of a few pixels, as trained ADNet alignment produces
        weight = torch.randn(COUT, C, KH, KW, device="cuda", dtype=dtype, generator=gen) / (C * K) ** 0.5
        bias = torch.randn(COUT, device="cuda", dtype=dtype, generator=gen)
        sets.append((x, om, weight, bias))
    return sets


def bench_size(kernels: list, dtype_name: str, h: int, w: int, *, iters: int, warmup: int, sets: int,
               peaks: dict, tv_ops=None, log: Callable[[str], None] = print) -> list[dict]:
    """Times every implementation at one size and dtype; one row each (ms None when it ran out of memory)."""
    import torch

    from export.dcn import deform_conv2d

    dtype = {"float16": torch.float16, "float32": torch.float32}[dtype_name]
    inputs = make_sets(h, w, dtype, sets)
    y = torch.empty(1, COUT, h, w, device="cuda", dtype=dtype)
    moved, flops = traffic_and_flops(h, w, dtype_name)
    limit = floors(moved, flops, peaks, dtype_name)

    def ours(kernel, sets, out):
        def run(i):
            x, om, weight, bias = sets[i % len(sets)]
            kernel.launch(x, om, weight, bias, out, stride=1, padding=1, dilation=1, deformable_groups=DG)
            return out
        return run

    def channels_last(sets):
        return [(x.to(memory_format=torch.channels_last), om.to(memory_format=torch.channels_last), weight, bias)
                for x, om, weight, bias in sets]

    def im2col(i):
        x, om, weight, bias = inputs[i % len(inputs)]
        return deform_conv2d(x, om[:, :2 * DG * K], weight, bias, 1, 1, 1, torch.sigmoid(om[:, 2 * DG * K:]))

    def torchvision_dcn(i):
        x, om, weight, bias = inputs[i % len(inputs)]
        return tv_ops.deform_conv2d(x, om[:, :2 * DG * K], weight, bias, padding=1,
                                    mask=torch.sigmoid(om[:, 2 * DG * K:]))

    base_name = "im2col+GEMM (torch)"
    impls = [(f"ours {kernel.variant}", ours(kernel, inputs, y)) for kernel in kernels]
    fast = [kernel for kernel in kernels if kernel.channels_last and dtype_name == "float16"]
    if fast:
        inputs_cl, y_cl = channels_last(inputs), y.to(memory_format=torch.channels_last)
        impls += [(f"ours {kernel.variant} channels-last", ours(kernel, inputs_cl, y_cl)) for kernel in fast]
    impls.append((base_name, im2col))
    if tv_ops is not None:
        impls.append(("torchvision", torchvision_dcn))
    measured: dict[str, tuple[Optional[float], Optional[object]]] = {}
    for name, fn in impls:
        try:
            out = fn(0).to(torch.float32, memory_format=torch.contiguous_format, copy=True)  # `ours` reuses its output
            measured[name] = (time_ms(fn, iters, warmup), out)
        except torch.cuda.OutOfMemoryError:
            measured[name] = (None, None)
        torch.cuda.empty_cache()
    base_ms, ref = measured[base_name]
    rows = []
    for name, (ms, out) in measured.items():
        err = float((out - ref).norm() / ref.norm()) if name.startswith("ours") and out is not None \
            and ref is not None else None
        row = {"dtype": dtype_name, "H": h, "W": w, "impl": name, "ms": ms,
               "GBps": moved / ms / 1e6 if ms else None, "TFLOPs": flops / ms / 1e9 if ms else None,
               **limit, "of_floor": limit["floor_ms"] / ms if ms else None,
               "speedup_vs_im2col": base_ms / ms if ms and base_ms else None, "rel_err_vs_im2col": err,
               "status": "ok" if ms else "out of memory"}
        rows.append(row)
        log(f"{dtype_name:8} {f'{h}x{w}':>10} {name:22} "
            + (f"{ms:9.3f} ms {row['GBps']:7.0f} GB/s {row['TFLOPs']:6.1f} TFLOP/s {row['of_floor']:6.1%} of floor"
               if ms else "out of memory")
            + (f", {row['speedup_vs_im2col']:.2f}x im2col" if row["speedup_vs_im2col"] else "")
            + (f", rel err {err:.1e}" if err is not None else ""))
    return rows
