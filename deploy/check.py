"""Render every overlay with `kubectl kustomize` and validate it strictly with kubernetes-validate, offline.

The core set (base + overlays) must pass `kubernetes-validate --strict -k 1.30.0` with no warning. The optional
ServiceMonitor component is a CRD that kubernetes-validate has no schema for: it is rendered on top of each overlay,
and in the example user kustomization (deploy/examples/), and checked apart: only that one warning is allowed (its
fields are checked against the Service in tests/deploy).

CLI: python -m deploy.check [--kubernetes-version 1.30.0]   (what `make deploy-check` runs; exit 1 on any problem)
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Optional

import yaml

from client.errors import AdnetError, reports_errors
from deploy import contract

OVERLAYS = {name: contract.DEPLOY / "overlays" / name for name in ("gpu", "cpu")}
SERVICE_MONITOR = contract.DEPLOY / "components" / "service-monitor"
EXAMPLES = {"gpu-cluster": contract.DEPLOY / "examples" / "gpu-cluster"}  # a user's kustomization, with the CRD
MIN_KUBERNETES = "1.30.0"
CRD_KINDS = {"ServiceMonitor"}


class CheckError(AdnetError, RuntimeError):
    """A tool is missing or refused the manifests; the message names the fix."""


def kubectl() -> str:
    path = shutil.which("kubectl")
    if path is None:
        raise CheckError("kubectl not found: install kubectl >= 1.27 (it renders kustomize offline; no cluster is "
                         "needed), e.g. the kubectl binary from the Kubernetes release or your distribution")
    return path


def render(kustomization: str | Path) -> str:
    result = subprocess.run([kubectl(), "kustomize", str(kustomization)], capture_output=True, text=True)
    if result.returncode != 0:
        raise CheckError(f"kubectl kustomize {kustomization} failed:\n{result.stderr}")
    return result.stdout


def render_with_components(overlay: str | Path, components: list[str | Path]) -> str:
    """Render `overlay` with optional components added, as a user's own kustomization would."""
    with tempfile.TemporaryDirectory() as tmp:
        # kustomize refuses absolute paths: refer to everything relative to the temporary kustomization.
        paths = [os.path.relpath(Path(p).resolve(), tmp) for p in [overlay, *components]]
        (Path(tmp) / "kustomization.yaml").write_text(yaml.safe_dump({
            "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
            "resources": paths[:1], "components": paths[1:]}))
        return render(tmp)


def resources(rendered: str) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(rendered) if doc]


def validate(rendered: str, kubernetes_version: str = MIN_KUBERNETES) -> tuple[int, list[str]]:
    """Run `kubernetes-validate --strict`; returns its exit code and its WARN/ERROR lines."""
    tool = Path(sys.executable).with_name("kubernetes-validate")
    cmd = [str(tool)] if tool.is_file() else [sys.executable, "-m", "kubernetes_validate"]
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as f:
        f.write(rendered)
        f.flush()
        result = subprocess.run(cmd + ["--strict", "-k", kubernetes_version, f.name], capture_output=True, text=True)
    lines = (result.stdout + result.stderr).splitlines()
    return result.returncode, [line for line in lines if not line.startswith("INFO ")]


def problems_of(label: str, rendered: str, kubernetes_version: str, crds_expected: int = 0) -> list[str]:
    """kubernetes-validate's complaints about one rendered set; the only warning allowed is the one for each
    expected CRD resource (kubernetes-validate has no schema for it)."""
    crds = [r for r in resources(rendered) if r["kind"] in CRD_KINDS]
    problems = [] if len(crds) == crds_expected else [f"{label}: {len(crds)} CRD resources, expected {crds_expected}"]
    code, lines = validate(rendered, kubernetes_version)
    problems += [f"{label}: {line}" for line in lines
                 if not (crds_expected and line.startswith("WARN") and "Couldn't find schema for kind" in line
                         and any(f"kind {kind} " in line for kind in CRD_KINDS))]
    if code:
        problems.append(f"{label}: kubernetes-validate exited with {code}")
    return problems


def check_all(kubernetes_version: str = MIN_KUBERNETES) -> list[str]:
    """Every problem found, as readable lines; empty when all is well."""
    from deploy.generate import stale_files

    problems = [f"stale generated file {p.relative_to(contract.ROOT)}: run `python -m deploy.generate`"
                for p in stale_files()]
    for name, overlay in OVERLAYS.items():
        problems += problems_of(name, render(overlay), kubernetes_version)
        problems += problems_of(f"{name} + service-monitor", render_with_components(overlay, [SERVICE_MONITOR]),
                                kubernetes_version, crds_expected=1)
    for name, example in EXAMPLES.items():
        problems += problems_of(f"example {name}", render(example), kubernetes_version, crds_expected=1)
    return problems


@reports_errors
def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy.check", description=__doc__.splitlines()[0])
    parser.add_argument("--kubernetes-version", default=MIN_KUBERNETES)
    args = parser.parse_args(argv)
    problems = check_all(args.kubernetes_version)
    for line in problems:
        print(line, file=sys.stderr)
    if not problems:
        print(f"deploy: overlays {', '.join(OVERLAYS)} (and with the ServiceMonitor component, and the examples) "
              f"render and pass kubernetes-validate --strict -k {args.kubernetes_version}; generated files are current")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
