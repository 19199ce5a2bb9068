"""Real parts: Debian's HAProxy (deploy/balancer/haproxy.py) balancing gRPC requests over two real CPU tritonservers
and failing over when one is killed; the gpu overlay's readiness canary (the exact curl command of the rendered
manifest) against a real Triton, passing on a healthy model and failing on one whose python stub died while
Triton's own readiness still says ready (docs/design.md §5); with the server manager's health check, HAProxy
takes a replica whose model died out and back in after the manager reloads it."""
import inspect
import os
import shutil
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient

from client import contract as client_contract
from deploy import check, contract
from deploy.balancer.haproxy import HaproxyBalancer, Replica, check_config
from model_repository.server import TritonServer, free_port, stage_cpu_repository

needs_haproxy = pytest.mark.skipif(shutil.which("haproxy") is None and not Path("/usr/sbin/haproxy").is_file(),
                                   reason="haproxy not installed: `make setup` installs it (Debian, as root)")
needs_curl = pytest.mark.skipif(shutil.which("curl") is None, reason="curl not installed (the canary probe uses it)")


def start_replica(onnx, stage, name):
    """A plain, unsupervised tritonserver: what a gpu pod runs (no manager restarts a dead model), and no manager
    canaries in the request counts."""
    repo = stage_cpu_repository(onnx, stage)
    unsupervised = {"watchdog": False} if "watchdog" in inspect.signature(TritonServer).parameters else {}
    server = TritonServer(repo, grpc_port=free_port(), http_port=free_port(), metrics_port=free_port(), stage=stage,
                          **unsupervised)
    server.start()
    replica = Replica(name, "127.0.0.1", server.ports["http"], server.ports["grpc"], server.ports["metrics"],
                      free_port())
    return server, replica


@pytest.fixture(scope="module")
def replicas(graphs, tmp_path_factory):
    started = []
    try:
        for i in range(2):
            started.append(start_replica(graphs.path("pipeline"), tmp_path_factory.mktemp(f"replica{i}"), f"r{i}"))
        yield started
    finally:
        for server, _ in started:
            server.stop()


@pytest.fixture
def victim(graphs, tmp_path):
    server, replica = start_replica(graphs.path("pipeline"), tmp_path / "victim", "victim")
    yield server, replica
    server.stop()


def inputs(rng, h=16, w=24):
    ldr = rng.integers(0, 256, (1, client_contract.NUM_FRAMES, h, w, client_contract.NUM_COLORS), dtype=np.uint8)
    ev = np.array([[-2.0, 0.0, 2.0]], dtype=np.float32) + rng.normal(0, 0.2, (1, 3)).astype(np.float32)
    tensors = [grpcclient.InferInput(client_contract.INPUT_LDR, ldr.shape, "UINT8"),
               grpcclient.InferInput(client_contract.INPUT_EV, ev.shape, "FP32")]
    tensors[0].set_data_from_numpy(ldr)
    tensors[1].set_data_from_numpy(ev)
    return tensors


def infer(url, tensors):
    with grpcclient.InferenceServerClient(url) as client:
        return client.infer(client_contract.MODEL_NAME, tensors).as_numpy(client_contract.OUTPUT_HDR)


def successes(server):
    # Statistics may be a restricted endpoint: send the server's token when it has one.
    headers = {client_contract.GRPC_ADMIN_HEADER: server.admin_token} if server.admin_token else None
    with grpcclient.InferenceServerClient(server.grpc_url) as client:
        stats = client.get_inference_statistics(client_contract.MODEL_NAME, headers=headers)
    return stats.model_stats[0].inference_stats.success.count


def successes_reaching(server, expected, timeout=5.0):
    """The success count once it reaches `expected` (or after `timeout`): Triton may count a request a moment after
    its response reached the client, which a loaded machine makes visible."""
    deadline = time.monotonic() + timeout
    while (count := successes(server)) < expected and time.monotonic() < deadline:
        time.sleep(0.05)
    return count


def canary_command(tmp_path, http_port):
    """The gpu overlay's readiness probe, pointed at a local server: the rendered ConfigMap's file, the test port."""
    resources = check.resources(check.render(check.OVERLAYS["gpu"]))
    (configmap,) = [r for r in resources if r["kind"] == "ConfigMap"]
    (deployment,) = [r for r in resources if r["kind"] == "Deployment"]
    command = deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["exec"]["command"]
    body = tmp_path / "canary.json"
    body.write_text(configmap["data"]["canary.json"])
    url = f"127.0.0.1:{contract.PORTS['http']}/"
    return [f"@{body}" if arg.startswith("@") else arg.replace(url, f"127.0.0.1:{http_port}/") for arg in command]


