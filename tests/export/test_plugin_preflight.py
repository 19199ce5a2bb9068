"""Pre-flight of GPU serving (export/plugin_preflight.py): the file checks on plans and libraries made here, the load
checks in child processes (run against TensorRT-RTX; the serving ones use TensorRT), and the CLI's exit codes."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from export import plugin_preflight as pf
from export.engine_files import save_engine
from export.trt_process import sha256_file
from plugins.dcnv2 import contract
from plugins.dcnv2.cpu import build_library

REPO = Path(__file__).resolve().parents[2]


def _library(path: Path, soname: str = "libnvinfer.so.10") -> Path:
    path.write_bytes(b"\x7fELF" + b"\0" * 60 + soname.encode() + b"\0")
    return path


def _plan(folder: Path, library: Path, *, version="10.5.0.18", implementation="library", plugin_version=None):
    plugin = {"name": contract.PLUGIN_NAME, "version": plugin_version or contract.PLUGIN_VERSION,
              "namespace": contract.PLUGIN_NAMESPACE, "implementation": implementation, "library": str(library),
              "library_sha256": sha256_file(library)}
    return save_engine(b"plan", folder / "model.plan", {"tensorrt": {"name": "TensorRT", "version": version},
                                                      "plugin": plugin})[0]


def _statuses(checks):
    return {c.name: c.status for c in checks}


def test_matching_files_pass_the_file_checks(tmp_path):
    lib = _library(tmp_path / "libadnet_plugins.so")
    plan = _plan(tmp_path, lib)
    assert _statuses(pf.static_checks(plan, lib, "24.10")) == {"plugin": "pass", "plan": "pass", "same build": "pass"}


@pytest.mark.parametrize("change,name,message", [
    ({"version": "10.8.0.43"}, "plan", "NGC 24.10 Triton has TensorRT 10.5.0"),
    ({"implementation": "python-stand-in"}, "plan", "python-stand-in plugin, not the C++ library"),
    ({"plugin_version": "2"}, "plan", "this checkout 1/adnet"),
])
def test_a_plan_triton_would_refuse_fails_with_the_rebuild_command(tmp_path, change, name, message):
    lib = _library(tmp_path / "libadnet_plugins.so")
    plan = _plan(tmp_path, lib, **change)
    checks = {c.name: c for c in pf.static_checks(plan, lib, "24.10")}
    assert checks[name].failed and message in checks[name].detail
    assert (f"nvcr.io/nvidia/tensorrt:24.10-py3 bash -c 'pip install --no-deps polygraphy=={pf.POLYGRAPHY_VERSION} "
            f"&& make plugin engine ENGINE_PY=python3'") in checks[name].detail


def test_library_problems_fail_and_a_rebuilt_library_warns(tmp_path):
    lib = _library(tmp_path / "libadnet_plugins.so")
    plan = _plan(tmp_path, lib)
    checks = {c.name: c for c in pf.static_checks(plan, tmp_path / "missing.so", "24.10")}
    assert checks["plugin"].failed and "make plugin" in checks["plugin"].detail
    other = _library(tmp_path / "other.so", "libnvinfer.so.11")
    checks = {c.name: c for c in pf.static_checks(plan, other, "24.10")}
    assert checks["plugin"].failed and "libnvinfer.so.10" in checks["plugin"].detail
    assert checks["same build"].status == "warn"  # another file than the plan was built with
    assert pf.static_checks(plan, lib, "99.01")[0].failed  # an unknown release asks for --tensorrt-version


def test_missing_plan_fails_and_cli_exits_1(tmp_path):
    lib = _library(tmp_path / "libadnet_plugins.so")
    proc = subprocess.run([sys.executable, "-m", "export.plugin_preflight", "--plan", str(tmp_path / "model.plan"),
                           "--plugin", str(lib)], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert "model.plan not found: build the engine with `make engine`" in proc.stderr
    assert "plugin pre-flight: FAILED" in proc.stderr


def test_without_tensorrt_the_load_checks_skip_or_fail_as_asked(tmp_path):
    lib = _library(tmp_path / "libadnet_plugins.so")
    plan = _plan(tmp_path, lib)
    skipped = pf.preflight(plan, lib, release="24.10")
    assert _statuses(skipped)["load"] == "skip" and not any(c.failed for c in skipped)
    required = pf.preflight(plan, lib, release="24.10", require_load=True)
    load = {c.name: c for c in required}["load"]
    assert load.failed and "TensorRT not found" in load.detail and "--require-load" in load.detail
    proc = subprocess.run([sys.executable, "-m", "export.plugin_preflight", "--plan", str(plan), "--plugin",
                           str(lib)], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "plugin pre-flight: passed" in proc.stdout, proc.stderr


def test_load_checks_run_in_child_processes_and_report_a_library_without_the_creator():
    # The CPU twin is a real shared library without AdnetDCNv2: both load paths must say so, through TensorRT-RTX.
    library = build_library()
    checks = {c.name: c for c in pf.load_checks(REPO / "missing.plan", library, backend="rtx")}
    assert checks["dlopen"].failed and f"registers no {contract.PLUGIN_NAME}" in checks["dlopen"].detail
    assert checks["load_library"].failed and "make plugin" in checks["load_library"].detail


def _misbehaving_library(tmp_path: Path, body: str) -> Path:
    """A real shared library whose load-time constructor runs `body` (what a plugin's static registration does)."""
    source = tmp_path / "lib.cpp"
    source.write_text("#include <cstdlib>\n#include <unistd.h>\n"
                      f"__attribute__((constructor)) static void onLoad() {{ {body} }}\n")
    library = tmp_path / "libmisbehaving.so"
    subprocess.run(["g++", "-shared", "-fPIC", str(source), "-o", str(library)], check=True, timeout=60)
    return library


@pytest.mark.slow  # waits out a hanging load
@pytest.mark.skipif(shutil.which("g++") is None, reason="needs g++ to build the misbehaving library")
def test_a_load_that_hangs_or_crashes_is_reported_not_waited_for(tmp_path):
    hangs = _misbehaving_library(tmp_path, "sleep(600);")
    checks = {c.name: c for c in pf.load_checks(REPO / "missing.plan", hangs, timeout=5, backend="rtx")}
    assert checks["dlopen"].failed and "hung for 5 s" in checks["dlopen"].detail
    crash_dir = tmp_path / "crash"
    crash_dir.mkdir()
    aborts = _misbehaving_library(crash_dir, "abort();")
    checks = {c.name: c for c in pf.load_checks(REPO / "missing.plan", aborts, timeout=30, backend="rtx")}
    assert checks["dlopen"].failed and "crashed (signal 6)" in checks["dlopen"].detail


def test_docker_command_runs_the_load_checks_in_the_release_container(tmp_path):
    cmd = pf.docker_command(Path("model_repository/gpu/adnet/1/model.plan"), Path("build/libadnet_plugins.so"), "24.10")
    assert cmd[:4] == ["docker", "run", "--gpus", "all"] and "nvcr.io/nvidia/tensorrt:24.10-py3" in cmd
    assert cmd[-1] == "--require-load" and json.dumps(cmd)
