"""Start, check and stop Triton Inference Server for the `adnet` model.

CPU (the embedded default): the real `tritonserver` binary (Triton 2.51) shipped inside the nvidia-pytriton
wheel, with its python backend, serving model_repository/cpu (ONNX Runtime). The repository is staged under
build/ so that the source tree stays clean: config.pbtxt and model.py are linked, the exported ONNX is copied in.

GPU: the NGC Triton container with the TensorRT plan and our plugin; `docker_command()` returns the exact
command (printed by `python -m model_repository.server --gpu`).

Restricted endpoints (model repository control, shared memory) need a token whenever the server listens beyond
loopback: the same header key/value must then be sent by clients (`client --admin-token`).

CLI: python -m model_repository.server [--onnx build/adnet.onnx] [--host 127.0.0.1] [--grpc-port 8001] ...
"""
from __future__ import annotations

import argparse
import importlib.util
import ipaddress
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
from pathlib import Path
from typing import Optional

from client import contract
from client.errors import AdnetError

__all__ = ["ServerError", "TritonServer", "stage_cpu_repository", "docker_command", "free_port", "ADMIN_HEADER",
           "NGC_TRITON_TAG", "RESTRICTED"]

ROOT = Path(__file__).resolve().parent.parent
SOURCE_CPU = Path(__file__).resolve().parent / "cpu" / contract.MODEL_NAME
SOURCE_GPU_REPO = Path(__file__).resolve().parent / "gpu"
ADMIN_HEADER = contract.ADMIN_HEADER
RESTRICTED = "model-repository,shared-memory"
# Triton 2.51.0 (the python backend we run on CPU) is NGC release 24.10, which ships TensorRT 10.5: build the
# plan and the plugin in nvcr.io/nvidia/tensorrt:24.10-py3 (or inside this Triton image) to match.
NGC_TRITON_TAG = "24.10"


class ServerError(AdnetError, RuntimeError):
    """The server could not be started or did not become ready; the message says why and what to do."""


def _pytriton_root() -> Path:
    spec = importlib.util.find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        raise ServerError("nvidia-pytriton is not installed: run `make setup` (it ships the tritonserver binary)")
    root = Path(list(spec.submodule_search_locations)[0]) / "tritonserver"
    if not (root / "bin" / "tritonserver").is_file():
        raise ServerError(f"{root}/bin/tritonserver missing: reinstall nvidia-pytriton==0.7.0 (`make setup`)")
    return root


def _backend_dir(stage: Path) -> Path:
    """A backends/ folder with the python backend and the stub built for this interpreter's Python version."""
    root = _pytriton_root()
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = root / "python_backend_stubs" / version / "triton_python_backend_stub"
    if not stub.is_file():
        raise ServerError(f"nvidia-pytriton has no python backend stub for Python {version}; use Python 3.8-3.13")
    python = stage / "backends" / "python"
    python.mkdir(parents=True, exist_ok=True)
    for src in (root / "backends" / "python" / "libtriton_python.so",
                root / "backends" / "python" / "triton_python_backend_utils.py", stub):
        link = python / src.name
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(src)
    return stage / "backends"


def _ldr_type_of(onnx_path: Path) -> str:
    import onnx

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    elem = {i.name: i.type.tensor_type.elem_type for i in graph.input}.get(contract.INPUT_LDR)
    dtype = onnx.helper.tensor_dtype_to_np_dtype(elem).name if elem else None
    if dtype not in contract.LDR_DTYPES:
        raise ServerError(f"{onnx_path} is not a pipeline export (no UINT8/FP16 input {contract.INPUT_LDR}); "
                          f"export it with `python -m export.to_onnx --out {onnx_path}` (not --core)")
    return contract.LDR_DTYPES[dtype]


