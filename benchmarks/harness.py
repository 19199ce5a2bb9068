"""One benchmark run: compute floor, latency, serving, accuracy; every skip and failure recorded with its reason.

    cfg = make_config(quick=True, gpu=False, cpu_cores=2)
    results = run(cfg)                      # the JSON-able result (machine, config, rows, skipped, goals)
    files = save(results, cfg)              # CSV + JSON + PNG under cfg.out

A part or backend that cannot run here (no GPU, no TensorRT, no perf_analyzer) becomes an entry of
results["skipped"] with the reason; one that fails while running becomes a row with status "error" and the error
message, and the run goes on.
"""
from __future__ import annotations

import math
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Callable, Optional

from client import contract
from benchmarks import compute, machine, report
from benchmarks.accuracy import compare, summarize_scores
from benchmarks.backends import (PYTORCH_FP32_CPU, PYTORCH_FP32_CUDA, Backend, OnnxRuntime, TensorRTEngine,
                                 TorchPipeline, TritonGrpc, Unavailable, tensorrt_reason, torch_cuda_reason)
from benchmarks.config import CPU_MAX_PIXELS, NTIRE, BenchConfig
from benchmarks.inputs import format_size, ntire_folder_frames, synthetic_frames
from benchmarks.latency import measure
from client.errors import AdnetError

__all__ = ["BenchError", "run", "save", "load_network", "graph_ldr_dtype"]

ROOT = Path(__file__).resolve().parents[1]
CPU_OVERHEAD_GOAL = 1.15
GPU_OVERHEAD_GOAL = 1.10
GPU_NTIRE_MS_GOAL = 35.0
GPU_SPEEDUP_GOAL = 20.0
PSNR_MU_GOAL_DB = 50.0
PERF_ANALYZER_NOTE = "throughput as perf_analyzer counts it, over whole-second windows (coarse for few requests)"


class BenchError(AdnetError, RuntimeError):
    """The run cannot start (inputs missing or inconsistent); the message names the fix."""


# ---- inputs and weights ------------------------------------------------------------------------------------------

def _metadata(path: Path) -> dict:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return {p.key: p.value for p in model.metadata_props}


