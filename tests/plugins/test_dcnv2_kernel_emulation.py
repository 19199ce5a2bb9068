"""The CUDA kernel's own source (plugins/dcnv2/dcnv2_kernel.cuh) executed on the CPU, against the CPU twin.

tests/plugins/dcnv2_emulation/kernel_emulation.cpp compiles the kernel as host C++: a block is kThreads std::threads with
a barrier for __syncthreads, __shared__ is one static array, WMMA is a host stand-in that also checks WMMA's
alignment rules; AddressSanitizer and UBSan watch every access. This tests the tiling, the guards for sizes that
are not tile multiples, the shared-memory layout, the barriers and the FP16 rounding points where no GPU exists.
What it cannot test: real tensor cores, __ldg, timing, and the launch on a device (tests/plugins/test_dcnv2_cuda.py).
"""
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from plugins.dcnv2 import build
from plugins.dcnv2.cpu import dcnv2_forward
from tests.factories import fresh_generator


@pytest.fixture(scope="module")
def emulator():
    """`make emulator` (g++ with ASan/UBSan where available; make owns the flags)."""
    config = build.config()
    if shutil.which(config["CXX"].split()[0]) is None or not (Path(config["CUDA_INCLUDE"]) / "cuda_fp16.h").exists():
        pytest.skip(f"needs {config['CXX']} and the CUDA toolkit headers (cuda_fp16.h in {config['CUDA_INCLUDE']}; "
                    "set CUDA_HOME) to compile the kernel source for the CPU")
    output = build.make("emulator")
    assert "warning" not in output, output
    return build.ROOT / config["EMULATOR"]


def run_emulated(exe, tmp_path, dtype, x, offset_mask, weight, bias, s, p, d, dg):
    np_dtype = np.float16 if dtype == "float16" else np.float32
    n, c, h, w = x.shape
    cout, _, kh, kw = weight.shape
    ho, wo = offset_mask.shape[2:]
    for name, a in (("x", x), ("offset_mask", offset_mask), ("weight", weight), ("bias", bias)):
        np.ascontiguousarray(a, dtype=np_dtype).tofile(tmp_path / f"{name}.bin")
    np.full((n, cout, ho, wo), np.nan, dtype=np_dtype).tofile(tmp_path / "y.bin")  # poison
    code = "1" if dtype == "float16" else "0"
    result = subprocess.run([str(exe), code, *map(str, (n, c, h, w, cout, kh, kw, s, p, d, dg)), str(tmp_path)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return np.fromfile(tmp_path / "y.bin", dtype=np_dtype).reshape(n, cout, ho, wo)


# (batch, C, H, W, Cout, kh, kw, stride, padding, dilation, dg): each exercises a different part of the tiling.
CASES = [
    (1, 64, 12, 20, 64, 3, 3, 1, 1, 1, 8),   # ADNet's layer: one step per group, pixel tail in the last tile
    (2, 12, 9, 11, 70, 3, 3, 2, 2, 2, 1),    # Cout 70: two channel tiles; dg 1: a group needs 2 steps
    (1, 3, 14, 15, 5, 10, 10, 1, 4, 1, 3),   # K = 100 > rows per step: taps split across steps
    (1, 20, 7, 9, 6, 1, 1, 1, 0, 1, 4),      # 1x1 kernel: 5-row steps padded to the MMA k-step
    (1, 6, 10, 13, 7, 2, 3, 3, 0, 1, 2),     # non-square kernel, stride 3, no padding
]


@pytest.mark.parametrize("case", CASES)
def test_emulated_kernel_matches_the_twin(emulator, tmp_path, case):
    n, c, h, w, cout, kh, kw, s, p, d, dg = case
    rng = np.random.default_rng(fresh_generator().initial_seed())
    ho, wo, k = (h + 2 * p - d * (kh - 1) - 1) // s + 1, (w + 2 * p - d * (kw - 1) - 1) // s + 1, kh * kw
    x = rng.standard_normal((n, c, h, w))
    om = np.concatenate([rng.standard_normal((n, 2 * dg * k, ho, wo)) * 3,
                         rng.standard_normal((n, dg * k, ho, wo)) * 2], axis=1)
    weight = rng.standard_normal((cout, c, kh, kw)) / np.sqrt(c * k)
    bias = rng.standard_normal(cout)
    for dtype in ("float32", "float16"):
        got = run_emulated(emulator, tmp_path, dtype, x, om, weight, bias, s, p, d, dg)
        assert not np.isnan(got).any(), "the kernel left poisoned outputs unwritten"
        twin = dcnv2_forward(x, om, weight, bias, stride=s, padding=p, dilation=d, deformable_groups=dg,
                             dtype=dtype)
        if dtype == "float32":
            # Same products; the kernel accumulates with fmaf, the twin with separate multiply and add.
            err = np.linalg.norm(got.astype(np.float64) - twin) / np.linalg.norm(twin.astype(np.float64))
            assert err <= 1e-6
        else:
            # Same sampling code, same column rounding, and the emulated MMA sums in the twin's order: identical.
            np.testing.assert_array_equal(got, twin)
