"""Serving benchmark: latency percentiles and throughput of Triton at fixed concurrency levels.

Two load generators, both closed-loop (each of `concurrency` clients sends its next request when its previous
answer has arrived), both bounded in request count and time, loopback only:
- perf_analyzer, the C++ tool of the tritonclient 2.51.0 wheel (`bin/perf_analyzer`). It needs libb64.so.0d and
  libcudart.so.12, which the nvidia-pytriton wheel carries under hashed names in `nvidia_pytriton.libs`: we link
  them under their sonames into a private folder on LD_LIBRARY_PATH.
- our own asyncio generator over tritonclient.grpc.aio, whose latency includes what a Python client pays: tensor
  serialisation (plain gRPC) or the copies into and out of the shared-memory region (shm).

Transports: plain gRPC (tensors in the messages), system shared memory (inputs and output in a POSIX region
registered with the server; only control messages over gRPC), CUDA shared memory (GPU servers; needs cuda-python).
"""
from __future__ import annotations

import asyncio
import base64
import csv
import glob
import importlib.metadata
import json
import os
import re
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from multiprocessing import shared_memory
from pathlib import Path
from typing import Optional

import numpy as np

from client import contract
from benchmarks.backends import Unavailable
from benchmarks.inputs import Frame
from benchmarks.stats import summarize

__all__ = ["Endpoint", "endpoint", "start_cpu_server", "LevelResult", "run_loadgen", "PerfAnalyzer",
           "TRANSPORTS"]

TRANSPORTS = ("grpc", "system_shm", "cuda_shm")
_ALIGN = 64
_CLIENT_TIMEOUT_S = 600


def _aligned(n: int) -> int:
    return (n + _ALIGN - 1) // _ALIGN * _ALIGN




@dataclass
class Endpoint:
    url: str
    label: str
    ldr_dtype: str
    max_batch_size: int
    local: bool  # loopback: system shared memory works
    gpu: bool    # a TensorRT plan (the GPU variant), else the CPU python backend + ONNX Runtime

    @property
    def bare_backend(self) -> str:
        """The in-process backend the served model wraps: the serving overhead's denominator."""
        return "tensorrt-plugin-fp16" if self.gpu else "onnxruntime-fp32-cpu"


def endpoint(url: str) -> Endpoint:
    """The served `adnet` model at `url` (host:port of gRPC): LDR type and variant from its config."""
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(url)
    try:
        if not client.is_model_ready(contract.MODEL_NAME):
            raise RuntimeError(f"model {contract.MODEL_NAME!r} is not ready at {url}")
        config = client.get_model_config(contract.MODEL_NAME, as_json=True)["config"]
    finally:
        client.close()
    types = {i["name"]: i["data_type"] for i in config["input"]}
    ldr_type = types.get(contract.INPUT_LDR, "TYPE_UINT8")
    ldr_dtype = {v: k for k, v in contract.LDR_DTYPES.items()}.get(ldr_type, "uint8")
    host = url.rsplit(":", 1)[0]
    gpu = config.get("platform") == "tensorrt_plan" or config.get("backend") == "tensorrt"
    label = (f"Triton TensorRT plan at {url}" if gpu else
             "Triton 2.51 CPU (python backend + ONNX Runtime)" if config.get("backend") == "python" else
             f"Triton {config.get('platform') or config.get('backend')} at {url}")
    return Endpoint(url, label, ldr_dtype, int(config.get("max_batch_size", 0)),
                    host in ("127.0.0.1", "localhost", "::1", "[::1]"), gpu)


def start_cpu_server(onnx: Path, stage: Path):
    """A tritonserver (model_repository/cpu: python backend + ONNX Runtime) on free loopback ports; started."""
    from model_repository.server import TritonServer, free_port, stage_cpu_repository

    repo = stage_cpu_repository(onnx, stage)
    server = TritonServer(repo, grpc_port=free_port(), http_port=free_port(), metrics_port=free_port(), stage=stage)
    return server.start()


@dataclass
class LevelResult:
    samples_ms: list
    duration_s: float
    errors: list = field(default_factory=list)
    reported: Optional[dict] = None  # statistics a tool computed itself (perf_analyzer), instead of samples
    server: dict = field(default_factory=dict)  # the server's own averages over the level (queue, compute)

    def row(self) -> dict:
        if self.reported is not None:
            return {"duration_s": self.duration_s, "errors": len(self.errors), **self.reported}
        stats = summarize(self.samples_ms)
        done = len(self.samples_ms)
        return {"requests": done, "duration_s": self.duration_s,
                "throughput_rps": done / self.duration_s if self.duration_s > 0 and done else None,
                "p50_ms": stats["median_ms"], "p90_ms": stats["p90_ms"], "p99_ms": stats["p99_ms"],
                "mean_ms": stats["mean_ms"], "errors": len(self.errors), **self.server}


