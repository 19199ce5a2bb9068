"""The engine on disk: the plan, its JSON sidecar (model.plan.json) and the checks that decide whether a plan can load
in a given process, before TensorRT fails less clearly.

The sidecar is written by export.build_engine and read by the runner, verify-engine and the plugin pre-flight. It
records the TensorRT that built the plan (a plan loads only in that version), the plugin implementation (the CI
stand-in cannot run), the contract version of the plugin, the profiles, the I/O and the ONNX graph it came from.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional

from client import contract as io_contract
from export.errors import PipelineError
from export.trt_compat import CONTAINER_HINT
from plugins.dcnv2 import contract

__all__ = ["DEFAULT_PLAN", "DEFAULT_RTX_PLAN", "SIDECAR_FORMAT", "EngineLoadError", "sidecar_path", "write_atomic",
           "save_engine", "read_sidecar", "check_sidecar"]

# The GPU variant of the Triton model repository (model_repository/gpu/adnet/config.pbtxt serves this file).
DEFAULT_PLAN = Path("model_repository") / "gpu" / io_contract.MODEL_NAME / "1" / "model.plan"
# TensorRT-RTX plans cannot be served by Triton's TensorRT backend: keep them out of the model repository.
DEFAULT_RTX_PLAN = Path("build") / "rtx" / "model.plan"
SIDECAR_FORMAT = 1


class EngineLoadError(PipelineError):
    """The plan cannot be loaded here: other TensorRT, stand-in plugin, plugin mismatch, not a pipeline engine."""


def sidecar_path(plan_path: Path) -> Path:
    """model.plan -> model.plan.json."""
    plan_path = Path(plan_path)
    return plan_path.with_name(plan_path.name + ".json")


def write_atomic(path: Path, data: bytes) -> None:
    """Write through a temporary file and a rename, so that a reader (Triton polling the repository) never sees a
    half-written plan."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


def save_engine(plan: bytes, out: Path, sidecar: dict) -> tuple[Path, Path]:
    """Write the plan and its sidecar (out + '.json'); both atomically. Returns their paths."""
    out = Path(out)
    write_atomic(out, plan)
    side = sidecar_path(out)
    write_atomic(side, (json.dumps(sidecar, indent=2) + "\n").encode())
    return out, side


def read_sidecar(plan: Path) -> Optional[dict]:
    """The sidecar next to `plan` (model.plan.json), or None when there is none."""
    side = sidecar_path(plan)
    return json.loads(side.read_text()) if side.is_file() else None


def check_sidecar(sidecar: dict, trt_name: str, trt_version: str, plan: Path) -> None:
    """Refuse plans that cannot load in a process with TensorRT `trt_name` `trt_version` (e.g. "TensorRT",
    "10.5.0.18"), with the fix. A sidecar whose "plugin" is null (a graph without AdnetDCNv2 nodes) needs none."""
    plugin = sidecar.get("plugin")
    if plugin and plugin.get("implementation") == "python-stand-in":
        raise EngineLoadError(f"{plan} was built with the CI build-only Python stand-in of {contract.PLUGIN_NAME}; "
                              f"it cannot run. Rebuild it on a GPU host with the C++ plugin: `make plugin engine`")
    built = sidecar.get("tensorrt", {})
    if (built.get("name"), built.get("version")) != (trt_name, trt_version):
        raise EngineLoadError(f"{plan} was built with {built.get('name')} {built.get('version')}, this is {trt_name} "
                              f"{trt_version}: a plan loads only in the TensorRT version that built it. Rebuild it "
                              f"with `make engine` in the container you serve with ({CONTAINER_HINT})")
    if plugin and (plugin.get("version"), plugin.get("namespace")) != (contract.PLUGIN_VERSION,
                                                                         contract.PLUGIN_NAMESPACE):
        raise EngineLoadError(f"{plan} uses {contract.PLUGIN_NAME} version {plugin.get('version')} namespace "
                              f"'{plugin.get('namespace')}', this checkout provides version {contract.PLUGIN_VERSION} "
                              f"namespace '{contract.PLUGIN_NAMESPACE}': rebuild plugin and engine together "
                              f"(`make plugin engine`)")
