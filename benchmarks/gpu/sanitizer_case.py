"""A small, torch-free run of our CUDA kernel for compute-sanitizer (gpu-check's sanitizer phase):

    compute-sanitizer --tool memcheck python -m benchmarks.gpu.sanitizer_case --library build/libadnet_dcn_kernels.so

Odd shapes from dcn_checks.CASES in float32 and float16, device memory through the CUDA driver (cuda_driver.py),
outputs poisoned with NaN between canaries, results compared with the CPU twin. Exit 0 when every case is right.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from benchmarks.gpu.cuda_driver import Driver
from benchmarks.gpu.dcn_checks import CANARY, CASES, GUARD, TOLERANCES, as_fp16_values, make_inputs, rel_l2

__all__ = ["SANITIZER_CASES", "run", "main"]

# Tails in every dimension, one channel per group, Cout past a tile, 5x5, NaN offsets; each launch is slow under
# racecheck, so not all of CASES.
SANITIZER_CASES = ("adnet-layer", "batch2-w1901", "one-channel-per-group", "cout65", "kernel5x5", "nan-offsets")


def run(library: Path, names=SANITIZER_CASES, variant: str = "v1") -> list[str]:
    """The failures (empty when every case is right)."""
    from benchmarks.gpu.torch_dcn import kernels
    from plugins.dcnv2.cpu import dcnv2_forward
    from plugins.dcnv2.cuda import load_kernels

    lib = load_kernels(Path(library))
    fn = dict(kernels(lib))[variant]
    if isinstance(fn, str):
        return [f"variant {variant}: {fn}"]
    driver = Driver()
    stream = driver.stream()
    failures = []
    for case in (c for c in CASES if c.name in names):
        for dtype in ("float32", "float16"):
            x, om, w, b = make_inputs(case, np.random.default_rng())
            if dtype == "float16":
                x, om, w, b = as_fp16_values(x, om, w, b)
            arrays = [np.ascontiguousarray(a, dtype) for a in (x, om, w, b)]
            ho, wo = case.out_size()
            n = case.batch * case.cout * ho * wo
            guarded = np.full(n + 2 * GUARD, np.nan, dtype)
            guarded[:GUARD] = guarded[GUARD + n:] = CANARY
            ptrs = [driver.upload(a) for a in arrays]
            out_ptr = driver.upload(guarded)
            status = fn.fn(1 if dtype == "float16" else 0, *ptrs, out_ptr + GUARD * guarded.itemsize, case.batch,
                           case.channels, case.height, case.width, case.cout, case.kh, case.kw, case.stride,
                           case.padding, case.dilation, case.groups, None, stream)
            if status != 0:
                failures.append(f"{case.name} {dtype}: {lib.adnet_dcn_last_error().decode()}")
                continue
            driver.synchronize(stream)
            host = driver.download(out_ptr, np.empty_like(guarded)).astype(np.float64)
            for ptr in ptrs + [out_ptr]:
                driver.free(ptr)
            got = host[GUARD:GUARD + n].reshape(case.batch, case.cout, ho, wo)
            twin = dcnv2_forward(x, om, w, b, dtype=dtype, **case.fields).astype(np.float64)
            problems = []
            if not (np.all(host[:GUARD] == CANARY) and np.all(host[GUARD + n:] == CANARY)):
                problems.append("canary overwritten")
            if np.isnan(got).any():
                problems.append(f"{int(np.isnan(got).sum())} outputs unwritten")
            elif rel_l2(got, twin) > TOLERANCES[dtype]["rel_l2_f64"]:
                problems.append(f"rel L2 vs twin {rel_l2(got, twin):.2e}")
            print(f"{case.name} {dtype}: {'; '.join(problems) or 'ok'}", flush=True)
            failures += [f"{case.name} {dtype}: {p}" for p in problems]
    return failures


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu.sanitizer_case",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--library", type=Path, required=True)
    parser.add_argument("--variant", default="v1")
    args = parser.parse_args(argv)
    failures = run(args.library, variant=args.variant)
    print("sanitizer case: " + ("ok" if not failures else "FAILED: " + " | ".join(failures)), flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
