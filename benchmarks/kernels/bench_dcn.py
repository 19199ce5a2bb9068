"""GPU microbenchmark: the AdnetDCNv2 CUDA kernel against im2col + GEMM at ADNet's DCN shapes.

    python benchmarks/kernels/bench_dcn.py            # or: make bench-kernels BENCH_PYTHON=/path/to/cuda/python

Needs a CUDA GPU, a CUDA build of torch and nvcc (it runs `make kernels`, then loads the kernels library). What is
measured and how: benchmarks/gpu/dcn_speed.py (also gpu-check's kernel_speed phase). Writes CSV + JSON to
benchmarks/results/dcn_kernels_<gpu>_<date>.*.
"""
from __future__ import annotations

import argparse
import csv
import datetime
import json
import platform
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.gpu import dcn_speed, phases, torch_dcn  # noqa: E402
from benchmarks.gpu.runner import Skip  # noqa: E402
from plugins.dcnv2.cuda import KERNELS_LIBRARY, load_kernels  # noqa: E402


def no_gpu_message() -> str | None:
    try:
        import torch
    except ImportError:
        return "torch is not installed"
    if not torch.cuda.is_available():
        return f"no CUDA GPU visible to torch {torch.__version__} (torch.cuda.is_available() is False)"
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default=",".join(f"{h}x{w}" for h, w in dcn_speed.SIZES), help="HxW list")
    parser.add_argument("--dtypes", default="float16,float32")
    parser.add_argument("--iters", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--sets", type=int, default=3, help="input sets cycled through (defeats L2 caching)")
    parser.add_argument("--no-build", action="store_true", help="load the kernels library as it is")
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
    except ImportError:  # PyPI's torchvision must match the torch build exactly
        tv_ops = None
    library = KERNELS_LIBRARY
    if not args.no_build:
        try:
            library, _ = phases.build_kernels()
        except (Skip, RuntimeError) as exc:
            raise SystemExit(f"bench_dcn: {exc}") from None
    kernels = [k for _, k in torch_dcn.kernels(load_kernels(library))]
    props = torch.cuda.get_device_properties(0)
    nvcc_version = phases.nvcc_version(phases.nvcc_path()) or "unknown"
    git = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    meta = {
        "gpu": props.name, "compute_capability": f"{props.major}.{props.minor}",
        "sm_count": props.multi_processor_count,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "torch": torch.__version__, "torch_cuda": torch.version.cuda, "nvcc": nvcc_version,
        "torchvision": None, "python": platform.python_version(), "iters": args.iters, "warmup": args.warmup,
        "input_sets": args.sets, "git": git.stdout.strip() or None,
        "kernel_variants": [k.variant for k in kernels],
    }
    if tv_ops is not None:
        import torchvision
        meta["torchvision"] = torchvision.__version__
    print(f"{props.name} (sm_{props.major}{props.minor}, {props.multi_processor_count} SMs), "
          f"torch {torch.__version__} CUDA {torch.version.cuda}, {nvcc_version}")
    peaks = dcn_speed.device_peaks(args.iters)
    meta.update(peaks)
    print(f"measured: copy {peaks['copy_GBps']:.0f} GB/s; matmul fp16 {peaks['matmul_float16_TFLOPs']:.0f}, "
          f"fp32 {peaks['matmul_float32_TFLOPs']:.1f} TFLOP/s (no TF32)")
    rows = []
    for dtype_name in args.dtypes.split(","):
        for size in args.sizes.split(","):
            h, w = (int(v) for v in size.lower().split("x"))
            rows += dcn_speed.bench_size(kernels, dtype_name, h, w, iters=args.iters, warmup=args.warmup,
                                         sets=args.sets, peaks=peaks, tv_ops=tv_ops)
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
