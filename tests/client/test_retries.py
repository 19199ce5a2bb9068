"""The client's deadline, retry and cancellation policy (#10 finding 6) and its admin token file (#10 finding 3),
against the real CPU Triton: counts come from Triton's own statistics API, never from the client.

The model has one instance and its dynamic batcher only merges equal shapes, so requests of different sizes run
one after another in arrival order: a small "sentinel" request sent last has finished only when everything queued
before it has been computed or dropped, which makes the counts final without sleeping."""
from __future__ import annotations

import os
from pathlib import Path
import secrets
import signal
import threading
import time

import numpy as np
import pytest

from client import contract
from client.__main__ import main
from client.errors import ClientError, InferenceError
from client.infer import HDRClient, ModelInfo, grpc_target, local_admin_token
from client.scenes import SceneSource
from client.synthetic import make_scene, write_ntire_scene
from model_repository.server import TritonServer, free_port, stage_cpu_repository

SLOW = (128, 192)  # ~0.5-2 s per request on 2 cores, a few hundred MiB on the server


def seed() -> int:
    value = secrets.randbits(31)
    print(f"random seed: {value}")
    return value


def counts(server) -> dict[str, int]:
    """Triton's statistics of the model: requests answered (success, fail) and model executions."""
    import tritonclient.grpc as grpcclient

    headers = {contract.GRPC_ADMIN_HEADER: server.admin_token} if server.admin_token else None
    with grpcclient.InferenceServerClient(server.grpc_url) as raw:
        stats = raw.get_inference_statistics(contract.MODEL_NAME, headers=headers).model_stats[0]
    return {"success": stats.inference_stats.success.count, "fail": stats.inference_stats.fail.count,
            "executions": stats.execution_count}


def requests_metrics(server) -> dict[str, int]:
    """Triton's Prometheus counters of the model: requests that succeeded, and failed per reason (CANCELED: dropped
    from the queue after the client cancelled)."""
    import urllib.request

    text = urllib.request.urlopen(f"http://127.0.0.1:{server.ports['metrics']}/metrics", timeout=10).read().decode()
    out = {}
    for line in text.splitlines():
        if line.startswith("nv_inference_request_success{") and f'model="{contract.MODEL_NAME}"' in line:
            out["success"] = int(float(line.split()[-1]))
        elif line.startswith("nv_inference_request_failure{") and f'model="{contract.MODEL_NAME}"' in line:
            reason = line.split('reason="')[1].split('"')[0]
            out[reason] = int(float(line.split()[-1]))
    return out


def sentinel(url: str) -> None:
    """A small request after the others: when it is answered, the single instance is done with them."""
    with HDRClient(url, timeout=120) as c:
        c.infer(make_scene(16, 16, name="sentinel", seed=seed()))


def delta(before, after):
    return {k: after[k] - before[k] for k in before}


def settled(read, done, wait_s: float = 5.0):
    """read() once done(value) holds, or its last value after wait_s: Triton counts a request in its statistics when
    it releases it, which can be just after the client has its answer (seen in CI: 5 of 6 right after the 6th)."""
    deadline = time.monotonic() + wait_s
    value = read()
    while not done(value) and time.monotonic() < deadline:
        time.sleep(0.05)
        value = read()
    return value


class Late(SceneSource):
    """A scene source whose load() takes `delay` seconds (a slow disk)."""

    def __init__(self, scene, delay):
        super().__init__(scene.name, "memory")
        object.__setattr__(self, "_scene", scene)
        object.__setattr__(self, "_delay", delay)

    def load(self):
        time.sleep(self._delay)
        return self._scene


def unsupervised() -> dict:
    """TritonServer arguments for a server without a manager's canary inferences in its counts (where it has one)."""
    import inspect

    return {"watchdog": False} if "watchdog" in inspect.signature(TritonServer).parameters else {}


@pytest.fixture(scope="module")
def quiet(graphs, tmp_path_factory):
    """A real CPU tritonserver whose request counts are the tests' alone."""
    stage = tmp_path_factory.mktemp("quiet")
    server = TritonServer(stage_cpu_repository(graphs.path("pipeline"), stage), stage=stage, grpc_port=free_port(),
                          http_port=free_port(), metrics_port=free_port(), **unsupervised())
    with server:
        yield server


