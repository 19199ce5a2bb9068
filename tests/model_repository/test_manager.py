"""The server manager against the real tritonserver 2.51 (issue #10): readiness that means "can serve" and heals
(a killed stub, the negative-dims request), restricted endpoints on loopback (shared memory, logging, trace) with a
0600 token file, busy ports refused before anything starts, per-instance staging and shared memory, and
tritonserver dying with its manager."""
import json
import os
import re
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from client import contract
from model_repository import instance, supervisor
from model_repository.server import ROOT, RESTRICTED, ServerError, TritonServer, default_stage, free_port, \
    stage_cpu_repository

HEAL_S = 60  # the bound: service back within 60 s


def tensors(ldr, ev, ldr_type="UINT8"):
    inputs = [grpcclient.InferInput(contract.INPUT_LDR, list(ldr.shape), ldr_type),
              grpcclient.InferInput(contract.INPUT_EV, list(ev.shape), "FP32")]
    inputs[0].set_data_from_numpy(ldr)
    inputs[1].set_data_from_numpy(ev)
    return inputs


def fresh_inputs(h=16, w=20):
    rng = np.random.default_rng()
    ldr = rng.integers(0, 256, (1, 3, h, w, 3), dtype=np.uint8)
    ev = (np.array([[-2.0, 0.0, 2.0]]) + rng.normal(0, 0.3, (1, 3))).astype(np.float32)
    return tensors(ldr, ev)


def infer(server, inputs=None):
    with grpcclient.InferenceServerClient(server.grpc_url) as client:
        return client.infer(contract.MODEL_NAME, inputs or fresh_inputs(), client_timeout=60).as_numpy("HDR")


