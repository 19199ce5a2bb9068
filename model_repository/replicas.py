"""N local CPU Triton replicas of `adnet` behind one gRPC balancer (HAProxy): `make serve REPLICAS=3`.

Replica i is a TritonServer (model_repository/server.py) on the ports of deploy.balancer.haproxy.local_replicas(N,
first_port): first_port + 4 i + (0 HTTP, 1 gRPC, 2 metrics, 3 health), each with its own staged repository and log
under `stage`/replica{i}. HAProxy (deploy/balancer/haproxy.py, Debian's /usr/sbin/haproxy) listens on the usual gRPC
port and balances each request round-robin; it health-checks each replica on the server manager's /ready (the
manager's canary inference, `check="manager"`) when TritonServer has a health port, else on Triton's own model
readiness (`check="triton"`). Only gRPC is balanced: HTTP and metrics stay per replica (their ports are printed).

A client needs nothing else: `python -m client ... --url 127.0.0.1:8001` (the balancer); or it balances itself over
the replicas' gRPC ports, `--url 127.0.0.1:8101,127.0.0.1:8105,127.0.0.1:8109` (client/infer.py, round-robin).
Shared memory does not work through either: its registrations live in one replica.

CLI: python -m model_repository.replicas --onnx build/adnet.onnx --replicas 3 [--first-port 8100]
     [--host 127.0.0.1] [--grpc-port 8001]
"""
from __future__ import annotations

import argparse
import inspect
import os
import signal
import socket
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Optional

from client import contract
from deploy.balancer.haproxy import BalancerError, HaproxyBalancer, Replica, local_replicas

from .server import ROOT, ServerError, TritonServer, onnx_16bit_beside, stage_cpu_repository

__all__ = ["ReplicaSet", "request_counts", "DEFAULT_FIRST_PORT"]

DEFAULT_FIRST_PORT = 8100