@pytest.fixture(scope="module")
def slow_seconds(quiet):
    """How long one SLOW request takes here (warm), to pick a timeout that surely bites."""
    with HDRClient(quiet.grpc_url, timeout=300) as c:
        scene = make_scene(*SLOW, name="warm", seed=seed())
        c.infer(scene)
        start = time.monotonic()
        c.infer(scene)
        took = time.monotonic() - start
    print(f"one {SLOW[0]}x{SLOW[1]} request: {took:.2f} s")
    return took


def test_a_timeout_shorter_than_the_compute_gives_one_request_not_one_per_retry(quiet, slow_seconds):
    url = quiet.grpc_url
    timeout = max(slow_seconds / 4, 0.05)
    before = requests_metrics(quiet)
    with HDRClient(url, timeout=timeout, retries=5, backoff=0.01) as c:
        c.wait_until_ready(timeout=60)
        with pytest.raises(InferenceError, match="within --timeout") as caught:
            c.infer(make_scene(*SLOW, name="slow", seed=seed()))
    assert "1 attempt(s)" in str(caught.value) and "not retried" in str(caught.value)
    sentinel(url)
    got = delta(before, requests_metrics(quiet))
    print("server requests (slow + sentinel):", got)
    # At most one slow request reached the server (answered or dropped; one that timed out in Triton's queue is
    # counted in no 2.51 metric), plus the sentinel; the old client, which retried DEADLINE_EXCEEDED, sent 6 of
    # which 4 reached Triton's queue (3 computed, 1 dropped).
    assert got["success"] >= 1 and sum(got.values()) <= 2, got


def test_requests_abandoned_in_the_queue_are_cancelled_on_the_wire(quiet, slow_seconds):
    """infer_many stopped after its first result: the scenes still in flight are cancelled on the wire, and Triton
    drops those still in its queue (metric failure reason CANCELED) instead of computing them for nobody.

    Triton 2.51 hands a few queued requests to the python backend ahead of time (its rate limiter's payloads);
    those are dropped only if model.py checks request.is_cancelled(), hence "at least one", not "all four"."""
    url = quiet.grpc_url
    s = seed()
    # Different shapes: never merged by the batcher. q1..q4 are "read from disk" a moment later, so that q0
    # reaches the server first and runs while the others queue.
    scenes = [make_scene(SLOW[0] + 8 * i, SLOW[1], name=f"q{i}", seed=s + i) for i in range(5)]
    scenes[1:] = [Late(sc, slow_seconds / 3) for sc in scenes[1:]]
    before, before_metrics = counts(quiet), requests_metrics(quiet)
    with HDRClient(url, timeout=300) as c:
        c.wait_until_ready(timeout=60)
        results = c.infer_many(scenes, concurrency=5, progress=False)
        first = next(results)
        assert first.ok, first.error
        results.close()  # the caller stops: q1 is being computed, q2..q4 still wait in Triton's queue
    sentinel(url)
    got, reasons = delta(before, counts(quiet)), delta(before_metrics, requests_metrics(quiet))
    print("server counts (q0, q1..q4 abandoned, sentinel):", got, reasons)
    # The old client never cancelled: all 6 computed, none CANCELED.
    assert reasons["CANCELED"] >= 1 and got["executions"] <= 5, (got, reasons)
    # q0 and the sentinel succeed; an abandoned scene whose request was cancelled before it was sent counts nowhere.
    assert reasons["success"] >= 2 and reasons["success"] + reasons["CANCELED"] <= 6, reasons


def test_unavailable_is_retried_within_the_deadline_until_the_server_is_back(graphs, tmp_path):
    """A server stopped and started again on the same port, within one scene's deadline: the scene succeeds."""
    repo = stage_cpu_repository(graphs.path("pipeline"), tmp_path)
    ports = dict(grpc_port=free_port(), http_port=free_port(), metrics_port=free_port())
    scene = make_scene(20, 28, name="back", seed=seed())
    server = TritonServer(repo, stage=tmp_path, **ports).start()
    try:
        with HDRClient(server.grpc_url, timeout=120, retries=60, backoff=0.1) as c:
            want = c.infer(scene)
            server.stop()
            result, thread = {}, None

            def run():
                try:
                    result["hdr"] = c.infer(scene)
                except ClientError as exc:
                    result["error"] = exc

            thread = threading.Thread(target=run)
            thread.start()
            server = TritonServer(repo, stage=tmp_path, **ports).start()
            thread.join(120)
        assert "error" not in result, result.get("error")
        np.testing.assert_array_equal(result["hdr"], want)
    finally:
        server.stop()


