"""The TensorRT built-in DeformConv baseline of `make bench` (benchmarks/harness.py): which sizes TensorRT can size
its ModulatedDeformConv2d workspace for, how its engine is built (without our plugin), and where the comparison
with our plugin is made when 1060x1900 cannot run. No TensorRT here: the engine build is a recorded command.
"""
from __future__ import annotations

import json
import subprocess
import types

import pytest

from benchmarks import harness
from benchmarks.config import BenchConfig
from export import trt_compat
from export.engine_files import sidecar_path

# ADNet's full-resolution DCN (L1 and the cascade): 64 input channels, 3x3 taps; FP16 elements.
C, K, HALF = 64, 9, 2


def independent_limit(element_bytes: int) -> int:
    """The largest Ho*Wo with C*K*Ho*Wo*element_bytes <= 2**31 - 1, found by bisection (not by division)."""
    lo, hi = 0, 1 << 31
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if C * K * mid * element_bytes <= 2 ** 31 - 1 else (lo, mid)
    return lo


@pytest.mark.parametrize("version", ["10.5.0", "10.7.0.23", "10.10.0"])
def test_int32_workspace_limit_up_to_tensorrt_10_10(version):
    assert harness.builtin_dcn_max_pixels(version) == independent_limit(HALF) == 1_864_135
    assert harness.builtin_dcn_max_pixels(version, "fp32") == independent_limit(4)
    reason = harness.builtin_dcn_overflow_reason(version, 1060, 1900)
    assert reason and f"TensorRT {version}" in reason and "2.32e+09" in reason and "1,864,135" in reason
    assert "10.11" in reason  # names the version that fixed it
    assert harness.builtin_dcn_overflow_reason(version, 1000, 1500) is None  # 1.5 Mpx fits
    # The network runs at the padded size: 1365x1365 pads to 1368x1368 = 1,871,424 > the limit.
    assert 1365 * 1365 <= 1_864_135 < 1368 * 1368
    assert harness.builtin_dcn_overflow_reason(version, 1365, 1365)


@pytest.mark.parametrize("version", ["10.11.0", "10.16.1", "11.1.0"])
def test_no_limit_from_tensorrt_10_11(version):
    assert harness.builtin_dcn_max_pixels(version) is None
    assert harness.builtin_dcn_overflow_reason(version, 1060, 1900) is None
    assert harness.builtin_dcn_overflow_reason(version, 4000, 6000) is None


@pytest.fixture
def recorded_build(monkeypatch, tmp_path):
    """ensure_builtin_plan with TensorRT 'present' at a given version and the engine build recorded, not run."""
    calls = []
    state = {"version": "10.5.0"}
    monkeypatch.setattr(harness, "tensorrt_reason", lambda: None)
    monkeypatch.setattr(trt_compat, "load", lambda backend: types.SimpleNamespace(version=state["version"]))

    def run(cmd, **kwargs):
        calls.append(cmd)
        plan = tmp_path / "builtin.plan"
        plan.write_bytes(b"plan")
        shape = lambda flag: [int(v) for v in cmd[cmd.index(flag) + 1].split("x")]  # noqa: E731
        sidecar_path(plan).write_text(json.dumps({
            "tensorrt": {"version": state["version"]},
            "profiles": [{"min": shape("--min"), "opt": shape("--opt"), "max": shape("--max")}]}))
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(harness.subprocess, "run", run)
    cfg = BenchConfig(sizes=((128, 192), (1060, 1900), (1000, 1500)), builtin_plan=tmp_path / "builtin.plan",
                      onnx_fp16=tmp_path / "adnet_fp16.onnx")
    return cfg, calls, state


def test_builtin_engine_is_built_without_our_plugin_up_to_the_largest_size_that_fits(recorded_build):
    cfg, calls, state = recorded_build
    plan, skipped = harness.ensure_builtin_plan(cfg, log=lambda *_: None)
    assert plan == cfg.builtin_plan
    assert list(skipped) == ["1060x1900"] and "int32" in skipped["1060x1900"]
    (cmd,) = calls
    assert cmd[1:3] == ["-m", "export.build_engine"]
    assert "--no-plugin" in cmd and "--plugin" not in cmd  # needs no build/libadnet_plugins.so
    assert cmd[cmd.index("--onnx") + 1] == str(cfg.onnx_fp16)  # the unsurgered FP16 graph: DeformConv nodes
    assert [cmd[cmd.index(f) + 1] for f in ("--min", "--opt", "--max")] == ["1x128x192", "1x1000x1500",
                                                                          "1x1000x1500"]
    # Up to date (same TensorRT, same profile): not rebuilt.
    harness.ensure_builtin_plan(cfg, log=lambda *_: None)
    assert len(calls) == 1
    # TensorRT 10.11 sizes the workspace in int64: rebuilt with 1060x1900 in the profile, nothing skipped.
    state["version"] = "10.11.0"
    plan, skipped = harness.ensure_builtin_plan(cfg, log=lambda *_: None)
    assert skipped == {} and len(calls) == 2
    assert calls[-1][calls[-1].index("--max") + 1] == "1x1060x1900"


def test_builtin_engine_unavailable_when_no_size_fits(recorded_build):
    cfg, calls, _ = recorded_build
    cfg = BenchConfig(sizes=((1060, 1900),), builtin_plan=cfg.builtin_plan, onnx_fp16=cfg.onnx_fp16)
    with pytest.raises(harness.Unavailable, match="no latency size fits: TensorRT 10.5.0's built-in"):
        harness.ensure_builtin_plan(cfg, log=lambda *_: None)
    assert calls == []


def latency_row(backend, size, median_ms):
    h, w = (int(v) for v in size.split("x"))
    return {"backend": backend, "size": size, "status": "ok", "median_ms": median_ms, "megapixels": h * w / 1e6}


def plugin_vs_builtin(rows):
    run = harness._Run(BenchConfig(), log=lambda *_: None)
    run.results["latency"] = rows
    run.goals()
    return next(g for g in run.results["goals"] if "built-in DeformConv" in g["goal"])


def test_plugin_is_compared_at_the_largest_size_both_engines_ran():
    reason = harness.builtin_dcn_overflow_reason("10.5.0", 1060, 1900)
    goal = plugin_vs_builtin([
        latency_row("tensorrt-plugin-fp16", "128x192", 1.0), latency_row("tensorrt-builtin-fp16", "128x192", 2.0),
        latency_row("tensorrt-plugin-fp16", "1000x1500", 10.0),
        latency_row("tensorrt-builtin-fp16", "1000x1500", 9.5),
        latency_row("tensorrt-plugin-fp16", "1060x1900", 14.0),
        {"backend": "tensorrt-builtin-fp16", "size": "1060x1900", "status": "skipped", "note": reason}])
    assert goal["value"] == "10.00 vs 9.50 ms at 1000x1500"
    assert goal["met"] is False  # slower there: reported, not hidden
    assert goal["note"] == f"compared at 1000x1500: at 1060x1900 {reason}"


def test_plugin_is_compared_at_1060x1900_when_both_ran_and_not_at_all_without_tensorrt():
    goal = plugin_vs_builtin([latency_row("tensorrt-plugin-fp16", "1060x1900", 14.0),
                              latency_row("tensorrt-builtin-fp16", "1060x1900", 21.0)])
    assert (goal["value"], goal["met"], goal["note"]) == ("14.00 vs 21.00 ms at 1060x1900", True, "")
    goal = plugin_vs_builtin([latency_row("onnxruntime-fp32-cpu", "128x192", 900.0)])
    assert (goal["value"], goal["met"]) == (None, None) and "GPU with TensorRT" in goal["note"]
