"""GPU microbenchmark: the AdnetDCNv2 CUDA kernel against im2col + GEMM at ADNet's DCN shapes.

    python benchmarks/kernels/bench_dcn.py            # or: make bench-kernels BENCH_PYTHON=/path/to/cuda/python

Needs a CUDA GPU, a CUDA build of torch and nvcc (it runs `make kernels`, then loads build/libadnet_dcn_kernels.so).
Shapes: x [1, 64, H, W], 3x3, 8 deformable groups, 64 output channels, at 1060x1900 (NTIRE frame, pyramid level
L1), 530x950 (L2) and 265x475 (L3); FP16 and FP32. Baselines, all im2col + GEMM with the mask sigmoid: export.dcn's
deform_conv2d (torch gather into a C*K*Ho*Wo column buffer + matmul, the algorithm of TensorRT's built-in
ModulatedDeformConv2d plugin) and torchvision.ops.deform_conv2d when torchvision is importable.
Timing: CUDA events around each call, warm-up, median of many runs, inputs rotating over several fresh random sets
(more bytes than L2 holds) so that no run reads the previous run's data from cache. Reports ms, effective GB/s
(x, offset_mask, weight, bias and y moved once) and TFLOP/s (2*Cout*C*K per output pixel) next to the device's
measured copy bandwidth and matmul rate; writes CSV + JSON to benchmarks/results/.
"""
from __future__ import annotations

import argparse
import csv
import ctypes
import datetime
import json
import platform
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from plugins.dcnv2.cuda import KERNELS_LIBRARY as LIBRARY  # noqa: E402
from plugins.dcnv2.cuda import find_nvcc  # noqa: E402
from plugins.dcnv2.cuda import load_kernels as bind_kernels  # noqa: E402
from benchmarks.stats import cuda_event_times  # noqa: E402
SIZES = ((1060, 1900), (530, 950), (265, 475))
C = COUT = 64
KH = KW = 3
DG = 8
K = KH * KW


def no_gpu_message() -> str | None:
    try:
        import torch
    except ImportError:
        return "torch is not installed"
    if not torch.cuda.is_available():
        return f"no CUDA GPU visible to torch {torch.__version__} (torch.cuda.is_available() is False)"
    return None


def load_kernels(build: bool) -> ctypes.CDLL:
    if build:
        if find_nvcc():
            subprocess.run(["make", "-C", str(ROOT), "kernels"], check=True)
        elif not LIBRARY.exists():
            raise SystemExit(f"bench_dcn: nvcc not found and {LIBRARY} missing: install the CUDA toolkit or build "
                             "the library elsewhere (`make kernels`)")
    return bind_kernels(LIBRARY)


def time_ms(fn, iters: int, warmup: int) -> float:
    """Median of `iters` CUDA-event timings of fn(i) on the current stream, after `warmup` calls."""
    for i in range(warmup):
        fn(i)
    return statistics.median(cuda_event_times(lambda i: fn(warmup + i), iters))