# ---- our asyncio load generator --------------------------------------------------------------------------------

class _Slot:
    """One client's inputs/output exchange: plain tensors, a system shared-memory region, or CUDA regions."""

    def __init__(self, transport: str, in_bytes: int, out_bytes: int, headers: Optional[dict] = None):
        self.transport = transport
        self.headers = headers  # the admin token: registering shared memory is restricted, loopback too
        self.name = f"adnet_bench_{os.getpid()}_{uuid.uuid4().hex[:12]}"
        self.in_bytes, self.out_bytes = in_bytes, out_bytes
        self.registered: list[str] = []
        self.memory = None
        self.cuda = None

    async def open(self, client):
        if self.transport == "system_shm":
            size = _aligned(self.in_bytes) + self.out_bytes
            self.memory = shared_memory.SharedMemory(name=self.name, create=True, size=size)
            await client.register_system_shared_memory(self.name, "/" + self.name, size, headers=self.headers)
            self.registered.append(self.name)
        elif self.transport == "cuda_shm":
            import tritonclient.utils.cuda_shared_memory as cudashm

            self.cuda = cudashm
            self.cuda_in = cudashm.create_shared_memory_region(self.name + "_in", self.in_bytes, 0)
            self.cuda_out = cudashm.create_shared_memory_region(self.name + "_out", self.out_bytes, 0)
            for region, size in ((self.cuda_in, self.in_bytes), (self.cuda_out, self.out_bytes)):
                suffix = "_in" if region is self.cuda_in else "_out"
                await client.register_cuda_shared_memory(self.name + suffix, cudashm.get_raw_handle(region), 0, size,
                                                         headers=self.headers)
                self.registered.append(self.name + suffix)

    async def infer(self, client, frame: Frame) -> np.ndarray:
        import tritonclient.grpc as g
        from tritonclient.utils import np_to_triton_dtype

        ldr_type = np_to_triton_dtype(frame.ldr.dtype)
        inputs = [g.InferInput(contract.INPUT_LDR, list(frame.ldr.shape), ldr_type),
                  g.InferInput(contract.INPUT_EV, list(frame.ev.shape), "FP32")]
        output = g.InferRequestedOutput(contract.OUTPUT_HDR)
        ev_offset = _aligned(frame.ldr.nbytes)
        if self.transport == "grpc":
            inputs[0].set_data_from_numpy(frame.ldr)
            inputs[1].set_data_from_numpy(frame.ev)
        elif self.transport == "system_shm":
            buf = self.memory.buf
            np.ndarray(frame.ldr.shape, frame.ldr.dtype, buffer=buf)[...] = frame.ldr
            np.ndarray(frame.ev.shape, frame.ev.dtype, buffer=buf, offset=ev_offset)[...] = frame.ev
            inputs[0].set_shared_memory(self.name, frame.ldr.nbytes)
            inputs[1].set_shared_memory(self.name, frame.ev.nbytes, offset=ev_offset)
            output.set_shared_memory(self.name, self.out_bytes, offset=_aligned(self.in_bytes))
        else:
            self.cuda.set_shared_memory_region(self.cuda_in, [frame.ldr, frame.ev])
            inputs[0].set_shared_memory(self.name + "_in", frame.ldr.nbytes)
            inputs[1].set_shared_memory(self.name + "_in", frame.ev.nbytes, offset=frame.ldr.nbytes)
            output.set_shared_memory(self.name + "_out", self.out_bytes)
        result = await client.infer(contract.MODEL_NAME, inputs, outputs=[output], client_timeout=_CLIENT_TIMEOUT_S)
        if self.transport == "grpc":
            return result.as_numpy(contract.OUTPUT_HDR)
        shape = list(result.get_output(contract.OUTPUT_HDR).shape)
        if self.transport == "system_shm":
            return np.ndarray(shape, np.float32, buffer=self.memory.buf, offset=_aligned(self.in_bytes)).copy()
        return self.cuda.get_contents_as_numpy(self.cuda_out, "FP32", shape).copy()

    async def close(self, client):
        for name in self.registered:
            unregister = (client.unregister_system_shared_memory if self.transport == "system_shm"
                          else client.unregister_cuda_shared_memory)
            for attempt in range(10):  # Triton holds a region for a moment after answering
                try:
                    await unregister(name, headers=self.headers)
                    break
                except Exception:
                    await asyncio.sleep(0.1 * (attempt + 1))
        self.registered.clear()
        if self.memory is not None:
            self.memory.close()
            self.memory.unlink()
            self.memory = None
        if self.cuda is not None:
            self.cuda.destroy_shared_memory_region(self.cuda_in)
            self.cuda.destroy_shared_memory_region(self.cuda_out)
            self.cuda = None


