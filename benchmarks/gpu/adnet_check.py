"""Whole ADNet at 1060x1900 (the NTIRE frame) in PyTorch on the GPU: gpu-check's adnet phase.

Variants, all on the same three pre-processed frames (export.pipeline's EV alignment and padding) and the same
seeded random weights (export.checkpoint.random_adnet; no trained ADNet exists):

    fp32             eager FP32, TF32 off in cuDNN and cuBLAS: the reference the others are compared with
    fp32-tf32        eager FP32 with TF32 on
    fp16             eager FP16 (export.dcn's gather + matmul DCN in FP16)
    fp16-nhwc        eager FP16 with network and inputs in channels-last memory format (cuDNN's preferred FP16 layout)
    fp16-ours        eager FP16 with our CUDA kernel in place of the DCN op (torch_dcn.our_dcn; the kernel the plugin
                     would pick, and channels-last memory when that kernel has its channels-last fast path)
    fp16-ours-graph  that, captured once and replayed as a CUDA graph

Per variant: median time over CUDA events, peak allocated GPU memory, and the error of the gamma-domain output
against fp32 (relative L2, max abs / peak, NTIRE PSNR-mu). cuDNN autotuning (benchmark mode) stays off: it would
spend the budget searching.
"""
from __future__ import annotations

import copy
import time
from typing import Callable, Optional

import numpy as np

__all__ = ["SIZE", "VARIANTS", "frames", "errors", "run"]

SIZE = (1060, 1900)
VARIANTS = {
    "fp32": "eager FP32, TF32 off",
    "fp32-tf32": "eager FP32, TF32 on",
    "fp16": "eager FP16",
    "fp16-nhwc": "eager FP16, channels-last",
    "fp16-ours": "eager FP16, our DCN kernel",
    "fp16-ours-graph": "FP16, our DCN kernel, CUDA graph",
}
NEEDS_KERNEL = ("fp16-ours", "fp16-ours-graph")


def frames(h: int, w: int, device: str):
    """The three network inputs [1, 6, H', W'] (float32) of a synthetic scene, as the pipeline graph makes them."""
    import torch

    from client.synthetic import make_scene
    from export.pipeline import ADNetPipeline

    scene = make_scene(h, w, seed=0)
    ldr = torch.from_numpy(scene.ldrs[None]).to(device)
    ev = torch.from_numpy(np.asarray(scene.evs, np.float32)[None]).to(device)
    return ADNetPipeline(torch.nn.Identity()).frames(ldr, ev)


def errors(ref: np.ndarray, out: np.ndarray) -> dict:
    """Error of a gamma-domain output [1, 3, H, W] against the reference."""
    from client.hdr_math import ntire_psnr_mu

    ref64, out64 = ref.astype(np.float64), out.astype(np.float64)
    diff = np.abs(out64 - ref64)
    finite = bool(np.isfinite(out64).all())
    hwc = [np.maximum(a[0].transpose(1, 2, 0), 0) for a in (ref64, out64)]
    return {"rel_l2_vs_fp32": float(np.linalg.norm(out64 - ref64) / np.linalg.norm(ref64)),
            "max_abs_rel_to_peak": float(diff.max() / max(np.abs(ref64).max(), 1e-12)),
            "psnr_mu_vs_fp32_db": float(ntire_psnr_mu(*hwc)) if finite else None, "finite": finite}


def _measure(fn: Callable, iters: int, warmup: int) -> tuple:
    import torch

    from benchmarks.stats import cuda_event_times, summarize

    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    out = fn()
    for _ in range(max(warmup - 1, 0)):
        fn()
    samples = cuda_event_times(lambda i: fn(), iters)
    return out.float().cpu().numpy(), summarize(samples), torch.cuda.max_memory_allocated()


