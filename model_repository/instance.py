"""What one local server instance owns on this machine, and how it is claimed and given back.

- Ports: every port (gRPC, HTTP, metrics, the manager's health port) is bind-checked before tritonserver starts, so
  a busy port is refused with its name instead of talking to whichever server already listens there.
- The admin token: a 0600 file in a 0700 folder of this user at client.contract.admin_token_path(grpc_port), written
  at start and removed at stop; the local client finds it from the gRPC port alone.
- Python-backend shared memory: each instance gives the python backend its own region prefix
  (`adnet_py_<grpc port>_<manager pid>_`); its regions are removed at stop, and at every start those of instances
  whose manager is gone (a SIGKILL, a crash) are removed too. Nothing outside this prefix family is touched.
- Process lifetime: tritonserver is started with PR_SET_PDEATHSIG=SIGKILL, so it dies with its manager.
"""
from __future__ import annotations

import ctypes
import errno
import os
import re
import signal
import socket
from pathlib import Path
from typing import Callable, Iterable, Mapping

from client import contract

SHM_DIR = Path("/dev/shm")
SHM_FAMILY = "adnet_py_"
_SHM_NAME = re.compile(rf"^{SHM_FAMILY}(\d+)_(\d+)_")
_PR_SET_PDEATHSIG = 1


class PortBusy(RuntimeError):
    """A port this instance needs is taken; the message names it."""


def address_family(host: str) -> int:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def url_host(host: str) -> str:
    """`host` as it goes before ':PORT' in a URL: IPv6 literals in brackets; wildcards become loopback."""
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def check_ports_free(host: str, ports: Mapping[str, int]) -> None:
    """Raises PortBusy naming the first port of `ports` ({name: port}) that cannot be bound on `host` right now."""
    seen: dict[int, str] = {}
    for name, port in ports.items():
        if not 1 <= int(port) <= 65535:
            raise PortBusy(f"{name} port {port} is not a TCP port (1..65535)")
        if port in seen:
            raise PortBusy(f"{name} port {port} is also the {seen[port]} port: give each endpoint its own port")
        seen[port] = name
        with socket.socket(address_family(host), socket.SOCK_STREAM) as sock:
            # As tritonserver binds (SO_REUSEADDR): a listener blocks the port, TIME_WAIT leftovers do not.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((host, int(port)))
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    raise PortBusy(f"{name} port {port} on {host} is already in use (another server?): stop it or "
                                   f"pick another port, e.g. --{name}-port {int(port) + 10}") from None
                raise PortBusy(f"cannot bind the {name} port {port} on {host}: {exc.strerror}") from None


def free_port_block(count: int, host: str = "127.0.0.1") -> int:
    """A first port such that first .. first + count - 1 are all free on `host` right now (local replicas take
    blocks of consecutive ports: deploy.balancer.haproxy.local_replicas)."""
    import random

    for _ in range(200):
        first = random.randrange(20000, 60000 - count)
        try:
            check_ports_free(host, {f"port {port}": port for port in range(first, first + count)})
            return first
        except PortBusy:
            continue
    raise PortBusy(f"no {count} consecutive free ports on {host}")


# --- the admin token file -------------------------------------------------------------------------------------------

def write_token_file(grpc_port: int, token: str) -> Path:
    """Writes `token` to admin_token_path(grpc_port): folder 0700, file 0600, both this user's; returns the path."""
    path = contract.admin_token_path(grpc_port)
    folder = path.parent
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = folder.stat()
    if info.st_uid != os.getuid():
        raise PermissionError(f"{folder} belongs to uid {info.st_uid}, not to this user: remove it or set "
                              f"{contract.RUN_DIR_ENV} to a folder of yours")
    if info.st_mode & 0o077:
        os.chmod(folder, 0o700)
    tmp = folder / f".{path.name}.{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, token.encode())
    finally:
        os.close(fd)
    os.replace(tmp, path)
    return path


def read_token_file(path: str | Path) -> str:
    token = Path(path).read_text().strip()
    if not token:
        raise ValueError(f"{path} is empty: put the admin token in it (one line)")
    if any(c.isspace() or c in ",=:" for c in token):
        raise ValueError(f"the token in {path} holds whitespace or one of ',=:' (tritonserver's rule syntax): "
                         "use a URL-safe token, e.g. `python -c 'import secrets; print(secrets.token_urlsafe(24))'`")
    return token


def remove_token_file(grpc_port: int, token: str) -> None:
    """Removes the token file of `grpc_port` if it still holds `token` (not another instance's)."""
    path = contract.admin_token_path(grpc_port)
    try:
        if path.read_text().strip() == token:
            path.unlink()
    except OSError:
        pass


# --- python-backend shared memory -------------------------------------------------------------------------------------

def shm_prefix(grpc_port: int, manager_pid: int | None = None) -> str:
    return f"{SHM_FAMILY}{int(grpc_port)}_{manager_pid or os.getpid()}_"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def shm_regions(prefix: str = SHM_FAMILY) -> list[Path]:
    try:
        return sorted(p for p in SHM_DIR.iterdir() if p.name.startswith(prefix))
    except FileNotFoundError:
        return []


def mapped_files(pid: int) -> set[str]:
    """Paths of the files process `pid` has mapped (from /proc/PID/maps); empty when it is gone."""
    try:
        lines = Path(f"/proc/{pid}/maps").read_text().splitlines()
    except OSError:
        return set()
    return {line.split(None, 5)[5] for line in lines if len(line.split(None, 5)) == 6}


def remove_shm(regions: Iterable[Path]) -> list[str]:
    removed = []
    for region in regions:
        try:
            if region.stat().st_uid == os.getuid():
                region.unlink()
                removed.append(region.name)
        except FileNotFoundError:
            pass
    return removed


def remove_orphaned_shm(own_prefix: str) -> list[str]:
    """At start: our own prefix's regions (a previous run of this instance) and those of instances whose manager
    process is gone. Returns the names removed."""
    stale = []
    for region in shm_regions():
        match = _SHM_NAME.match(region.name)
        if region.name.startswith(own_prefix) or (match and not _alive(int(match.group(2)))):
            stale.append(region)
    return remove_shm(stale)


def remove_unmapped_shm(prefix: str, server_pid: int) -> list[str]:
    """After a model reload: regions of `prefix` that the running tritonserver no longer maps (left by a dead stub)."""
    mapped = {Path(p).name for p in mapped_files(server_pid)}
    return remove_shm(r for r in shm_regions(prefix) if r.name not in mapped)


# --- process lifetime ------------------------------------------------------------------------------------------------

def die_with_parent() -> Callable[[], None]:
    """A Popen preexec_fn: the child gets SIGKILL when the thread that started it (its parent) exits, including by
    SIGKILL. start_new_session=True still gives it its own process group for stop()."""
    libc = ctypes.CDLL(None, use_errno=True)
    parent = os.getpid()

    def preexec() -> None:
        if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            os._exit(126)
        if os.getppid() != parent:  # the parent died before prctl: do not outlive it
            os._exit(126)

    return preexec
