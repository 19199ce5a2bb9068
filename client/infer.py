"""gRPC client for the Triton model `adnet` (client/contract.py): scenes in, linear HDR out.

- Readiness: `wait_until_ready()` tells "server not ready at URL" from "model missing (models: ...)".
- Input dtype: read from the model's config on the server. 8-bit sources go to a UINT8 model as decoded (the
  compact wire); 16-bit sources go to the default model's 16-bit twin `adnet_16bit` (LDR FP16 in [0, 1]) when the
  server serves it, as `make serve` does, with no warning; only without it are they rounded to 8 bits for a UINT8
  model (with a PrecisionWarning). An FP16 model gets float16 in [0, 1].
- Deadlines and retries: `timeout` is the whole budget of one call (one scene's inference, or a config read) across
  all its attempts; each attempt gets what is left. Only UNAVAILABLE is retried (connection refused, a server or
  replica restarting, a model being reloaded: nothing was computed, or inference is idempotent), with exponential
  backoff capped by the deadline. DEADLINE_EXCEEDED is never retried: the server may still be computing, and a
  second copy would only queue behind the first. Triton's "protocol is restricted" UNAVAILABLE is not retried
  either: it needs the admin token.
- Cancellation: an inference the client abandons (its deadline passed, Ctrl-C, infer_many stopped early) is
  cancelled on the wire (gRPC RST_STREAM), so that Triton drops it from its queue instead of computing for nobody.
- Several servers: `url` may list addresses ("host1:8001,host2:8001") or name a DNS name that resolves to several
  (a headless Service; "dns:///name:8001"); the channel balances requests round-robin over them and an UNAVAILABLE
  answer is retried on the next one. infer_many() hands each scene to one worker, so no finished scene is redone.
- Admin token: restricted calls (shared-memory registration, repository index) send `admin_token`; without one,
  a client of a loopback server reads the token file its server manager wrote (contract.admin_token_path).
- Scenes of any size (up to client/tiling.py's MAX_SCENE_SIDE): a scene larger than one request should carry
  (`tiling.client_tile`: the model's `tile_max_pixels` parameter, else the GPU profile's 1080x1920) is sent as
  overlapping tiles of one shape, up to max_batch_size per request and TILES_IN_FLIGHT requests in flight, and
  blended back (plain gRPC; shared memory is for whole frames). Each request of tiles gets its own
  `timeout` (a scene's total time grows with its size), and `cancel` stops the scene between requests.
- Many scenes: `infer_many()` keeps N requests in flight on a thread pool, yields results in input order, and
  collects each scene's failure in its result instead of raising.
- Shared memory: `shm="system"` passes tensors through POSIX shared-memory regions, one per request in flight,
  taken from a pool of registered regions that close() unregisters and unlinks; `shm="cuda"` through CUDA IPC
  memory created and registered per request (GPU hosts with cuda-python only). Both give the same result as plain
  gRPC.

System shared memory uses the standard library (multiprocessing.shared_memory: shm_open + mmap, what Triton's
own helper does in C) because tritonclient 2.51's tritonclient.utils.shared_memory imports pkg_resources, which
setuptools >= 81 no longer ships.
"""
from __future__ import annotations

import collections
import dataclasses
import ipaddress
import os
import socket
import stat
import sys
import threading
import time
import uuid
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from multiprocessing import shared_memory
from typing import Iterable, Iterator, Optional, Union

import numpy as np
import tritonclient.grpc as grpcclient
from tqdm import tqdm
from tritonclient.utils import InferenceServerException, np_to_triton_dtype, triton_to_np_dtype

from . import contract, hdr_math, tiling
from .errors import ClientError, InferenceError, SceneError
from .scenes import Scene, SceneSource

__all__ = ["HDRClient", "ModelInfo", "SceneResult", "PrecisionWarning", "SHM_MODES", "DEFAULT_URL", "grpc_target",
           "local_admin_token"]

DEFAULT_URL = "127.0.0.1:8001"
SHM_MODES = ("none", "system", "cuda")
MAX_BACKOFF_S = 4.0
_RETRYABLE = ("StatusCode.UNAVAILABLE",)  # never DEADLINE_EXCEEDED: the server may still be computing
_DEADLINE = "StatusCode.DEADLINE_EXCEEDED"
_CANCELLED = "StatusCode.CANCELLED"
_SHM_ALIGN = 64
_POLL_S = 0.1  # how often a waiting inference looks at its cancel event
# Config data_type -> numpy dtype, for the element types the contract allows for LDR ("TYPE_UINT8" -> "UINT8").
_LDR_CONFIG_DTYPES = {config: np.dtype(triton_to_np_dtype(config[len("TYPE_"):]))
                      for config in contract.LDR_DTYPES.values()}


class PrecisionWarning(UserWarning):
    """16-bit frames were rounded to 8 bits because the served model takes UINT8."""


@dataclass(frozen=True)
class ModelInfo:
    """What the client needs from the model's config on the server."""

    name: str
    ldr_dtype: np.dtype     # uint8 or float16
    max_batch_size: int     # > 0: tensors carry a batch dimension in front
    tile_max_pixels: Optional[int] = None  # the model's parameter: larger scenes go in tiles (client/tiling.py)


