"""Pre-flight of the GPU serving path: will Triton load our plugin and the plan? Checked before the server starts.

Triton's TensorRT backend dlopens `--backend-config=tensorrt,plugins=...` libraries and only logs a failure; the
model then fails to load later with "could not find plugin". So `make serve GPU=1` runs this first and stops with the
fix when anything is off:

  on any machine (no TensorRT needed)
    plugin      build/libadnet_plugins.so exists and links the libnvinfer.so.N of the serving release's TensorRT
    plan        the plan and its sidecar exist; built with the C++ plugin (not the CI stand-in), the contract's plugin
                version and namespace, and the TensorRT the serving release ships (NGC 24.10: 10.5.0)
    same build  the plugin is the one the plan was built with (sha256; a warning, a rebuilt plugin may still fit)
  where TensorRT's Python is (the NGC TensorRT container of the same release; with --docker this module re-runs
  itself there when the host has none), each in a child process with a timeout, so a crash or a hang is a finding:
    version     this TensorRT is the sidecar's, exactly
    dlopen      dlopen(RTLD_NOW | RTLD_LOCAL), as Triton does: the library registers AdnetDCNv2/adnet/1 by itself
    loadLibrary IPluginRegistry::loadLibrary (getCreators), as trtexec/our build do; then, with a GPU, the plan
                deserialises with it

CLI: python -m export.plugin_preflight [--plan model_repository/gpu/adnet/1/model.plan] [--plugin build/...so]
         [--release 24.10] [--require-load | --docker]          exit 0 when nothing failed, 1 otherwise
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from export import trt_compat
from export.engine_files import DEFAULT_PLAN, EngineLoadError, check_sidecar, read_sidecar, sidecar_path
from export.errors import PipelineError
from export.trt_process import DEFAULT_PLUGIN_LIBRARY, POLYGRAPHY_VERSION, linked_tensorrt_libraries, sha256_file
from plugins.dcnv2 import contract

__all__ = ["Check", "static_checks", "load_checks", "preflight", "docker_command", "main"]

LOAD_TIMEOUT_S = 60.0
ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Check:
    name: str
    status: str  # "pass" | "fail" | "warn" | "skip"
    detail: str  # what was found; for a failure, the fix

    @property
    def failed(self) -> bool:
        return self.status == "fail"


def _container(release: str) -> str:
    return f"nvcr.io/nvidia/tensorrt:{release}-py3"


def _rebuild(release: str, what: str = "plugin engine") -> str:
    make = f"make {what} ENGINE_PY=python3"
    if "engine" in what:  # the engine build runs on Polygraphy, which the TensorRT container does not pin
        make = f"bash -c 'pip install --no-deps polygraphy=={POLYGRAPHY_VERSION} && {make}'"
    return (f"rebuild with `docker run --gpus all --rm -v $PWD:/workspace/adnet -w /workspace/adnet "
            f"{_container(release)} {make}`")


def static_checks(plan: Path, plugin: Path, release: str, tensorrt_version: Optional[str] = None) -> list[Check]:
    """What can be checked from the files alone (no TensorRT, no GPU)."""
    plan, plugin = Path(plan), Path(plugin)
    want = tensorrt_version or trt_compat.NGC_TENSORRT.get(release)
    checks = []
    if want is None:
        checks.append(Check("release", "fail", f"unknown NGC release {release!r} (known: "
                                               f"{', '.join(trt_compat.NGC_TENSORRT)}); pass --tensorrt-version"))
        return checks
    soname = f"libnvinfer.so.{want.split('.')[0]}"
    if not plugin.is_file():
        checks.append(Check("plugin", "fail", f"{plugin} not found: build it with `make plugin` in "
                                              f"{_container(release)} ({_rebuild(release, 'plugin')})"))
    else:
        linked = linked_tensorrt_libraries(plugin)
        if soname in linked:
            checks.append(Check("plugin", "pass", f"{plugin} links {soname}"))
        else:
            checks.append(Check("plugin", "fail", f"{plugin} links {', '.join(sorted(linked)) or 'no TensorRT'}, the "
                                                  f"NGC {release} Triton has {soname}: {_rebuild(release, 'plugin')}"))
    sidecar = read_sidecar(plan) if plan.is_file() else None
    if not plan.is_file() or sidecar is None:
        missing = plan if not plan.is_file() else sidecar_path(plan)
        checks.append(Check("plan", "fail", f"{missing} not found: build the engine with `make engine` in "
                                            f"{_container(release)} ({_rebuild(release)})"))
        return checks
    built = sidecar.get("tensorrt", {})
    side_plugin = sidecar.get("plugin") or {}
    if side_plugin.get("implementation") != "library":
        checks.append(Check("plan", "fail", f"{plan} was built with the {side_plugin.get('implementation') or 'no'} "
                                            f"plugin, not the C++ library Triton loads: {_rebuild(release)}"))
    elif (side_plugin.get("version"), side_plugin.get("namespace")) != (contract.PLUGIN_VERSION,
                                                                         contract.PLUGIN_NAMESPACE):
        checks.append(Check("plan", "fail", f"{plan} uses {contract.PLUGIN_NAME} {side_plugin.get('version')}/"
                                            f"{side_plugin.get('namespace')}, this checkout {contract.PLUGIN_VERSION}/"
                                            f"{contract.PLUGIN_NAMESPACE}: {_rebuild(release)}"))
    elif built.get("name") != "TensorRT" or not str(built.get("version", "")).startswith(want + "."):
        checks.append(Check("plan", "fail", f"{plan} was built with {built.get('name')} {built.get('version')}; the "
                                            f"NGC {release} Triton has TensorRT {want} and loads only plans of its own "
                                            f"version: {_rebuild(release)}"))
    else:
        checks.append(Check("plan", "pass", f"{plan}: {built['name']} {built['version']}, {contract.PLUGIN_NAME} "
                                            f"{side_plugin['version']}/{side_plugin['namespace']} (C++ library)"))
    if plugin.is_file() and side_plugin.get("library_sha256"):
        same = sha256_file(plugin) == side_plugin["library_sha256"]
        checks.append(Check("same build", "pass" if same else "warn",
                            f"{plugin} is the library the plan was built with" if same else
                            f"{plugin} differs from the library the plan was built with (rebuilt since?); if loading "
                            f"fails, {_rebuild(release)}"))
    return checks


def _child(args: list[str], timeout: float) -> tuple[Optional[dict], str]:
    """Run this module's --child mode; (its JSON answer or None, what went wrong)."""
    cmd = [sys.executable, "-m", "export.plugin_preflight", *args]
    try:
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None, (f"hung for {timeout:.0f} s while loading (a lock held across dlopen?): report it with the "
                      f"TensorRT version; the plugin must register without calling back into a locked registry")
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = " | ".join((proc.stderr or proc.stdout).strip().splitlines()[-3:])
        how = f"crashed (signal {-proc.returncode})" if proc.returncode < 0 else f"exit {proc.returncode}"
        return None, f"{how}: {tail}"
    return json.loads(lines[-1]), ""