def _admin_headers(url: str) -> Optional[dict]:
    """The admin token of a local server manager listening at `url`, from its 0600 token file (if there is one)."""
    port = url.rsplit(":", 1)[-1]
    path = contract.admin_token_path(int(port)) if port.isdigit() else None
    if path is None or not path.is_file():
        return None
    return {contract.GRPC_ADMIN_HEADER: path.read_text().strip()}


async def _load(url: str, frames: list[Frame], concurrency: int, transport: str, requests: int,
                max_seconds: float, warmup: int) -> LevelResult:
    import tritonclient.grpc.aio as grpcaio

    in_bytes = max(_aligned(f.ldr.nbytes) + f.ev.nbytes for f in frames)
    out_bytes = max(int(np.prod(f.ldr.shape[:1] + f.ldr.shape[2:4])) * contract.NUM_COLORS * 4 for f in frames)
    client = grpcaio.InferenceServerClient(url)
    slots = [_Slot(transport, in_bytes, out_bytes, _admin_headers(url)) for _ in range(concurrency)]
    samples, errors = [], []
    try:
        for slot in slots:
            await slot.open(client)
        for i in range(warmup):
            await slots[0].infer(client, frames[i % len(frames)])
        issued = 0
        deadline = time.perf_counter() + max_seconds

        async def worker(slot: _Slot):
            nonlocal issued
            while issued < requests and time.perf_counter() < deadline:
                frame = frames[issued % len(frames)]
                issued += 1  # one event loop: no lock needed
                t0 = time.perf_counter()
                try:
                    await slot.infer(client, frame)
                except Exception as exc:  # recorded; the level goes on
                    errors.append(str(exc).splitlines()[0][:300])
                    continue
                samples.append((time.perf_counter() - t0) * 1e3)

        before = await _server_stats(client)
        start = time.perf_counter()
        await asyncio.gather(*(worker(slot) for slot in slots))
        duration = time.perf_counter() - start
        after = await _server_stats(client)
    finally:
        for slot in slots:
            try:
                await slot.close(client)
            except Exception:
                pass
        await client.close()
    result = LevelResult(samples, duration, errors)
    if before and after:
        result.server = {f"server_{k}_ms": (after[k][1] - before[k][1]) / max(after[k][0] - before[k][0], 1) / 1e6
                         for k in ("queue", "compute_infer")}
    return result


async def _server_stats(client) -> Optional[dict]:
    """{"queue": (count, ns), "compute_infer": (count, ns)} of the model, cumulative; None if unavailable."""
    try:
        stats = await client.get_inference_statistics(contract.MODEL_NAME, as_json=True)
        inference = stats["model_stats"][0]["inference_stats"]
        return {k: (int(inference[k].get("count", 0)), int(inference[k].get("ns", 0)))
                for k in ("queue", "compute_infer")}
    except Exception:
        return None


def run_loadgen(url: str, frames: list[Frame], concurrency: int, transport: str = "grpc", *, requests: int,
                max_seconds: float, warmup: int = 1) -> LevelResult:
    """Closed loop at `concurrency` until `requests` are issued or `max_seconds` have passed (answers in flight
    are awaited); `warmup` untimed requests first."""
    if transport == "cuda_shm":
        try:
            import tritonclient.utils.cuda_shared_memory  # noqa: F401
        except (ImportError, RuntimeError) as exc:
            raise Unavailable(f"CUDA shared memory needs a GPU host with cuda-python installed ({exc})") from exc
    return asyncio.run(_load(url, frames, concurrency, transport, requests, max_seconds, warmup))


# ---- perf_analyzer ---------------------------------------------------------------------------------------------

# soname perf_analyzer needs -> file-name pattern of the copy inside nvidia-pytriton's wheel (auditwheel renames)
_NEEDED = {"libb64.so.0d": "libb64*.so.0d", "libcudart.so.12": "libcudart*.so.12*"}