def _busy(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def _server_params() -> set[str]:
    return set(inspect.signature(TritonServer).parameters)


def request_counts(metrics_port: int, host: str = "127.0.0.1") -> dict[str, int]:
    """A replica's Prometheus counters of `adnet`: {"success": n, "<failure reason>": n, ...}; {} if unreachable."""
    try:
        text = urllib.request.urlopen(f"http://{host}:{metrics_port}/metrics", timeout=5).read().decode()
    except OSError:
        return {}
    counts: dict[str, int] = {}
    for line in text.splitlines():
        if f'model="{contract.MODEL_NAME}"' not in line:
            continue
        if line.startswith("nv_inference_request_success{"):
            counts["success"] = int(float(line.split()[-1]))
        elif line.startswith("nv_inference_request_failure{"):
            reason = line.split('reason="')[1].split('"')[0] if 'reason="' in line else "failure"
            counts[reason] = counts.get(reason, 0) + int(float(line.split()[-1]))
    return counts


class ReplicaSet:
    """`count` CPU replicas of the model in `onnx` behind HAProxy on listen_host:listen_port; a context manager.

    `server_kwargs` go to every TritonServer (e.g. watchdog=False, canary_interval=0.5 where supported).
    """

    def __init__(self, onnx: str | Path, count: int, *, first_port: int = DEFAULT_FIRST_PORT,
                 listen_host: str = "127.0.0.1", listen_port: int = 8001,
                 stage: str | Path = ROOT / "build" / "replicas", **server_kwargs):
        self.onnx = Path(onnx)
        self.stage = Path(stage)
        self.replicas: list[Replica] = local_replicas(count, first_port)
        params = _server_params()
        self.managed = "health_port" in params and server_kwargs.get("watchdog", True)
        self.check = "manager" if self.managed else "triton"
        self.servers: list[TritonServer] = []
        for replica in self.replicas:
            stage_i = self.stage / replica.name
            kwargs = dict(grpc_port=replica.grpc, http_port=replica.http, metrics_port=replica.metrics,
                          stage=stage_i, **server_kwargs)
            if self.managed:
                kwargs["health_port"] = replica.health
            self.servers.append(TritonServer(stage_i / "repository", **kwargs))
        self.balancer = HaproxyBalancer(self.replicas, listen_host=listen_host, listen_port=listen_port,
                                        stage=self.stage / "haproxy", check=self.check)

    @property
    def grpc_url(self) -> str:
        return self.balancer.grpc_url

    @property
    def replica_urls(self) -> list[str]:
        return [f"{r.host}:{r.grpc}" for r in self.replicas]

    def start(self, timeout: float = 180.0) -> "ReplicaSet":
        """Stage and start every replica, then the balancer; waits until HAProxy sees all of them pass their health
        check. Stops what it started on any failure.

        One after another, in the calling thread: a manager may tie tritonserver to the thread that started it
        (PR_SET_PDEATHSIG fires when that thread ends), so a worker thread's server would die with the thread."""
        ports = [(self.balancer.listen[0], self.balancer.listen[1], "the balancer's gRPC port")] + [
            (r.host, port, f"{r.name}'s {key} port") for r in self.replicas
            for key, port in (("HTTP", r.http), ("gRPC", r.grpc), ("metrics", r.metrics))
            + ((("health", r.health),) if self.managed else ())]
        busy = [f"{port} ({what})" for host, port, what in ports if _busy(host, port)]
        if busy:
            raise ServerError(f"port(s) in use: {', '.join(busy)}; stop what listens there (another `make serve`?) "
                              "or choose other ports: make serve REPLICAS=N GRPC_PORT=... REPLICA_PORT=...")
        try:
            for replica, server in zip(self.replicas, self.servers):
                stage_cpu_repository(self.onnx, server.stage, onnx_16bit_beside(self.onnx))
                try:
                    server.start(timeout)
                except ServerError as exc:
                    raise ServerError(f"{replica.name}: {exc}") from None
            self.balancer.start()
            self.balancer.wait_until_up(timeout=60)
        except BaseException:
            self.stop()
            raise
        return self

    def kill(self, index: int) -> None:
        """SIGKILL replica `index` and its process group (a crashed pod): the balancer has to find out itself."""
        process = self.servers[index].process
        if process is not None and process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)

    def request_counts(self) -> dict[str, dict[str, int]]:
        """Per replica name: its own metrics counters ({} for a dead replica)."""
        return {r.name: request_counts(r.metrics, r.host) for r in self.replicas}

    def stop(self) -> None:
        try:
            self.balancer.stop()
        finally:
            with ThreadPoolExecutor(max(len(self.servers), 1)) as pool:
                list(pool.map(lambda server: server.stop(), self.servers))

    def __enter__(self) -> "ReplicaSet":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m model_repository.replicas", description=__doc__.splitlines()[0])
    parser.add_argument("--onnx", default="build/adnet.onnx", help="pipeline ONNX for the CPU model")
    parser.add_argument("--replicas", type=int, default=3)
    parser.add_argument("--first-port", type=int, default=DEFAULT_FIRST_PORT,
                        help="replica i uses first-port + 4i .. + 4i + 3 (HTTP, gRPC, metrics, health)")
    parser.add_argument("--host", default="127.0.0.1", help="the balancer's listen address")
    parser.add_argument("--grpc-port", type=int, default=8001, help="the balancer's gRPC port")
    args = parser.parse_args(argv)
    if args.replicas < 1:
        parser.error(f"--replicas must be >= 1, got {args.replicas}")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        replicas = ReplicaSet(args.onnx, args.replicas, first_port=args.first_port, listen_host=args.host,
                              listen_port=args.grpc_port)
    except ValueError as exc:
        parser.error(str(exc))
    try:
        replicas.start()
    except (ServerError, BalancerError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    try:
        print(f"{args.replicas} Triton {contract.MODEL_NAME} (CPU) replicas behind HAProxy (health check: "
              f"{replicas.check}): gRPC {replicas.grpc_url}")
        for replica, server in zip(replicas.replicas, replicas.servers):
            print(f"  {replica.name}: gRPC {replica.host}:{replica.grpc}, HTTP {replica.http}, metrics "
                  f"{replica.metrics}" + (f", health {replica.health}" if replicas.managed else "")
                  + f"; log {server.log_path}")
        print(f"client: python -m client INPUT --out out --url {replicas.grpc_url}   (or --url "
              f"{','.join(replicas.replica_urls)}: client-side round-robin). Ctrl-C stops them.")
        while replicas.balancer.process and replicas.balancer.process.poll() is None:
            dead = [r.name for r, s in zip(replicas.replicas, replicas.servers)
                    if s.process is None or s.process.poll() is not None]
            if len(dead) == len(replicas.servers) and not replicas.managed:
                print(f"error: every replica exited: {', '.join(dead)}", file=sys.stderr)
                return 1
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        replicas.stop()
        print("replicas stopped")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
