"""HAProxy (Debian's 2.6, installed by `make setup`) balancing gRPC requests over N local Triton replicas.

A gRPC client keeps one HTTP/2 connection, so a TCP balancer (or a Kubernetes ClusterIP) pins all its requests to
one server. HAProxy terminates HTTP/2 on both sides and balances each request (stream) round-robin. Each replica is
health-checked over HTTP/1.1 on a separate port: the CPU server manager's /ready (a recent canary inference
succeeded), or Triton's own model readiness for a bare tritonserver. A replica that refuses connections is skipped
and the request sent to the next one (`retry-on conn-failure`, `redispatch`); a request lost with its replica is
retried once (`empty-response`: inference is idempotent) when it fits HAProxy's buffer, else the client sees
UNAVAILABLE and its own retry policy applies.

Ports of local replica i, in the same order as Triton's defaults 8000/8001/8002 and the manager's health port:
first_port + 4 i + (0 http, 1 gRPC, 2 metrics, 3 health).

CLI: python -m deploy.balancer.haproxy --replicas 3 --first-port 8100 --listen 127.0.0.1:8001 [--check triton]
     [--out FILE | --run]
"""
from __future__ import annotations

import argparse
import csv
import io
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

from client.errors import AdnetError
from deploy import contract

__all__ = ["Replica", "local_replicas", "haproxy_config", "HaproxyBalancer", "BalancerError", "main"]

CHECKS = {  # check name -> (port key of Replica, path, body expected): what "this replica can serve" is asked on
    "manager": ("health", contract.READY_PATH, True),
    "triton": ("http", f"/v2/models/{contract.MODEL_NAME}/ready", False),
}
_PORT_ORDER = ("http", "grpc", "metrics", "health")
# Timeouts: a CPU inference of a large frame takes tens of seconds. A replica is out after 2 failed checks 0.5 s
# apart (the requests sent to it meanwhile fail, e.g. "unknown model" while a manager reloads it).
SERVER_TIMEOUT_S = 600
CHECK_INTERVAL_MS = 500


class BalancerError(AdnetError, RuntimeError):
    """HAProxy is missing, its configuration is refused, or it did not start; the message says what to do."""


@dataclass(frozen=True)
class Replica:
    name: str
    host: str
    http: int
    grpc: int
    metrics: int
    health: int

    def port(self, key: str) -> int:
        return getattr(self, key)


def local_replicas(count: int, first_port: int, host: str = "127.0.0.1") -> list[Replica]:
    if count < 1:
        raise ValueError(f"need at least one replica, got {count}")
    if not 1024 <= first_port <= 65535 - 4 * count:
        raise ValueError(f"ports {first_port}..{first_port + 4 * count - 1} do not fit 1024..65535")
    return [Replica(f"replica{i}", host, **{k: first_port + 4 * i + j for j, k in enumerate(_PORT_ORDER)})
            for i in range(count)]


def haproxy_config(replicas: Sequence[Replica], listen_host: str, listen_port: int, stats_socket: str | Path,
                   check: str = "manager") -> str:
    """The whole haproxy.cfg for `replicas` behind one gRPC front on listen_host:listen_port."""
    if check not in CHECKS:
        raise ValueError(f"check must be one of {sorted(CHECKS)}, got {check!r}")
    port_key, path, has_body = CHECKS[check]
    # HAProxy closes a check connection with a reset as soon as a rule decides: on the status line alone the
    # manager, still writing its JSON body, gets "connection reset" on every check. A first rule on the body makes
    # HAProxy read the whole response, 200 or 503. Triton's readiness answers with an empty body.
    body_rule = "http-check expect rstring .\n    " if has_body else ""
    # check-proto on each server line: HAProxy 2.6 does not take it from default-server (the check then speaks h2
    # to the HTTP/1.1 port and times out).
    servers = "\n".join(f"    server {r.name} {r.host}:{r.grpc} proto h2 check check-proto h1 port {r.port(port_key)}"
                         for r in replicas)
    return f"""\
# HAProxy: gRPC to {len(replicas)} Triton replica(s) of `{contract.MODEL_NAME}`; from deploy/balancer/haproxy.py.
global
    log stdout format raw local0 notice
    maxconn 4096
    stats socket unix@{stats_socket} mode 600 level admin

defaults
    mode http
    log global
    timeout connect 2s
    timeout client {SERVER_TIMEOUT_S}s
    timeout server {SERVER_TIMEOUT_S}s
    timeout check 2s
    retries 3
    option redispatch 1
    retry-on conn-failure empty-response

frontend grpc
    bind {listen_host}:{listen_port} proto h2
    default_backend triton

backend triton
    balance roundrobin
    option httpchk GET {path}
    {body_rule}http-check expect status 200
    default-server inter {CHECK_INTERVAL_MS}ms fall 2 rise 2
{servers}
"""


def _haproxy() -> str:
    path = shutil.which("haproxy") or ("/usr/sbin/haproxy" if Path("/usr/sbin/haproxy").is_file() else None)
    if path is None:
        raise BalancerError("haproxy not found: `make setup` installs it on Debian (apt-get install haproxy)")
    return path