@dataclass
class SceneResult:
    """One scene of infer_many(): `hdr` (linear float32 [H, W, 3]) on success, else `error`."""

    index: int
    name: str
    hdr: Optional[np.ndarray] = None
    error: Optional[ClientError] = None
    scene: Optional[Scene] = None
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None


def _reloading(exc: InferenceServerException) -> bool:
    """A server manager is reloading the model (NOT_FOUND "... has no available versions"): nothing was computed,
    the request is retried like UNAVAILABLE."""
    return "has no available versions" in (exc.message() or "")


def _is_restricted(exc: InferenceServerException) -> bool:
    return "protocol is restricted" in (exc.message() or "")


def _host_port(address: str) -> tuple[str, int]:
    host, sep, port = address.strip().rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ClientError(f"server address {address!r} is not HOST:PORT (e.g. 127.0.0.1:8001, [::1]:8001); "
                          "several are comma-separated: host1:8001,host2:8001")
    return host, int(port)


def _literal(host: str) -> Optional[ipaddress._BaseAddress]:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def grpc_target(url: str) -> tuple[str, list[tuple[str, int]]]:
    """The gRPC channel target for `url`, and its (host, port) list ([] for a "dns:///" target, resolved by gRPC).

    One "host:port" stays as it is (gRPC's DNS resolver; a name with several addresses gets them all). Several
    comma-separated addresses become a static list "ipv4:a:p,b:p" (or "ipv6:[a]:p,..."): host names among them are
    resolved here, once. A target with a scheme ("dns:///name:8001", "ipv4:...") passes through unchanged.
    """
    url = url.strip()
    if url.startswith(("dns:", "ipv4:", "ipv6:", "unix:")):
        return url, []
    addresses = [_host_port(a) for a in url.split(",") if a.strip()]
    if not addresses:
        raise ClientError("--url is empty; give HOST:PORT, or several comma-separated")
    if len(addresses) == 1:
        host, port = addresses[0]
        literal = _literal(host)
        return (f"[{host}]:{port}" if literal is not None and literal.version == 6 else f"{host}:{port}"), addresses
    resolved = []
    for host, port in addresses:
        if _literal(host) is not None:
            resolved.append((str(_literal(host)), port))
            continue
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise ClientError(f"server address {host}:{port} does not resolve ({exc.strerror}); check --url") from None
        resolved.extend(dict.fromkeys((info[4][0], port) for info in infos))
    versions = {_literal(h).version for h, _ in resolved}
    if len(versions) > 1:
        raise ClientError(f"--url {url} mixes IPv4 and IPv6 addresses, which one gRPC channel cannot balance; use "
                          "one family")
    family = versions.pop()
    fmt = (lambda h, p: f"[{h}]:{p}") if family == 6 else (lambda h, p: f"{h}:{p}")
    return f"ipv{family}:" + ",".join(fmt(h, p) for h, p in resolved), resolved


def _is_loopback(host: str) -> bool:
    literal = _literal(host)
    return host == "localhost" or (literal is not None and literal.is_loopback)


def local_admin_token(url: str) -> tuple[Optional[str], Optional[str]]:
    """(token, file) of the local server manager at `url`, or (None, None) when `url` is not one loopback address
    or the manager wrote no token file. A file that others can read, or that another user owns, is not used."""
    try:
        target, addresses = grpc_target(url)
    except ClientError:
        return None, None
    if len(addresses) != 1 or not _is_loopback(addresses[0][0]):
        return None, None
    path = contract.admin_token_path(addresses[0][1])
    try:
        info = path.stat()
        if info.st_uid != os.getuid() or stat.S_IMODE(info.st_mode) & 0o077:
            warnings.warn(f"ignoring the admin token file {path}: it must be yours and 0600 (chmod 600 {path})",
                          RuntimeWarning, stacklevel=2)
            return None, None
        token = path.read_text().strip()
    except OSError:
        return None, None
    return (token, str(path)) if token else (None, None)


def _channel_args() -> list[tuple[str, int]]:
    """tritonclient's default channel options plus a short reconnect backoff (after a refused connection gRPC
    would otherwise wait up to 2 minutes before trying again, longer than our own retries) and round-robin over
    every address the target resolves to (one request per pick; a refused address is skipped)."""
    keepalive = grpcclient.KeepAliveOptions()
    return [
        ("grpc.lb_policy_name", "round_robin"),
        ("grpc.max_send_message_length", grpcclient.MAX_GRPC_MESSAGE_SIZE),
        ("grpc.max_receive_message_length", grpcclient.MAX_GRPC_MESSAGE_SIZE),
        ("grpc.keepalive_time_ms", keepalive.keepalive_time_ms),
        ("grpc.keepalive_timeout_ms", keepalive.keepalive_timeout_ms),
        ("grpc.keepalive_permit_without_calls", keepalive.keepalive_permit_without_calls),
        ("grpc.http2.max_pings_without_data", keepalive.http2_max_pings_without_data),
        ("grpc.initial_reconnect_backoff_ms", 100),
        ("grpc.min_reconnect_backoff_ms", 100),
        ("grpc.max_reconnect_backoff_ms", 1000),
    ]