def test_unavailable_gives_up_at_the_deadline_not_after_all_retries(tmp_path):
    port = free_port()  # nothing listens
    scene = make_scene(16, 16, name="nobody", seed=seed())
    with HDRClient(f"127.0.0.1:{port}", timeout=1.0, retries=10_000, backoff=0.05) as c:
        c._info = ModelInfo(contract.MODEL_NAME, np.dtype(np.uint8), 2)  # no readiness wait: the request is refused
        with pytest.raises(InferenceError, match="unavailable after") as caught:
            c.infer(scene)
    attempts = int(str(caught.value).split("after ")[1].split(" attempt")[0])
    assert 1 < attempts < 10_000 and "left no time for another" in str(caught.value)


# -- several addresses -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("url, target", [
    ("127.0.0.1:8001", "127.0.0.1:8001"),
    ("::1:8001", "[::1]:8001"),  # the last colon separates the port; gRPC needs the brackets
    ("[::1]:8001", "[::1]:8001"),
    ("127.0.0.1:8001,127.0.0.2:8002", "ipv4:127.0.0.1:8001,127.0.0.2:8002"),
    ("[::1]:8001, [::1]:8002", "ipv6:[::1]:8001,[::1]:8002"),
    ("localhost:8001,127.0.0.1:8002", None),  # resolved; may give ::1 too, then mixed families are refused
    ("dns:///adnet-headless.default.svc:8001", "dns:///adnet-headless.default.svc:8001"),
    ("host:", "error"), ("8001", "error"), ("a:1,b", "error"),
])
def test_grpc_targets(url, target):
    if target == "error":
        with pytest.raises(ClientError, match="HOST:PORT"):
            grpc_target(url)
        return
    try:
        got, _ = grpc_target(url)
    except ClientError as exc:
        assert target is None and ("IPv4 and IPv6" in str(exc) or "HOST:PORT" in str(exc)), exc
        return
    if target is None:
        assert got.startswith(("ipv4:", "ipv6:", "::1")), got
    else:
        assert got == target


def test_shared_memory_is_refused_with_several_servers():
    with pytest.raises(ClientError, match="--shm none"):
        HDRClient("127.0.0.1:8001,127.0.0.1:8002", shm="system")
    with pytest.raises(ClientError, match="--shm none"):
        HDRClient("dns:///adnet-headless:8001", shm="system")


def test_round_robin_over_two_servers_and_failover_when_one_is_gone(quiet, tmp_path, graphs):
    """Two addresses in --url: requests are spread over both; with one of them dead, all go to the other."""
    repo = stage_cpu_repository(graphs.path("pipeline"), tmp_path)
    second = TritonServer(repo, stage=tmp_path, grpc_port=free_port(), http_port=free_port(),
                          metrics_port=free_port(), **unsupervised()).start()
    s = seed()
    scenes = [make_scene(16 + i, 24, name=f"rr{i}", seed=s + i) for i in range(6)]
    try:
        url = f"{quiet.grpc_url},{second.grpc_url}"
        before = [counts(quiet), counts(second)]
        with HDRClient(url, timeout=60) as c:
            c.wait_until_ready(timeout=30)
            want = [c.infer(sc) for sc in scenes]  # one at a time: round-robin alternates
            got = settled(lambda: [delta(b, counts(srv))["success"] for b, srv in zip(before, (quiet, second))],
                          lambda g: sum(g) >= 6)
            print("requests per server:", got)
            assert sum(got) == 6 and min(got) >= 1, got
            os.killpg(second.process.pid, signal.SIGKILL)
            second.process.wait(10)
            before0 = counts(quiet)
            for sc, expected in zip(scenes, want):
                np.testing.assert_array_equal(c.infer(sc), expected)
        assert settled(lambda: delta(before0, counts(quiet))["success"], lambda n: n >= 6) == 6
    finally:
        second.stop()


# -- the admin token file of a local server -----------------------------------------------------------------------