def device_peaks(iters: int) -> dict:
    """Measured copy bandwidth (GB/s, read + write of a 1 GiB buffer) and matmul rate (TFLOP/s, 8192^3)."""
    import torch

    src = torch.empty(1 << 28, dtype=torch.float32, device="cuda")
    dst = torch.empty_like(src)
    ms = time_ms(lambda i: dst.copy_(src), iters, 3)
    peaks = {"copy_GBps": 2 * src.numel() * 4 / ms / 1e6}
    del src, dst
    torch.backends.cuda.matmul.allow_tf32 = False
    n = 8192
    for name, dtype in (("float16", torch.float16), ("float32", torch.float32)):
        a = torch.randn(n, n, device="cuda", dtype=dtype)
        b = torch.randn(n, n, device="cuda", dtype=dtype)
        ms = time_ms(lambda i: torch.matmul(a, b), max(5, iters // 4), 2)
        peaks[f"matmul_{name}_TFLOPs"] = 2 * n ** 3 / ms / 1e9
        del a, b
    torch.cuda.empty_cache()
    return peaks


def make_sets(h: int, w: int, dtype, count: int) -> list:
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

def bench_size(lib: ctypes.CDLL, dtype_name: str, h: int, w: int, args, tv_ops) -> list[dict]:
    """Times our kernel and the im2col baselines at one size and dtype; prints and returns one row each."""
    import torch

    from export.dcn import deform_conv2d

    dtype = {"float16": torch.float16, "float32": torch.float32}[dtype_name]
    code = 1 if dtype == torch.float16 else 0
    sets = make_sets(h, w, dtype, args.sets)
    y = torch.empty(1, COUT, h, w, device="cuda", dtype=dtype)
    elem = torch.finfo(dtype).bits // 8
    moved = (C * h * w + 3 * DG * K * h * w + COUT * C * K + COUT + COUT * h * w) * elem
    flops = 2.0 * COUT * C * K * h * w

    def ours(i):
        x, om, weight, bias = sets[i % len(sets)]
        status = lib.adnet_dcn_forward_cuda(code, x.data_ptr(), om.data_ptr(), weight.data_ptr(), bias.data_ptr(),
                                            y.data_ptr(), 1, C, h, w, COUT, KH, KW, 1, 1, 1, DG, None,
                                            torch.cuda.current_stream().cuda_stream)
        if status != 0:
            raise RuntimeError(lib.adnet_dcn_last_error().decode())
        return y

    def im2col(i):
        x, om, weight, bias = sets[i % len(sets)]
        return deform_conv2d(x, om[:, :2 * DG * K], weight, bias, 1, 1, 1, torch.sigmoid(om[:, 2 * DG * K:]))

    def torchvision_dcn(i):
        x, om, weight, bias = sets[i % len(sets)]
        return tv_ops.deform_conv2d(x, om[:, :2 * DG * K], weight, bias, padding=1,
                                    mask=torch.sigmoid(om[:, 2 * DG * K:]))

    ours_name, base_name = "ours (implicit GEMM)", "im2col+GEMM (torch)"
    impls = [(ours_name, ours), (base_name, im2col)] + ([("torchvision", torchvision_dcn)] if tv_ops else [])
    results = {}
    for name, fn in impls:
        try:
            out = fn(0).to(torch.float32, copy=True)  # a copy: `ours` reuses its output buffer
            results[name] = (time_ms(fn, args.iters, args.warmup), out)
        except torch.cuda.OutOfMemoryError:
            results[name] = (None, None)
        torch.cuda.empty_cache()
    base_ms = results[base_name][0]
    ref = next((out for name, (_, out) in results.items() if name != ours_name and out is not None), None)
    rows = []
    for name, (ms, out) in results.items():
        err = float((out - ref).norm() / ref.norm()) if name == ours_name and out is not None and ref is not None \
            else None
        row = {"dtype": dtype_name, "H": h, "W": w, "impl": name, "ms": ms,
               "GBps": moved / ms / 1e6 if ms else None, "TFLOPs": flops / ms / 1e9 if ms else None,
               "speedup_vs_im2col": base_ms / ms if ms and base_ms else None, "rel_err_vs_baseline": err}
        rows.append(row)

        def fmt(v, spec):
            return format(v, spec) if v is not None else ("OOM" if ms is None else "-")

        print(f"{dtype_name:8} {f'{h}x{w}':>10} {name:22} {fmt(ms, '9.3f')} {fmt(row['GBps'], '8.0f')} "
              f"{fmt(row['TFLOPs'], '8.1f')} {fmt(row['speedup_vs_im2col'], '8.2f')} {fmt(err, '8.1e')}")
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default=",".join(f"{h}x{w}" for h, w in SIZES), help="HxW list")
    parser.add_argument("--dtypes", default="float16,float32")
    parser.add_argument("--iters", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--sets", type=int, default=3, help="input sets cycled through (defeats L2 caching)")
    parser.add_argument("--no-build", action="store_true", help="load build/libadnet_dcn_kernels.so as it is")
    parser.add_argument("--out-dir", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args(argv)

    reason = no_gpu_message()
    if reason:
        print(f"bench_dcn: {reason}. This benchmark needs a CUDA GPU, a CUDA build of torch and nvcc; run it on a "
              "GPU machine, e.g. `make bench-kernels BENCH_PYTHON=/path/to/python-with-cuda-torch`.", file=sys.stderr)
        return 2

    import torch

    try:
        import torchvision.ops as tv_ops
    except ImportError:
        tv_ops = None

    lib = load_kernels(build=not args.no_build)
    props = torch.cuda.get_device_properties(0)
    nvcc = find_nvcc() or "nvcc"
    try:
        lines = subprocess.run([nvcc, "--version"], capture_output=True, text=True).stdout.splitlines()
        nvcc_version = next((line for line in lines if "release" in line), "unknown")
    except OSError:
        nvcc_version = "unknown"
    git = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    meta = {
        "gpu": props.name, "compute_capability": f"{props.major}.{props.minor}",
        "sm_count": props.multi_processor_count,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "torch": torch.__version__, "torch_cuda": torch.version.cuda, "nvcc": nvcc_version,
        "torchvision": None, "python": platform.python_version(), "iters": args.iters, "warmup": args.warmup,
        "input_sets": args.sets, "git": git.stdout.strip() or None,
    }
    if tv_ops is not None:
        import torchvision
        meta["torchvision"] = torchvision.__version__
    print(f"{props.name} (sm_{props.major}{props.minor}, {props.multi_processor_count} SMs), "
          f"torch {torch.__version__} CUDA {torch.version.cuda}, {nvcc_version}")
    peaks = device_peaks(args.iters)
    meta.update(peaks)
    print(f"measured: copy {peaks['copy_GBps']:.0f} GB/s; matmul fp16 {peaks['matmul_float16_TFLOPs']:.0f}, "
          f"fp32 {peaks['matmul_float32_TFLOPs']:.1f} TFLOP/s (no TF32)")

    rows = []
    print(f"{'dtype':8} {'size':>10} {'impl':22} {'ms':>9} {'GB/s':>8} {'TFLOP/s':>8} {'speedup':>8} "
          f"{'rel.err':>8}")
    for dtype_name in args.dtypes.split(","):
        for size in args.sizes.split(","):
            h, w = (int(v) for v in size.lower().split("x"))
            rows += bench_size(lib, dtype_name, h, w, args, tv_ops)
            torch.cuda.empty_cache()

    args.out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"dcn_kernels_{props.name.replace(' ', '_')}_{datetime.date.today().isoformat()}"
    with open(args.out_dir / f"{stem}.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    (args.out_dir / f"{stem}.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    print(f"wrote {args.out_dir / stem}.csv and .json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
