"""gpu-check (benchmarks/gpu/) on a machine without a GPU: the phase runner with fake phases (tests/benchmarks/
gpu_fakes.py), the result files and summary table, the no-GPU mode CI runs, and the pure parts of the GPU phases:
the correctness harness run with the CPU twin in place of the CUDA kernel (a test fake), the kernel swap in ADNet,
the speed floors, the built-in DeformConv workspace limit, the ADNet error metrics."""
from __future__ import annotations

import csv
import json
import os
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmarks import harness
from benchmarks.gpu import adnet_check, dcn_checks, dcn_speed, results, torch_dcn
from benchmarks.gpu.runner import Phase, run_phases
from plugins.dcnv2.cpu import dcnv2_forward
from tests.child import run_module, run_python

REPO = Path(__file__).resolve().parents[2]
FAKES = "tests.benchmarks.gpu_fakes"


# ---- the phase runner --------------------------------------------------------------------------------------------

def test_phases_run_in_order_with_budgets_and_go_on_after_failures(tmp_path):
    phases = [Phase("first", f"{FAKES}:passes", 20), Phase("broken", f"{FAKES}:fails", 20),
              Phase("reported", f"{FAKES}:reports_failure", 20), Phase("hung", f"{FAKES}:hangs", 1),
              Phase("crashed", f"{FAKES}:crashes", 20), Phase("absent", f"{FAKES}:skips", 20),
              Phase("after-broken", f"{FAKES}:passes", 20, needs=("broken",)),
              Phase("gpu", f"{FAKES}:passes", 20, needs_gpu=True),
              Phase("last", f"{FAKES}:reads_previous", 20)]
    started = time.monotonic()
    out = run_phases(phases, out_dir=tmp_path, gpu_reason=lambda so_far: "no GPU on this machine",
                     log=lambda message: None)
    assert time.monotonic() - started < 60  # the hung phase was killed, not waited for
    assert list(out) == [p.name for p in phases]
    assert {name: r["status"] for name, r in out.items()} == {
        "first": "pass", "broken": "fail", "reported": "fail", "hung": "fail", "crashed": "fail", "absent": "skip",
        "after-broken": "skip", "gpu": "skip", "last": "pass"}
    assert out["first"]["rows"][1] == {"item": "b", "ms": 2.5, "extra": True}
    assert "ValueError: the kernel wrote NaN" in out["broken"]["reason"] and "Traceback" in out["broken"]["traceback"]
    assert out["reported"]["reason"] == "3 of 28 checks failed"
    assert "exceeded its budget of 1 s" in out["hung"]["reason"] and out["hung"]["seconds"] < 20
    assert out["crashed"]["reason"] == "crashed: SIGABRT"
    assert out["absent"]["reason"] == "compute-sanitizer not found"
    assert out["after-broken"]["reason"] == "needs the broken phase, which ended in fail"
    assert out["gpu"]["reason"] == "no GPU on this machine"
    assert out["last"]["saw"] == "fine" and out["last"]["remaining_ok"] and out["last"]["budget_s"] == 20
    assert all(r["budget_s"] == p.budget_s for p, r in zip(phases, out.values()))


def _report(tmp_path):
    return {"format": results.FORMAT, "total_budget_s": 40, "elapsed_s": 12.3,
            "machine": {"date": "2026-12-01T10:00:00+00:00", "label": "nvidia-h100-80gb-hbm3",
                        "gpu": "NVIDIA H100 80GB HBM3"},
            "phases": {"env": {"status": "pass", "seconds": 2.0, "budget_s": 20, "summary": "H100, driver 560"},
                       "speed": {"status": "fail", "seconds": 10.3, "budget_s": 20, "reason": "x" * 300,
                                 "rows": [{"impl": "ours v1", "ms": 0.5}, {"impl": "im2col", "ms": 9.0,
                                                                          "note": "oom"}]},
                       "adnet": {"status": "skip", "seconds": 0.0, "budget_s": 0, "reason": "no GPU"}}}


def test_result_files_and_summary_table(tmp_path):
    report = _report(tmp_path)
    files = results.write(report, tmp_path)
    assert files["json"].name == "2026-12-01_nvidia-h100-80gb-hbm3_gpucheck.json"
    assert json.loads(files["json"].read_text())["phases"]["speed"]["rows"][0]["impl"] == "ours v1"
    rows = list(csv.DictReader(files["csv"].open()))
    assert [(r["kind"], r["phase"], r["status"]) for r in rows[:3]] == [
        ("phase", "env", "pass"), ("phase", "speed", "fail"), ("phase", "adnet", "skip")]
    assert [(r["impl"], r["ms"], r["note"]) for r in rows[3:]] == [("ours v1", "0.5", ""), ("im2col", "9", "oom")]
    table = results.summary_table(report, width=60)
    assert "env            PASS" in table and "speed          FAIL" in table and "adnet          SKIP" in table
    assert "x" * 57 + "..." in table and "1 passed, 1 failed, 1 skipped in 12 s (budget 40 s)" in table
    assert results.failed(report) == ["speed"]


