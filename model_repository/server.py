"""Start, check and stop Triton Inference Server for the `adnet` model.

CPU (the embedded default): the real `tritonserver` binary (Triton 2.51) shipped inside the nvidia-pytriton
wheel, with its python backend, serving model_repository/cpu (ONNX Runtime). The repository is staged under
build/ so that the source tree stays clean: config.pbtxt and model.py are linked, the exported ONNX is copied in.

GPU: the NGC Triton container with the TensorRT plan and our plugin; `docker_command()` returns the exact
command (printed by `python -m model_repository.server --gpu`).

The manager (this module's CLI) supervises tritonserver: explicit model control, a watchdog that canaries the
model and reloads it (or restarts tritonserver) when it cannot serve, GET /ready and /live on the health port
(model_repository/supervisor.py); busy ports refused before starting, one staging folder per instance, the
python backend's shared memory per instance and cleaned, tritonserver dying with its manager
(model_repository/instance.py). Restricted endpoints (RESTRICTED) always need the admin token, on loopback too;
local clients find it in the 0600 file client.contract.admin_token_path(grpc_port).

CLI: python -m model_repository.server [--onnx build/adnet.onnx] [--host 127.0.0.1] [--grpc-port 8001]
     [--http-port 8000] [--metrics-port 8002] [--health-port 8003] [--admin-token-file FILE] [--check]
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import threading
import time
from pathlib import Path
from typing import Optional

from client import contract
from client.errors import AdnetError
from model_repository import instance, supervisor

__all__ = ["ServerError", "TritonServer", "stage_cpu_repository", "docker_command", "free_port", "ADMIN_HEADER",
           "NGC_TRITON_TAG", "RESTRICTED", "default_stage", "cpu_server", "served_models", "onnx_16bit_beside"]

ROOT = Path(__file__).resolve().parent.parent
SOURCE_CPU = Path(__file__).resolve().parent / "cpu" / contract.MODEL_NAME
SOURCE_GPU_REPO = Path(__file__).resolve().parent / "gpu"
ADMIN_HEADER = contract.ADMIN_HEADER
# Restricted API groups (tritonserver's names), open only with the admin token: model-repository (load/unload),
# shared-memory (a registered region whose file is truncated crashes tritonserver with SIGBUS), logging (its
# settings can move the log file), trace (its settings write trace files). Left open: health, metadata, inference,
# model-config (the config is public, in git; clients read it), statistics (the same counts as the open metrics
# port).
RESTRICTED = "model-repository,shared-memory,logging,trace"
# The canary waits behind executing work (Triton cannot preempt it): a longer wait makes readiness false.
CANARY_TIMEOUT_S = 60.0
# The python backend's shared-memory region per instance: created at 16 MiB, grown in 64 MiB steps as requests need
# it, never shrunk. Admitted batches need at most deploy.contract.largest_batch_bytes() (2 x 2.1 Mpixel, ~126 MB);
# Triton 2.51 cannot refuse a larger body before the stub (model.py does, after the copy), so a 300 MB request grows
# the region to ~300 MB (model_repository/README.md, "Limits"). Removed at stop and at the next start.
SHM_DEFAULT_BYTES = 16 * 2**20
SHM_GROWTH_BYTES = 64 * 2**20
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


def _staged_config(name: str, ldr_type: str) -> str:
    """model_repository/cpu/adnet/config.pbtxt for model `name` with LDR of `ldr_type`, through Triton's
    model_config protobuf (the source file stays the one definition; the staged copy loses its comments)."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2 as mc

    config = text_format.Parse((SOURCE_CPU / "config.pbtxt").read_text(), mc.ModelConfig())
    config.name = name
    (ldr,) = [i for i in config.input if i.name == contract.INPUT_LDR]
    ldr.data_type = mc.DataType.Value(ldr_type)
    return f"# Staged from {SOURCE_CPU / 'config.pbtxt'} by model_repository/server.py; do not edit.\n" + \
        text_format.MessageToString(config)


