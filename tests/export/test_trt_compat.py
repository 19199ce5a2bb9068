"""Which TensorRT, and what it can do (export/trt_compat.py), with the precision route it implies
(export/build_engine.resolve_route); the environment errors that name their fix."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from export import build_engine as be
from export import trt_compat

REPO = Path(__file__).resolve().parents[2]


class _FakeModule:
    def __init__(self, version, fp16_flag):
        self.__version__ = version
        self.__name__ = "tensorrt"
        self.BuilderFlag = type("BuilderFlag", (), {"FP16": 1} if fp16_flag else {})


@pytest.mark.parametrize("version,flag,precision", [
    ("10.5.0.18", True, "fp16"),     # TensorRT 10 too: strongly typed by default (FP32 pre/post-processing)
    ("10.13.0.35", True, "fp32"),
    ("11.1.0.106", False, "fp16"),
])
def test_route_is_strongly_typed_on_every_tensorrt(version, flag, precision):
    trt = trt_compat.TensorRT(_FakeModule(version, flag), "tensorrt")
    assert be.resolve_route(trt, precision) == "strongly-typed"
    assert trt.library_soname == f"libnvinfer.so.{version.split('.')[0]}"
    assert trt.strongly_typed_only == (not flag)


def test_fp16_flag_route_only_where_asked_for_and_possible(rtx):
    tensorrt10 = trt_compat.TensorRT(_FakeModule("10.5.0.18", True), "tensorrt")
    assert be.resolve_route(tensorrt10, "fp16", "fp16-flag") == "fp16-flag"
    with pytest.raises(be.EngineBuildError, match="strongly typed networks only"):
        be.resolve_route(rtx, "fp16", "fp16-flag")
    with pytest.raises(be.EngineBuildError, match="fp16-flag route builds FP16 engines only"):
        be.resolve_route(tensorrt10, "fp32", "fp16-flag")
    assert "x ** 2.24" in be.FP16_FLAG_WARNING


def test_missing_rtx_link_fails_clearly_instead_of_aborting(graphs, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "LD_LIBRARY_PATH"}
    proc = subprocess.run([sys.executable, "-m", "export.build_engine", "--backend", "rtx", "--ci-profile",
                           "--onnx", str(graphs.path("plugin_fp16")), "--out", str(tmp_path / "x.plan")],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stderr
    assert "libtensorrt_rtx.so" in proc.stderr and "LD_LIBRARY_PATH=" in proc.stderr
    assert "terminate called" not in proc.stderr


def _tensorrt_importable() -> bool:
    try:
        trt_compat.load("tensorrt")
        return True
    except trt_compat.TensorRTNotFound:
        return False


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_engine_without_tensorrt_names_the_container():
    if _tensorrt_importable():
        pytest.skip("TensorRT is installed here: `make engine` builds for real")
    # -o: never reinstall the venv from inside a test, even when requirements.txt is newer than its stamp.
    proc = subprocess.run(["make", "--no-print-directory", "-o", ".venv/.requirements.stamp", "engine",
                           f"PY={sys.executable}"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert "TensorRT not found" in proc.stderr and "nvcr.io/nvidia/tritonserver:<yy.mm>-py3" in proc.stderr
    assert "docker run --gpus all" in proc.stderr and "Traceback" not in proc.stderr


def test_no_gpu_is_reported_with_the_fix():
    try:
        gpu = trt_compat.require_gpu()
    except trt_compat.NoGPU as exc:
        assert "no GPU" in str(exc) and "--gpus all" in str(exc)
    else:
        pytest.skip(f"this machine has a GPU ({gpu['name']})")


def test_ngc_release_is_the_one_the_gpu_server_runs():
    from model_repository.server import NGC_TRITON_TAG

    assert trt_compat.NGC_RELEASE == NGC_TRITON_TAG
    assert trt_compat.NGC_TENSORRT[trt_compat.NGC_RELEASE] == "10.5.0"