def graph_ldr_dtype(path: Path) -> str:
    """'uint8' or 'float16': the LDR input type of a pipeline ONNX graph."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    types = {i.name: i.type.tensor_type.elem_type for i in graph.input}
    if contract.INPUT_LDR not in types:
        raise BenchError(f"{path} is not a pipeline graph (no {contract.INPUT_LDR} input); export it with `make onnx`")
    return "float16" if types[contract.INPUT_LDR] == onnx.TensorProto.FLOAT16 else "uint8"


def load_network(path: Path):
    """ADNet with the weights stored in the FP32 pipeline graph itself (initializers `net.<state_dict key>`), so that
    the PyTorch reference runs exactly the network the ONNX/Triton backends run, whatever checkpoint (or seed) the
    graph was exported from. Returns (net, where the weights came from: the graph's adnet.weights metadata)."""
    import onnx
    import torch
    from onnx import numpy_helper

    from export.adnet import ADNet

    model = onnx.load(str(path))
    weights = {p.key: p.value for p in model.metadata_props}.get("adnet.weights", "unspecified")
    stored = {init.name: init for init in model.graph.initializer}
    net = ADNet()
    state = {}
    for key, tensor in net.state_dict().items():
        init = stored.get("net." + key)
        if init is None:
            raise BenchError(f"{path} has no initializer net.{key}: not an FP32 pipeline export of this ADNet; "
                             f"re-export it with `make onnx`")
        value = torch.from_numpy(numpy_helper.to_array(init).copy())
        if value.shape != tensor.shape or value.dtype != torch.float32:
            raise BenchError(f"{path}: net.{key} is {value.dtype} {tuple(value.shape)}, expected float32 "
                             f"{tuple(tensor.shape)}: pass the FP32 pipeline graph (build/adnet.onnx)")
        state[key] = value
    net.load_state_dict(state, strict=True)
    return net.eval(), weights


# ---- backends ----------------------------------------------------------------------------------------------------

# TensorRT's built-in ModulatedDeformConv2d sizes its im2col workspace as C * K * Ho * Wo * bytes in int32 up to
# TensorRT 10.10 (docs/design.md §4); 10.11 computes it in int64. ADNet's DCNs have
# C = 64 channels and K = 9 taps at full resolution (L1), so 10.5 overflows above 1,864,135 FP16 output pixels:
# 1060x1900 (2.01 Mpx, 2.32e9 bytes) cannot be built, 1000x1500 can.
BUILTIN_DCN_INT64_FROM = (10, 11)
BUILTIN_DCN_CHANNELS, BUILTIN_DCN_TAPS = 64, 9
INT32_MAX = 2 ** 31 - 1


def builtin_dcn_max_pixels(trt_version: str, precision: str = "fp16") -> Optional[int]:
    """The largest Ho * Wo whose workspace TensorRT `trt_version`'s ModulatedDeformConv2d can size at ADNet's DCN
    shape; None when it computes the size in int64."""
    if tuple(int(v) for v in trt_version.split(".")[:2]) >= BUILTIN_DCN_INT64_FROM:
        return None
    element = {"fp16": 2, "fp32": 4}[precision]
    return INT32_MAX // (BUILTIN_DCN_CHANNELS * BUILTIN_DCN_TAPS * element)


def builtin_dcn_overflow_reason(trt_version: str, h: int, w: int) -> Optional[str]:
    """Why the built-in DeformConv engine cannot run an H x W frame on this TensorRT, or None when it can."""
    limit = builtin_dcn_max_pixels(trt_version)
    ph, pw = compute.padded(h, w)
    if limit is None or ph * pw <= limit:
        return None
    need = BUILTIN_DCN_CHANNELS * BUILTIN_DCN_TAPS * 2 * ph * pw
    return (f"TensorRT {trt_version}'s built-in ModulatedDeformConv2d computes its im2col workspace "
            f"(C*K*Ho*Wo*2 = {need:.3g} bytes at {ph}x{pw}) in int32, which overflows above {limit:,} output pixels; "
            f"fixed (int64) in TensorRT {'.'.join(map(str, BUILTIN_DCN_INT64_FROM))}")


def ensure_builtin_plan(cfg: BenchConfig, log: Callable) -> tuple[Path, dict]:
    """The FP16 engine of the *unsurgered* graph, whose DeformConv nodes TensorRT's ONNX parser maps to its built-in
    ModulatedDeformConv2d plugin (the anchor our plugin must beat): built here on first use (minutes), without our
    plugin library, strongly typed from the FP16 graph, with a profile up to the largest latency size this TensorRT
    can size the plugin's workspace for. Returns (plan, {size: reason} for the sizes it cannot run)."""
    from export import trt_compat
    from export.engine_files import read_sidecar

    reason = tensorrt_reason()
    if reason:
        raise Unavailable(reason)
    version = trt_compat.load("tensorrt").version
    skipped = {format_size(s): r for s in cfg.sizes if (r := builtin_dcn_overflow_reason(version, *s))}
    fitting = [s for s in cfg.sizes if format_size(s) not in skipped]
    if not fitting:
        raise Unavailable("no latency size fits: " + next(iter(skipped.values())))
    largest = max(fitting, key=lambda s: s[0] * s[1])
    profile = [f"1x{h}x{w}" for h, w in (min(fitting, key=lambda s: s[0] * s[1]), largest, largest)]
    plan = Path(cfg.builtin_plan)
    side = read_sidecar(plan) if plan.is_file() else None
    wanted = [[int(v) for v in p.split("x")] for p in profile]
    if side and side["tensorrt"]["version"] == version and [side["profiles"][0][k] for k in ("min", "opt", "max")] \
            == wanted:
        return plan, skipped
    cmd = [sys.executable, "-m", "export.build_engine", "--onnx", str(cfg.onnx_fp16), "--out", str(plan),
           "--no-plugin", "--no-progress", "--min", profile[0], "--opt", profile[1], "--max", profile[2]]
    log(f"building the built-in-DeformConv engine: {' '.join(cmd)}")
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0 or not plan.is_file():
        tail = " | ".join((proc.stderr or proc.stdout).strip().splitlines()[-3:])
        raise Unavailable(f"TensorRT could not build the built-in-DeformConv engine: {tail}")
    return plan, skipped


def _builtin_engine(cfg: BenchConfig, log: Callable) -> Backend:
    plan, skipped = ensure_builtin_plan(cfg, log)
    return TensorRTEngine(plan, name="tensorrt-builtin-fp16", label="TensorRT FP16, built-in DeformConv",
                          note="ONNX DeformConv imported by TensorRT's parser (ModulatedDeformConv2d: im2col + GEMM)",
                          unsupported_sizes=skipped)


def _latency_candidates(cfg: BenchConfig, net, log: Callable) -> list[tuple[str, Callable[[], Backend]]]:
    return [
        (PYTORCH_FP32_CPU, lambda: TorchPipeline(net, "cpu", "fp32")),
        ("onnxruntime-fp32-cpu", lambda: OnnxRuntime(cfg.onnx, provider="cpu", name="onnxruntime-fp32-cpu",
                                                     label="ONNX Runtime FP32 (CPU EP)")),
        (PYTORCH_FP32_CUDA, lambda: TorchPipeline(net, "cuda", "fp32")),
        ("pytorch-fp16-cuda", lambda: TorchPipeline(net, "cuda", "fp16")),
        ("onnxruntime-fp32-cuda", lambda: OnnxRuntime(cfg.onnx, provider="cuda", name="onnxruntime-fp32-cuda",
                                                      label="ONNX Runtime FP32 (CUDA EP)")),
        ("tensorrt-plugin-fp16", lambda: TensorRTEngine(cfg.plan, name="tensorrt-plugin-fp16",
                                                        label="TensorRT FP16 + AdnetDCNv2 plugin")),
        ("tensorrt-builtin-fp16", lambda: _builtin_engine(cfg, log)),
    ]


def _accuracy_candidates(cfg: BenchConfig) -> list[tuple[str, Callable[[], Backend]]]:
    return [
        ("onnxruntime-fp16-cpu", lambda: OnnxRuntime(cfg.onnx_fp16, provider="cpu", name="onnxruntime-fp16-cpu",
                                                     label="ONNX Runtime, FP16 graph (CPU EP)", precision="fp16")),
        ("twin-fp32-cpu", lambda: OnnxRuntime(cfg.onnx_plugin, provider="twin", name="twin-fp32-cpu",
                                              label="surgered FP32 graph, plugin's CPU twin")),
        ("twin-fp16-cpu", lambda: OnnxRuntime(cfg.onnx_plugin_fp16, provider="twin", name="twin-fp16-cpu",
                                              label="surgered FP16 graph, plugin's CPU twin", precision="fp16")),
    ]


# ---- the run -----------------------------------------------------------------------------------------------------

class _Run:
    def __init__(self, cfg: BenchConfig, log: Callable):
        self.cfg, self.log = cfg, log
        self.results: dict = {"format": report.FORMAT, "machine": {}, "config": cfg.to_dict(), "weights": None,
                              "compute": {}, "latency": [], "serving": [], "accuracy": [],
                              "accuracy_per_scene": [], "skipped": [], "goals": []}
        self.backends: dict[str, Backend] = {}
        self.unavailable: dict[str, str] = {}  # backends tried once and found unavailable (recorded then)
        self.peaks: dict[tuple[str, str], float] = {}
        self.macs: Optional[compute.MacCount] = None
        self.server = None
        self.endpoint = None

    def skip(self, part: str, what: str, reason: str) -> None:
        self.results["skipped"].append({"part": part, "what": what, "reason": reason})
        self.log(f"skipped {part}: {what}: {reason}")

    def error(self, part: str, what: str, exc: BaseException) -> str:
        message = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"[:500]
        self.log(f"ERROR in {part}, {what}: {message}")
        self.results.setdefault("errors", []).append({"part": part, "what": what, "error": message,
                                                      "traceback": traceback.format_exc(limit=6)})
        return message

    def build(self, part: str, candidates) -> list[Backend]:
        built = []
        for name, factory in candidates:
            if name in self.backends:
                built.append(self.backends[name])
                continue
            if name in self.unavailable:
                continue
            try:
                backend = factory()
            except Unavailable as exc:
                self.unavailable[name] = str(exc)
                self.skip(part, name, str(exc))
                continue
            except Exception as exc:  # a backend that should work but does not: say so, go on
                self.unavailable[name] = "failed to start: " + self.error(part, name, exc)
                self.skip(part, name, self.unavailable[name])
                continue
            self.backends[name] = backend
            built.append(backend)
        return built

    # -- compute floor --
    def compute_floor(self, net) -> None:
        self.macs = compute.count_macs(net)
        self.results["compute"]["macs"] = self.macs.to_dict()
        self.log(f"MACs: {self.macs.per_pixel:,.0f} per pixel -> {self.macs.to_dict()['tmac_at_1060x1900']:.4f} TMAC "
                 f"at 1060x1900 (docs/design.md: {compute.DESIGN_TMAC_NTIRE})")
        peaks = [("cpu", "float32")]
        if torch_cuda_reason() is None:
            peaks += [("cuda", "float16"), ("cuda", "float32")]
        self.results["compute"]["matmul"] = []
        for device, dtype in peaks:
            rate = compute.matmul_rate(device, dtype, n=1536 if (self.cfg.quick and device == "cpu") else None)
            self.results["compute"]["matmul"].append(rate)
            self.peaks[(device, {"float32": "fp32", "float16": "fp16"}[dtype])] = rate["flops_per_s"]
            self.log(f"matmul {device} {dtype}: {rate['flops_per_s'] / 1e12:.3f} TFLOP/s")

    # -- latency --
    def latency(self, net, ldr_dtype: str) -> None:
        cfg = self.cfg
        for size, reason in cfg.skipped_sizes:
            self.skip("latency", f"size {format_size(size)}", reason)
        backends = self.build("latency", _latency_candidates(cfg, net, self.log))
        for h, w in cfg.sizes:
            frames = synthetic_frames(h, w, cfg.input_sets, ldr_dtype)
            rows = []
            for backend in backends:
                row = {**backend.describe(), "backend": backend.name, "size": format_size((h, w)), "height": h,
                       "width": w, "megapixels": h * w / 1e6}
                del row["name"]
                cannot = backend.unsupported(h, w)
                if backend.device == "cpu" and h * w > CPU_MAX_PIXELS and not cfg.sizes_explicit:
                    cannot = (f"CPU backend above {CPU_MAX_PIXELS:,} pixels: minutes per frame; ask with "
                              f"SIZES={format_size((h, w))}")
                if cannot:
                    row.update(status="skipped", note=cannot)
                    self.skip("latency", f"{backend.name} at {format_size((h, w))}", cannot)
                    rows.append(row)
                    continue
                try:
                    timing = measure(backend, frames, warmup=cfg.warmup, runs=cfg.runs, min_runs=cfg.min_runs,
                                     max_seconds=cfg.max_seconds)
                except Exception as exc:
                    row.update(status="error", note=self.error("latency", f"{backend.name} {h}x{w}", exc))
                    rows.append(row)
                    continue
                stats = timing.summary()
                row.update(status="ok", warmup=timing.warmup, runs=timing.runs, input_sets=timing.input_sets,
                           **{k: v for k, v in stats.items() if k != "n"})
                if timing.capped:
                    row["note"] = (row.get("note", "") + f"; runs cut to {timing.runs} to fit "
                                   f"{cfg.max_seconds:.0f} s").lstrip("; ")
                self._floor(row, backend, h, w)
                rows.append(row)
                self.log(f"latency {h}x{w} {backend.name}: median {stats['median_ms']:.1f} ms, p90 "
                         f"{stats['p90_ms']:.1f}, p99 {stats['p99_ms']:.1f} ({timing.runs} runs)")
            base = next((r for name in (PYTORCH_FP32_CUDA, PYTORCH_FP32_CPU) for r in rows
                         if r["backend"] == name and r.get("status") == "ok"), None)
            for row in rows:
                if base and row.get("status") == "ok":
                    row["baseline"] = base["backend"]
                    row["speedup_vs_pytorch_fp32"] = base["median_ms"] / row["median_ms"]
            self.results["latency"] += rows

    def _floor(self, row: dict, backend: Backend, h: int, w: int) -> None:
        macs = self.macs.at(h, w)
        row["gmac"] = macs / 1e9
        row["achieved_tflops"] = 2 * macs / (row["median_ms"] / 1e3) / 1e12
        rate = self.peaks.get((backend.device, backend.precision))
        if rate:
            row["floor_ms"] = 2 * macs / rate * 1e3
            row["floor_fraction"] = row["floor_ms"] / row["median_ms"]

    # -- serving --
    def start_server(self) -> None:
        from benchmarks import serving

        cfg = self.cfg
        if cfg.url:
            self.endpoint = serving.endpoint(cfg.url)
            return
        self.log("starting tritonserver (CPU) ...")
        self.server = serving.start_cpu_server(cfg.onnx, Path(cfg.work) / "triton")
        self.endpoint = serving.endpoint(self.server.grpc_url)

    def bare_latency(self, frames) -> tuple[str, Optional[float]]:
        """p50 of the backend behind the server, in this process, host arrays in and out, at the serving size:
        measured right before the load, with the server idle, so that both see the machine in the same state."""
        name = self.endpoint.bare_backend
        built = self.build("serving", [c for c in _latency_candidates(self.cfg, None, self.log) if c[0] == name])
        if not built:
            return name, None
        timing = measure(built[0], frames, warmup=self.cfg.warmup, runs=self.cfg.runs, min_runs=self.cfg.min_runs,
                         max_seconds=self.cfg.max_seconds, host=True)
        median = timing.summary()["median_ms"]
        self.log(f"serving: bare {name} at {format_size(frames[0].size)}: p50 {median:.1f} ms ({timing.runs} runs)")
        return name, median

    def serving(self) -> None:
        from benchmarks import serving

        cfg, ep = self.cfg, self.endpoint
        frames = synthetic_frames(*cfg.serving_size, cfg.input_sets, ep.ldr_dtype)
        h, w = cfg.serving_size
        bare_name, bare_ms = self.bare_latency(frames)
        if bare_ms is None:
            self.skip("serving", "overhead", f"no bare {bare_name or 'backend'} latency at {h}x{w}")
        transports = ["grpc"]
        if ep.local:
            transports.append("system_shm")
        else:
            self.skip("serving", "system_shm", f"{ep.url} is not on this machine (system shared memory is local)")
        gpu_here = self.results["machine"].get("gpu") is not None
        if ep.gpu and ep.local and gpu_here:
            transports.append("cuda_shm")
        else:
            self.skip("serving", "cuda_shm", "CUDA shared memory needs the GPU server (TensorRT plan, URL=) on this "
                                             "machine, with a GPU here")
        tools: list[tuple[str, Callable]] = [("loadgen", lambda c, t: serving.run_loadgen(
            ep.url, frames, c, t, requests=cfg.requests_at(c), max_seconds=cfg.serving_max_seconds,
            warmup=1 if c == cfg.concurrency[0] else 0))]
        if cfg.perf_analyzer:
            try:
                pa = serving.PerfAnalyzer(Path(cfg.work))
                data = pa.write_input_data(frames, Path(cfg.work) / "perf_analyzer_input.json")
                out_bytes = h * w * contract.NUM_COLORS * 4
                tools.append(("perf_analyzer", lambda c, t: pa.run(
                    ep.url, data, c, t, requests=cfg.requests_at(c), out_bytes=out_bytes,
                    timeout=max(600.0, 10 * cfg.serving_max_seconds), report=Path(cfg.work) / "perf_analyzer.csv")))
                self.results["machine"]["perf_analyzer"] = pa.version
            except Unavailable as exc:
                self.skip("serving", "perf_analyzer", str(exc))
        else:
            self.skip("serving", "perf_analyzer", "disabled (--no-perf-analyzer)")
        for tool, runner in tools:
            for transport in transports:
                for c in cfg.concurrency:
                    row = {"tool": tool, "transport": transport, "server": ep.label, "size": format_size((h, w)),
                           "height": h, "width": w, "concurrency": c, "bare_backend": bare_name,
                           "bare_p50_ms": bare_ms}
                    try:
                        result = runner(c, transport)
                    except Unavailable as exc:
                        self.skip("serving", f"{tool} {transport}", str(exc))
                        break
                    except Exception as exc:
                        row.update(status="error", note=self.error("serving", f"{tool} {transport} c={c}", exc))
                        self.results["serving"].append(row)
                        continue
                    row.update(result.row())
                    if not row.get("requests"):
                        row.update(status="error", note="; ".join(result.errors[:2]) or "no request completed")
                    else:
                        row["status"] = "ok"
                        notes = [PERF_ANALYZER_NOTE] if tool == "perf_analyzer" else []
                        if result.errors:
                            notes.append(f"{len(result.errors)} failed: {result.errors[0]}")
                        row["note"] = "; ".join(notes)
                        if c == 1 and bare_ms:
                            row["overhead_p50"] = row["p50_ms"] / bare_ms
                        self.log(f"serving {tool} {transport} c={c}: p50 {row['p50_ms']:.1f} ms, p99 "
                                 f"{row['p99_ms']:.1f} ms, {row['throughput_rps']:.2f} req/s ({row['requests']} "
                                 f"requests)")
                    self.results["serving"].append(row)

    # -- accuracy --
    def accuracy(self, net, ldr_dtype: str) -> None:
        cfg = self.cfg
        model_backends = self.build("accuracy", _latency_candidates(cfg, net, self.log))
        reference = next((b for b in model_backends if b.name == PYTORCH_FP32_CPU), None)
        if reference is None:
            self.skip("accuracy", "all", f"the reference {PYTORCH_FP32_CPU} is unavailable")
            return
        others = [b for b in model_backends if b is not reference]
        others = others[:1] + self.build("accuracy", _accuracy_candidates(cfg)) + others[1:]
        if self.endpoint is not None:
            others.append(TritonGrpc(self.endpoint.url, name="triton-gpu" if self.endpoint.gpu else "triton-cpu",
                                     label=self.endpoint.label))
        else:
            self.skip("accuracy", "triton", "no server (serving part not run)")
        sets = [("synthetic", synthetic_frames(*cfg.accuracy_size, cfg.accuracy_scenes, ldr_dtype))]
        if cfg.data:
            try:
                sets.append(("data", ntire_folder_frames(cfg.data, ldr_dtype, cfg.data_limit)))
            except (OSError, ValueError) as exc:
                self.skip("accuracy", f"DATA={cfg.data}", str(exc))
        try:
            for kind, frames in sets:
                size = format_size(cfg.accuracy_size) if kind == "synthetic" else f"DATA ({len(frames)} scenes)"
                refs = [reference.infer(f) for f in frames]
                comparisons = [("pytorch-fp32", b, refs) for b in others]
                if kind == "data" and all(f.gt_gamma is not None for f in frames):
                    from client.hdr_math import linearize

                    gts = [linearize(f.gt_gamma) for f in frames]
                    comparisons = [("ground-truth", b, gts) for b in [reference] + others] + comparisons
                elif kind == "data":
                    self.skip("accuracy", "vs ground truth", f"not every scene in {cfg.data} has _gt.png + "
                                                             f"_alignratio.npy")
                for ref_name, backend, ref_outputs in comparisons:
                    self._score(ref_name, backend, frames, ref_outputs, size)
        finally:
            for backend in others:
                if isinstance(backend, TritonGrpc):
                    backend.close()

    def _score(self, ref_name: str, backend: Backend, frames, refs, size: str) -> None:
        row = {"backend": backend.name, "label": backend.label, "reference": ref_name, "size": size,
               "scenes": len(frames)}
        try:
            scores = []
            for frame, ref in zip(frames, refs):
                score = compare(ref, backend.infer(frame))
                scores.append(score)
                self.results["accuracy_per_scene"].append({"backend": backend.name, "reference": ref_name,
                                                           "scene": frame.name, **score})
        except Exception as exc:
            row.update(status="error", note=self.error("accuracy", backend.name, exc))
            self.results["accuracy"].append(row)
            return
        row.update(status="ok", **summarize_scores(scores))
        self.results["accuracy"].append(row)
        self.log(f"accuracy {backend.name} vs {ref_name} ({size}): PSNR-l {row['psnr_l_mean_db']:.1f} dB, PSNR-mu "
                 f"{row['psnr_mu_mean_db']:.1f} dB")

    # -- goals --
    def goals(self) -> None:
        goals = self.results["goals"]
        lat = {(r["backend"], r["size"]): r for r in self.results["latency"] if r.get("status") == "ok"}
        ntire = format_size(NTIRE)
        gpu_name = self.results["machine"].get("gpu")

        def add(goal, value, target_met, note=""):
            goals.append({"goal": goal, "value": value, "met": target_met, "note": note})

        gpu_server = self.endpoint is not None and self.endpoint.gpu
        for row in self.results["serving"]:
            if row.get("concurrency") != 1 or row.get("overhead_p50") is None:
                continue
            if gpu_server and row["transport"] != "cuda_shm":
                continue  # the GPU goal is stated for CUDA shared memory only
            target = GPU_OVERHEAD_GOAL if gpu_server else CPU_OVERHEAD_GOAL
            add(f"{'GPU' if gpu_server else 'CPU'} serving overhead ({row['tool']}, {row['transport']}): client p50 / "
                f"bare {row['bare_backend']} p50 at concurrency 1 <= {target}",
                round(row["overhead_p50"], 3), row["overhead_p50"] <= target,
                f"{row['p50_ms']:.1f} ms vs {row['bare_p50_ms']:.1f} ms at {row['size']}")
        plugin, builtin = lat.get(("tensorrt-plugin-fp16", ntire)), lat.get(("tensorrt-builtin-fp16", ntire))
        note = "" if plugin else "TensorRT FP16 engine not measured at 1060x1900 (needs a GPU with TensorRT)"
        add(f"TensorRT FP16 + plugin at 1060x1900 <= {GPU_NTIRE_MS_GOAL:.0f} ms on H100",
            round(plugin["median_ms"], 2) if plugin else None,
            (plugin["median_ms"] <= GPU_NTIRE_MS_GOAL) if plugin else None,
            f"measured on {gpu_name}" if plugin else note)
        speedup = plugin.get("speedup_vs_pytorch_fp32") if plugin else None
        add(f"TensorRT FP16 + plugin >= {GPU_SPEEDUP_GOAL:.0f}x PyTorch FP32 eager at 1060x1900",
            round(speedup, 2) if speedup else None, (speedup >= GPU_SPEEDUP_GOAL) if speedup else None,
            f"baseline {plugin.get('baseline')}" if speedup else note)
        # Where TensorRT's built-in DeformConv cannot run 1060x1900 (TensorRT < 10.11), compare at the largest size
        # both engines ran, and say so.
        common = [size for (name, size) in lat if name == "tensorrt-builtin-fp16"
                  and ("tensorrt-plugin-fp16", size) in lat]
        at = ntire if builtin and plugin else max(common, key=lambda z: lat[("tensorrt-plugin-fp16", z)]["megapixels"],
                                                  default=None)
        mine, theirs = (lat[("tensorrt-plugin-fp16", at)], lat[("tensorrt-builtin-fp16", at)]) if at else (None, None)
        builtin_note = next((r["note"] for r in self.results["latency"] if r["backend"] == "tensorrt-builtin-fp16"
                             and r["size"] == ntire and r.get("status") == "skipped"), "")
        add("TensorRT FP16 + plugin faster than TensorRT's built-in DeformConv at 1060x1900",
            f"{mine['median_ms']:.2f} vs {theirs['median_ms']:.2f} ms at {at}" if at else None,
            (mine["median_ms"] < theirs["median_ms"]) if at else None,
            ("" if at == ntire else f"compared at {at}: at 1060x1900 {builtin_note}") if at
            else builtin_note or "both engines needed (GPU with TensorRT)")
        acc = {(r["backend"], r["reference"]): r for r in self.results["accuracy"] if r.get("status") == "ok"}
        for name, what in (("tensorrt-plugin-fp16", "FP16 engine"),
                           ("twin-fp16-cpu", "CPU proxy: surgered FP16 graph on the plugin's CPU twin")):
            row = acc.get((name, "pytorch-fp32"))
            value = row.get("psnr_mu_min_db") if row else None
            add(f"PSNR-mu of the {what} vs PyTorch FP32 >= {PSNR_MU_GOAL_DB:.0f} dB (worst scene)",
                round(value, 2) if value is not None and not math.isinf(value) else value,
                (value >= PSNR_MU_GOAL_DB) if value is not None else None,
                f"{row['size']}, {row['scenes']} scenes" if row else "not measured on this machine")

    def close(self) -> None:
        for backend in self.backends.values():
            try:
                backend.close()
            except Exception:
                pass
        if self.server is not None:
            self.server.stop()
            self.server = None


def run(cfg: BenchConfig, *, log: Callable = print) -> dict:
    """Run the configured parts; returns the result (see report.write_results for the files)."""
    started = time.perf_counter()
    state = _Run(cfg, log)
    results = state.results
    info = machine.describe()
    results["machine"] = info
    for path in (cfg.onnx,):
        if not Path(path).is_file():
            raise BenchError(f"{path} not found: export the graphs first (`make onnx`, or run `make bench`)")
    ldr_dtype = graph_ldr_dtype(cfg.onnx)
    net, results["weights"] = load_network(cfg.onnx)
    if results["weights"].startswith("random"):
        log(f"note: {cfg.onnx} holds seeded random weights ({results['weights']}): timings are those of the real "
            f"network; accuracy numbers compare implementations, not image quality (make bench CKPT=... for that)")
    try:
        state.compute_floor(net)
        if "latency" in cfg.parts:
            state.latency(net, ldr_dtype)
        if "serving" in cfg.parts or "accuracy" in cfg.parts:
            try:
                state.start_server()
            except Exception as exc:
                state.skip("serving", "server", "could not start or reach Triton: " + state.error("serving", "server",
                                                                                                 exc))
        if "serving" in cfg.parts and state.endpoint is not None:
            state.serving()
        if "accuracy" in cfg.parts:
            state.accuracy(net, ldr_dtype)
    finally:
        state.close()
    state.goals()
    info["load_average_end"] = machine.load_average()
    info["busy_warning"] = machine.busy_warning(info)
    results["elapsed_s"] = round(time.perf_counter() - started, 1)
    return results


def save(results: dict, cfg: BenchConfig, log: Callable = print) -> dict:
    """CSV + JSON + plots under cfg.out; returns {kind: path}."""
    name = report.stem(results["machine"], cfg.quick, cfg.label)
    plots = {}
    if cfg.plots:
        out = Path(cfg.out)
        out.mkdir(parents=True, exist_ok=True)
        for kind, plot in (("latency_png", report.plot_latency), ("serving_png", report.plot_serving)):
            path = plot(results, out / f"{name}_{kind.replace('_png', '')}.png")
            if path is None:
                results["skipped"].append({"part": "plots", "what": kind, "reason": "no measurement to plot"})
            else:
                plots[kind] = path
    results["files"] = {k: p.name for k, p in plots.items()}
    files = report.write_results(results, cfg.out, name)
    files.update(plots)
    for path in files.values():
        log(f"wrote {path}")
    return files
