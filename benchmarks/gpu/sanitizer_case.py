"""A small, torch-free run of our CUDA kernel for compute-sanitizer (gpu-check's sanitizer phase):

    compute-sanitizer --tool memcheck python -m benchmarks.gpu.sanitizer_case --library build/libadnet_dcn_kernels.so

Odd shapes from dcn_checks.CASES in float32 and float16 (and FP16 channels-last ones for the variants that take
them), device memory through the CUDA driver (cuda_driver.py), outputs poisoned with NaN between canaries, results
compared with the CPU twin. Exit 0 when every case is right.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from benchmarks.gpu.cuda_driver import Driver
from benchmarks.gpu.dcn_checks import CANARY, CASES, GUARD, TOLERANCES, as_fp16_values, make_inputs, rel_l2

__all__ = ["SANITIZER_CASES", "SANITIZER_CHANNELS_LAST_CASES", "DeviceArray", "run", "main"]

# Tails in every dimension, one channel per group, Cout past a tile, 5x5, NaN offsets; each launch is slow under
# racecheck, so not all of CASES.
SANITIZER_CASES = ("adnet-layer", "batch2-w1901", "one-channel-per-group", "cout65", "kernel5x5", "nan-offsets")


# Run as well with channels-last tensors by the variants that take them (the FP16 fast path).
SANITIZER_CHANNELS_LAST_CASES = ("adnet-layer", "cl-c16-dg1-batch2-w1901", "cl-nan-offsets")


class DeviceArray:
    """A device buffer from the driver in logical NCHW shape, dense NCHW or (channels_last) dense NHWC, with the
    attributes torch_dcn.Kernel reads."""

    def __init__(self, ptr: int, shape: tuple, dtype: str, channels_last: bool = False):
        self.ptr, self.shape, self.dtype, self.channels_last = ptr, tuple(shape), np.dtype(dtype), channels_last

    def data_ptr(self) -> int:
        return self.ptr

    def stride(self) -> tuple:
        if self.channels_last:
            n, c, h, w = self.shape
            return (h * w * c, 1, w * c, c)
        return tuple(int(np.prod(self.shape[i + 1:])) for i in range(len(self.shape)))


def _memory(array: np.ndarray, channels_last: bool) -> np.ndarray:
    """The bytes of an NCHW array as the device holds them."""
    return np.ascontiguousarray(array.transpose(0, 2, 3, 1) if channels_last else array)


def run(library: Path, names=SANITIZER_CASES, variant: str = "v1") -> list[str]:
    """The failures (empty when every case is right)."""
    from benchmarks.gpu.dcn_checks import CHANNELS_LAST_CASES
    from benchmarks.gpu.torch_dcn import Kernel, KernelError
    from plugins.dcnv2.cpu import dcnv2_forward
    from plugins.dcnv2.cuda import load_kernels

    kernel = Kernel(load_kernels(Path(library)), variant)
    driver = Driver()
    stream = driver.stream()
    runs = [(c, dtype, False) for c in CASES if c.name in names for dtype in ("float32", "float16")]
    if kernel.channels_last:
        runs += [(c, "float16", True) for c in CASES + CHANNELS_LAST_CASES
                 if c.name in SANITIZER_CHANNELS_LAST_CASES]
    failures = []
    for case, dtype, channels_last in runs:
        label = f"{case.name} {dtype}{' channels-last' if channels_last else ''}"
        x, om, w, b = make_inputs(case, np.random.default_rng())
        if dtype == "float16":
            x, om, w, b = as_fp16_values(x, om, w, b)
        arrays = [np.asarray(a, dtype) for a in (x, om, w, b)]
        layouts = [channels_last, channels_last and om.shape[1] % 8 == 0, False, False]
        ho, wo = case.out_size()
        shape = (case.batch, case.cout, ho, wo)
        y_channels_last = channels_last and case.cout % 8 == 0
        n = int(np.prod(shape))
        guarded = np.full(n + 2 * GUARD, np.nan, dtype)
        guarded[:GUARD] = guarded[GUARD + n:] = CANARY
        inputs = [DeviceArray(driver.upload(_memory(a, cl) if a.ndim == 4 else a), a.shape, dtype, cl)
                  for a, cl in zip(arrays, layouts)]
        out_ptr = driver.upload(guarded)
        try:
            kernel.launch(*inputs, DeviceArray(out_ptr + GUARD * guarded.itemsize, shape, dtype, y_channels_last),
                          stream=stream, **case.fields)
            driver.synchronize(stream)
            host = driver.download(out_ptr, np.empty_like(guarded)).astype(np.float64)
        except KernelError as exc:
            failures.append(f"{label}: {exc}")
            continue
        finally:
            for ptr in [a.ptr for a in inputs] + [out_ptr]:
                driver.free(ptr)
        inside = host[GUARD:GUARD + n]
        got = (inside.reshape(shape[0], ho, wo, shape[1]).transpose(0, 3, 1, 2) if y_channels_last
               else inside.reshape(shape))
        twin = dcnv2_forward(x, om, w, b, dtype=dtype, **case.fields).astype(np.float64)
        problems = []
        if not (np.all(host[:GUARD] == CANARY) and np.all(host[GUARD + n:] == CANARY)):
            problems.append("canary overwritten")
        if np.isnan(got).any():
            problems.append(f"{int(np.isnan(got).sum())} outputs unwritten")
        elif rel_l2(got, twin) > TOLERANCES[dtype]["rel_l2_f64"]:
            problems.append(f"rel L2 vs twin {rel_l2(got, twin):.2e}")
        print(f"{label}: {'; '.join(problems) or 'ok'}", flush=True)
        failures += [f"{label}: {p}" for p in problems]
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
