"""gRPC client for the Triton model `adnet` (client/contract.py): scenes in, linear HDR out.

- Readiness: `wait_until_ready()` tells "server not ready at URL" from "model missing (models: ...)".
- Input dtype: read from the model's config on the server. 8-bit sources go to a UINT8 model as decoded; 16-bit
  sources to a UINT8 model are rounded to 8 bits (with a PrecisionWarning); an FP16 model gets float16 in [0, 1].
- Retries: UNAVAILABLE (connection refused, server restarting) and DEADLINE_EXCEEDED are retried with exponential
  backoff; Triton's "protocol is restricted" UNAVAILABLE is not: it needs the admin token.
- Scenes of any size (up to client/tiling.py's MAX_SCENE_SIDE): a scene larger than one request should carry
  (`tiling.client_tile`: the model's `tile_max_pixels` parameter, else the GPU profile's 1080x1920) is sent as
  overlapping tiles of one shape, up to max_batch_size per request and TILES_IN_FLIGHT requests in flight, and
  blended back (plain gRPC; shared memory is for whole frames).
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
import os
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
from tritonclient.utils import InferenceServerException

from . import contract, hdr_math, tiling
from .errors import ClientError, InferenceError, SceneError
from .scenes import Scene, SceneSource

__all__ = ["HDRClient", "ModelInfo", "SceneResult", "PrecisionWarning", "SHM_MODES", "DEFAULT_URL"]

DEFAULT_URL = "127.0.0.1:8001"
SHM_MODES = ("none", "system", "cuda")
MAX_BACKOFF_S = 4.0
_RETRYABLE = ("StatusCode.UNAVAILABLE", "StatusCode.DEADLINE_EXCEEDED")
_TRITON_DTYPES = {"TYPE_UINT8": np.dtype(np.uint8), "TYPE_FP16": np.dtype(np.float16)}
_WIRE_DTYPES = {np.dtype(np.uint8): "UINT8", np.dtype(np.float16): "FP16", np.dtype(np.float32): "FP32"}
_SHM_ALIGN = 64


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


def _is_restricted(exc: InferenceServerException) -> bool:
    return "protocol is restricted" in (exc.message() or "")


def _channel_args() -> list[tuple[str, int]]:
    """tritonclient's default channel options plus a short reconnect backoff: after a refused connection gRPC
    would otherwise wait up to 2 minutes before trying again, longer than our own retries."""
    keepalive = grpcclient.KeepAliveOptions()
    return [
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
    """Client of one Triton server for one `adnet` model; thread-safe, a context manager that closes the channel.

    `timeout` (seconds) bounds every call and wait_until_ready(); `retries` extra attempts follow an UNAVAILABLE
    or DEADLINE_EXCEEDED answer after `backoff`, 2*`backoff`, ... seconds (at most MAX_BACKOFF_S apart).
    `admin_token` is sent as the restricted-endpoint header, needed for shared memory when the server has one.
    """

    def __init__(self, url: str = DEFAULT_URL, model: str = contract.MODEL_NAME, *, timeout: float = 60.0,
                 retries: int = 3, backoff: float = 0.5, admin_token: Optional[str] = None, shm: str = "none",
                 cuda_device: int = 0):
        if shm not in SHM_MODES:
            raise ClientError(f"unknown shared-memory mode {shm!r}; choose one of {', '.join(SHM_MODES)}")
        if timeout <= 0 or retries < 0 or backoff < 0:
            raise ClientError(f"timeout must be > 0 s and retries, backoff >= 0; got timeout={timeout}, "
                              f"retries={retries}, backoff={backoff}")
        self.url, self.model, self.timeout, self.retries, self.backoff = url, model, timeout, retries, backoff
        self.shm, self.cuda_device = shm, cuda_device
        self._cudashm = _import_cuda_shm() if shm == "cuda" else None
        self._headers = {contract.GRPC_ADMIN_HEADER: admin_token} if admin_token else None
        self._client = grpcclient.InferenceServerClient(url, channel_args=_channel_args())
        self._shm_pool = None
        if shm == "system":
            self._shm_pool = _SystemShmPool(
                lambda name, key, size, what: self._call(f"{what}: registering system shared memory",
                                                         self._client.register_system_shared_memory, name, key, size),
                lambda name: self._unregister(self._client.unregister_system_shared_memory, name))
        self._info: Optional[ModelInfo] = None
        self._info_lock = threading.Lock()

    def close(self) -> None:
        """Unregister and free the shared-memory regions, then close the channel."""
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

    def _restricted_error(self, what: str) -> InferenceError:
        return InferenceError(
            f"{what}: the server at {self.url} restricts this endpoint to clients with its admin token; pass "
            f"--admin-token TOKEN (printed by `make serve` when it sets one; header {contract.ADMIN_HEADER})"
            + (" or use --shm none" if self.shm != "none" else ""))

    def _call(self, what: str, fn, *args, **kwargs):
        """fn(*args, **kwargs) with the headers, the timeout and the retry policy; errors become InferenceError."""
        delay = self.backoff
        for attempt in range(1, self.retries + 2):
            try:
                return fn(*args, headers=self._headers, client_timeout=self.timeout, **kwargs)
            except InferenceServerException as exc:
                if _is_restricted(exc):
                    raise self._restricted_error(what) from None
                if exc.status() not in _RETRYABLE:
                    raise InferenceError(f"{what}: {exc.message()}{self._hint(exc)}") from None
                if attempt > self.retries:
                    raise self._gave_up(what, exc, attempt) from None
            time.sleep(delay)
            delay = min(2 * delay, MAX_BACKOFF_S)

    def _hint(self, exc: InferenceServerException) -> str:
        # Readiness was checked before any request, so a model that is now unknown went away meanwhile.
        if "unknown model" in (exc.message() or "") and self._info is not None:
            return (f" (model {self.model} was ready before: the server at {self.url} is shutting down or unloaded "
                    "it; check the server and run again)")
        return ""

    def _unregister(self, unregister, name: str, wait_s: float = 5.0) -> None:
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

    def _gave_up(self, what: str, exc: InferenceServerException, attempts: int) -> InferenceError:
        if exc.status() == "StatusCode.DEADLINE_EXCEEDED":
            return InferenceError(
                f"{what}: no answer from {self.url} within {self.timeout:g} s, {attempts} attempt(s); raise "
                "--timeout for large frames or a busy server, or check the server log")
        return InferenceError(
            f"{what}: server at {self.url} unavailable after {attempts} attempt(s): {exc.message()}; is it running "
            "(start it with `make serve`) and is --url right?")

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
        kw = dict(headers=self._headers, client_timeout=max(deadline - time.monotonic(), 0.05))
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
                if exc.status() not in _RETRYABLE:
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

    def _read_model_info(self) -> ModelInfo:
        config = self._call(f"model config of {self.model}", self._client.get_model_config, self.model,
                            as_json=True)["config"]
        inputs = {i["name"]: i.get("data_type") for i in config.get("input", [])}
        outputs = {o["name"]: o.get("data_type") for o in config.get("output", [])}
        ldr_type = inputs.get(contract.INPUT_LDR)
        if (ldr_type not in _TRITON_DTYPES or inputs.get(contract.INPUT_EV) != "TYPE_FP32"
                or outputs.get(contract.OUTPUT_HDR) != "TYPE_FP32"):
            raise InferenceError(
                f"model {self.model} on {self.url} does not follow the {contract.MODEL_NAME} contract: inputs "
                f"{inputs}, outputs {outputs}; expected {contract.INPUT_LDR} UINT8|FP16, {contract.INPUT_EV} FP32 "
                f"-> {contract.OUTPUT_HDR} FP32 (is --model the ADNet model?)")
        # The JSON form omits fields at their default, so a missing max_batch_size means 0 (no batch dimension).
        tile_max_pixels = config.get("parameters", {}).get("tile_max_pixels", {}).get("string_value")
        return ModelInfo(self.model, _TRITON_DTYPES[ldr_type], int(config.get("max_batch_size", 0)),
                         int(tile_max_pixels) if tile_max_pixels else None)

    def model_info(self) -> ModelInfo:
        """The model's config (waiting for readiness on first use)."""
        with self._info_lock:
            if self._info is not None:
                return self._info
        return self.wait_until_ready()

    # -- one scene --------------------------------------------------------------------------------------------

    def prepare(self, scene: Scene) -> tuple[np.ndarray, np.ndarray]:
        """The request tensors (LDR, EV) for `scene`, in the served model's dtype and batch layout."""
        info = self.model_info()
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
        if info.ldr_dtype == np.float16:
            ldr = hdr_math.normalize_ldr(ldrs).astype(np.float16)
        elif ldrs.dtype == np.uint16:
            warnings.warn(
                f"scene {scene.name}: 16-bit frames rounded to 8 bits for model {self.model} (UINT8 input); "
                "export with --ldr-dtype float16 (make onnx LDR_DTYPE=float16) to keep 16 bits", PrecisionWarning,
                stacklevel=2)
            ldr = np.round(ldrs / np.float32(257.0)).astype(np.uint8)  # 65535 / 255 = 257 exactly
        else:
            ldr = np.ascontiguousarray(ldrs)
        ev = evs.astype(np.float32)
        if info.max_batch_size > 0:
            ldr, ev = ldr[None], ev[None]
        return ldr, ev

    def infer(self, scene: Scene) -> np.ndarray:
        """Linear HDR radiance, float32 [H, W, 3], for one scene."""
        tile = tiling.client_tile(scene.height, scene.width, self.model_info().tile_max_pixels)
        if tile is not None:
            return self._infer_tiled(scene, tile)
        ldr, ev = self.prepare(scene)
        batched = self.model_info().max_batch_size > 0
        out_shape = ((1,) if batched else ()) + (scene.height, scene.width, contract.NUM_COLORS)
        what = f"inference of scene {scene.name}"
        if self.shm == "system":
            hdr = self._infer_system_shm(what, ldr, ev, out_shape)
        elif self.shm == "cuda":
            hdr = self._infer_cuda_shm(what, ldr, ev, out_shape)
        else:
            hdr = self._infer_plain(what, ldr, ev, out_shape)
        return hdr[0] if batched else hdr

    def _infer_tiled(self, scene: Scene, tile: tuple[int, int]) -> np.ndarray:
        batch = self.model_info().max_batch_size

        def infer_batch(ldrs, evs):  # tiles as decoded -> prepare() each -> one request
            parts = [self.prepare(dataclasses.replace(scene, ldrs=one)) for one in ldrs]
            shape = (len(ldrs),) + ldrs.shape[2:4] + (contract.NUM_COLORS,)
            if batch == 0:  # no batch dimension: one tile per request
                return self._infer_plain(f"inference of scene {scene.name} (tiles)", *parts[0], shape[1:])[None]
            return self._infer_plain(f"inference of scene {scene.name} (tiles)", np.concatenate([p[0] for p in parts]),
                                     np.concatenate([p[1] for p in parts]), shape)

        try:
            return tiling.infer_tiled(np.asarray(scene.ldrs), scene.evs, infer_batch, tile=tile,
                                      batch_size=max(1, batch), in_flight=tiling.TILES_IN_FLIGHT)
        except tiling.TilingError as exc:
            raise SceneError(f"scene {scene.name}: {exc}") from None

    @staticmethod
    def _inputs(ldr: np.ndarray, ev: np.ndarray) -> list:
        return [grpcclient.InferInput(contract.INPUT_LDR, list(ldr.shape), _WIRE_DTYPES[ldr.dtype]),
                grpcclient.InferInput(contract.INPUT_EV, list(ev.shape), _WIRE_DTYPES[ev.dtype])]

    def _run(self, what, inputs, output, out_shape):
        result = self._call(what, self._client.infer, self.model, inputs, outputs=[output])
        meta = result.get_output(contract.OUTPUT_HDR)
        shape = tuple(meta.shape) if meta is not None else None
        if shape != tuple(out_shape) or (meta is not None and meta.datatype != "FP32"):
            raise InferenceError(f"{what}: the server answered {contract.OUTPUT_HDR} "
                                 f"{meta.datatype if meta else 'missing'} {shape}, expected FP32 {out_shape}")
        return result

    def _infer_plain(self, what, ldr, ev, out_shape) -> np.ndarray:
        inputs = self._inputs(ldr, ev)
        inputs[0].set_data_from_numpy(ldr)
        inputs[1].set_data_from_numpy(ev)
        result = self._run(what, inputs, grpcclient.InferRequestedOutput(contract.OUTPUT_HDR), out_shape)
        return result.as_numpy(contract.OUTPUT_HDR)

    def _infer_system_shm(self, what, ldr, ev, out_shape) -> np.ndarray:
        # One region holds LDR | EV | HDR at aligned offsets.
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
                self._run(what, inputs, output, out_shape)
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

    def _infer_cuda_shm(self, what, ldr, ev, out_shape) -> np.ndarray:
        # Inputs share one device region (set_shared_memory_region copies the arrays back to back); the output
        # has its own, because get_contents_as_numpy reads from offset 0.
        cudashm = self._cudashm
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
                           name, cudashm.get_raw_handle(handle), self.cuda_device, size)
                registered.append(name)
            inputs = self._inputs(ldr, ev)
            inputs[0].set_shared_memory(names[0], ldr.nbytes, offset=0)
            inputs[1].set_shared_memory(names[0], ev.nbytes, offset=ldr.nbytes)
            output = grpcclient.InferRequestedOutput(contract.OUTPUT_HDR)
            output.set_shared_memory(names[1], out_bytes)
            self._run(what, inputs, output, out_shape)
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

    def _run_one(self, index: int, item: Union[Scene, SceneSource]) -> SceneResult:
        start = time.monotonic()
        scene = None
        try:
            scene = item.load() if isinstance(item, SceneSource) else item
            hdr = self.infer(scene)
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

        def work(index, item):
            result = self._run_one(index, item)
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
            for future in pending:
                future.cancel()
            executor.shutdown(wait=True)
            bar.close()
