"""Write the deployment files that are pure data derived from the contract (deploy/contract.py); --check compares.

- deploy/overlays/gpu/triton-command.yaml: tritonserver's command line (model_repository.server.docker_command's
  arguments: repository, plugin, restricted endpoints; the ports);
- deploy/overlays/cpu/manager-command.yaml: the server manager's command line (ports, health port, ONNX, token);
- deploy/overlays/gpu/canary.json: the readiness canary's inference request (model, tensors, smallest frame);
- deploy/balancer/haproxy.example.cfg: the gRPC balancer for 3 local replicas behind the default gRPC port.

The rest of the manifests is hand-written YAML (what kustomize users read and patch); tests/deploy checks its
contract-carrying fields against deploy/contract.py instead.

CLI: python -m deploy.generate [--check]   (exit 1 with the stale files named when --check finds a difference)
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional

import yaml

from deploy import contract
from deploy.balancer.haproxy import haproxy_config, local_replicas

EXAMPLE_REPLICAS = 3
EXAMPLE_FIRST_PORT = 8100


def command_patch(command: list[str], args: list[str], source: str) -> str:
    """A strategic-merge patch that sets the server container's command line."""
    patch = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "adnet"},
             "spec": {"template": {"spec": {"containers": [{"name": "triton", "command": command, "args": args}]}}}}
    return (f"# Written by `python -m deploy.generate` from {source}; do not edit.\n"
            + yaml.safe_dump(patch, sort_keys=False, width=120))


def generated_files() -> dict[Path, str]:
    example = haproxy_config(local_replicas(EXAMPLE_REPLICAS, EXAMPLE_FIRST_PORT), "127.0.0.1",
                             contract.PORTS["grpc"], "build/haproxy/haproxy.sock")
    overlays = contract.DEPLOY / "overlays"
    return {
        overlays / "gpu" / "triton-command.yaml": command_patch(
            ["tritonserver"], contract.gpu_triton_args(), "model_repository/server.py (docker_command, ports)"),
        overlays / "cpu" / "manager-command.yaml": command_patch(
            ["python", "-m", contract.MANAGER_MODULE], contract.cpu_manager_args(), "deploy/contract.py"),
        overlays / "gpu" / "canary.json": contract.canary_json(),
        contract.DEPLOY / "balancer" / "haproxy.example.cfg": example,
    }


def stale_files() -> list[Path]:
    return [path for path, text in generated_files().items()
            if not path.is_file() or path.read_text() != text]


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy.generate", description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if a file differs")
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_files()
        for path in stale:
            print(f"stale: {path.relative_to(contract.ROOT)} (run `python -m deploy.generate`)", file=sys.stderr)
        return 1 if stale else 0
    for path, text in generated_files().items():
        path.write_text(text)
        print(f"wrote {path.relative_to(contract.ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
