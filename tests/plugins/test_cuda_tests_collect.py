"""The GPU test modules collect and skip cleanly on a machine without a GPU and without onnx-graphsurgeon (a bare GPU
box has torch and CUDA, not the export stack): the module-level skip, not an import error, decides."""
import torch

from tests.child import run_python


def test_cuda_kernel_tests_collect_and_skip_without_onnx_graphsurgeon():
    code = ("import sys, pytest\n"
            "sys.exit(pytest.main(['-q', '-rs', '-p', 'no:cacheprovider', 'tests/plugins/test_dcnv2_cuda.py']))\n")
    proc = run_python(code, absent=("onnx_graphsurgeon",), timeout=300)
    out = proc.stdout + proc.stderr
    if torch.cuda.is_available():
        assert proc.returncode == 0, out  # on a GPU box the tests run, and pass
    else:
        # pytest's exit code 5: nothing collected, the module skipped itself
        assert proc.returncode == 5 and "1 skipped" in out and "needs a CUDA GPU" in out, out
        assert "Error" not in out, out