def stage_cpu_repository(onnx_path: str | Path, stage: str | Path) -> Path:
    """Lay out model_repository/cpu under `stage`/repository with `onnx_path` inside; returns the repository."""
    onnx_path, stage = Path(onnx_path), Path(stage)
    if not onnx_path.is_file():
        raise ServerError(f"{onnx_path} not found: export the pipeline first with `make onnx`")
    repo = stage / "repository"
    model = repo / contract.MODEL_NAME
    version = model / "1"
    if repo.exists():
        shutil.rmtree(repo)
    version.mkdir(parents=True)
    config = (SOURCE_CPU / "config.pbtxt").read_text()
    ldr_type = _ldr_type_of(onnx_path)
    if ldr_type != "TYPE_UINT8":  # the only line that differs between the uint8 and float16 exports
        config = config.replace("data_type: TYPE_UINT8", f"data_type: {ldr_type}", 1)
    (model / "config.pbtxt").write_text(config)
    (version / "model.py").symlink_to(SOURCE_CPU / "1" / "model.py")
    shutil.copyfile(onnx_path, version / "adnet.onnx")
    return repo


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now (for tests and benchmarks that start their own server)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class TritonServer:
    """A tritonserver process serving one repository; a context manager that always stops it."""

    def __init__(self, repository: str | Path, *, host: str = "127.0.0.1", grpc_port: int = 8001,
                 http_port: int = 8000, metrics_port: int = 8002, admin_token: Optional[str] = None,
                 stage: str | Path = ROOT / "build" / "triton", log_path: Optional[str | Path] = None):
        self.repository = Path(repository)
        self.host = host
        self.ports = {"grpc": grpc_port, "http": http_port, "metrics": metrics_port}
        if admin_token is None and not _is_loopback(host):
            admin_token = secrets.token_urlsafe(24)
        self.admin_token = admin_token
        self.stage = Path(stage)
        self.log_path = Path(log_path) if log_path else self.stage / "tritonserver.log"
        self.process: Optional[subprocess.Popen] = None

    @property
    def grpc_url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host
        return f"{host}:{self.ports['grpc']}"

    def command(self) -> list[str]:
        root = _pytriton_root()
        cmd = [str(root / "bin" / "tritonserver"), f"--model-repository={self.repository}",
               f"--backend-directory={_backend_dir(self.stage)}", "--model-control-mode=none",
               f"--grpc-address={self.host}", f"--grpc-port={self.ports['grpc']}",
               f"--http-address={self.host}", f"--http-port={self.ports['http']}",
               f"--metrics-address={self.host}", f"--metrics-port={self.ports['metrics']}",
               "--strict-readiness=true", "--exit-timeout-secs=10", "--log-verbose=0"]
        if self.admin_token:
            rule = f"{RESTRICTED}:{ADMIN_HEADER}={self.admin_token}"
            cmd += [f"--grpc-restricted-protocol={rule}", f"--http-restricted-api={rule}"]
        return cmd

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        # The python stub must import this interpreter's numpy (<2) and libpython must match the interpreter.
        env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
        libs = [sysconfig.get_config_var("LIBDIR") or "", str(_pytriton_root().parent.parent / "nvidia_pytriton.libs")]
        env["LD_LIBRARY_PATH"] = os.pathsep.join([p for p in libs if p] + [env.get("LD_LIBRARY_PATH", "")])
        env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
        return env

    def start(self, timeout: float = 120.0) -> "TritonServer":
        import tritonclient.grpc as grpcclient

        if self.process is not None:
            return self
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "w")
        self.process = subprocess.Popen(self.command(), env=self.environment(), stdout=log, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()
        deadline = time.monotonic() + timeout
        client = grpcclient.InferenceServerClient(self.grpc_url)
        try:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise ServerError(f"tritonserver exited with code {self.process.returncode} while starting:\n"
                                      f"{self.log_tail()}")
                try:
                    if client.is_server_ready() and client.is_model_ready(contract.MODEL_NAME):
                        return self
                except Exception:  # not listening yet
                    pass
                time.sleep(0.2)
            raise ServerError(f"tritonserver not ready after {timeout:.0f} s:\n{self.log_tail()}")
        except BaseException:
            self.stop()
            raise
        finally:
            client.close()

    def log_tail(self, lines: int = 25) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM the server's process group, SIGKILL it if it does not exit in time; idempotent."""
        if self.process is None:
            return
        try:
            if self.process.poll() is None:
                os.killpg(self.process.pid, signal.SIGTERM)
                try:
                    self.process.wait(timeout)
                except subprocess.TimeoutExpired:
                    os.killpg(self.process.pid, signal.SIGKILL)
                    self.process.wait(5)
            else:  # the server died; its stubs may still linger in the group
                os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        finally:
            self.process = None

    def __enter__(self) -> "TritonServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def docker_command(*, plugin: str = "build/libadnet_plugins.so", repository: str = "model_repository/gpu",
                   tag: str = NGC_TRITON_TAG, ports=(8000, 8001, 8002), admin_token: str = "CHANGE-ME") -> str:
    """The NGC Triton command for the GPU variant (TensorRT plan + AdnetDCNv2 plugin)."""
    http, grpc, metrics = ports
    rule = f"{RESTRICTED}:{ADMIN_HEADER}={admin_token}"
    return (f"docker run --rm --gpus all -p {http}:8000 -p {grpc}:8001 -p {metrics}:8002 --shm-size=1g "
            f"-v \"$PWD/{repository}\":/models:ro -v \"$PWD/{Path(plugin).parent}\":/plugins:ro "
            f"nvcr.io/nvidia/tritonserver:{tag}-py3 tritonserver --model-repository=/models "
            f"--backend-config=tensorrt,plugins=/plugins/{Path(plugin).name} "
            f"--grpc-restricted-protocol={rule} --http-restricted-api={rule}")


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m model_repository.server", description=__doc__.splitlines()[0])
    parser.add_argument("--onnx", default="build/adnet.onnx", help="pipeline ONNX for the CPU model")
    parser.add_argument("--host", default="127.0.0.1", help="listen address (beyond loopback needs a token)")
    parser.add_argument("--grpc-port", type=int, default=8001)
    parser.add_argument("--http-port", type=int, default=8000)
    parser.add_argument("--metrics-port", type=int, default=8002)
    parser.add_argument("--admin-token", help="token for model-repository/shared-memory endpoints "
                        f"(header {ADMIN_HEADER}); generated when listening beyond loopback")
    parser.add_argument("--gpu", action="store_true", help="print (and run, with docker and a GPU) the NGC command")
    parser.add_argument("--check", action="store_true", help="start, wait until ready, stop (a smoke test)")
    args = parser.parse_args(argv)
    if args.gpu:
        cmd = docker_command(ports=(args.http_port, args.grpc_port, args.metrics_port),
                             admin_token=args.admin_token or secrets.token_urlsafe(24))
        print(cmd)
        if shutil.which("docker") and shutil.which("nvidia-smi") and Path("model_repository/gpu/adnet/1/model.plan").is_file():
            return subprocess.call(cmd, shell=True)
        print("(not run: needs docker, an NVIDIA GPU, the plan from `make engine` and the plugin from `make plugin`)",
              file=sys.stderr)
        return 0
    # The server runs in its own session: turn SIGTERM into SystemExit so that `finally` stops it.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        repo = stage_cpu_repository(args.onnx, ROOT / "build" / "triton")
        server = TritonServer(repo, host=args.host, grpc_port=args.grpc_port, http_port=args.http_port,
                              metrics_port=args.metrics_port, admin_token=args.admin_token)
        server.start()
    except ServerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"Triton {contract.MODEL_NAME} (CPU) ready: gRPC {server.grpc_url}, HTTP {args.host}:{args.http_port}, "
          f"metrics {args.host}:{args.metrics_port}; log {server.log_path}")
    if server.admin_token:
        print(f"restricted endpoints ({RESTRICTED}) need the header {ADMIN_HEADER}: {server.admin_token}")
    try:
        if not args.check:
            print("Ctrl-C stops the server.")
            while server.process and server.process.poll() is None:
                time.sleep(0.5)
            if server.process and server.process.returncode:
                print(f"error: tritonserver exited with {server.process.returncode}:\n{server.log_tail()}",
                      file=sys.stderr)
                return 1
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
        print("server stopped")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