def _import_cuda_shm():
    try:
        import tritonclient.utils.cuda_shared_memory as cudashm
    except (ImportError, RuntimeError) as exc:
        raise ClientError(
            f"--shm cuda is unavailable here ({exc}); it needs a GPU host with `pip install cuda-python` (and "
            "setuptools<81, whose pkg_resources tritonclient 2.51 imports). Use --shm system or --shm none") from exc
    return cudashm


def _aligned(n: int) -> int:
    return (n + _SHM_ALIGN - 1) // _SHM_ALIGN * _SHM_ALIGN


def _shm_write(buf, offset: int, arr: np.ndarray) -> None:
    # The view must not outlive this call: an exported buffer keeps the mapping from closing.
    np.ndarray(arr.shape, arr.dtype, buffer=buf, offset=offset)[...] = arr


def _shm_read(buf, offset: int, shape, dtype) -> np.ndarray:
    return np.ndarray(shape, dtype, buffer=buf, offset=offset).copy()


@dataclass(frozen=True)
class _Job:
    """One scene's inference: its description for messages, the output shape, the deadline of all its attempts
    (time.monotonic()) and the event that abandons it."""

    what: str
    out_shape: tuple
    deadline: float
    cancel: Optional[threading.Event] = None
    model: Optional[str] = None  # default: the client's model


@dataclass
class _Region:
    name: str
    memory: shared_memory.SharedMemory
    size: int


class _SystemShmPool:
    """Registered POSIX shared-memory regions, each used by one request at a time and then reused.

    Per-request regions would cost two more RPCs per request and race with the server: Triton keeps a region
    "in use" for a moment after it has answered, and refuses to unregister it until then.
    """

    MAX_FREE = 8  # regions kept for reuse; beyond that the smallest are given back

    def __init__(self, register, unregister):
        self._register = register      # (name, key, size, what) -> None, raises InferenceError
        self._unregister = unregister  # name -> None, only warns
        self._free: list[_Region] = []
        self._lock = threading.Lock()

    def acquire(self, what: str, size: int) -> _Region:
        with self._lock:
            fitting = [r for r in self._free if r.size >= size]
            if fitting:
                region = min(fitting, key=lambda r: r.size)
                self._free.remove(region)
                return region
        name = f"adnet_{os.getpid()}_{uuid.uuid4().hex[:16]}"
        region = _Region(name, shared_memory.SharedMemory(name=name, create=True, size=size), size)
        try:
            self._register(name, "/" + name, size, what)
        except BaseException:
            region.memory.close()
            region.memory.unlink()
            raise
        return region

    def release(self, region: _Region, outcome: str) -> None:
        """Back to the pool after an "ok" request. After a "failed" one the region is unregistered and freed, as
        the server may still write into it; a region the server has "forgotten" (it restarted) is only freed."""
        dropped = [region]
        if outcome == "ok":
            with self._lock:
                self._free.append(region)
                self._free.sort(key=lambda r: r.size)
                dropped = self._free[:-self.MAX_FREE] if len(self._free) > self.MAX_FREE else []
                del self._free[:len(dropped)]
        for r in dropped:
            self._drop(r, unregister=outcome != "forgotten")

    def _drop(self, region: _Region, unregister: bool = True) -> None:
        try:
            if unregister:
                self._unregister(region.name)
        finally:
            region.memory.close()
            region.memory.unlink()

    def close(self) -> None:
        with self._lock:
            regions, self._free = self._free, []
        for region in regions:
            self._drop(region)