def load_checks(plan: Path, plugin: Path, timeout: float = LOAD_TIMEOUT_S, backend: str = "tensorrt") -> list[Check]:
    """The checks that need TensorRT's Python (raises TensorRTNotFound without it); `backend` "rtx" only for tests."""
    trt = trt_compat.load(backend)
    checks = []
    sidecar = read_sidecar(Path(plan)) if Path(plan).is_file() else None
    if sidecar is not None:
        try:
            check_sidecar(sidecar, trt.name, trt.version, Path(plan))
            checks.append(Check("version", "pass", f"{trt} built {plan}"))
        except EngineLoadError as exc:
            checks.append(Check("version", "fail", str(exc)))
    for via in ("dlopen", "load_library"):
        extra = ["--deserialize", str(plan)] if via == "load_library" and sidecar is not None else []
        answer, problem = _child(["--child", via, "--backend", backend, "--plugin", str(plugin), *extra], timeout)
        if answer is None:
            checks.append(Check(via, "fail", f"{plugin} via {via}: {problem}"))
        elif answer.get("error"):
            checks.append(Check(via, "fail", answer["error"]))
        else:
            checks.append(Check(via, "pass", answer["found"]))
            if "deserialized" in answer:
                checks.append(Check("deserialize", "pass" if answer["deserialized"] is True else
                                    "skip" if answer["deserialized"] is None else "fail", answer["deserialize_note"]))
    return checks


