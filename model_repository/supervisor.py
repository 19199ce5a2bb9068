"""The manager's watchdog and its health endpoint: readiness that means "can serve", and healing.

Triton 2.51's own readiness stays true while the python stub of a model is dead (docs/design.md §5), so the
manager decides readiness itself:

- every `canary_interval` seconds it sends a canary inference (the smallest valid frame, at Triton's highest
  priority so it passes queued work) and watches the python stub processes (children of tritonserver) and
  tritonserver itself through pidfds, which wake it the moment one exits;
- readiness is true only while the last canary succeeded, is recent, and no watched process died since;
- on a failure readiness goes false at once; the model is unloaded and loaded again through the model-repository
  API (with the admin token); if that fails, tritonserver is restarted on the same ports. Then a canary must pass
  before readiness is true again.

GET /ready on the health port: 200 while ready, else 503; GET /live: 200 while the manager runs; both with the
status as JSON. Paths and the default port are deploy/contract.py's (READY_PATH, LIVE_PATH, HEALTH_PORT).
"""
from __future__ import annotations

import json
import os
import select
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import numpy as np

from client import contract
from model_repository import instance

if TYPE_CHECKING:
    from model_repository.server import TritonServer

STUB_NAME = b"triton_python_backend_stub"
READY_PATH, LIVE_PATH = "/ready", "/live"  # deploy/contract.py's; checked equal in tests/model_repository
# A canary that stays queued behind long requests is "busy", not "dead": readiness goes false (no new work for a
# replica that cannot answer within the canary timeout) and the model is reloaded only after this many in a row.
BUSY_FAILURES_BEFORE_HEAL = 2
_BUSY_MARKERS = ("deadline exceeded", "request timeout expired", "exceeds maximum queue size")


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
        except (OSError, ValueError, IndexError):
            continue
    return found


def stub_pids(server_pid: int) -> list[int]:
    """The python backend stub processes of tritonserver `server_pid` that are still running (not zombies)."""
    pids = []
    for pid in _children(server_pid):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if STUB_NAME in cmdline and state not in ("Z", "X"):
            pids.append(pid)
    return pids


def canary_inputs(ldr_type: str):
    """The canary request's inputs: a fixed synthetic scene of the smallest frame the model admits."""
    import tritonclient.grpc as grpcclient
    from client.synthetic import make_scene

    scene = make_scene(contract.MIN_SIDE, contract.MIN_SIDE, seed=0, max_shift=1)
    ldr = scene.ldrs[None]
    if ldr_type == "TYPE_FP16":
        ldr = (ldr / 255.0).astype(np.float16)
    ev = scene.evs[None].astype(contract.EV_DTYPE)
    inputs = [grpcclient.InferInput(contract.INPUT_LDR, list(ldr.shape), ldr_type.removeprefix("TYPE_")),
              grpcclient.InferInput(contract.INPUT_EV, list(ev.shape), "FP32")]
    inputs[0].set_data_from_numpy(ldr)
    inputs[1].set_data_from_numpy(ev)
    return inputs