def http_get(port, path, host="127.0.0.1"):
    """A plain HTTP/1.1 GET over a socket: (status, headers, body), checking the framing on the way."""
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    version, code = lines[0].split()[:2]
    headers = {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
    assert version == "HTTP/1.1" and int(headers["content-length"]) == len(body), data
    return int(code), headers, body


def ready(server):
    return http_get(server.health_port, supervisor.READY_PATH)[0] == 200


def wait_for(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


@pytest.fixture(scope="module")
def managed(graphs, tmp_path_factory):
    stage = tmp_path_factory.mktemp("managed")
    server = TritonServer(stage_cpu_repository(graphs.path("pipeline"), stage), grpc_port=free_port(),
                          http_port=free_port(), metrics_port=free_port(), health_port=free_port(), stage=stage,
                          canary_interval=0.5)
    with server:
        yield server


def test_health_endpoint_speaks_http11_and_says_ready(managed, capfd):
    code, headers, body = http_get(managed.health_port, "/ready")
    status = json.loads(body)
    assert code == 200 and status["ready"] is True and status["state"] == "serving"
    assert headers["content-type"] == "application/json"
    assert http_get(managed.health_port, "/live")[0] == 200
    assert http_get(managed.health_port, "/nosuch")[0] == 404
    for _ in range(5):  # checkers that hang up early (HAProxy resets once it decided)
        with socket.create_connection(("127.0.0.1", managed.health_port)) as sock:
            sock.sendall(b"GET /ready HTTP/1.1\r\nHost: x\r\n\r\n")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        with socket.create_connection(("127.0.0.1", managed.health_port)):
            pass
    assert http_get(managed.health_port, "/ready")[0] == 200
    err = capfd.readouterr().err
    assert "Traceback" not in err and "Exception" not in err, err


def test_paths_are_the_deploy_contract():
    from deploy import contract as deploy_contract

    assert (supervisor.READY_PATH, supervisor.LIVE_PATH) == (deploy_contract.READY_PATH, deploy_contract.LIVE_PATH)


def test_token_file_is_private_and_the_token_not_in_the_managers_command_line(managed):
    path = contract.admin_token_path(managed.ports["grpc"])
    assert managed.token_file == path and path.read_text() == managed.admin_token
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert managed.admin_token.encode() not in Path(f"/proc/{os.getpid()}/cmdline").read_bytes()


def test_restricted_endpoints_need_the_token_on_loopback(managed):
    assert managed.host == "127.0.0.1"
    with grpcclient.InferenceServerClient(managed.grpc_url) as client:
        for call in (client.get_system_shared_memory_status, client.get_log_settings, client.get_trace_settings,
                     lambda: client.update_log_settings({"log_file": "/tmp/adnet-pwned.log"}),
                     lambda: client.unload_model(contract.MODEL_NAME)):
            with pytest.raises(InferenceServerException, match="restricted"):
                call()
        assert client.get_system_shared_memory_status(headers=managed.admin_headers) is not None
        assert client.get_log_settings(headers=managed.admin_headers) is not None
        # Open on purpose: what clients read (config) and what the open metrics port shows anyway (statistics).
        assert client.get_model_config(contract.MODEL_NAME).config.name == contract.MODEL_NAME
        assert client.get_inference_statistics(contract.MODEL_NAME) is not None
    assert set(RESTRICTED.split(",")) == {"model-repository", "shared-memory", "logging", "trace"}


def test_truncated_shared_memory_cannot_crash_the_server_without_the_token(managed):
    import tritonclient.utils.shared_memory as shm

    name, key = f"attacker_{os.getpid()}", f"/attacker_{os.getpid()}"
    handle = shm.create_shared_memory_region(name, key, 1 << 20)
    try:
        ldr = np.random.default_rng().integers(0, 256, (1, 3, 16, 20, 3), dtype=np.uint8)
        shm.set_shared_memory_region(handle, [ldr])
        with grpcclient.InferenceServerClient(managed.grpc_url) as client:
            with pytest.raises(InferenceServerException, match="restricted"):
                client.register_system_shared_memory(name, key, 1 << 20)
            os.truncate(f"/dev/shm{key}", 0)  # the attack: shrink the file under a (would-be) registered region
            attack = grpcclient.InferInput(contract.INPUT_LDR, list(ldr.shape), "UINT8")
            attack.set_shared_memory(name, ldr.nbytes)
            ev = grpcclient.InferInput(contract.INPUT_EV, [1, 3], "FP32")
            ev.set_data_from_numpy(np.array([[-2, 0, 2]], np.float32))
            with pytest.raises(InferenceServerException, match="Unable to find shared memory region"):
                client.infer(contract.MODEL_NAME, [attack, ev])
    finally:
        shm.destroy_shared_memory_region(handle)
    assert managed.process.poll() is None and infer(managed).shape == (1, 16, 20, 3)


def kill_stubs(server):
    pids = supervisor.stub_pids(server.process.pid)
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    return pids


def heals(server, before):
    """Waits (bounded by HEAL_S) until the watchdog healed once more than `before` and /ready is 200 again; every
    200 seen on the way must be a server that answers."""
    deadline = time.monotonic() + HEAL_S
    seen_unready = False
    while time.monotonic() < deadline:
        status = server.status()
        if not ready(server):
            seen_unready = True
        elif status["reloads"] + status["restarts"] > before:
            assert infer(server).shape == (1, 16, 20, 3)  # readiness true means it serves
            return seen_unready
        time.sleep(0.05)
    raise AssertionError(f"not healed within {HEAL_S} s: {server.status()}\n{server.log_tail()}")


def test_killed_stub_makes_readiness_false_and_heals(managed):
    before = managed.status()["reloads"] + managed.status()["restarts"]
    old = kill_stubs(managed)
    assert old
    wait_for(lambda: not ready(managed), 5, "readiness still true after the stub was killed")
    assert heals(managed, before)
    assert set(supervisor.stub_pids(managed.process.pid)).isdisjoint(old)
    assert "python backend stub" in managed.status()["last_error"]


def test_a_killed_tritonserver_is_restarted_on_the_same_ports(managed):
    before = managed.status()["restarts"]
    old = managed.process.pid
    os.kill(old, signal.SIGKILL)
    wait_for(lambda: not ready(managed), 5, "readiness still true after tritonserver was killed")
    heals(managed, managed.status()["reloads"] + before)
    assert managed.status()["restarts"] > before and managed.process.pid != old
    with grpcclient.InferenceServerClient(managed.grpc_url) as client:  # the token still opens what it opened
        assert client.get_system_shared_memory_status(headers=managed.admin_headers) is not None


def test_negative_dims_request_gets_an_error_and_service_comes_back(managed):
    before = managed.status()["reloads"] + managed.status()["restarts"]
    dims = [1, 3, -16, -20, 3]  # positive product: Triton's byte-size check passes, the stub dies decoding it
    bad = grpcclient.InferInput(contract.INPUT_LDR, dims, "UINT8")
    bad._raw_content = bytes(int(np.prod(dims)))  # set_data_from_numpy cannot make a negative shape
    ev = grpcclient.InferInput(contract.INPUT_EV, [1, 3], "FP32")
    ev.set_data_from_numpy(np.array([[-2, 0, 2]], np.float32))
    with grpcclient.InferenceServerClient(managed.grpc_url) as client:
        try:
            client.infer(contract.MODEL_NAME, [bad, ev], client_timeout=60)
            healed_without_death = True
        except InferenceServerException as err:
            healed_without_death = False
            assert str(err).strip()
    if not healed_without_death:
        heals(managed, before)
    assert infer(managed).shape == (1, 16, 20, 3)
    assert managed.process.poll() is None


def test_queue_is_bounded_and_overflow_is_rejected_clearly(managed):
    """Far more concurrent requests than the queue holds: the excess is answered at once with Triton's queue-full
    error (not queued without bound), the rest computed, and the model stays ready."""
    results = []
    ldr = np.random.default_rng().integers(0, 256, (1, 3, 96, 128, 3), dtype=np.uint8)
    ev = np.array([[-2, 0, 2]], np.float32)
    with grpcclient.InferenceServerClient(managed.grpc_url) as client:
        for _ in range(24):
            client.async_infer(contract.MODEL_NAME, tensors(ldr, ev),
                               callback=lambda result, error: results.append(error), client_timeout=120)
        wait_for(lambda: len(results) == 24, 120, "not all of 24 requests answered")
    errors = [str(e) for e in results if e is not None]
    assert errors and all("maximum queue size" in e for e in errors), errors
    assert len(errors) < 24
    wait_for(lambda: ready(managed), 30, "not ready after the burst")


def listening_socket():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    sock.setblocking(False)
    return sock


def no_connection_came(sock):
    try:
        sock.accept()
        return False
    except BlockingIOError:
        return True


@pytest.mark.parametrize("busy", ["grpc", "http", "metrics", "health"])
def test_a_busy_port_is_refused_before_starting(busy, tmp_path):
    with listening_socket() as other:
        ports = {name: free_port() for name in ("grpc", "http", "metrics", "health")}
        ports[busy] = other.getsockname()[1]
        server = TritonServer(tmp_path / "repository", grpc_port=ports["grpc"], http_port=ports["http"],
                              metrics_port=ports["metrics"], health_port=ports["health"], stage=tmp_path)
        with pytest.raises(ServerError, match=f"{busy} port {ports[busy]} .*in use"):
            server.start()
        assert server.process is None and no_connection_came(other)
        assert not contract.admin_token_path(ports["grpc"]).exists()


@pytest.mark.parametrize("module", ["model_repository.server", "model_repository.demo"])
def test_serve_and_demo_exit_nonzero_on_a_busy_port_without_touching_that_server(module, graphs, tmp_path):
    with listening_socket() as other:
        busy = other.getsockname()[1]
        args = [sys.executable, "-m", module, "--onnx", str(graphs.path("pipeline")), "--grpc-port", str(busy),
                "--http-port", str(free_port()), "--metrics-port", str(free_port())]
        if module.endswith("demo"):
            args += ["--out", str(tmp_path / "out")]
        else:
            args += ["--health-port", str(free_port()), "--check"]
        result = subprocess.run(args, capture_output=True, text=True, cwd=ROOT, timeout=120)
        assert result.returncode != 0
        assert f"grpc port {busy}" in result.stderr and "in use" in result.stderr, result.stderr
        assert "ready" not in result.stdout and no_connection_came(other)
        assert not (default_stage(busy) / "repository").exists()  # nothing staged over the other instance
        assert not (tmp_path / "out").exists()


def test_the_token_file_option_and_the_ipv6_address(tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text("given-token-123\n")
    assert instance.read_token_file(token_file) == "given-token-123"
    token_file.write_text("has space")
    with pytest.raises(ValueError, match="whitespace"):
        instance.read_token_file(token_file)
    assert TritonServer(tmp_path, host="::1", grpc_port=9101).grpc_url == "[::1]:9101"
    assert TritonServer(tmp_path, host="0.0.0.0", grpc_port=9101).grpc_url == "127.0.0.1:9101"
    assert TritonServer(tmp_path, grpc_port=9101).admin_token  # a token on loopback too
    assert default_stage(9101) != default_stage(9102)


def test_ipv6_loopback_serves_and_heals_on_bracketed_urls(graphs, tmp_path):
    if not socket.has_ipv6:
        pytest.skip("no IPv6 on this machine")
    server = TritonServer(stage_cpu_repository(graphs.path("pipeline"), tmp_path), host="::1", grpc_port=free_port(),
                          http_port=free_port(), metrics_port=free_port(), health_port=free_port(), stage=tmp_path)
    with server:
        assert server.grpc_url == f"[::1]:{server.ports['grpc']}"
        assert infer(server).shape == (1, 16, 20, 3)
        assert http_get(server.health_port, "/ready", host="::1")[0] == 200
        import urllib.request
        url = f"http://[::1]:{server.ports['http']}/v2/health/ready"
        assert urllib.request.urlopen(url, timeout=10).status == 200


def _tritonservers_of(pid):
    return [p for p in supervisor._children(pid) if b"tritonserver" in Path(f"/proc/{p}/cmdline").read_bytes()]


def _gone(pid):
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        return state in ("Z", "X")
    except OSError:
        return True


def test_two_instances_of_one_checkout_stage_apart(graphs):
    import shutil

    from model_repository.server import cpu_server

    first, second = free_port(), free_port()
    try:
        a = cpu_server(graphs.path("pipeline"), grpc_port=first, http_port=free_port(), metrics_port=free_port())
        marker = a.repository / "in-use-by-a"
        marker.write_text("")
        b = cpu_server(graphs.path("pipeline"), grpc_port=second, http_port=free_port(), metrics_port=free_port())
        assert a.stage != b.stage and a.log_path != b.log_path and a.shm_prefix != b.shm_prefix
        assert marker.exists() and (b.repository / contract.MODEL_NAME / "config.pbtxt").is_file()
    finally:
        for port in (first, second):
            shutil.rmtree(default_stage(port), ignore_errors=True)


def test_sigkill_of_the_manager_takes_tritonserver_along_and_the_next_start_cleans_its_shm(graphs, tmp_path):
    ports = {name: free_port() for name in ("grpc", "http", "metrics", "health")}
    token_file = tmp_path / "token"
    token_file.write_text(f"given-{os.getpid()}\n")  # what `make serve ADMIN_TOKEN_FILE=...` passes
    manager = subprocess.Popen([sys.executable, "-m", "model_repository.server", "--onnx", str(graphs.path("pipeline")),
                                *[a for n, p in ports.items() for a in (f"--{n}-port", str(p))],
                                "--admin-token-file", str(token_file)],
                               cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        line = manager.stdout.readline()
        assert "ready" in line, line + manager.stdout.read()
        (triton,) = _tritonservers_of(manager.pid)
        stubs = supervisor.stub_pids(triton)
        token = contract.admin_token_path(ports["grpc"]).read_text()
        assert token == f"given-{os.getpid()}"
        assert token.encode() in Path(f"/proc/{triton}/cmdline").read_bytes()  # what stays visible (README)
        assert token.encode() not in Path(f"/proc/{manager.pid}/cmdline").read_bytes()
        assert token not in line
        leaked = instance.shm_regions(instance.shm_prefix(ports["grpc"], manager.pid))
        assert leaked  # the python backend's region of this instance
        for stub in stubs:  # frozen: it cannot clean up after its parent, as when a whole pod or cgroup is killed
            os.kill(stub, signal.SIGSTOP)
        manager.kill()
        manager.wait(10)
        wait_for(lambda: _gone(triton), 30, "tritonserver outlived its manager")
        for stub in stubs:
            os.kill(stub, signal.SIGKILL)
        wait_for(lambda: all(_gone(p) for p in stubs), 30, "stub not gone after SIGKILL")
        instance.check_ports_free("127.0.0.1", ports)  # raises PortBusy naming a port still held
    finally:
        if manager.poll() is None:
            manager.kill()
        import shutil
        shutil.rmtree(default_stage(ports["grpc"]), ignore_errors=True)
    assert all(r.exists() for r in leaked)  # what a SIGKILL leaves behind
    stage = tmp_path / "next"
    with TritonServer(stage_cpu_repository(graphs.path("pipeline"), stage), grpc_port=free_port(),
                      http_port=free_port(), metrics_port=free_port(), stage=stage, watchdog=False):
        assert not any(r.exists() for r in leaked)


def test_stop_removes_the_instances_shm_and_token_file(graphs, tmp_path):
    stage = tmp_path / "s"
    server = TritonServer(stage_cpu_repository(graphs.path("pipeline"), stage), grpc_port=free_port(),
                          http_port=free_port(), metrics_port=free_port(), stage=stage, watchdog=False)
    with server:
        assert instance.shm_regions(server.shm_prefix) and server.token_file.exists()
        assert re.fullmatch(rf"{instance.SHM_FAMILY}{server.ports['grpc']}_{os.getpid()}_", server.shm_prefix)
    assert not instance.shm_regions(server.shm_prefix)
    assert not contract.admin_token_path(server.ports["grpc"]).exists()