def kill_python_stubs(server):
    """SIGKILL the python backend stubs of `server` (the model dies; tritonserver itself goes on)."""
    killed = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if os.getpgid(int(entry.name)) != server.process.pid:
                continue
            if b"triton_python_backend_stub" in (entry / "cmdline").read_bytes():
                os.kill(int(entry.name), signal.SIGKILL)
                killed += 1
        except (ProcessLookupError, PermissionError, FileNotFoundError):
            continue
    return killed


@needs_haproxy
def test_example_config_is_accepted_by_haproxy():
    check_config(contract.DEPLOY / "balancer" / "haproxy.example.cfg")


@needs_haproxy
def test_balancer_spreads_grpc_requests_round_robin(replicas, tmp_path):
    rng = np.random.default_rng()
    servers = [server for server, _ in replicas]
    with HaproxyBalancer([r for _, r in replicas], listen_port=free_port(), stage=tmp_path, check="triton") as lb:
        lb.wait_until_up(15)
        before = [successes(s) for s in servers]
        for _ in range(4):
            tensors = inputs(rng)
            through_balancer = [infer(lb.grpc_url, tensors) for _ in range(2)]
            direct = infer(servers[0].grpc_url, tensors)
            for hdr in through_balancer:
                np.testing.assert_array_equal(hdr, direct)
        stats = lb.server_stats()
    # Triton's own counters (not HAProxy's): 8 requests over one client connection, 4 each (+ 4 direct on r0).
    assert [successes_reaching(s, b + n) - b for s, b, n in zip(servers, before, (4 + 4, 4))] == [4 + 4, 4]
    assert [int(stats[r.name]["hrsp_2xx"]) for _, r in replicas] == [4, 4]


@needs_curl
def test_gpu_canary_passes_on_a_healthy_model(replicas, tmp_path):
    server, replica = replicas[0]
    result = subprocess.run(canary_command(tmp_path, replica.http), capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr


@needs_haproxy
@needs_curl
def test_canary_sees_a_dead_model_and_the_balancer_fails_over_a_dead_replica(replicas, victim, tmp_path):
    server, replica = victim
    assert kill_python_stubs(server) >= 1
    ready = f"http://127.0.0.1:{replica.http}/v2/models/{contract.MODEL_NAME}/ready"
    deadline = time.monotonic() + 10
    while True:  # the canary fails once Triton notices the stub is gone
        result = subprocess.run(canary_command(tmp_path, replica.http), capture_output=True, text=True, timeout=30)
        if result.returncode != 0 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert result.returncode == 22, result.stderr  # curl --fail: HTTP error status
    assert urllib.request.urlopen(ready, timeout=5).status == 200  # what a plain readiness probe would have seen

    healthy_server, healthy = replicas[0]
    with HaproxyBalancer([healthy, replica], listen_port=free_port(), stage=tmp_path / "lb", check="triton") as lb:
        os.killpg(server.process.pid, signal.SIGKILL)
        before = successes(healthy_server)
        rng = np.random.default_rng()
        for _ in range(6):  # each answered: refused connections to the dead replica are redispatched
            assert infer(lb.grpc_url, inputs(rng)).shape == (1, 16, 24, 3)
        assert successes_reaching(healthy_server, before + 6) - before == 6
        assert int(lb.server_stats()["victim"]["hrsp_2xx"]) == 0
        deadline = time.monotonic() + 10
        while lb.server_stats()["victim"]["status"] != "DOWN":
            assert time.monotonic() < deadline, lb.server_stats()["victim"]
            time.sleep(0.2)


@needs_haproxy
def test_manager_check_takes_a_dead_model_out_and_back_without_resetting_the_manager(graphs, tmp_path, capfd):
    if "health_port" not in inspect.signature(TritonServer).parameters:
        pytest.skip("model_repository.server's TritonServer has no health_port yet: the serving work adds the "
                    "manager's /ready endpoint that `--check manager` asks")
    stage = tmp_path / "manager"
    server = TritonServer(stage_cpu_repository(graphs.path("pipeline"), stage), grpc_port=free_port(),
                          http_port=free_port(), metrics_port=free_port(), health_port=free_port(), stage=stage,
                          canary_interval=0.5)
    replica = Replica("managed", "127.0.0.1", server.ports["http"], server.ports["grpc"], server.ports["metrics"],
                      server.health_port)
    with server, HaproxyBalancer([replica], listen_port=free_port(), stage=tmp_path / "lb", check="manager") as lb:
        lb.wait_until_up(15)
        assert kill_python_stubs(server) >= 1
        for status in ("DOWN", "UP"):  # the manager's canary fails, then it reloads the model
            deadline = time.monotonic() + 30
            while not lb.server_stats()["managed"]["status"].startswith(status):
                assert time.monotonic() < deadline, (status, lb.server_stats()["managed"], server.status())
                time.sleep(0.1)
        assert infer(lb.grpc_url, inputs(np.random.default_rng())).shape == (1, 16, 24, 3)
    # HAProxy resets a check connection once a rule decides; the config makes it read the manager's whole reply.
    assert "ConnectionResetError" not in capfd.readouterr().err
