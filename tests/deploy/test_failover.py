"""Multi-replica failover with real parts (#14): three CPU tritonservers from model_repository/replicas.py (what
`make serve REPLICAS=3` runs), the client CLI sending 24 scenes at concurrency 6, one replica SIGKILLed mid-run,
twice: through Debian's HAProxy (the CLI knows one address), and with the client's own round-robin over the three
replicas' addresses (`--url a,b,c`, no balancer). Every scene must be written exactly once; the time and each
replica's request counts (its own Prometheus metrics) are printed."""
from __future__ import annotations

import inspect
import secrets
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest

import client.__main__ as cli
from client.synthetic import make_scene, write_ntire_scene
from model_repository.instance import free_port_block
from model_repository.replicas import ReplicaSet
from model_repository.server import TritonServer, free_port

pytestmark = pytest.mark.skipif(shutil.which("haproxy") is None and not Path("/usr/sbin/haproxy").is_file(),
                                reason="haproxy not installed: `make setup` installs it (Debian, as root)")

SCENES, CONCURRENCY, SIZE = 24, 6, (32, 48)
KILL_AFTER = 6  # answered requests (all replicas) before replica1 is killed


@pytest.fixture
def replica_set(graphs, tmp_path):
    # Unsupervised replicas (no manager restarting the killed one): a crashed pod that stays down.
    unsupervised = {"watchdog": False} if "watchdog" in inspect.signature(TritonServer).parameters else {}
    replicas = ReplicaSet(graphs.path("pipeline"), 3, first_port=free_port_block(12), listen_port=free_port(),
                          stage=tmp_path / "replicas", **unsupervised)
    with replicas:
        yield replicas


@pytest.mark.parametrize("route", ["haproxy", "client-round-robin"])
def test_24_scenes_with_a_replica_killed_mid_run(route, replica_set, tmp_path, monkeypatch, capsys):
    seed = secrets.randbits(31)
    print(f"random seed: {seed}")
    scenes = tmp_path / "scenes"
    for i in range(SCENES):
        write_ntire_scene(make_scene(*SIZE, seed=seed + i), scenes, f"{i:04d}")
    writes: dict[str, int] = {}
    real_write = cli.write_scene

    def counting_write(out, scene, hdr, **kwargs):
        writes[scene.name] = writes.get(scene.name, 0) + 1
        return real_write(out, scene, hdr, **kwargs)

    monkeypatch.setattr(cli, "write_scene", counting_write)
    before = {name: c.get("success", 0) for name, c in replica_set.request_counts().items()}
    last_seen, killed = {}, threading.Event()
    done = threading.Event()

    def killer():  # kills replica1 once KILL_AFTER requests were answered, remembering its last counts
        while not done.is_set():
            counts = replica_set.request_counts()
            last_seen.update({n: c.get("success", 0) - before[n] for n, c in counts.items() if c})
            if sum(last_seen.values()) >= KILL_AFTER:
                replica_set.kill(1)
                killed.set()
                return
            time.sleep(0.01)

    watcher = threading.Thread(target=killer, daemon=True)
    out = tmp_path / "out"
    url = replica_set.grpc_url if route == "haproxy" else ",".join(replica_set.replica_urls)
    start = time.monotonic()
    watcher.start()
    try:
        rc = cli.main([str(scenes), "--out", str(out), "--url", url, "--concurrency",
                       str(CONCURRENCY), "--no-progress", "--no-preview", "--timeout", "120", "--retries", "5"])
    finally:
        done.set()
        watcher.join(10)
    seconds = time.monotonic() - start
    captured = capsys.readouterr()
    after = {name: c.get("success", 0) - before[name] for name, c in replica_set.request_counts().items() if c}
    per_replica = {**{n: f"{v} (then killed)" for n, v in last_seen.items() if n == "replica1"}, **after}
    with capsys.disabled():
        via = f"HAProxy ({replica_set.check} check)" if route == "haproxy" else "the client's round-robin"
        print(f"\nfailover: {SCENES} scenes {SIZE[0]}x{SIZE[1]} at concurrency {CONCURRENCY} through {via} "
              f"in {seconds:.1f} s; replica1 killed after {KILL_AFTER} answers; "
              f"requests answered per replica: {per_replica}")
    assert rc == 0, captured.err
    assert killed.is_set(), "the run ended before the kill: more scenes or an earlier kill needed"
    names = [f"{i:04d}" for i in range(SCENES)]
    assert writes == {name: 1 for name in names}, writes
    assert sorted(p.stem for p in out.glob("*.hdr")) == names
    assert "replica1" not in after  # it is dead: its metrics do not answer
    assert all(after[n] >= 1 for n in ("replica0", "replica2")), after


def test_a_busy_port_is_refused_before_any_replica_starts(graphs, tmp_path):
    from model_repository.server import ServerError

    first = free_port_block(8)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", first + 5))  # replica1's gRPC port
        taken.listen()
        replicas = ReplicaSet(graphs.path("pipeline"), 2, first_port=first, listen_port=free_port(),
                              stage=tmp_path / "replicas")
        with pytest.raises(ServerError, match=f"{first + 5} \\(replica1's gRPC port\\)"):
            replicas.start()
    assert all(server.process is None for server in replicas.servers)
    assert not (tmp_path / "replicas").exists()  # nothing staged
