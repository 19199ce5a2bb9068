"""The engine runner (export/engine_runner.py) and the plan/sidecar checks it makes first (export/engine_files.py).
Running an engine needs a GPU; what is checked here happens before TensorRT is asked to deserialise."""
from __future__ import annotations

import json

import pytest

from export import engine_files
from export.engine_files import EngineLoadError, check_sidecar
from export.engine_runner import EngineRunner
from tests.child import run_python



def test_runner_refuses_stand_in_and_mismatched_engines_before_loading(rtx, ci_engine, tmp_path):
    result = ci_engine[0]
    with pytest.raises(EngineLoadError, match="stand-in.*cannot run"):
        EngineRunner(result.plan_path, backend="rtx")
    with pytest.raises(EngineLoadError, match="no such engine; build it with `make engine`"):
        EngineRunner(tmp_path / "missing.plan", backend="rtx")
    side = json.loads(json.dumps(result.sidecar))
    side["plugin"]["implementation"] = "library"
    check_sidecar(side, rtx.name, rtx.version, result.plan_path)  # a matching engine passes
    other = json.loads(json.dumps(side))
    other["tensorrt"]["version"] = "0.9.0"
    with pytest.raises(EngineLoadError, match="loads only in the TensorRT version that built it"):
        check_sidecar(other, rtx.name, rtx.version, result.plan_path)
    other = json.loads(json.dumps(side))
    other["plugin"]["version"] = "2"
    with pytest.raises(EngineLoadError, match="rebuild plugin and engine together"):
        check_sidecar(other, rtx.name, rtx.version, result.plan_path)


def test_plan_and_sidecar_are_written_atomically_and_read_back(tmp_path):
    out = tmp_path / "repo" / "1" / "model.plan"
    plan, side = engine_files.save_engine(b"plan bytes", out, {"format": engine_files.SIDECAR_FORMAT})
    assert (plan, side) == (out, out.with_name("model.plan.json"))
    assert plan.read_bytes() == b"plan bytes" and engine_files.read_sidecar(plan) == {"format": 1}
    assert sorted(p.name for p in out.parent.iterdir()) == ["model.plan", "model.plan.json"]  # no temporary left
    assert engine_files.read_sidecar(tmp_path / "other.plan") is None


def test_engine_modules_import_without_tensorrt_and_polygraphy():
    code = ("import export.build_engine, export.engine_runner, export.verify_engine, export.trt_compat\n"
            "import export.plugin_preflight, export.trt_process, export.engine_files\n"
            "from export import trt_compat\n"
            "try:\n    trt_compat.load('auto')\nexcept trt_compat.TensorRTNotFound as e:\n    print(e)\n")
    proc = run_python(code, absent=("tensorrt", "tensorrt_rtx", "polygraphy"))
    assert proc.returncode == 0, proc.stderr
    assert "TensorRT not found" in proc.stdout and "nvcr.io/nvidia/tensorrt:<yy.mm>-py3" in proc.stdout


def test_runner_module_does_not_import_the_build_step():
    code = ("import sys, export.engine_runner, export.verify_engine\n"
            "print('export.build_engine' in sys.modules)\n")
    proc = run_python(code)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "False"