class HDRClient:
    """Client of one Triton server (or of several, round-robin) for one `adnet` model; thread-safe, a context
    manager that closes the channel.

    `timeout` (seconds) is the deadline of each call across all its attempts, and bounds wait_until_ready();
    up to `retries` extra attempts follow an UNAVAILABLE answer after `backoff`, 2*`backoff`, ... seconds (at most
    MAX_BACKOFF_S apart, never past the deadline). `admin_token` is sent on restricted calls (shared memory,
    repository index); None: the local server manager's token file, when `url` is one loopback address.
    """

    def __init__(self, url: str = DEFAULT_URL, model: str = contract.MODEL_NAME, *, timeout: float = 60.0,
                 retries: int = 3, backoff: float = 0.5, admin_token: Optional[str] = None, shm: str = "none",
                 cuda_device: int = 0, model_16bit: Optional[str] = contract.MODEL_NAME_16BIT):
        if shm not in SHM_MODES:
            raise ClientError(f"unknown shared-memory mode {shm!r}; choose one of {', '.join(SHM_MODES)}")
        if timeout <= 0 or retries < 0 or backoff < 0:
            raise ClientError(f"timeout must be > 0 s and retries, backoff >= 0; got timeout={timeout}, "
                              f"retries={retries}, backoff={backoff}")
        self.url, self.model, self.timeout, self.retries, self.backoff = url, model, timeout, retries, backoff
        # 16-bit scenes go to this twin of the default model when the server serves it (None: never).
        self.model_16bit = model_16bit if model == contract.MODEL_NAME else None
        self.shm, self.cuda_device = shm, cuda_device
        self.target, addresses = grpc_target(url)
        if shm != "none" and (len(addresses) != 1):
            # Registrations live in one server: the next request may go to another that has never heard of them.
            raise ClientError(
                f"--shm {shm} needs one server on this host, but --url {url} names several (or a DNS target whose "
                "requests are spread over replicas): use --shm none (plain gRPC) with several servers")
        self.token_file = None
        if admin_token is None:
            admin_token, self.token_file = local_admin_token(url)
        self._cudashm = _import_cuda_shm() if shm == "cuda" else None
        self._headers = {contract.GRPC_ADMIN_HEADER: admin_token} if admin_token else None
        self._client = grpcclient.InferenceServerClient(self.target, channel_args=_channel_args())
        self._shm_pool = None
        if shm == "system":
            self._shm_pool = _SystemShmPool(
                lambda name, key, size, what: self._call(f"{what}: registering system shared memory",
                                                         self._client.register_system_shared_memory, name, key, size,
                                                         restricted=True),
                lambda name: self._unregister(self._client.unregister_system_shared_memory, name))
        self._info: Optional[ModelInfo] = None
        self._info16: Union[ModelInfo, None, bool] = False  # False: not asked yet; None: the server has none
        self._info_lock = threading.Lock()
        self._closed = threading.Event()  # close() cancels what is still in flight

    def close(self) -> None:
        """Cancel what is in flight, unregister and free the shared-memory regions, then close the channel."""
        self._closed.set()
        try:
            if self._shm_pool is not None:
                self._shm_pool.close()
        finally:
            self._client.close()

    def __enter__(self) -> "HDRClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- calls with retries ------------------------------------------------------------------------------------

    def _reread_token_file(self) -> bool:
        """After a refusal of a token read from the local manager's file: read the file again (a restarted
        manager writes a new token); True when it now holds another token."""
        if not self.token_file:
            return False
        token, _ = local_admin_token(self.url)
        if not token or self._headers == {contract.GRPC_ADMIN_HEADER: token}:
            return False
        self._headers = {contract.GRPC_ADMIN_HEADER: token}
        return True

    def _restricted_error(self, what: str) -> InferenceError:
        if self.token_file:
            how = (f"the token in {self.token_file} was refused (a stale file of an earlier server?): restart the "
                   "server with `make serve`, or pass --admin-token TOKEN")
        elif self._headers:
            how = "the --admin-token given was refused: pass the token this server was started with"
        else:
            how = ("pass --admin-token TOKEN (the server's --admin-token; a client on the server's host reads it "
                   f"from the manager's token file by itself, e.g. {contract.admin_token_path(8001)})")
        return InferenceError(
            f"{what}: the server at {self.url} restricts this endpoint (header {contract.ADMIN_HEADER}); {how}"
            + (", or use --shm none" if self.shm != "none" else ""))

    def _call(self, what: str, fn, *args, restricted: bool = False, deadline: Optional[float] = None,
              cancel: Optional[threading.Event] = None, **kwargs):
        """fn(*args, **kwargs) with the retry policy, all attempts within one deadline (default: now + timeout);
        the admin header on `restricted` calls; setting `cancel` (or close()) abandons the backoff. Errors become
        InferenceError."""
        deadline = time.monotonic() + self.timeout if deadline is None else deadline
        headers = self._headers if restricted else None
        delay = self.backoff
        attempt = 0
        while True:
            attempt += 1
            left = deadline - time.monotonic()
            if left <= 0:
                raise self._out_of_time(what, attempt - 1)
            try:
                return fn(*args, headers=headers, client_timeout=left, **kwargs)
            except InferenceServerException as exc:
                if restricted and _is_restricted(exc) and self._reread_token_file():
                    headers = self._headers  # the local server was restarted with a new token: once more
                    continue
                self._raise_unless_retriable(what, exc, attempt)
                if delay >= deadline - time.monotonic():  # no time left for another attempt after the backoff
                    raise self._gave_up(what, exc, attempt, out_of_time=True) from None
            if self._abandoned(cancel, delay):
                raise InferenceError(f"{what}: abandoned (the client stopped)")
            delay = min(2 * delay, MAX_BACKOFF_S)

    def _abandoned(self, cancel: Optional[threading.Event], wait_s: float = 0.0) -> bool:
        """Whether `cancel` or close() says stop, waiting up to `wait_s` for it (the backoff)."""
        end = time.monotonic() + wait_s
        while True:
            if (cancel is not None and cancel.is_set()) or self._closed.is_set():
                return True
            left = end - time.monotonic()
            if left <= 0:
                return False
            (cancel or self._closed).wait(min(left, _POLL_S))

    def _raise_unless_retriable(self, what: str, exc: InferenceServerException, attempt: int) -> None:
        if _is_restricted(exc):
            raise self._restricted_error(what) from None
        if exc.status() == _DEADLINE or "timeout expired" in (exc.message() or "").lower():
            # the client's deadline, or the server's queue timeout (the request's own `timeout`): not retried
            raise self._out_of_time(what, attempt) from None
        if exc.status() not in _RETRYABLE and not _reloading(exc):
            raise InferenceError(f"{what}: {exc.message()}{self._hint(exc)}") from None
        if attempt > self.retries:
            raise self._gave_up(what, exc, attempt) from None

    def _out_of_time(self, what: str, attempts: int) -> InferenceError:
        return InferenceError(
            f"{what}: no answer from {self.url} within --timeout {self.timeout:g} s ({attempts} attempt(s); the "
            "request was cancelled, not retried: the server may have been computing it); raise --timeout for "
            "large frames or a busy server, or check the server log")

    def _hint(self, exc: InferenceServerException) -> str:
        if "is not healthy" in (exc.message() or ""):
            # Not retried: a request that crashed the model (e.g. out of memory) would crash it again, elsewhere too.
            return (f" (the model's process on {self.url} died; a server manager reloads it within seconds: run "
                    "again, and check the server log if it recurs for this scene)")
        # Readiness was checked before any request, so a model that is now unknown went away meanwhile.
        if "unknown model" in (exc.message() or "") and self._info is not None:
            return (f" (model {self.model} was ready before: the server at {self.url} is shutting down or unloaded "
                    "it; check the server and run again)")
        return ""

    def _unregister(self, unregister, name: str, wait_s: float = 5.0) -> None:  # restricted
        """Unregister a shared-memory region, waiting while the server still holds it ("in use" just after its
        answer). A failure only warns (the request has succeeded or failed already); an unreachable server is
        skipped silently."""
        deadline = time.monotonic() + wait_s
        while True:
            try:
                unregister(name, headers=self._headers, client_timeout=self.timeout)
                return
            except InferenceServerException as exc:
                if exc.status() == "StatusCode.UNAVAILABLE" and not _is_restricted(exc):
                    return  # the server is gone, and its registrations with it
                if "in use" not in (exc.message() or "") or time.monotonic() > deadline:
                    warnings.warn(f"could not unregister shared-memory region {name} from {self.url}: "
                                  f"{exc.message()}", RuntimeWarning, stacklevel=2)
                    return
            time.sleep(0.02)

    def _gave_up(self, what: str, exc: InferenceServerException, attempts: int,
                 out_of_time: bool = False) -> InferenceError:
        why = f" (the --timeout of {self.timeout:g} s left no time for another)" if out_of_time else ""
        return InferenceError(
            f"{what}: server at {self.url} unavailable after {attempts} attempt(s){why}: {exc.message()}; is it "
            "running (start it with `make serve`) and is --url right? (--retries and --timeout allow more)")

    # -- readiness and model config ---------------------------------------------------------------------------

    def _model_list(self) -> str:
        try:
            index = self._client.get_model_repository_index(headers=self._headers, as_json=True,
                                                            client_timeout=self.timeout)
        except InferenceServerException as exc:
            return "listing them needs --admin-token" if _is_restricted(exc) else f"cannot list them: {exc.message()}"
        models = []
        for entry in index.get("models", []):
            state = entry.get("state", "UNKNOWN")
            reason = entry.get("reason")
            models.append(f"{entry['name']} ({state}{': ' + reason if reason else ''})")
        return ", ".join(models) or "none"

    def _not_ready_reason(self, deadline: float) -> Optional[str]:
        """None when server and model are ready, else why not; raises InferenceError when waiting cannot help."""
        kw = dict(client_timeout=max(deadline - time.monotonic(), 0.05))
        if not self._client.is_server_ready(**kw):
            return f"server at {self.url} is up but not ready (a model is still loading or failed; see its log)"
        if self._client.is_model_ready(self.model, **kw):
            return None
        try:
            self._client.get_model_config(self.model, **kw)
        except InferenceServerException as exc:
            if exc.status() == "StatusCode.NOT_FOUND":
                raise InferenceError(
                    f"model {self.model} missing on the server at {self.url} (models: {self._model_list()}); "
                    f"pass --model NAME, or serve {contract.MODEL_NAME} (`make serve`)") from None
            raise
        return f"model {self.model} on {self.url} is not ready (models: {self._model_list()})"

    def wait_until_ready(self, timeout: Optional[float] = None) -> ModelInfo:
        """Wait for the server and the model, then read the model's config.

        Polls with exponential backoff and gives up after `retries` retries or `timeout` seconds (default: the
        client's timeout), whichever comes first, with an InferenceError that says why.
        """
        timeout = self.timeout if timeout is None else timeout
        start = time.monotonic()
        deadline = start + timeout
        delay = self.backoff
        attempts = 0
        while True:
            attempts += 1
            try:
                reason = self._not_ready_reason(deadline)
            except InferenceServerException as exc:
                if _is_restricted(exc):
                    raise self._restricted_error("readiness check") from None
                # Readiness is cheap and changes nothing: a hung or slow answer is polled again, too.
                if exc.status() not in _RETRYABLE + (_DEADLINE,):
                    raise InferenceError(f"readiness check at {self.url}: {exc.message()}") from None
                reason = f"server not ready at {self.url} ({exc.message()})"
            if reason is None:
                break
            if attempts > self.retries or time.monotonic() + delay >= deadline:
                raise InferenceError(
                    f"{reason}; gave up after {attempts} attempt(s) in {time.monotonic() - start:.1f} s. Start the "
                    "server with `make serve` (or check --url), or raise --retries/--timeout while it starts")
            time.sleep(delay)
            delay = min(2 * delay, MAX_BACKOFF_S)
        info = self._read_model_info()
        with self._info_lock:
            self._info = info
        return info

    def _read_model_info(self, model: Optional[str] = None) -> ModelInfo:
        model = model or self.model
        config = self._call(f"model config of {model}", self._client.get_model_config, model,
                            as_json=True)["config"]
        inputs = {i["name"]: i.get("data_type") for i in config.get("input", [])}
        outputs = {o["name"]: o.get("data_type") for o in config.get("output", [])}
        ldr_type = inputs.get(contract.INPUT_LDR)
        if (ldr_type not in _LDR_CONFIG_DTYPES or inputs.get(contract.INPUT_EV) != "TYPE_FP32"
                or outputs.get(contract.OUTPUT_HDR) != "TYPE_FP32"):
            raise InferenceError(
                f"model {model} on {self.url} does not follow the {contract.MODEL_NAME} contract: inputs "
                f"{inputs}, outputs {outputs}; expected {contract.INPUT_LDR} UINT8|FP16, {contract.INPUT_EV} FP32 "
                f"-> {contract.OUTPUT_HDR} FP32 (is --model the ADNet model?)")
        # The JSON form omits fields at their default, so a missing max_batch_size means 0 (no batch dimension).
        tile_max_pixels = config.get("parameters", {}).get("tile_max_pixels", {}).get("string_value")
        return ModelInfo(model, _LDR_CONFIG_DTYPES[ldr_type], int(config.get("max_batch_size", 0)),
                         int(tile_max_pixels) if tile_max_pixels else None)

    def model_info(self) -> ModelInfo:
        """The model's config (waiting for readiness on first use)."""
        with self._info_lock:
            if self._info is not None:
                return self._info
        return self.wait_until_ready()

    def model_for(self, scene: Scene) -> ModelInfo:
        """The model that serves `scene`: for 16-bit frames the 16-bit twin (`model_16bit`, default
        contract.MODEL_NAME_16BIT, LDR FP16) when the server serves it and the client uses the default model, else
        the client's model."""
        info = self.model_info()
        if np.asarray(scene.ldrs).dtype != np.uint16 or info.ldr_dtype != np.uint8 or not self.model_16bit:
            return info
        with self._info_lock:
            known = self._info16
        if known is False:
            try:
                ready = self._client.is_model_ready(self.model_16bit, client_timeout=self.timeout)
            except InferenceServerException:
                ready = False
            twin = self._read_model_info(self.model_16bit) if ready else None
            known = twin if twin is not None and twin.ldr_dtype == np.float16 else None
            with self._info_lock:
                self._info16 = known
        return known or info

    # -- one scene --------------------------------------------------------------------------------------------

    def prepare(self, scene: Scene, info: Optional[ModelInfo] = None) -> tuple[np.ndarray, np.ndarray]:
        """The request tensors (LDR, EV) for `scene`, in the dtype and batch layout of the model that serves it
        (`info`, default model_for(scene))."""
        info = info or self.model_for(scene)
        ldrs = np.asarray(scene.ldrs)
        if ldrs.ndim != 4 or ldrs.shape[0] != contract.NUM_FRAMES or ldrs.shape[3] != contract.NUM_COLORS:
            raise SceneError(f"scene {scene.name}: frames must be [3, H, W, 3], got {list(ldrs.shape)}")
        if ldrs.dtype not in (np.uint8, np.uint16):
            raise SceneError(f"scene {scene.name}: frames must be uint8 or uint16 as decoded, got {ldrs.dtype}")
        h, w = ldrs.shape[1:3]
        if min(h, w) < contract.MIN_SIDE or max(h, w) > contract.MAX_SIDE:
            raise SceneError(f"scene {scene.name}: frames are {w}x{h} pixels but each side must lie in "
                             f"[{contract.MIN_SIDE}, {contract.MAX_SIDE}]")
        evs = np.asarray(scene.evs, dtype=np.float64).ravel()
        if evs.size != contract.NUM_FRAMES or not np.all(np.isfinite(evs)):
            raise SceneError(f"scene {scene.name}: EV stops must be 3 finite numbers, got {evs.tolist()}")
        if info.ldr_dtype == np.uint8 and ldrs.dtype == np.uint16:
            warnings.warn(
                f"scene {scene.name}: 16-bit frames rounded to 8 bits for model {info.name} (UINT8 input; the server "
                f"at {self.url} has no {contract.MODEL_NAME_16BIT}): serve the 16-bit twin too (`make serve` does on "
                "the CPU), or a model exported with --ldr-dtype float16", PrecisionWarning, stacklevel=2)
        ldr = hdr_math.ldr_for_model(ldrs, info.ldr_dtype)
        ev = evs.astype(np.float32)
        if info.max_batch_size > 0:
            ldr, ev = ldr[None], ev[None]
        return ldr, ev

    def infer(self, scene: Scene, cancel: Optional[threading.Event] = None) -> np.ndarray:
        """Linear HDR radiance, float32 [H, W, 3], for one scene, within one `timeout` across all attempts.

        Setting `cancel` (or close(), or Ctrl-C in this thread) cancels the request in flight and raises
        InferenceError.
        """
        info = self.model_for(scene)
        tile = tiling.client_tile(scene.height, scene.width, info.tile_max_pixels)
        if tile is not None:
            return self._infer_tiled(scene, tile, cancel, info)
        deadline = time.monotonic() + self.timeout
        ldr, ev = self.prepare(scene, info)
        batched = info.max_batch_size > 0
        out_shape = ((1,) if batched else ()) + (scene.height, scene.width, contract.NUM_COLORS)
        what = f"inference of scene {scene.name}"
        job = _Job(what, out_shape, deadline, cancel, info.name)
        if self.shm == "system":
            hdr = self._infer_system_shm(job, ldr, ev)
        elif self.shm == "cuda":
            hdr = self._infer_cuda_shm(job, ldr, ev)
        else:
            hdr = self._infer_plain(job, ldr, ev)
        return hdr[0] if batched else hdr

    def _infer_tiled(self, scene: Scene, tile: tuple[int, int], cancel: Optional[threading.Event],
                     info: ModelInfo) -> np.ndarray:
        batch = info.max_batch_size
        what = f"inference of scene {scene.name} (tiles)"

        def infer_batch(ldrs, evs):  # tiles as decoded -> prepare() each -> one request, with its own deadline
            parts = [self.prepare(dataclasses.replace(scene, ldrs=one), info) for one in ldrs]
            shape = (len(ldrs),) + ldrs.shape[2:4] + (contract.NUM_COLORS,)
            if batch == 0:  # no batch dimension: one tile per request
                job = _Job(what, shape[1:], time.monotonic() + self.timeout, cancel, info.name)
                return self._infer_plain(job, *parts[0])[None]
            job = _Job(what, shape, time.monotonic() + self.timeout, cancel, info.name)
            return self._infer_plain(job, np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))

        try:
            return tiling.infer_tiled(np.asarray(scene.ldrs), scene.evs, infer_batch, tile=tile,
                                      batch_size=max(1, batch), in_flight=tiling.TILES_IN_FLIGHT)
        except tiling.TilingError as exc:
            raise SceneError(f"scene {scene.name}: {exc}") from None

    @staticmethod
    def _inputs(ldr: np.ndarray, ev: np.ndarray) -> list:
        return [grpcclient.InferInput(contract.INPUT_LDR, list(ldr.shape), np_to_triton_dtype(ldr.dtype)),
                grpcclient.InferInput(contract.INPUT_EV, list(ev.shape), np_to_triton_dtype(ev.dtype))]

    def _infer_once(self, job: "_Job", inputs, outputs, *, client_timeout: float, headers=None):
        """One attempt: async_infer, waited for until `left` seconds have passed, cancelled when abandoned."""
        done = threading.Event()
        answer = {}

        def callback(result, error):
            answer["result"], answer["error"] = result, error
            done.set()

        left = client_timeout
        # `timeout` (µs) also bounds the wait in Triton's queue where the model's queue policy allows a request to
        # shorten it (allow_timeout_override): nothing is computed for a client whose deadline has passed.
        handle = self._client.async_infer(job.model or self.model, inputs, callback, outputs=outputs, client_timeout=left,
                                          timeout=max(int(left * 1e6), 1), headers=headers)
        abandoned = None
        try:
            backstop = time.monotonic() + left + 1.0  # gRPC's own deadline answers first
            while not done.wait(_POLL_S):
                if self._abandoned(job.cancel):
                    abandoned = "abandoned (the client stopped)"
                    break
                if time.monotonic() > backstop:
                    abandoned = "deadline"
                    break
        except BaseException:  # KeyboardInterrupt in this thread
            handle.cancel()
            raise
        if abandoned:
            handle.cancel()
            if abandoned == "deadline":
                raise InferenceServerException(msg="Deadline Exceeded", status=_DEADLINE)
            raise InferenceError(f"{job.what}: {abandoned}")
        if answer["error"] is not None:
            if answer["error"].status() == _CANCELLED:
                raise InferenceError(f"{job.what}: cancelled")
            raise answer["error"]
        return answer["result"]

    def _run(self, job: "_Job", inputs, output):
        what, out_shape = job.what, job.out_shape
        result = self._call(what, self._infer_once, job, inputs, [output], deadline=job.deadline, cancel=job.cancel)
        meta = result.get_output(contract.OUTPUT_HDR)
        shape = tuple(meta.shape) if meta is not None else None
        if shape != tuple(out_shape) or (meta is not None and meta.datatype != "FP32"):
            raise InferenceError(f"{what}: the server answered {contract.OUTPUT_HDR} "
                                 f"{meta.datatype if meta else 'missing'} {shape}, expected FP32 {out_shape}")
        return result

    def _infer_plain(self, job, ldr, ev) -> np.ndarray:
        inputs = self._inputs(ldr, ev)
        inputs[0].set_data_from_numpy(ldr)
        inputs[1].set_data_from_numpy(ev)
        result = self._run(job, inputs, grpcclient.InferRequestedOutput(contract.OUTPUT_HDR))
        return result.as_numpy(contract.OUTPUT_HDR)

    def _infer_system_shm(self, job, ldr, ev) -> np.ndarray:
        # One region holds LDR | EV | HDR at aligned offsets.
        what, out_shape = job.what, job.out_shape
        out_bytes = int(np.prod(out_shape)) * 4
        ev_offset = _aligned(ldr.nbytes)
        hdr_offset = ev_offset + _aligned(ev.nbytes)
        for attempt in (1, 2):
            region = self._shm_pool.acquire(what, hdr_offset + out_bytes)
            outcome = "failed"
            try:
                _shm_write(region.memory.buf, 0, ldr)
                _shm_write(region.memory.buf, ev_offset, ev)
                inputs = self._inputs(ldr, ev)
                inputs[0].set_shared_memory(region.name, ldr.nbytes, offset=0)
                inputs[1].set_shared_memory(region.name, ev.nbytes, offset=ev_offset)
                output = grpcclient.InferRequestedOutput(contract.OUTPUT_HDR)
                output.set_shared_memory(region.name, out_bytes, offset=hdr_offset)
                self._run(job, inputs, output)
                hdr = _shm_read(region.memory.buf, hdr_offset, out_shape, np.float32)
                outcome = "ok"
                return hdr
            except InferenceError as exc:
                # A restarted server has forgotten the pool's registrations: register a fresh region, once.
                if attempt == 1 and "Unable to find shared memory region" in str(exc):
                    outcome = "forgotten"
                    continue
                raise
            finally:
                self._shm_pool.release(region, outcome)

    def _infer_cuda_shm(self, job, ldr, ev) -> np.ndarray:
        # Inputs share one device region (set_shared_memory_region copies the arrays back to back); the output
        # has its own, because get_contents_as_numpy reads from offset 0.
        cudashm = self._cudashm
        what, out_shape = job.what, job.out_shape
        out_bytes = int(np.prod(out_shape)) * 4
        tag = f"adnet_{os.getpid()}_{uuid.uuid4().hex[:16]}"
        names = (tag + "_in", tag + "_out")
        sizes = (ldr.nbytes + ev.nbytes, out_bytes)
        handles, registered = [], []
        try:
            for name, size in zip(names, sizes):
                handles.append(cudashm.create_shared_memory_region(name, size, self.cuda_device))
            cudashm.set_shared_memory_region(handles[0], [ldr, ev])
            for name, size, handle in zip(names, sizes, handles):
                self._call(f"{what}: registering CUDA shared memory", self._client.register_cuda_shared_memory,
                           name, cudashm.get_raw_handle(handle), self.cuda_device, size, restricted=True)
                registered.append(name)
            inputs = self._inputs(ldr, ev)
            inputs[0].set_shared_memory(names[0], ldr.nbytes, offset=0)
            inputs[1].set_shared_memory(names[0], ev.nbytes, offset=ldr.nbytes)
            output = grpcclient.InferRequestedOutput(contract.OUTPUT_HDR)
            output.set_shared_memory(names[1], out_bytes)
            self._run(job, inputs, output)
            return np.array(cudashm.get_contents_as_numpy(handles[1], np.float32, list(out_shape)))
        except cudashm.CudaSharedMemoryException as exc:
            raise ClientError(f"{what}: CUDA shared memory failed on device {self.cuda_device}: {exc}; use --shm "
                              "system or --shm none") from exc
        finally:
            try:
                for name in registered:
                    self._unregister(self._client.unregister_cuda_shared_memory, name)
            finally:
                for handle in handles:
                    cudashm.destroy_shared_memory_region(handle)

    # -- many scenes ------------------------------------------------------------------------------------------

    def _run_one(self, index: int, item: Union[Scene, SceneSource], cancel: threading.Event) -> SceneResult:
        start = time.monotonic()
        scene = None
        try:
            scene = item.load() if isinstance(item, SceneSource) else item
            hdr = self.infer(scene, cancel)
            return SceneResult(index, item.name, hdr=hdr, scene=scene, seconds=time.monotonic() - start)
        except ClientError as exc:
            return SceneResult(index, item.name, error=exc, scene=scene, seconds=time.monotonic() - start)

    def infer_many(self, scenes: Iterable[Union[Scene, SceneSource]], concurrency: int = 4,
                   progress: bool = True) -> Iterator[SceneResult]:
        """Yield one SceneResult per scene, in input order, with up to `concurrency` requests in flight.

        SceneSources are loaded in the worker threads, so files are read while other scenes are inferred. A scene
        that fails (file, request or server error) yields a result with `error`; the others go on. Readiness is
        checked once up front: an unreachable server or a missing model raises InferenceError instead of failing
        every scene alike.
        """
        items = list(scenes)
        if concurrency < 1:
            raise ClientError(f"concurrency must be at least 1, got {concurrency}")
        self.model_info()
        bar = tqdm(total=len(items), unit="scene", desc=f"{self.model}@{self.url}", file=sys.stderr,
                   disable=None if progress else True)
        bar_lock = threading.Lock()
        stop = threading.Event()  # set when the caller stops early (Ctrl-C, an error, a closed generator)

        def work(index, item):
            if stop.is_set():
                return SceneResult(index, item.name, error=InferenceError(f"scene {item.name}: abandoned"))
            result = self._run_one(index, item, stop)
            with bar_lock:
                bar.update(1)
            return result

        executor = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="adnet-infer")
        todo = iter(enumerate(items))
        pending = collections.deque()

        def submit_next() -> None:
            for index, item in todo:
                pending.append(executor.submit(work, index, item))
                return

        try:
            # Twice the pool size queued, so that a slow head-of-line scene does not leave workers idle; results
            # wait for their turn in `pending`, which bounds the memory they hold.
            for _ in range(2 * concurrency):
                submit_next()
            while pending:
                result = pending.popleft().result()
                submit_next()
                yield result
        finally:
            # What is still pending was abandoned: not started, or cancelled on the wire within _POLL_S.
            stop.set()
            for future in pending:
                future.cancel()
            executor.shutdown(wait=True)
            bar.close()