@pytest.mark.slow  # runs make kernels and the whole gpu-check
def test_no_gpu_mode_builds_what_it_can_skips_the_rest_and_exits_0(tmp_path):
    """What CI runs (and `make gpu-check` on this machine): env and build run, every GPU phase is skipped with the
    reason, the files are written, exit 0."""
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: `make gpu-check` runs the GPU phases (about 7 minutes)")
    proc = run_module("benchmarks.gpu", "--out", str(tmp_path), timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (report_path,) = tmp_path.glob("*_gpucheck.json")
    report = json.loads(report_path.read_text())
    phases = report["phases"]
    assert list(phases) == ["env", "build", "correctness", "sanitizer", "kernel_speed", "adnet"]
    assert phases["env"]["status"] == "pass" and phases["env"]["cuda"]["available"] is False
    assert phases["build"]["status"] in ("pass", "skip")  # skip: no nvcc on this machine, with the reason
    if phases["build"]["status"] == "pass":
        assert Path(phases["build"]["library"]).is_file()
    reason = phases["env"]["cuda"]["reason"]
    for name in ("correctness", "sanitizer", "kernel_speed", "adnet"):
        assert phases[name]["status"] == "skip" and phases[name]["reason"] == reason
        assert f"{name}: skip ({reason})" in proc.stderr
    assert "CPU-only build" in reason or "sees no GPU" in reason
    assert "0 failed" in proc.stdout and report_path.with_suffix(".csv").is_file()
    assert sum(p["budget_s"] for p in phases.values()) <= 7 * 60


# What a bare GPU box (CUDA, nvcc, a CUDA PyTorch, numpy) does not have.
BARE_BOX_ABSENT = ("onnx", "onnxruntime", "onnx_graphsurgeon", "onnxscript", "onnxruntime_extensions", "tensorrt",
                   "tensorrt_rtx", "polygraphy", "tritonclient", "matplotlib", "tqdm", "cv2", "torchvision", "PIL")


def test_gpu_check_and_its_phase_code_import_on_a_bare_box(tmp_path):
    """Every package above is made unimportable (stub packages first on PYTHONPATH, so the phases' child processes
    see them too): the no-GPU run still passes, and the code the GPU phases call (scene and frames, ADNet, the
    correctness harness with the twin) imports and runs."""
    stubs = tmp_path / "stubs"
    for name in BARE_BOX_ABSENT:
        (stubs / name).mkdir(parents=True)
        (stubs / name / "__init__.py").write_text(f"raise ImportError('{name} is not on a bare GPU box')\n")
    env = {**os.environ, "PYTHONPATH": f"{stubs}{os.pathsep}{REPO}"}
    proc = run_module("benchmarks.gpu", "--out", str(tmp_path / "out"), env=env, timeout=600)
    assert proc.returncode == 0 and "0 failed" in proc.stdout, proc.stdout + proc.stderr
    code = ("import numpy as np, torch\n"
            "from benchmarks.gpu import adnet_check, dcn_checks\n"
            "from export.checkpoint import random_adnet\n"
            "from tests.benchmarks.test_gpu_check import TwinKernel\n"
            "frames = adnet_check.frames(12, 18, 'cpu')\n"
            "with torch.inference_mode():\n"
            "    out = random_adnet(0).eval()(*frames)\n"
            "row = dcn_checks.run_case(TwinKernel(), dcn_checks.CASES[0], 'float16', device='cpu')\n"
            "print(tuple(out.shape), row['passed'])\n")
    proc = run_python(code, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split("\n")[-2] == "(1, 3, 12, 20) True"


def test_cli_lists_phases_and_refuses_unknown_ones():
    proc = run_module("benchmarks.gpu", "--list")
    assert proc.returncode == 0 and proc.stdout.split()[0] == "env" and "adnet" in proc.stdout
    proc = run_module("benchmarks.gpu", "--phases", "env,speed")
    assert proc.returncode == 2 and "unknown phase(s) speed" in proc.stderr


# ---- the correctness harness, with the CPU twin in place of the CUDA kernel (a test fake) -------------------------

class TwinKernel(torch_dcn.Kernel):
    """The CPU twin behind the Kernel interface, on CPU tensors; `damage` breaks its output on purpose."""

    def __init__(self, damage: str = ""):
        super().__init__(lib=None, variant="twin")
        self.damage = damage

    def launch(self, x, offset_mask, weight, bias, out, *, stride, padding, dilation, deformable_groups, stream=None):
        dtype = "float16" if x.dtype == torch.float16 else "float32"
        y = dcnv2_forward(*(t.numpy() for t in (x, offset_mask, weight, bias)), stride=stride, padding=padding,
                          dilation=dilation, deformable_groups=deformable_groups, dtype=dtype)
        out.copy_(torch.from_numpy(y))
        flat = torch.as_strided(out, (out.numel(),), (1,))  # memory order, NCHW or NHWC
        if self.damage == "past-the-end":
            torch.as_strided(out, (out.numel() + 1,), (1,))[-1] = 0.0
        elif self.damage == "unwritten":
            flat[flat.numel() // 2] = float("nan")
        elif self.damage == "wrong-value":
            flat[0] += 1.0


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_correctness_harness_passes_the_twin_on_every_case(dtype):
    """Every case (odd shapes, huge and NaN offsets, +-inf mask logits) through the harness the GPU phase uses: the
    float64 reference (NaN offsets as "samples nothing") and the tolerances agree with the twin's semantics."""
    for case in dcn_checks.CASES:
        row = dcn_checks.run_case(TwinKernel(), case, dtype, device="cpu")
        assert row["passed"], (case.name, row)
        assert row["canaries_intact"] and row["unwritten"] == 0
        if dtype == "float16":
            assert row["exact_twin"] == 1.0


def test_correctness_harness_channels_last_layouts_on_the_twin():
    """The channels-last runs (x, and offset_mask / y where their channel counts allow, in NHWC memory inside the
    canaries) read back in NCHW order: every fast-path case passes through the twin, and a damaged run fails."""
    cases = [c for c in dcn_checks.CASES + dcn_checks.CHANNELS_LAST_CASES
             if dcn_checks.channels_last_applies(c, "float16")]
    assert {"adnet-layer", "cl-c32-dg2-cout12", "cl-nan-offsets"} <= {c.name for c in cases}
    assert not dcn_checks.channels_last_applies(dcn_checks.CASES[0], "float32")
    for case in cases:
        row = dcn_checks.run_case(TwinKernel(), case, "float16", device="cpu", channels_last=True)
        assert row["passed"] and row["layout"] == "channels-last" and row["exact_twin"] == 1.0, (case.name, row)
    row = dcn_checks.run_case(TwinKernel("unwritten"), cases[0], "float16", device="cpu", channels_last=True)
    assert not row["passed"] and "1 outputs left unwritten" in row["failures"]


@pytest.mark.parametrize("damage,message", [("past-the-end", "canary next to the output was overwritten"),
                                            ("unwritten", "1 outputs left unwritten"),
                                            ("wrong-value", "rel L2 vs float64")])
def test_correctness_harness_catches_a_broken_kernel(damage, message):
    row = dcn_checks.run_case(TwinKernel(damage), dcn_checks.CASES[0], "float32", device="cpu")
    assert not row["passed"] and message in row["failures"]


def test_our_kernel_in_place_of_the_dcn_op_computes_the_same_network():
    """torch_dcn.our_dcn hands conv_offset_mask's raw output to the kernel (offsets, then mask logits; sigmoid inside):
    with the twin in place of the CUDA kernel, ADNet's output matches export.dcn's, and the forwards come back."""
    from export.checkpoint import random_adnet
    from export.dcn import DCNPack

    net = random_adnet(seed=int(np.random.default_rng().integers(1 << 30))).eval()
    frames = [torch.rand(1, 6, 16, 20) for _ in range(3)]
    with torch.inference_mode():
        expected = net(*frames)
        with torch_dcn.our_dcn(net, TwinKernel()):
            got = net(*frames)
            assert all("forward" in vars(m) for m in net.modules() if isinstance(m, DCNPack))
    assert not any("forward" in vars(m) for m in net.modules() if isinstance(m, DCNPack))
    assert dcn_checks.rel_l2(got, expected) < 1e-5


def test_kernel_variants_come_from_plugins_cuda():
    from plugins.dcnv2 import cuda

    found = torch_dcn.kernels(lib=None)
    assert [v for v, _ in found] == list(cuda.VARIANTS) == list(torch_dcn.variants())
    assert all(isinstance(k, torch_dcn.Kernel) and k.variant == v for v, k in found)
    assert not dict(found)["v1"].channels_last  # v1 takes dense NCHW only
    best = torch_dcn.best_kernel(lib=None)
    assert best.variant == ("best" if hasattr(cuda, "forward") else "v1")


def test_kernel_refuses_mixed_dtypes_and_host_memory_before_the_library_sees_them():
    kernel = torch_dcn.Kernel(lib=None, variant="v1")
    x, om = torch.zeros(1, 8, 5, 5), torch.zeros(1, 3 * 8 * 9, 5, 5)
    w, b, y = torch.zeros(4, 8, 3, 3), torch.zeros(4), torch.zeros(1, 4, 5, 5)
    fields = dict(stride=1, padding=1, dilation=1, deformable_groups=8)
    with pytest.raises(torch_dcn.KernelError, match="all tensors float32 or all float16"):
        kernel.launch(x.half(), om, w, b, y, **fields)
    with pytest.raises(torch_dcn.KernelError, match="CUDA memory"):
        kernel.launch(x, om, w, b, y, stream=0, **fields)


def test_sanitizer_device_arrays_have_torchs_layouts():
    """sanitizer_case hands raw driver buffers to the kernel: their strides and memory order must be what torch
    gives the same tensors (dense NCHW, channels_last)."""
    from benchmarks.gpu.sanitizer_case import DeviceArray, _memory

    a = np.random.default_rng().standard_normal((2, 16, 5, 7)).astype(np.float16)
    t = torch.from_numpy(a)
    for channels_last, tensor in ((False, t), (True, t.to(memory_format=torch.channels_last))):
        device = DeviceArray(0, a.shape, "float16", channels_last)
        assert device.stride() == tensor.stride() and torch_dcn.is_channels_last(device) == channels_last
        flat = torch.as_strided(tensor, (tensor.numel(),), (1,)).numpy()  # the tensor's memory in order
        assert np.array_equal(_memory(a, channels_last).reshape(-1), flat)
    assert DeviceArray(0, (24,), "float16").stride() == (1,)


# ---- pure parts of the speed and ADNet phases, and the built-in DeformConv limit ---------------------------------

def test_kernel_floors_are_the_design_figures():
    moved, flops = dcn_speed.traffic_and_flops(1060, 1900, "float16")
    assert moved == pytest.approx(1.39e9, rel=0.01)  # docs/design.md section 2
    limits = dcn_speed.floors(moved, flops, {"copy_GBps": 3350.0, "matmul_float16_TFLOPs": 800.0}, "float16")
    assert limits["memory_floor_ms"] == pytest.approx(0.41, abs=0.01)
    assert limits["floor_ms"] == limits["memory_floor_ms"] > limits["compute_floor_ms"]


def test_builtin_deformconv_workspace_limit_of_tensorrt_10_5():
    assert harness.builtin_dcn_max_pixels("10.5.0.18") == 1_864_135
    assert harness.builtin_dcn_max_pixels("10.11.0.33") is None
    reason = harness.builtin_dcn_overflow_reason("10.5.0.18", 1060, 1900)
    assert "2.32e+09 bytes at 1060x1900" in reason and "int32" in reason and "10.11" in reason
    assert harness.builtin_dcn_overflow_reason("10.5.0.18", 1000, 1500) is None
    assert harness.builtin_dcn_overflow_reason("10.13.0.35", 1060, 1900) is None


def test_adnet_error_metrics():
    rng = np.random.default_rng()
    ref = rng.random((1, 3, 40, 60)).astype(np.float32) * 4
    same = adnet_check.errors(ref, ref)
    assert same["rel_l2_vs_fp32"] == 0 and same["finite"]
    close = adnet_check.errors(ref, ref * (1 + rng.normal(0, 1e-3, ref.shape)).astype(np.float32))
    assert 0 < close["rel_l2_vs_fp32"] < 2e-3 and close["psnr_mu_vs_fp32_db"] > 50
    broken = ref.copy()
    broken[0, 1, 2, 3] = np.inf
    assert adnet_check.errors(ref, broken)["finite"] is False


def test_exact_twin_tolerance_leaves_room_for_the_device_sigmoid():
    """The kernels' device sigmoid (__expf, __fdividef) differs from the twin's IEEE one by a few ulp (up to ~11 at
    ADNet's largest logits). Model of one FP16 output: 576 column values mask * bilinear rounded to binary16, an FP32
    dot product with binary16 weights, rounded to binary16. Mask errors of up to 11 ulp must leave the share of
    outputs bit-equal to the twin's well above what gpu-check's correctness phase demands; 1024 ulp would not."""
    rng = np.random.default_rng()
    pixels, rows = 4000, 576
    bilinear = rng.standard_normal((pixels, rows)).astype(np.float32)
    mask = (1 / (1 + np.exp(-rng.standard_normal((pixels, rows)) * 2))).astype(np.float32)
    weight = (rng.standard_normal(rows) * 0.05).astype(np.float16).astype(np.float32)

    def outputs(m):
        columns = (m * bilinear).astype(np.float16).astype(np.float32)
        return (columns @ weight).astype(np.float16)

    def exact_share(ulps):
        error = rng.uniform(-ulps, ulps, mask.shape) * 2.0 ** -23
        return float(np.mean(outputs((mask * (1 + error)).astype(np.float32)) == outputs(mask)))

    needed = dcn_checks.TOLERANCES["float16"]["exact_twin"]
    assert exact_share(11) > needed + 0.04
    assert exact_share(1024) < needed  # the model can tell a tolerance that is too tight
