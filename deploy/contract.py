"""What the deployment (Kubernetes manifests, balancer configs) takes from the project, gathered in one place.

Nothing here is a new value where the project already has one: the model name and tensors come from
client/contract.py, the Triton ports are the defaults of model_repository.server.TritonServer, the NGC tag is
model_repository.server.NGC_TRITON_TAG, the request limits are client/contract.py's and the configs'. The one new
value is the CPU server manager's health port and paths (the block below), which the manifests rely on.

The files that are pure functions of it (both server command lines, the GPU canary request, the example balancer
config) are written by `python -m deploy.generate` and checked for drift; tests/deploy/test_manifests.py renders
every overlay and checks the hand-written fields that carry a contract value against this module.
"""
from __future__ import annotations

import inspect
import json
import shlex
import tomllib
from pathlib import Path

import numpy as np
from tritonclient.utils import np_to_triton_dtype

from client import contract
from client.synthetic import make_scene
from model_repository import server

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"

MODEL_NAME = contract.MODEL_NAME
_PORT_DEFAULTS = inspect.signature(server.TritonServer.__init__).parameters
PORTS = {name: _PORT_DEFAULTS[f"{name}_port"].default for name in ("http", "grpc", "metrics")}

# --- The CPU server manager (model_repository/server.py), the only interface of it the deployment relies on ------
# `python -m model_repository.server --host 0.0.0.0 ... --health-port HEALTH_PORT` supervises tritonserver, reloads
# a dead model by itself, and answers GET READY_PATH with 200 only while a recent canary inference succeeded and
# GET LIVE_PATH while the manager itself runs. It stages the repository under MANAGER_STAGE (must be writable).
HEALTH_PORT = 8003
READY_PATH = "/ready"
LIVE_PATH = "/live"
MANAGER_MODULE = "model_repository.server"
MANAGER_STAGE = "build"  # relative to the project root in the image: ROOT/build/triton
# ---------------------------------------------------------------------------------------------------------------

PORTS_WITH_HEALTH = {**PORTS, "health": HEALTH_PORT}

NGC_TRITON_IMAGE = f"nvcr.io/nvidia/tritonserver:{server.NGC_TRITON_TAG}-py3"
CPU_IMAGE_NAME = "adnet-triton-cpu"
CPU_IMAGE_TAG = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
ADMIN_HEADER = contract.ADMIN_HEADER
RESTRICTED = server.RESTRICTED
# Where the images keep the project and the model (deploy/docker/cpu.Dockerfile, the model artifact image).
IMAGE_PROJECT_ROOT = "/opt/adnet"
CPU_ONNX_IN_IMAGE = f"{IMAGE_PROJECT_ROOT}/model/adnet.onnx"
PLUGIN_FILE = "libadnet_plugins.so"
# The admin token Secret, mounted as a file in the cpu pod (the manager reads it; nothing else sees it).
ADMIN_TOKEN_FILE = "/etc/adnet/admin-token/token"
EXIT_TIMEOUT_S = 30  # tritonserver's wait for requests in flight on SIGTERM, in the gpu pod

# The python backend moves each executed batch through shared memory (/dev/shm): at most the largest batch of the
# largest frame the CPU model admits (max_pixels), LDR in the widest type (FP16) plus the HDR output.
_LDR_ITEM = max(np.dtype(d).itemsize for d in contract.LDR_DTYPES)
_HDR_ITEM = np.dtype(contract.HDR_DTYPE).itemsize


def cpu_model_parameters() -> dict[str, str]:
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2 as mc

    path = ROOT / "model_repository" / "cpu" / MODEL_NAME / "config.pbtxt"
    config = text_format.Parse(path.read_text(), mc.ModelConfig())
    return {k: v.string_value for k, v in config.parameters.items()} | {"max_batch_size": str(config.max_batch_size)}


def largest_batch_bytes() -> int:
    params = cpu_model_parameters()
    batch, pixels = int(params["max_batch_size"]), int(params["max_pixels"])
    return batch * pixels * contract.NUM_COLORS * (contract.NUM_FRAMES * _LDR_ITEM + _HDR_ITEM)


def gpu_triton_args() -> list[str]:
    """tritonserver's arguments in the gpu pod: those of server.docker_command() (model repository at /models,
    the plugin under /plugins, the restricted endpoints with the token that the kubelet expands from the pod's
    ADMIN_TOKEN variable), plus the ports and what a pod needs: load everything at start, readiness only when every
    model is ready, a bounded wait for requests in flight on SIGTERM."""
    words = shlex.split(server.docker_command(admin_token="$(ADMIN_TOKEN)"))
    return (words[words.index("tritonserver") + 1:] + [f"--{name}-port={port}" for name, port in PORTS.items()]
            + ["--model-control-mode=none", "--strict-readiness=true", f"--exit-timeout-secs={EXIT_TIMEOUT_S}"])


def cpu_manager_args() -> list[str]:
    """The server manager's arguments in the cpu pod."""
    return (["--host=0.0.0.0"] + [f"--{name}-port={port}" for name, port in PORTS_WITH_HEALTH.items()]
            + [f"--onnx={CPU_ONNX_IN_IMAGE}", f"--admin-token-file={ADMIN_TOKEN_FILE}"])


def canary_request(side: int = contract.MIN_SIDE) -> dict:
    """Triton KServe-v2 JSON inference request for the smallest frame the model admits (a synthetic scene with a
    fixed seed, so the committed file regenerates byte for byte). The GPU readiness probe POSTs it."""
    scene = make_scene(side, side, seed=0, max_shift=1)
    ldr = scene.ldrs[None]  # [1, 3, H, W, 3]
    ev = scene.evs[None].astype(contract.EV_DTYPE)
    return {
        "inputs": [
            {"name": contract.INPUT_LDR, "shape": list(ldr.shape), "datatype": np_to_triton_dtype(ldr.dtype),
             "data": ldr.ravel().tolist()},
            {"name": contract.INPUT_EV, "shape": list(ev.shape), "datatype": np_to_triton_dtype(ev.dtype),
             "data": ev.ravel().tolist()},
        ],
        "outputs": [{"name": contract.OUTPUT_HDR}],
        # Triton's highest priority: where the config has priority levels the canary goes ahead of queued work (a
        # busy model is not a dead one); where it has none, Triton ignores it.
        "parameters": {"priority": 1},
    }


def canary_json() -> str:
    return json.dumps(canary_request(), separators=(",", ":")) + "\n"