class PerfAnalyzer:
    """perf_analyzer from the tritonclient wheel, made runnable (library links) in `work`; raises Unavailable."""

    def __init__(self, work: Path):
        self.exe = self._find()
        self.libs = Path(work) / "perf_analyzer_libs"
        self.env = dict(os.environ)
        self._link_libraries()
        self.env["LD_LIBRARY_PATH"] = os.pathsep.join(
            [str(self.libs)] + ([self.env["LD_LIBRARY_PATH"]] if self.env.get("LD_LIBRARY_PATH") else []))
        probe = subprocess.run([str(self.exe), "--version"], env=self.env, capture_output=True, text=True,
                               timeout=30)
        if probe.returncode != 0:
            tail = (probe.stderr or probe.stdout).strip().splitlines()[-1:] or [f"exit code {probe.returncode}"]
            raise Unavailable(f"{self.exe} cannot run: {tail[0]}")
        self.version = probe.stdout.strip()

    @staticmethod
    def _find() -> Path:
        try:
            dist = importlib.metadata.distribution("tritonclient")
        except importlib.metadata.PackageNotFoundError as exc:
            raise Unavailable("tritonclient is not installed (`make setup`)") from exc
        for entry in dist.files or []:
            if str(entry).endswith("bin/perf_analyzer"):
                path = Path(dist.locate_file(entry)).resolve()
                if path.is_file():
                    return path
        raise Unavailable(f"tritonclient {dist.version} has no bin/perf_analyzer (only the 2.51.0 manylinux1 wheel "
                          f"ships the binary; `pip show -f tritonclient` lists the files)")

    def _link_libraries(self) -> None:
        missing = [so for so in _NEEDED if not self._system_has(so)]
        if not missing:
            return
        try:
            pytriton = importlib.metadata.distribution("nvidia-pytriton")
            libs_dir = Path(pytriton.locate_file("nvidia_pytriton.libs"))
        except importlib.metadata.PackageNotFoundError:
            libs_dir = None
        self.libs.mkdir(parents=True, exist_ok=True)
        for soname in missing:
            found = sorted(glob.glob(str(libs_dir / _NEEDED[soname]))) if libs_dir and libs_dir.is_dir() else []
            if not found:
                raise Unavailable(f"perf_analyzer needs {soname}: not found on this system nor in nvidia-pytriton's "
                                  f"libs ({libs_dir}); `make setup` installs nvidia-pytriton==0.7.0 (or apt-get "
                                  f"install libb64-0d for libb64)")
            link = self.libs / soname
            if link.is_symlink() or link.exists():
                link.unlink()
            link.symlink_to(found[0])

    @staticmethod
    def _system_has(soname: str) -> bool:
        try:
            out = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True, timeout=10).stdout
        except (OSError, subprocess.TimeoutExpired):
            return False
        return any(line.strip().startswith(soname + " ") for line in out.splitlines())

    @staticmethod
    def write_input_data(frames: list[Frame], path: Path) -> Path:
        """perf_analyzer's JSON input format: one entry per input set (batch-1 tensors without the batch axis)."""
        data = [{contract.INPUT_LDR: {"b64": base64.b64encode(np.ascontiguousarray(f.ldr[0]).tobytes()).decode(),
                                      "shape": list(f.ldr.shape[1:])},
                 contract.INPUT_EV: {"b64": base64.b64encode(np.ascontiguousarray(f.ev[0]).tobytes()).decode(),
                                     "shape": list(f.ev.shape[1:])}} for f in frames]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"data": data}))
        return path

    def run(self, url: str, data: Path, concurrency: int, transport: str, *, requests: int, out_bytes: int,
            timeout: float, report: Path) -> LevelResult:
        cmd = [str(self.exe), "-m", contract.MODEL_NAME, "-i", "grpc", "-u", url, "--input-data", str(data),
               "--concurrency-range", f"{concurrency}:{concurrency}", "--request-count", str(requests),
               "-f", str(report)]
        if transport != "grpc":
            cmd += ["--shared-memory", {"system_shm": "system", "cuda_shm": "cuda"}[transport],
                    "--output-shared-memory-size", str(out_bytes)]
            # Registering shared memory needs the local manager's admin token (gRPC metadata; on this benchmark's
            # own loopback server the token shows in perf_analyzer's command line while it runs).
            for key, value in (_admin_headers(url) or {}).items():
                cmd += ["-H", f"{key}:{value}"]
        report.unlink(missing_ok=True)
        try:
            proc = subprocess.run(cmd, env=self.env, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            raise RuntimeError(f"perf_analyzer did not finish within {timeout:.0f} s") from exc
        if proc.returncode != 0 or not report.is_file():
            lines = [ln for ln in (proc.stderr + proc.stdout).splitlines() if ln.strip()]
            raise RuntimeError(f"perf_analyzer exited with {proc.returncode}: {' | '.join(lines[-3:])}")
        with open(report, newline="") as f:
            row = next(csv.DictReader(f))
        rate = float(row["Inferences/Second"])
        count = re.search(r"Request count:\s*(\d+)", proc.stdout)
        avg = re.search(r"Avg latency:\s*(\d+) usec", proc.stdout)
        done = int(count.group(1)) if count else requests
        reported = {"requests": done, "throughput_rps": rate,
                    "p50_ms": float(row["p50 latency"]) / 1e3, "p90_ms": float(row["p90 latency"]) / 1e3,
                    "p99_ms": float(row["p99 latency"]) / 1e3, "mean_ms": float(avg.group(1)) / 1e3 if avg else None,
                    "server_queue_ms": float(row["Server Queue"]) / 1e3,
                    "server_compute_infer_ms": float(row["Server Compute Infer"]) / 1e3}
        return LevelResult([], done / rate if rate > 0 else 0.0, reported=reported)