def _child_main(via: str, plugin: Path, deserialize: Optional[Path], backend: str) -> int:
    """In a child process: load the plugin one way, report the creator (and the plan's deserialisation) as JSON."""
    from export import trt_process

    answer: dict = {}
    try:
        trt = trt_compat.load(backend)
        load = trt_process.dlopen_plugin if via == "dlopen" else trt_process.load_plugins
        load(trt, plugin)
        creator = trt_process.registered_creator(trt)
        answer["found"] = (f"{plugin} via {via}: {creator.name}/{creator.plugin_namespace}/{creator.plugin_version} "
                           f"registered in {trt}")
        if deserialize is not None:
            try:
                trt_compat.require_gpu()
            except trt_compat.NoGPU as exc:
                answer.update(deserialized=None, deserialize_note=f"not tried: {exc}")
            else:
                logger = trt_process.trt_logger(trt)
                mark = logger.count
                engine = trt.module.Runtime(logger).deserialize_cuda_engine(Path(deserialize).read_bytes())
                ok = engine is not None
                answer.update(deserialized=ok, deserialize_note=(
                    f"{deserialize} deserialises with it" if ok else
                    f"{deserialize} does not deserialise{trt_process.tensorrt_errors(logger, mark)}: rebuild plugin "
                    f"and engine together (`make plugin engine`)"))
    except PipelineError as exc:
        answer["error"] = str(exc)
    print(json.dumps(answer))
    return 0


def docker_command(plan: Path, plugin: Path, release: str) -> list[str]:
    """This check with --require-load inside the release's TensorRT container (the repository mounted at its path)."""
    return ["docker", "run", "--gpus", "all", "--rm", "-v", f"{ROOT}:/workspace/adnet", "-w", "/workspace/adnet",
            _container(release), "python3", "-m", "export.plugin_preflight", "--plan", str(plan), "--plugin",
            str(plugin), "--release", release, "--require-load"]


def preflight(plan: Path = DEFAULT_PLAN, plugin: Path = DEFAULT_PLUGIN_LIBRARY, *,
              release: str = trt_compat.NGC_RELEASE, tensorrt_version: Optional[str] = None,
              require_load: bool = False, docker: bool = False, timeout: float = LOAD_TIMEOUT_S,
              log=print) -> list[Check]:
    """Every check that can run here, in order; stops after the file checks when one of them failed."""
    checks = static_checks(plan, plugin, release, tensorrt_version)
    if any(c.failed for c in checks):
        return checks  # loading a missing or mismatched library only adds noise
    try:
        return checks + load_checks(plan, plugin, timeout)
    except trt_compat.TensorRTNotFound as exc:
        reason = " ".join(str(exc).split()).split(";")[0]
    if docker and shutil.which("docker") and shutil.which("nvidia-smi"):
        cmd = docker_command(plan, plugin, release)
        log(f"pre-flight: no TensorRT here ({reason}); loading in {_container(release)}: {' '.join(cmd)}")
        code = subprocess.call(cmd)
        return checks + [Check("in container", "pass" if code == 0 else "fail",
                               f"{_container(release)}: the load checks above" + ("" if code == 0 else
                                                                                  f" failed (exit {code})"))]
    where = " ".join(docker_command(plan, plugin, release))
    return checks + [Check("load", "fail" if require_load else "skip", f"{reason}: run this where TensorRT is, e.g. "
                                                                       f"`{where}`")]


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m export.plugin_preflight", description=__doc__.splitlines()[0])
    parser.add_argument("--plan", type=Path, default=DEFAULT_PLAN)
    parser.add_argument("--plugin", type=Path, default=DEFAULT_PLUGIN_LIBRARY)
    parser.add_argument("--release", default=trt_compat.NGC_RELEASE, help="NGC release of the Triton that serves")
    parser.add_argument("--tensorrt-version", help="the serving TensorRT (default: the release's, e.g. 10.5.0)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--require-load", action="store_true", help="fail when the load checks cannot run here")
    mode.add_argument("--docker", action="store_true",
                      help="without TensorRT here, run the load checks in the release's TensorRT container")
    parser.add_argument("--timeout", type=float, default=LOAD_TIMEOUT_S, help="seconds per load check")
    parser.add_argument("--child", choices=("dlopen", "load_library"), help=argparse.SUPPRESS)
    parser.add_argument("--deserialize", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--backend", default="tensorrt", choices=trt_compat.BACKENDS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return _child_main(args.child, args.plugin, args.deserialize, args.backend)
    checks = preflight(args.plan, args.plugin, release=args.release, tensorrt_version=args.tensorrt_version,
                       require_load=args.require_load, docker=args.docker, timeout=args.timeout)
    marks = {"pass": "ok  ", "fail": "FAIL", "warn": "warn", "skip": "skip"}
    for check in checks:
        print(f"  {marks[check.status]} {check.name:12} {check.detail}",
              file=sys.stderr if check.failed else sys.stdout)
    failed = [c for c in checks if c.failed]
    print(f"plugin pre-flight: {'FAILED' if failed else 'passed'} (NGC {args.release}, {args.plugin}, {args.plan})",
          file=sys.stderr if failed else sys.stdout)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