def stage_cpu_repository(onnx_path: str | Path, stage: str | Path, onnx_16bit: Optional[str | Path] = None) -> Path:
    """Lay out model_repository/cpu under `stage`/repository with `onnx_path` inside as model `adnet`, and with
    `onnx_16bit` (an --ldr-dtype float16 export) as its 16-bit twin `adnet_16bit` when given; returns the
    repository."""
    onnx_path, stage = Path(onnx_path), Path(stage)
    models = {contract.MODEL_NAME: onnx_path}
    if onnx_16bit is not None:
        models[contract.MODEL_NAME_16BIT] = Path(onnx_16bit)
    for path in models.values():
        if not path.is_file():
            raise ServerError(f"{path} not found: export the pipeline first with `make onnx`")
    ldr_types = {name: _ldr_type_of(path) for name, path in models.items()}  # each graph read once
    if ldr_types.get(contract.MODEL_NAME_16BIT, "TYPE_FP16") != "TYPE_FP16":
        raise ServerError(f"{onnx_16bit} takes UINT8 frames: the 16-bit model needs an export with --ldr-dtype "
                          f"float16 (`make onnx` writes build/adnet_16bit.onnx)")
    repo = stage / "repository"
    if repo.exists():
        shutil.rmtree(repo)
    for name, path in models.items():
        version = repo / name / "1"
        version.mkdir(parents=True)
        (repo / name / "config.pbtxt").write_text(_staged_config(name, ldr_types[name]))
        (version / "model.py").symlink_to(SOURCE_CPU / "1" / "model.py")
        shutil.copyfile(path, version / "adnet.onnx")
    return repo


ONNX_16BIT_NAME = "adnet_16bit.onnx"  # `make onnx` writes it beside adnet.onnx


def onnx_16bit_beside(onnx_path: str | Path, given: Optional[str] = None) -> Optional[Path]:
    """The 16-bit export to serve as adnet_16bit: `given` (a path, or "none" for none), else ONNX_16BIT_NAME in
    the folder of `onnx_path` when it exists there."""
    if given is not None:
        return None if given.lower() == "none" else Path(given)
    beside = Path(onnx_path).parent / ONNX_16BIT_NAME
    return beside if beside.is_file() and beside != Path(onnx_path) else None


def served_models(repository: str | Path) -> dict[str, str]:
    """{model name: LDR data type} of a staged repository, `adnet` first (what the manager loads and canaries)."""
    repository = Path(repository)
    names = [contract.MODEL_NAME] + sorted(p.parent.name for p in repository.glob("*/config.pbtxt")
                                           if p.parent.name != contract.MODEL_NAME)
    return {name: _config_ldr_type(repository, name) for name in names}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now (for tests and benchmarks that start their own server)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _config_ldr_type(repository: Path, model: str = contract.MODEL_NAME) -> str:
    """The LDR data type of a staged model's config.pbtxt (the canary sends that type)."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2 as mc

    try:
        config = text_format.Parse((Path(repository) / model / "config.pbtxt").read_text(), mc.ModelConfig())
    except (OSError, text_format.ParseError):
        return "TYPE_UINT8"
    types = {i.name: mc.DataType.Name(i.data_type) for i in config.input}
    return types.get(contract.INPUT_LDR, "TYPE_UINT8")


def default_stage(grpc_port: int) -> Path:
    """Each instance's own staging folder (repository, backends, log): two servers of one checkout never share it."""
    return ROOT / "build" / "triton" / str(int(grpc_port))