def check_config(config_path: str | Path) -> None:
    """`haproxy -c`: raises BalancerError with HAProxy's own message when it refuses the file."""
    result = subprocess.run([_haproxy(), "-c", "-q", "-f", str(config_path)], capture_output=True, text=True)
    if result.returncode != 0:
        raise BalancerError(f"haproxy refuses {config_path}:\n{result.stdout}{result.stderr}")


class HaproxyBalancer:
    """An haproxy process in front of `replicas`; a context manager that always stops it."""

    def __init__(self, replicas: Sequence[Replica], *, listen_port: int, listen_host: str = "127.0.0.1",
                 stage: str | Path = contract.ROOT / "build" / "haproxy", check: str = "manager"):
        self.replicas = list(replicas)
        self.listen = (listen_host, listen_port)
        self.stage = Path(stage)
        self.socket_path = self.stage / "haproxy.sock"
        self.config_path = self.stage / "haproxy.cfg"
        self.log_path = self.stage / "haproxy.log"
        self.check = check
        self.process: Optional[subprocess.Popen] = None

    @property
    def grpc_url(self) -> str:
        return f"{self.listen[0]}:{self.listen[1]}"

    def start(self, timeout: float = 10.0) -> "HaproxyBalancer":
        if self.process is not None:
            return self
        self.stage.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(haproxy_config(self.replicas, *self.listen, self.socket_path, self.check))
        check_config(self.config_path)
        with open(self.log_path, "w") as log:
            self.process = subprocess.Popen([_haproxy(), "-db", "-f", str(self.config_path)], stdout=log,
                                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                code, self.process = self.process.returncode, None
                raise BalancerError(f"haproxy exited with {code}:\n{self.log_path.read_text(errors='replace')}")
            try:
                with socket.create_connection(self.listen, timeout=0.5):
                    pass
                if self.socket_path.exists():
                    return self
            except OSError:
                pass
            time.sleep(0.05)
        self.stop()
        raise BalancerError(f"haproxy not listening on {self.grpc_url} after {timeout:.0f} s: {self.log_path}")

    def _command(self, command: str) -> str:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(5)
            sock.connect(str(self.socket_path))
            sock.sendall(command.encode() + b"\n")
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode()

    def server_stats(self) -> dict[str, dict[str, str]]:
        """Per replica: HAProxy's `show stat` row (status UP/DOWN, hrsp_2xx responses, stot sessions, ...)."""
        rows = csv.DictReader(io.StringIO(self._command("show stat").lstrip("# ")))
        return {row["svname"]: row for row in rows
                if row["pxname"] == "triton" and row["svname"] not in ("FRONTEND", "BACKEND")}

    def wait_until_up(self, timeout: float = 30.0) -> None:
        """Until every replica passes its health check; raises BalancerError naming those that do not."""
        deadline = time.monotonic() + timeout
        while True:
            # HAProxy starts servers UP before any check ran: wait for a passed check (L7OK) on each.
            down = [name for name, row in self.server_stats().items()
                    if not (row["status"] == "UP" and row["check_status"] == "L7OK")]
            if not down:
                return
            if time.monotonic() > deadline:
                raise BalancerError(f"replicas not passing their health check after {timeout:.0f} s: {down}")
            time.sleep(0.2)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGUSR1 (soft stop: finish what is in flight), SIGKILL if it does not exit in time; idempotent."""
        if self.process is None:
            return
        try:
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGUSR1)
                try:
                    self.process.wait(timeout)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait(5)
        finally:
            self.process = None

    def __enter__(self) -> "HaproxyBalancer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _listen(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host, int(port)


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy.balancer.haproxy", description=__doc__.splitlines()[0])
    parser.add_argument("--replicas", type=int, default=3)
    parser.add_argument("--first-port", type=int, default=8100, help="replica i uses first-port + 4i .. + 4i + 3")
    parser.add_argument("--listen", type=_listen, default=("127.0.0.1", contract.PORTS["grpc"]),
                        help="the gRPC front, HOST:PORT")
    parser.add_argument("--check", choices=sorted(CHECKS), default="manager",
                        help="manager: the server manager's /ready; triton: a bare tritonserver's model readiness")
    parser.add_argument("--stats-socket", default="build/haproxy/haproxy.sock")
    parser.add_argument("--out", help="write the configuration here instead of stdout")
    parser.add_argument("--run", action="store_true", help="run haproxy in the foreground until Ctrl-C")
    args = parser.parse_args(argv)
    try:
        replicas = local_replicas(args.replicas, args.first_port)
    except ValueError as exc:
        parser.error(str(exc))
    if args.run:
        balancer = HaproxyBalancer(replicas, listen_host=args.listen[0], listen_port=args.listen[1], check=args.check)
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        try:
            balancer.start()
            print(f"gRPC balancer on {balancer.grpc_url} -> {', '.join(f'{r.host}:{r.grpc}' for r in replicas)}; "
                  f"log {balancer.log_path}. Ctrl-C stops it.")
            while balancer.process and balancer.process.poll() is None:
                time.sleep(0.5)
        except BalancerError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            pass
        finally:
            balancer.stop()
        return 0
    config = haproxy_config(replicas, *args.listen, args.stats_socket, args.check)
    if args.out:
        Path(args.out).write_text(config)
    else:
        sys.stdout.write(config)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
