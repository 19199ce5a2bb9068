"""The AdnetDCNv2 CUDA kernels (build/libadnet_dcn_kernels.so) on a GPU, against the CPU twin and float64.

Skipped without a CUDA GPU (CI has none). On a GPU box: `make kernels` (nvcc) is run first when nvcc is found.
Tensors are torch CUDA tensors handed to the C ABI through ctypes on a non-default stream; outputs are poisoned
with NaN first.
"""
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

if not torch.cuda.is_available():
    pytest.skip("needs a CUDA GPU and a CUDA build of torch (torch.cuda.is_available() is False; CI has no GPU)",
                allow_module_level=True)

from plugins.dcnv2.cpu import dcnv2_forward  # noqa: E402
from plugins.dcnv2.cuda import KERNELS_LIBRARY, find_nvcc, load_kernels  # noqa: E402
from tests.factories import fresh_generator  # noqa: E402
from tests.reference import rel_l2  # noqa: E402
from tests.plugins.test_dcnv2_twin import as_fp16_values, make_case, reference  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def kernels():
    if find_nvcc():
        result = subprocess.run(["make", "kernels"], cwd=ROOT, capture_output=True, text=True)
        assert result.returncode == 0, result.stdout + result.stderr
    elif not KERNELS_LIBRARY.exists():
        pytest.skip(f"{KERNELS_LIBRARY} is missing and nvcc was not found: build it with `make kernels` on a CUDA "
                    "machine")
    return load_kernels()


def run_cuda(lib, x, om, w, b, s, p, d, dg, dtype):
    tdtype = torch.float16 if dtype == "float16" else torch.float32
    xs, oms, ws, bs = (torch.as_tensor(np.asarray(a)).to("cuda", tdtype).contiguous() for a in (x, om, w, b))
    n, c, h, wd = xs.shape
    cout, _, kh, kw = ws.shape
    y = torch.full((n, cout, oms.shape[2], oms.shape[3]), float("nan"), device="cuda", dtype=tdtype)
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    status = lib.adnet_dcn_forward_cuda(1 if dtype == "float16" else 0, xs.data_ptr(), oms.data_ptr(), ws.data_ptr(),
                                        bs.data_ptr(), y.data_ptr(), n, c, h, wd, cout, kh, kw, s, p, d, dg, None,
                                        stream.cuda_stream)
    assert status == 0, lib.adnet_dcn_last_error().decode()
    stream.synchronize()
    out = y.cpu().numpy()
    assert not np.isnan(out).any(), "the kernel left poisoned outputs unwritten"
    return out


# (batch, C, H, W, Cout, kh, kw, stride, padding, dilation, dg, offset scale)
CASES = [
    (1, 64, 72, 130, 64, 3, 3, 1, 1, 1, 8, 2.0),   # ADNet's layer (one step per group), pixel tail
    (2, 12, 9, 11, 70, 3, 3, 2, 2, 2, 1, 3.0),     # two output-channel tiles, two steps per group
    (1, 3, 14, 15, 5, 10, 10, 1, 4, 1, 3, 3.0),    # K = 100: taps split across steps
    (1, 20, 7, 9, 6, 1, 1, 1, 0, 1, 4, 3.0),       # 1x1 kernel
    (3, 6, 10, 13, 7, 2, 3, 3, 0, 1, 2, 4.0),      # non-square kernel, stride 3, batch 3
    (1, 16, 4, 1900, 16, 3, 3, 1, 1, 1, 8, 2.0),   # ADNet's row length: float32 positions above 1024
]


@pytest.mark.parametrize("case", CASES)
def test_cuda_matches_twin_and_float64(kernels, case):
    *shape, s, p, d, dg, scale = case
    rng = np.random.default_rng(fresh_generator().initial_seed())
    x, om, w, b = make_case(rng, *case)
    ref = reference(x, om, w, b, s, p, d, dg, naive=False)
    got = run_cuda(kernels, x, om, w, b, s, p, d, dg, "float32")
    assert rel_l2(got, ref) <= 1e-5
    assert rel_l2(got, dcnv2_forward(x, om, w, b, stride=s, padding=p, dilation=d, deformable_groups=dg)) <= 2e-6

    x, om, w, b = as_fp16_values(x, om, w, b)
    ref = reference(x, om, w, b, s, p, d, dg, naive=False)
    got = run_cuda(kernels, x, om, w, b, s, p, d, dg, "float16").astype(np.float64)
    twin = dcnv2_forward(x, om, w, b, stride=s, padding=p, dilation=d, deformable_groups=dg,
                         dtype="float16").astype(np.float64)
    assert rel_l2(got, ref) <= 2e-3
    # Same rounding points: most outputs are bit-identical; the rest differ by the tensor cores' summation order
    # (one output ulp) or a column value that rounded the other way after a 1-ulp float32 difference (FMA, expf).
    exact = np.mean(got == twin)
    print(f"float16: {exact:.4f} of the outputs equal the twin's; rel L2 vs twin {rel_l2(got, twin):.1e}")
    assert exact >= 0.9
    rms = np.sqrt(np.mean(twin ** 2))
    assert np.all(np.abs(got - twin) <= 2 * np.spacing(np.abs(twin).astype(np.float16)) + 1e-3 * rms)


def test_invalid_arguments_return_minus_one_with_the_message(kernels):
    x = torch.zeros(1, 12, 6, 6, device="cuda")
    status = kernels.adnet_dcn_forward_cuda(0, x.data_ptr(), x.data_ptr(), x.data_ptr(), x.data_ptr(), x.data_ptr(),
                                            1, 12, 6, 6, 4, 3, 3, 1, 1, 1, 5, None, None)
    assert status == -1
    assert "deformable_groups = 5 must divide the input channels C = 12" in kernels.adnet_dcn_last_error().decode()
