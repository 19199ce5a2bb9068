"""The CUDA kernels' own sources executed on the CPU, against the CPU twin: the generic kernel (dcnv2_kernel.cuh, v1)
and the FP16 channels-last fast path (dcnv2_kernel_v2.cuh, v2).

tests/plugins/dcnv2_emulation/kernel_emulation.cpp compiles the kernels as host C++: a block is kThreads std::threads
with a barrier for __syncthreads, __shared__ is one static array, dynamic shared memory one buffer of the planned size,
WMMA a host stand-in that also checks WMMA's alignment rules; AddressSanitizer and UBSan watch every access. This tests
the tiling, the guards for sizes that are not tile multiples, the shared-memory layouts, the double-buffered pipeline
and its barriers, the persistent blocks, the 128-bit channels-last loads and stores, the weight permutation and the
FP16 rounding points where no GPU exists. The FP16 results are bit-identical to the twin: both compute the dot
products exactly and round once (dcnv2_cpu.cpp), so v1's channel-major and v2's tap-major reductions both match.
What it cannot test: real tensor cores, __ldg, timing, occupancy, and the launch on a device
(tests/plugins/test_dcnv2_cuda.py).
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


FORMAT = {"linear": 0, "channels_last": 1}
VARIANT = {"best": 0, "v1": 1, "v2": 2}
# The launcher's resident-weights budget (two blocks per SM: half the SM's shared memory less the 1 KB reserve):
H100_BUDGET = 228 * 1024 // 2 - 1024  # sm_90: ADNet's weights stay resident
A100_BUDGET = 164 * 1024 // 2 - 1024  # sm_80: they are streamed


def to_format(a, fmt):
    return np.ascontiguousarray(a if fmt == "linear" else np.transpose(a, (0, 2, 3, 1)))


def run_emulated(exe, tmp_path, dtype, x, offset_mask, weight, bias, s, p, d, dg, *, formats=("linear",) * 3,
                 variant="best", shared=H100_BUDGET, blocks=1 << 30):
    """The emulated kernel on NCHW inputs (converted to `formats` = x, offset_mask, y): (NCHW output, its log)."""
    np_dtype = np.float16 if dtype == "float16" else np.float32
    n, c, h, w = x.shape
    cout, _, kh, kw = weight.shape
    ho, wo = offset_mask.shape[2:]
    for name, a in (("x", to_format(x, formats[0])), ("offset_mask", to_format(offset_mask, formats[1])),
                    ("weight", weight), ("bias", bias)):
        np.ascontiguousarray(a, dtype=np_dtype).tofile(tmp_path / f"{name}.bin")
    np.full((n, cout, ho, wo), np.nan, dtype=np_dtype).tofile(tmp_path / "y.bin")  # poison
    code = "1" if dtype == "float16" else "0"
    args = (n, c, h, w, cout, kh, kw, s, p, d, dg, *(FORMAT[f] for f in formats), VARIANT[variant], shared, blocks)
    result = subprocess.run([str(exe), code, *map(str, args), str(tmp_path)], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    y = np.fromfile(tmp_path / "y.bin", dtype=np_dtype)
    if formats[2] == "channels_last":
        return y.reshape(n, ho, wo, cout).transpose(0, 3, 1, 2), result.stdout
    return y.reshape(n, cout, ho, wo), result.stdout


def random_case(rng, n, c, h, w, cout, kh, kw, s, p, d, dg, offset_scale=3.0):
    ho, wo, k = (h + 2 * p - d * (kh - 1) - 1) // s + 1, (w + 2 * p - d * (kw - 1) - 1) // s + 1, kh * kw
    x = rng.standard_normal((n, c, h, w))
    om = np.concatenate([rng.standard_normal((n, 2 * dg * k, ho, wo)) * offset_scale,
                         rng.standard_normal((n, dg * k, ho, wo)) * 2], axis=1)
    weight = rng.standard_normal((cout, c, kh, kw)) / np.sqrt(c * k)
    bias = rng.standard_normal(cout)
    return x, om, weight, bias


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
    x, om, weight, bias = random_case(rng, *case)
    for dtype in ("float32", "float16"):
        got, log = run_emulated(emulator, tmp_path, dtype, x, om, weight, bias, s, p, d, dg)
        assert "generic kernel" in log
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


# The fast path (v2): FP16, channels-last x, C/dg a multiple of 8, 3x3. (case, formats of x / offset_mask / y,
# shared-memory limit, most persistent blocks, offset scale)
FAST_CASES = [
    # ADNet's layer, everything channels-last, resident weights; 3 persistent blocks walk 4 pixel tiles
    ((1, 64, 12, 40, 64, 3, 3, 1, 1, 1, 8), ("channels_last",) * 3, H100_BUDGET, 3, 3.0),
    # linear offsets and output, Cout 70 (two channel tiles), batch 2, stride/dilation/padding 2, 144 rows (a partial
    # last step); weights streamed per step (a 56 KB budget: resident would need 63 KB)
    ((2, 16, 11, 13, 70, 3, 3, 2, 2, 2, 2), ("channels_last", "linear", "linear"), 56 * 1024, 1 << 30, 3.0),
    # ADNet's layer on sm_80's budget: streamed weights, everything channels-last
    ((1, 64, 10, 15, 64, 3, 3, 1, 1, 1, 8), ("channels_last",) * 3, A100_BUDGET, 1, 3.0),
    # dg 1: 32 channels per group (4 segments per tap), offsets linear (27 channels), channels-last output
    ((1, 32, 9, 17, 24, 3, 3, 1, 1, 1, 1), ("channels_last", "linear", "channels_last"), H100_BUDGET, 2, 3.0),
    # most samples far outside the image, pixel tail
    ((1, 64, 7, 9, 8, 3, 3, 1, 1, 1, 8), ("channels_last", "channels_last", "channels_last"), H100_BUDGET, 1, 40.0),
]


@pytest.mark.parametrize("case,formats,shared,blocks,scale", FAST_CASES)
def test_emulated_fast_path_is_bit_identical_to_the_twin(emulator, tmp_path, case, formats, shared, blocks, scale):
    n, c, h, w, cout, kh, kw, s, p, d, dg = case
    rng = np.random.default_rng(fresh_generator().initial_seed())
    x, om, weight, bias = random_case(rng, *case, offset_scale=scale)
    got, log = run_emulated(emulator, tmp_path, "float16", x, om, weight, bias, s, p, d, dg, formats=formats,
                            shared=shared, blocks=blocks)
    assert "fast path" in log and ("streamed" if shared < H100_BUDGET else "resident") in log, log
    assert not np.isnan(got).any(), "the kernel left poisoned outputs unwritten"
    twin = dcnv2_forward(x, om, weight, bias, stride=s, padding=p, dilation=d, deformable_groups=dg, dtype="float16")
    np.testing.assert_array_equal(got, twin)


def test_fast_path_special_values_match_the_twin(emulator, tmp_path):
    """NaN and huge offsets, +-inf mask logits, an inf input pixel: same outputs (NaN where the twin has NaN)."""
    case = (1, 16, 6, 10, 8, 3, 3, 1, 1, 1, 2)
    rng = np.random.default_rng(fresh_generator().initial_seed())
    x, om, weight, bias = random_case(rng, *case)
    om[0, 0, 1, 2] = np.nan
    om[0, 3, 2, 3], om[0, 21, 1, 1] = 6e4, np.inf
    om[0, 36, 3, 4], om[0, 40, 4, 5] = np.inf, -np.inf
    x[0, 5, 2, 2] = np.inf
    got, _ = run_emulated(emulator, tmp_path, "float16", x, om, weight, bias, 1, 1, 1, 2,
                          formats=("channels_last", "linear", "channels_last"))
    twin = dcnv2_forward(x, om, weight, bias, deformable_groups=2, dtype="float16")
    np.testing.assert_array_equal(got, twin)  # NaNs compare equal in assert_array_equal


def test_v1_on_the_same_problem_runs_the_generic_kernel_and_agrees(emulator, tmp_path):
    """variant v1 on linear tensors: the generic kernel, bit-identical to the twin and so to the fast path."""
    case = (1, 64, 8, 20, 64, 3, 3, 1, 1, 1, 8)
    x, om, weight, bias = random_case(np.random.default_rng(fresh_generator().initial_seed()), *case)
    v1, log1 = run_emulated(emulator, tmp_path, "float16", x, om, weight, bias, 1, 1, 1, 8, variant="v1")
    v2, log2 = run_emulated(emulator, tmp_path, "float16", x, om, weight, bias, 1, 1, 1, 8,
                            formats=("channels_last",) * 3, variant="v2")
    assert "generic kernel" in log1 and "fast path" in log2
    np.testing.assert_array_equal(v1, v2)