def run(kernel=None, *, kernel_reason: str = "", remaining: Callable[[], float] = lambda: 1e9,
        log: Callable[[str], None] = print, size=SIZE, iters: int = 3, warmup: int = 1, seed: int = 0) -> list[dict]:
    """One row per variant; variants that need `kernel` are skipped with kernel_reason when it is None, and a
    variant that would not fit in remaining() seconds is skipped for the budget."""
    import torch

    from export.checkpoint import random_adnet

    from benchmarks.gpu.torch_dcn import our_dcn

    matmul, cudnn = torch.backends.cuda.matmul, torch.backends.cudnn
    saved = (matmul.allow_tf32, cudnn.allow_tf32, cudnn.benchmark)
    cudnn.benchmark = False
    net32 = random_adnet(seed).cuda().eval()
    net16 = copy.deepcopy(net32).half()
    nhwc = torch.channels_last
    net16_nhwc = copy.deepcopy(net16).to(memory_format=nhwc)
    inputs32 = frames(*size, "cuda")
    inputs16 = [f.half() for f in inputs32]
    inputs16_nhwc = [f.to(memory_format=nhwc) for f in inputs16]
    # Our kernel runs where the plugin's would: channels-last when it has that fast path.
    net_ours, inputs_ours = (net16_nhwc, inputs16_nhwc) if kernel is not None and kernel.channels_last \
        else (net16, inputs16)

    def eager(net, inputs, ours=False):
        def call():
            with torch.inference_mode():
                if ours:
                    with our_dcn(net, kernel):
                        return net(*inputs)
                return net(*inputs)
        return call

    def graphed():
        static = [f.clone(memory_format=torch.preserve_format) for f in inputs_ours]
        with torch.inference_mode(), our_dcn(net_ours, kernel):
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                for _ in range(2):  # warm-up outside the capture (cuDNN/cuBLAS workspaces, lazy loading)
                    net_ours(*static)
            torch.cuda.current_stream().wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                out = net_ours(*static)

        def replay():
            graph.replay()
            return out
        return replay

    plans = {"fp32": lambda: eager(net32, inputs32), "fp32-tf32": lambda: eager(net32, inputs32),
             "fp16": lambda: eager(net16, inputs16), "fp16-nhwc": lambda: eager(net16_nhwc, inputs16_nhwc),
             "fp16-ours": lambda: eager(net_ours, inputs_ours, ours=True), "fp16-ours-graph": graphed}
    rows, reference, per_call_s = [], None, 0.0
    try:
        for name, label in VARIANTS.items():
            row = {"variant": name, "label": label, "size": f"{size[0]}x{size[1]}"}
            if name in NEEDS_KERNEL and kernel is not None:
                row.update(kernel=kernel.variant,
                           memory_format="channels-last" if net_ours is net16_nhwc else "nchw")
            rows.append(row)
            if name in NEEDS_KERNEL and kernel is None:
                row.update(status="skipped", note=kernel_reason)
                continue
            if remaining() < 3 * per_call_s * (iters + warmup) + 5:
                row.update(status="skipped", note=f"not run: {remaining():.0f} s left of the phase budget")
                continue
            tf32 = name == "fp32-tf32"
            matmul.allow_tf32 = cudnn.allow_tf32 = tf32
            started = time.perf_counter()
            try:
                out, stats, peak = _measure(plans[name](), iters, warmup)
            except torch.cuda.OutOfMemoryError as exc:
                row.update(status="error", note=f"out of GPU memory: {str(exc).splitlines()[0]}")
                torch.cuda.empty_cache()
                continue
            except Exception as exc:  # e.g. a capture that fails: recorded, the other variants still run
                row.update(status="error", note=f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
                continue
            per_call_s = max(per_call_s, (time.perf_counter() - started) / (iters + warmup))
            if reference is None and name == "fp32":
                reference = out
            row.update(status="ok", median_ms=stats["median_ms"], min_ms=stats["min_ms"], runs=stats["n"],
                       peak_memory_gib=peak / 2 ** 30,
                       **(errors(reference, out) if reference is not None else {}))
            log(f"{name:16} {stats['median_ms']:9.1f} ms  peak {peak / 2 ** 30:5.1f} GiB"
                + (f"  PSNR-mu vs fp32 {row['psnr_mu_vs_fp32_db']:.1f} dB" if row.get("psnr_mu_vs_fp32_db") else ""))
            torch.cuda.empty_cache()
    finally:
        matmul.allow_tf32, cudnn.allow_tf32, cudnn.benchmark = saved
    return rows


def fastest(rows: list[dict]) -> Optional[dict]:
    ok = [r for r in rows if r.get("status") == "ok"]
    return min(ok, key=lambda r: r["median_ms"]) if ok else None