class TritonServer:
    """A tritonserver process serving one repository, supervised; a context manager that always stops it.

    Always runs with an admin token for the restricted endpoints (RESTRICTED), loopback too: `admin_token` or a
    generated one, written to client.contract.admin_token_path(grpc_port) (0600) while the server runs.
    With `watchdog` (the default) a Supervisor thread canaries the model every `canary_interval` s and heals it;
    `health_port` adds the manager's GET /ready and /live endpoint (model_repository/supervisor.py).
    """

    def __init__(self, repository: str | Path, *, host: str = "127.0.0.1", grpc_port: int = 8001,
                 http_port: int = 8000, metrics_port: int = 8002, health_port: Optional[int] = None,
                 admin_token: Optional[str] = None, stage: Optional[str | Path] = None,
                 log_path: Optional[str | Path] = None, watchdog: bool = True, canary_interval: float = 2.0,
                 canary_timeout: float = CANARY_TIMEOUT_S, shm_default_bytes: int = SHM_DEFAULT_BYTES,
                 shm_growth_bytes: int = SHM_GROWTH_BYTES):
        self.repository = Path(repository)
        self.host = host
        self.ports = {"grpc": grpc_port, "http": http_port, "metrics": metrics_port}
        self.health_port = health_port
        if health_port is not None and not watchdog:
            raise ValueError("health_port needs the watchdog: /ready answers from its canary")
        self.admin_token = admin_token or secrets.token_urlsafe(24)
        self.stage = Path(stage) if stage is not None else default_stage(grpc_port)
        self.log_path = Path(log_path) if log_path else self.stage / "tritonserver.log"
        self.shm_prefix = instance.shm_prefix(grpc_port)
        self.shm_bytes = (int(shm_default_bytes), int(shm_growth_bytes))
        self.process: Optional[subprocess.Popen] = None
        self.token_file: Optional[Path] = None
        self.supervisor = (supervisor.Supervisor(self, canary_interval=canary_interval, canary_timeout=canary_timeout)
                           if watchdog else None)
        self._health: Optional[supervisor.HealthServer] = None
        self._process_lock = threading.RLock()
        self._stopping = False

    @property
    def grpc_url(self) -> str:
        return f"{instance.url_host(self.host)}:{self.ports['grpc']}"

    @property
    def admin_headers(self) -> dict[str, str]:
        """gRPC headers that open the restricted endpoints of this server."""
        return {contract.GRPC_ADMIN_HEADER: self.admin_token}

    def command(self) -> list[str]:
        root = _pytriton_root()
        rule = f"{RESTRICTED}:{ADMIN_HEADER}={self.admin_token}"
        default_bytes, growth_bytes = self.shm_bytes
        return [str(root / "bin" / "tritonserver"), f"--model-repository={self.repository}",
                f"--backend-directory={_backend_dir(self.stage)}",
                "--model-control-mode=explicit", *[f"--load-model={name}" for name in served_models(self.repository)],
                # tritonserver joins the gRPC address and port as "ADDRESS:PORT": an IPv6 literal needs brackets.
                f"--grpc-address={f'[{self.host}]' if ':' in self.host else self.host}",
                f"--grpc-port={self.ports['grpc']}",
                # libevhtp (HTTP, metrics) takes an IPv6 address only with its "ipv6:" prefix (else it binds none).
                f"--http-address={f'ipv6:{self.host}' if ':' in self.host else self.host}",
                f"--http-port={self.ports['http']}",
                f"--metrics-address={f'ipv6:{self.host}' if ':' in self.host else self.host}",
                f"--metrics-port={self.ports['metrics']}",
                "--strict-readiness=true", "--exit-timeout-secs=10", "--log-verbose=0",
                # Request/response objects are not pooled: after a huge body tritonserver gives the memory back
                # (801 -> 185 MiB resident after a 300 MB request, model_repository/README.md).
                "--grpc-infer-allocation-pool-size=0",
                f"--backend-config=python,shm-region-prefix-name={self.shm_prefix}",
                f"--backend-config=python,shm-default-byte-size={default_bytes}",
                f"--backend-config=python,shm-growth-byte-size={growth_bytes}",
                f"--grpc-restricted-protocol={rule}", f"--http-restricted-api={rule}"]

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        # The python stub must import this interpreter's numpy (<2) and libpython must match the interpreter.
        env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
        libs = [sysconfig.get_config_var("LIBDIR") or "", str(_pytriton_root().parent.parent / "nvidia_pytriton.libs")]
        env["LD_LIBRARY_PATH"] = os.pathsep.join([p for p in libs if p] + [env.get("LD_LIBRARY_PATH", "")])
        env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
        return env

    def _ports_to_check(self) -> dict[str, int]:
        ports = dict(self.ports)
        if self.health_port is not None:
            ports["health"] = self.health_port
        return ports

    def start(self, timeout: float = 120.0) -> "TritonServer":
        if self.process is not None:
            return self
        try:
            instance.check_ports_free(self.host, self._ports_to_check())
        except instance.PortBusy as exc:
            raise ServerError(str(exc)) from None
        self._stopping = False
        try:
            self.token_file = instance.write_token_file(self.ports["grpc"], self.admin_token)
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self.log_path.write_text("")
            error = self._spawn(timeout)
            if error:
                raise ServerError(error)
            if self.supervisor is not None:
                self.supervisor.models = served_models(self.repository)
                try:
                    self.supervisor.first_canary(min(timeout, 60.0))
                except RuntimeError as exc:
                    raise ServerError(f"the model loaded but its canary inference fails: {exc}\n{self.log_tail()}")
                if self.health_port is not None:
                    self._health = supervisor.HealthServer(self.supervisor, self.host, self.health_port)
                self.supervisor.start()
            return self
        except BaseException:
            self.stop()
            raise

    def _spawn(self, timeout: float) -> Optional[str]:
        """Start tritonserver and wait until it and the model are ready; None, or the error (process stopped)."""
        import tritonclient.grpc as grpcclient

        with self._process_lock:
            if self._stopping:
                return "stopping"
            instance.remove_orphaned_shm(self.shm_prefix)
            with open(self.log_path, "a") as log:
                self.process = subprocess.Popen(self.command(), env=self.environment(), stdout=log,
                                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                                start_new_session=True, preexec_fn=instance.die_with_parent())
            process = self.process
        deadline = time.monotonic() + timeout
        models = list(served_models(self.repository))  # the staged configs, read once, not on every poll
        client = grpcclient.InferenceServerClient(self.grpc_url)
        try:
            while time.monotonic() < deadline:
                if process.poll() is not None:
                    code = process.returncode
                    self._kill_process()
                    return f"tritonserver exited with code {code} while starting:\n{self.log_tail()}"
                try:
                    if client.is_server_ready() and all(client.is_model_ready(m) for m in models):
                        return None
                except Exception:  # not listening yet
                    pass
                time.sleep(0.2)
            self._kill_process()
            return f"tritonserver not ready after {timeout:.0f} s:\n{self.log_tail()}"
        finally:
            client.close()

    def log_tail(self, lines: int = 25) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def log_event(self, message: str) -> None:
        """A line of the manager's own in tritonserver's log (what the watchdog saw and did)."""
        try:
            with open(self.log_path, "a") as log:
                log.write(f"[adnet-manager {time.strftime('%Y-%m-%dT%H:%M:%S')}] {message}\n")
        except OSError:
            pass

    def status(self) -> dict:
        """What GET /ready answers: readiness, watchdog state, counts of canaries, reloads and restarts."""
        if self.supervisor is not None:
            return {**self.supervisor.status(), "ports": self._ports_to_check()}
        alive = self.process is not None and self.process.poll() is None
        return {"model": contract.MODEL_NAME, "ready": None, "live": alive, "state": "unsupervised",
                "ports": self._ports_to_check()}

    # --- healing (called by the supervisor's thread) ---------------------------------------------------------------
    def reload_model(self, timeout: float = 60.0) -> Optional[str]:
        """Unload and load the served models through the repository API (with the token); None, or the error."""
        import tritonclient.grpc as grpcclient

        models = list(served_models(self.repository))
        try:
            with grpcclient.InferenceServerClient(self.grpc_url) as client:
                for model in models:
                    client.unload_model(model, headers=self.admin_headers, client_timeout=timeout)
                deadline = time.monotonic() + timeout
                while any(client.is_model_ready(m) for m in models):
                    if time.monotonic() > deadline:
                        return f"{', '.join(models)} still loaded {timeout:.0f} s after the unload request"
                    time.sleep(0.1)
                if self.process is not None:  # the dead stubs' regions, now unmapped
                    instance.remove_unmapped_shm(self.shm_prefix, self.process.pid)
                for model in models:
                    client.load_model(model, headers=self.admin_headers, client_timeout=timeout)
                    if not client.is_model_ready(model):
                        return f"{model} not ready after loading"
            return None
        except Exception as exc:
            return f"reload failed: {str(exc).strip()[:300]}"

    def restart_process(self, timeout: float = 120.0) -> Optional[str]:
        """Kill tritonserver (its whole process group) and start it again on the same ports; None, or the error."""
        with self._process_lock:
            if self._stopping:
                return "stopping"
            self._kill_process()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # the dead server's listeners are closed with it; be sure
            try:
                instance.check_ports_free(self.host, self.ports)
                break
            except instance.PortBusy:
                time.sleep(0.2)
        return self._spawn(timeout)

    def _kill_process(self) -> None:
        with self._process_lock:
            process, self.process = self.process, None
        if process is None:
            return
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            pass
        instance.remove_shm(instance.shm_regions(self.shm_prefix))

    def stop(self, timeout: float = 20.0) -> None:
        """Stop the watchdog, SIGTERM the server's process group (SIGKILL if it does not exit in time), remove the
        token file and this instance's shared-memory regions; idempotent."""
        with self._process_lock:
            self._stopping = True
        if self._health is not None:
            self._health.close()
            self._health = None
        if self.supervisor is not None:
            self.supervisor.signal_stop()
        with self._process_lock:
            process, self.process = self.process, None
        try:
            if process is not None:
                if process.poll() is None:
                    os.killpg(process.pid, signal.SIGTERM)
                    try:
                        process.wait(timeout)
                    except subprocess.TimeoutExpired:
                        os.killpg(process.pid, signal.SIGKILL)
                        process.wait(5)
                # the server died or exited; its stubs may still linger in the group
                os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        finally:
            if self.supervisor is not None:
                self.supervisor.stop()
            instance.remove_shm(instance.shm_regions(self.shm_prefix))
            if self.token_file is not None:
                instance.remove_token_file(self.ports["grpc"], self.admin_token)
                self.token_file = None

    def __enter__(self) -> "TritonServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def cpu_server(onnx_path: str | Path, *, grpc_port: int = 8001, stage: Optional[str | Path] = None,
               onnx_16bit: Optional[str | Path] = None, **kwargs) -> TritonServer:
    """A (not yet started) TritonServer for the CPU model of `onnx_path`, staged in its own folder
    (default_stage(grpc_port)) only after its ports were found free: a busy port is a ServerError naming it, and
    the repository of whichever server holds the port is left alone."""
    stage = Path(stage) if stage is not None else default_stage(grpc_port)
    server = TritonServer(stage / "repository", grpc_port=grpc_port, stage=stage, **kwargs)
    try:
        instance.check_ports_free(server.host, server._ports_to_check())
    except instance.PortBusy as exc:
        raise ServerError(str(exc)) from None
    stage_cpu_repository(onnx_path, stage, onnx_16bit)
    return server


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
    from deploy import contract as deploy_contract  # imports this module: only here, not at the top

    parser = argparse.ArgumentParser(prog="python -m model_repository.server", description=__doc__.splitlines()[0])
    parser.add_argument("--onnx", default="build/adnet.onnx", help="pipeline ONNX for the CPU model")
    parser.add_argument("--onnx-16bit", help=f"--ldr-dtype float16 export served as {contract.MODEL_NAME_16BIT} for "
                        f"16-bit sources (default: {ONNX_16BIT_NAME} beside --onnx if there; 'none': not served)")
    parser.add_argument("--host", default="127.0.0.1", help="listen address of every endpoint (e.g. 0.0.0.0, ::1)")
    parser.add_argument("--grpc-port", type=int, default=8001)
    parser.add_argument("--http-port", type=int, default=8000)
    parser.add_argument("--metrics-port", type=int, default=8002)
    parser.add_argument("--health-port", type=int, default=deploy_contract.HEALTH_PORT,
                        help=f"the manager's GET {deploy_contract.READY_PATH} (200 while a recent canary inference "
                             f"succeeded) and {deploy_contract.LIVE_PATH}")
    parser.add_argument("--admin-token-file", help=f"file holding the token of the restricted endpoints ({RESTRICTED}; "
                        f"header {ADMIN_HEADER}); default: a new token per start. Either way local clients find it "
                        "in the 0600 file named at start")
    parser.add_argument("--canary-interval", type=float, default=2.0, help="seconds between canary inferences")
    parser.add_argument("--canary-timeout", type=float, default=CANARY_TIMEOUT_S,
                        help="seconds a canary may wait behind running work; longer: not ready, twice: reload")
    parser.add_argument("--gpu", action="store_true", help="print (and run, with docker and a GPU) the NGC command; "
                        "before it runs, the plugin pre-flight (python -m export.plugin_preflight --docker)")
    parser.add_argument("--preflight-done", action="store_true", help=argparse.SUPPRESS)  # make serve GPU=1 ran it
    parser.add_argument("--check", action="store_true", help="start, wait until ready, stop (a smoke test)")
    args = parser.parse_args(argv)
    try:
        token = instance.read_token_file(args.admin_token_file) if args.admin_token_file else None
    except (OSError, ValueError) as exc:
        print(f"error: --admin-token-file: {exc}", file=sys.stderr)
        return 2
    if args.gpu:
        cmd = docker_command(ports=(args.http_port, args.grpc_port, args.metrics_port),
                             admin_token=token or secrets.token_urlsafe(24))
        print(cmd)
        from export.engine_files import DEFAULT_PLAN  # only here: the CPU server needs nothing of export/
        from export.trt_process import DEFAULT_PLUGIN_LIBRARY

        if shutil.which("docker") and shutil.which("nvidia-smi") and DEFAULT_PLAN.is_file():
            # Triton's tensorrt backend only logs a plugin that fails to load, and the model fails later with "could
            # not find plugin": check plugin, plan and TensorRT versions first, and do not start when they fail.
            if not args.preflight_done:
                from export import plugin_preflight

                if plugin_preflight.main(["--plan", str(DEFAULT_PLAN), "--plugin", str(DEFAULT_PLUGIN_LIBRARY),
                                          "--docker"]) != 0:
                    print("error: not started: fix what the plugin pre-flight says above", file=sys.stderr)
                    return 1
            return subprocess.call(cmd, shell=True)
        print("(not run: needs docker, an NVIDIA GPU, the plan from `make engine` and the plugin from `make plugin`)",
              file=sys.stderr)
        return 0
    # SIGTERM (the kubelet, `kill`) becomes SystemExit so that `finally` stops the server gracefully.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        server = cpu_server(args.onnx, onnx_16bit=onnx_16bit_beside(args.onnx, args.onnx_16bit),
                            host=args.host, grpc_port=args.grpc_port, http_port=args.http_port,
                            metrics_port=args.metrics_port, health_port=args.health_port, admin_token=token,
                            canary_interval=args.canary_interval, canary_timeout=args.canary_timeout)
        server.start()
    except (ServerError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    url = instance.url_host(args.host)
    print(f"Triton {contract.MODEL_NAME} (CPU) ready: gRPC {server.grpc_url}, HTTP {url}:{args.http_port}, "
          f"metrics {url}:{args.metrics_port}, health {url}:{args.health_port}{deploy_contract.READY_PATH}; "
          f"log {server.log_path}", flush=True)
    print(f"restricted endpoints ({RESTRICTED}) need the header {ADMIN_HEADER} with the token in "
          f"{server.token_file} (local clients read it from there)", flush=True)
    try:
        if not args.check:
            print("Ctrl-C stops the server.", flush=True)
            while True:  # the watchdog restarts a dead tritonserver; the manager itself runs until stopped
                time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
        print("server stopped", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