class Supervisor:
    """The watchdog thread of one TritonServer; `ready` is what GET /ready answers."""

    def __init__(self, server: "TritonServer", *, canary_interval: float, canary_timeout: float,
                 models: Optional[dict[str, str]] = None):
        if canary_interval <= 0 or canary_timeout <= 0:
            raise ValueError(f"canary_interval and canary_timeout must be > 0 s, got {canary_interval}, "
                             f"{canary_timeout}")
        self.server = server
        self.interval, self.timeout = canary_interval, canary_timeout
        # {model: LDR data type}: every served model gets a canary (adnet, and adnet_16bit where staged).
        self.models = dict(models or {contract.MODEL_NAME: "TYPE_UINT8"})
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._ready = False
        self.state = "starting"
        self.last_ok: Optional[float] = None
        self.last_error: Optional[str] = None
        self.canaries = self.canary_failures = self.reloads = self.restarts = 0
        self._busy = 0

    # --- what the health endpoint reads ---------------------------------------------------------------------------
    @property
    def ready(self) -> bool:
        with self._lock:
            return (self._ready and self.last_ok is not None
                    and time.monotonic() - self.last_ok <= self.interval + self.timeout)

    def status(self) -> dict:
        with self._lock:
            age = None if self.last_ok is None else round(time.monotonic() - self.last_ok, 3)
            state = self.state
            process = self.server.process
            status = {"state": state, "last_canary_ok_s_ago": age, "last_error": self.last_error,
                      "canaries": self.canaries, "canary_failures": self.canary_failures,
                      "reloads": self.reloads, "restarts": self.restarts,
                      "tritonserver_pid": process.pid if process else None}
        return {"model": contract.MODEL_NAME, "models": list(self.models), "ready": self.ready, "live": not self._stop.is_set(), **status}

    def _set(self, *, ready: bool, state: str, error: Optional[str] = None) -> None:
        with self._lock:
            self._ready, self.state = ready, state
            if error:
                self.last_error = error

    # --- the canary --------------------------------------------------------------------------------------------------
    def canary(self) -> Optional[str]:
        """One canary inference per served model; None when all succeeded, else the first error."""
        import tritonclient.grpc as grpcclient

        with self._lock:
            self.canaries += 1
            models = dict(self.models)
        try:
            with grpcclient.InferenceServerClient(self.server.grpc_url) as client:
                for model, ldr_type in models.items():
                    result = client.infer(model, canary_inputs(ldr_type), priority=1, client_timeout=self.timeout)
                    hdr = result.as_numpy(contract.OUTPUT_HDR)
                    if hdr is None or hdr.shape != (1, contract.MIN_SIDE, contract.MIN_SIDE, contract.NUM_COLORS):
                        return f"{model}: canary answered a wrong HDR shape {None if hdr is None else hdr.shape}"
                    if not np.isfinite(hdr).all():
                        return f"{model}: canary answered non-finite HDR values"
            return None
        except Exception as exc:  # any failure of the canary is a reason not to be ready
            return f"canary inference failed: {str(exc).strip()[:300]}"

    def _canary_ok(self) -> bool:
        error = self.canary()
        if error is None:
            with self._lock:
                self._ready, self.state, self.last_ok, self._busy = True, "serving", time.monotonic(), 0
            return True
        with self._lock:
            self.canary_failures += 1
            self._ready, self.last_error = False, error
        return False

    # --- the thread ----------------------------------------------------------------------------------------------------
    def first_canary(self, timeout: float) -> None:
        """Called by TritonServer.start(): a first passing canary before start() returns (else ServerError)."""
        deadline = time.monotonic() + timeout
        while not self._canary_ok():
            if time.monotonic() > deadline or self.server.process is None or self.server.process.poll() is not None:
                raise RuntimeError(self.last_error)
            time.sleep(0.2)

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=f"adnet-watchdog-{self.server.ports['grpc']}",
                                        daemon=True)
        self._thread.start()

    def signal_stop(self) -> None:
        """Readiness false and no more healing from now on (the thread ends at its next wake-up)."""
        self._stop.set()
        self._set(ready=False, state="stopping")

    def stop(self) -> None:
        self._stop.set()
        self._set(ready=False, state="stopped")
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(self.timeout + 30)
        self._thread = None

    def _watched(self) -> list[int]:
        process = self.server.process
        if process is None:
            return []
        fds = []
        for pid in [process.pid] + stub_pids(process.pid):
            try:
                fds.append(os.pidfd_open(pid))
            except OSError:  # already gone: the wait below sees no fd for it, the checks below see it dead
                pass
        return fds

    def _run(self) -> None:
        # This thread must not end before stop(): a tritonserver it restarted gets SIGKILL when it exits (PDEATHSIG).
        while not self._stop.is_set():
            try:
                self._step()
            except Exception as exc:  # a bug or an odd state: not ready, say why, try again
                self._set(ready=False, state="watchdog error", error=f"watchdog: {exc!r}")
                self.server.log_event(f"watchdog error: {exc!r}")
                self._stop.wait(self.interval)

    def _step(self) -> None:
        """One round: wait on the processes up to `interval`, canary, heal on a failure."""
        process = self.server.process
        problem = None
        if process is None or process.poll() is not None:
            problem = f"tritonserver exited ({None if process is None else process.returncode})"
        elif len(stub_pids(process.pid)) < len(self.models):
            problem = "the python backend stub of the model is not running"
        if problem is None:
            fds = self._watched()
            try:
                woke, _, _ = select.select(fds, [], [], self.interval)
            finally:
                for fd in fds:
                    os.close(fd)
            if self._stop.is_set():
                return
            if woke:
                problem = ("tritonserver exited" if process.poll() is not None
                           else "a python backend stub process exited")
            elif self._canary_ok():
                return
            else:
                busy = any(m in (self.last_error or "").lower() for m in _BUSY_MARKERS)
                with self._lock:
                    self._busy = self._busy + 1 if busy else 0
                    count = self._busy
                if busy and count < BUSY_FAILURES_BEFORE_HEAL:
                    self._set(ready=False, state="busy")
                    return
                problem = self.last_error
        if self._stop.is_set():
            return
        self._set(ready=False, state="healing", error=problem)
        self.server.log_event(f"unhealthy: {problem}; healing")
        self._heal()

    def _heal(self) -> None:
        """Reload the model; if that does not bring a passing canary, restart tritonserver (until it works)."""
        if self.server.process is not None and self.server.process.poll() is None:
            self._set(ready=False, state="reloading")
            with self._lock:
                self.reloads += 1
            error = self.server.reload_model()
            if error is None and self._canary_ok():
                self.server.log_event("model reloaded; serving again")
                return
            self.server.log_event(f"reload did not heal ({error or self.last_error}); restarting tritonserver")
        backoff = 1.0
        while not self._stop.is_set():
            self._set(ready=False, state="restarting")
            with self._lock:
                self.restarts += 1
            error = self.server.restart_process()
            if error is None and self._canary_ok():
                self.server.log_event("tritonserver restarted; serving again")
                return
            self._set(ready=False, state="restarting", error=error or self.last_error)
            self._stop.wait(backoff)
            backoff = min(backoff * 2, 30.0)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "adnet-manager"
    timeout = 10  # an idle or slow check connection does not hold a thread for long

    def _answer(self, with_body: bool) -> None:
        supervisor: Supervisor = self.server.supervisor  # type: ignore[attr-defined]
        path = self.path.split("?", 1)[0]
        if path == READY_PATH:
            status = supervisor.status()
            code = 200 if status["ready"] else 503
        elif path == LIVE_PATH:
            status, code = supervisor.status(), 200
        else:
            status, code = {"error": f"unknown path {path}: GET {READY_PATH} or {LIVE_PATH}"}, 404
        body = (json.dumps(status) + "\n").encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if with_body:
            self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self._answer(True)

    def do_HEAD(self) -> None:  # noqa: N802
        self._answer(False)

    def handle(self) -> None:
        try:
            super().handle()
        except (ConnectionError, TimeoutError, socket.timeout):
            pass  # a checker (HAProxy, the kubelet) closed or reset the connection early: nothing to report

    def log_message(self, format: str, *args) -> None:  # noqa: A002
        pass  # one line per probe would drown the log


class _HealthHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request, client_address) -> None:
        pass  # _Handler.handle swallows the expected connection errors; nothing else is worth a traceback per probe


class HealthServer:
    """GET /ready and /live over HTTP/1.1 on (host, port), in a daemon thread."""

    def __init__(self, supervisor: Supervisor, host: str, port: int):
        family = type("_Family", (_HealthHTTPServer,), {"address_family": instance.address_family(host)})
        self.httpd = family((host, port), _Handler)
        self.httpd.supervisor = supervisor  # type: ignore[attr-defined]
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.2},
                                       name=f"adnet-health-{port}", daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)