@pytest.fixture
def token_server(graphs, tmp_path, monkeypatch):
    monkeypatch.setenv(contract.RUN_DIR_ENV, str(tmp_path / "run"))
    token = secrets.token_urlsafe(16)
    repo = stage_cpu_repository(graphs.path("pipeline"), tmp_path)
    server = TritonServer(repo, stage=tmp_path, grpc_port=free_port(), http_port=free_port(),
                          metrics_port=free_port(), admin_token=token)
    with server:
        path = contract.admin_token_path(server.ports["grpc"])
        if not path.is_file():  # a manager without a token file: write what the serving manager writes
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(token + "\n")
        yield server, token, path


def test_a_loopback_client_finds_the_token_file_and_never_prints_it(token_server, tmp_path, capsys):
    server, token, path = token_server
    assert local_admin_token(server.grpc_url) == (token, str(path))
    folder = tmp_path / "scene"
    write_ntire_scene(make_scene(24, 30, seed=seed()), folder, "0001")
    rc = main([str(folder), "--out", str(tmp_path / "out"), "--url", server.grpc_url, "--shm", "system",
               "--no-progress"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert token not in captured.out + captured.err


def test_a_stale_token_file_is_named_in_the_error(token_server, tmp_path, capsys):
    server, token, path = token_server
    path.write_text("not-the-token\n")
    with HDRClient(server.grpc_url, shm="system") as c:
        with pytest.raises(ClientError, match=str(path)) as caught:
            c.infer(make_scene(16, 16, name="stale", seed=seed()))
    assert "not-the-token" not in str(caught.value) and token not in str(caught.value)


def test_a_token_file_others_can_read_is_not_used(token_server):
    server, token, path = token_server
    path.chmod(0o644)
    with pytest.warns(RuntimeWarning, match="chmod 600"):
        assert local_admin_token(server.grpc_url) == (None, None)
    path.chmod(0o600)
    assert local_admin_token(f"127.0.0.1:{server.ports['grpc']},127.0.0.1:1") == (None, None)  # several: none


def pending(server) -> int:
    import urllib.request

    text = urllib.request.urlopen(f"http://127.0.0.1:{server.ports['metrics']}/metrics", timeout=10).read().decode()
    return sum(int(float(line.split()[-1])) for line in text.splitlines()
               if line.startswith("nv_inference_pending_request_count{") and f'model="{contract.MODEL_NAME}"' in line)


def test_ctrl_c_cancels_the_requests_in_flight(quiet, tmp_path):
    """The CLI interrupted (SIGINT) while scenes queue on the server: it exits 130 and Triton drops queued ones."""
    import subprocess
    import sys

    folder = tmp_path / "scenes"
    s = seed()
    for i in range(5):
        write_ntire_scene(make_scene(SLOW[0] + 8 * i, SLOW[1], seed=s + i), folder, f"{i:04d}")
    before = requests_metrics(quiet)
    cmd = [sys.executable, "-m", "client", str(folder), "--out", str(tmp_path / "out"), "--url", quiet.grpc_url,
           "--concurrency", "5", "--no-progress", "--timeout", "300"]
    proc = subprocess.Popen(cmd, cwd=Path(__file__).resolve().parents[2], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while pending(quiet) < 3:  # one runs, the others wait in Triton's queue
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stderr
    assert "interrupted" in stderr
    sentinel(quiet.grpc_url)
    got = delta(before, requests_metrics(quiet))
    print("server requests after Ctrl-C:", got)
    # The old client waited for every request it had sent: all computed, none CANCELED. (The fifth scene may not
    # have been sent yet when the interrupt came.)
    assert got["CANCELED"] >= 1 and got["success"] + got["CANCELED"] <= 6, got


def test_a_model_being_reloaded_is_retried_like_unavailable_and_other_errors_are_not():
    from tritonclient.utils import InferenceServerException

    from client.infer import _reloading

    reloading = InferenceServerException("Request for unknown model: 'adnet' has no available versions",
                                         status="StatusCode.NOT_FOUND")
    unknown = InferenceServerException("Request for unknown model: 'adnt' is not found", status="StatusCode.NOT_FOUND")
    with HDRClient("127.0.0.1:1", retries=3) as c:
        c._raise_unless_retriable("x", reloading, attempt=1)  # returns: the caller backs off and tries again
        with pytest.raises(InferenceError, match="is not found"):
            c._raise_unless_retriable("x", unknown, attempt=1)
    assert _reloading(reloading) and not _reloading(unknown)
