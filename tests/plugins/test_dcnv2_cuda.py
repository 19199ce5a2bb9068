"""The AdnetDCNv2 CUDA kernels (the `make kernels` library) on a GPU, against float64 and the CPU twin.

Skipped without a CUDA GPU and a CUDA build of torch (CI has neither). Collects without onnx-graphsurgeon, onnx or
TensorRT (a bare GPU box): it needs torch, numpy, g++ (the twin) and the kernels library, built here as gpu-check
builds it (`make kernels` when make and nvcc are found, else the existing library). The checks are gpu-check's
(benchmarks/gpu/dcn_checks.py): NaN-poisoned outputs between canaries, odd shapes, huge and NaN offsets, +-inf mask
logits, a side stream while the default stream is busy, invalid arguments; every kernel variant, and FP16
channels-last tensors for the variants with that fast path.
"""
import pytest
import torch

if not torch.cuda.is_available():
    pytest.skip("needs a CUDA GPU and a CUDA build of torch (torch.cuda.is_available() is False; CI has no GPU)",
                allow_module_level=True)

from benchmarks.gpu import dcn_checks  # noqa: E402
from benchmarks.gpu.phases import build_kernels  # noqa: E402
from benchmarks.gpu.runner import Skip  # noqa: E402
from benchmarks.gpu.torch_dcn import kernels  # noqa: E402
from plugins.dcnv2.cuda import load_kernels  # noqa: E402


@pytest.fixture(scope="module")
def variants():
    try:
        library, _ = build_kernels()
    except Skip as exc:
        pytest.skip(str(exc))
    return [k for _, k in kernels(load_kernels(library))]


def _check(kernel, case, dtype, channels_last=False):
    row = dcn_checks.run_case(kernel, case, dtype, device="cuda", channels_last=channels_last)
    print(f"{kernel.variant} {case.name} {dtype} {row['layout']}: rel L2 vs float64 {row['rel_l2_f64']:.1e}"
          + (f", {row['exact_twin']:.4f} equal to the twin" if "exact_twin" in row else ""))
    assert row["passed"], row["failures"]


@pytest.mark.parametrize("dtype", ["float32", "float16"])
@pytest.mark.parametrize("case", dcn_checks.CASES, ids=[c.name for c in dcn_checks.CASES])
def test_cuda_matches_float64_and_the_twin(variants, case, dtype):
    for kernel in variants:
        _check(kernel, case, dtype)


FAST_CASES = [c for c in dcn_checks.CASES + dcn_checks.CHANNELS_LAST_CASES
              if dcn_checks.channels_last_applies(c, "float16")]


@pytest.mark.parametrize("case", FAST_CASES, ids=[c.name for c in FAST_CASES])
def test_channels_last_fast_path_matches_float64_and_the_twin(variants, case):
    fast = [k for k in variants if k.channels_last]
    if not fast:
        pytest.skip("no kernel variant of this library takes channels-last tensors")
    for kernel in fast:
        _check(kernel, case, "float16", channels_last=True)


def test_side_stream_while_the_default_stream_is_busy(variants):
    for kernel in variants:
        row = dcn_checks.stream_check(kernel)
        assert row["passed"], row["failures"]


def test_invalid_arguments_are_refused_with_the_cores_message(variants):
    for kernel in variants:
        row = dcn_checks.invalid_arguments_check(kernel)
        assert row["passed"], row["failures"]
