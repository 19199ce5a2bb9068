"""Shared fixtures: ONNX graphs exported once per test session from a freshly seeded random ADNet.

The export stack (torch, onnx, onnx-graphsurgeon) is imported inside the fixtures, so that test modules that need
none of it (the CUDA kernel tests on a bare GPU box) still collect where it is missing.
"""
import secrets

import pytest


class ExportedGraphs:
    """Lazily exported graphs of one random network; attribute access exports on first use."""

    def __init__(self, root):
        from export.checkpoint import random_adnet

        self.root = root
        self.seed = secrets.randbits(31)
        self.net = random_adnet(self.seed)
        self._paths = {}

    def path(self, name):
        if name not in self._paths:
            core, precision, ldr_dtype, surgered = {
                "pipeline": (False, "fp32", "uint8", False),
                "pipeline_fp16": (False, "fp16", "uint8", False),
                "pipeline_ldr16": (False, "fp32", "float16", False),
                "core": (True, "fp32", "uint8", False),
                "plugin": (False, "fp32", "uint8", True),
                "plugin_fp16": (False, "fp16", "uint8", True),
            }[name]
            from export.surgery import surgery
            from export.to_onnx import export_onnx

            if surgered:
                src = self.path("pipeline_fp16" if precision == "fp16" else "pipeline")
                out = self.root / f"{name}.onnx"
                surgery(src, out)
            else:
                out = export_onnx(self.net, self.root / f"{name}.onnx", core=core, precision=precision,
                                  ldr_dtype=ldr_dtype)
            self._paths[name] = out
        return self._paths[name]


@pytest.fixture(scope="session")
def graphs(tmp_path_factory):
    exported = ExportedGraphs(tmp_path_factory.mktemp("onnx"))
    print(f"random ADNet seed for the exported graphs: {exported.seed}")
    return exported


@pytest.fixture(scope="session")
def triton_cpu(graphs, tmp_path_factory):
    """A real tritonserver (CPU repository, the session's random-weight pipeline ONNX as `adnet` and its 16-bit twin
    as `adnet_16bit`, as `make serve` stages them) on free loopback ports."""
    from model_repository.server import TritonServer, free_port, stage_cpu_repository

    stage = tmp_path_factory.mktemp("triton")
    repo = stage_cpu_repository(graphs.path("pipeline"), stage, graphs.path("pipeline_ldr16"))
    server = TritonServer(repo, grpc_port=free_port(), http_port=free_port(), metrics_port=free_port(), stage=stage)
    server.start()
    yield server
    server.stop()


# Fixtures whose set-up takes seconds to minutes (an ONNX export of ADNet, a real Triton server, a TensorRT-RTX
# engine build, the sanitizer-built kernel emulator): a test that uses one, directly or through another fixture, is marked `slow` and left out of
# `make test-fast` (pytest -m "not slow"). `make test` runs everything.
SLOW_FIXTURES = {"graphs", "triton_cpu", "rtx", "stand_in", "ci_engine", "emulator"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
