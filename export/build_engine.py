"""Build the FP16 TensorRT engine of the pipeline graph (AdnetDCNv2 plugin nodes) and its JSON sidecar.

Small composable steps, Polygraphy style, each usable on its own (the engine runner and the benchmarks reuse them):

    trt = trt_compat.load(backend)                     # tensorrt (GPU hosts) or tensorrt_rtx (CPU-only CI)
    plugins = load_plugins(trt, library)               # build/libadnet_plugins.so, or the Python stand-in
    net = parse_onnx(trt, onnx, strongly_typed=...)    # TensorRT network + description (layers, I/O, plugins)
    config, monitor = configure(net, options)          # profiles, precision, workspace, timing cache, progress
    plan = build_serialized(net, config)
    save_engine(plan, out, sidecar)                    # out + out.json

`build_engine()` chains them. Precision: TensorRT 11 and TensorRT-RTX build strongly typed networks only, so the
FP16 engine comes from the FP16 graph (build/adnet_dcn_plugin_fp16.onnx); TensorRT 10 defaults to its FP16 builder
flag on the FP32 graph (build/adnet_dcn_plugin.onnx) and can build the strongly typed route too (--route).

CLI: python -m export.build_engine [--backend tensorrt|rtx] [--out model_repository/gpu/adnet/1/model.plan]
         [--min BxHxW] [--opt BxHxW] [--max BxHxW] [--workspace MiB] [--plugin LIB | --python-plugin] ...
`make engine` runs it (see export/engine.mk for the variables).
"""
from __future__ import annotations

import argparse
import collections
import datetime
import hashlib
import json
import os
import re
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

from client import contract as io_contract
from export import trt_compat, trt_python_plugin
from export.errors import PipelineError
from export.profiles import CI_PROFILE, DEFAULT_PROFILE, Profile
from export.trt_compat import CONTAINER_HINT, TensorRT
from plugins.dcnv2 import contract

__all__ = ["PRECISIONS", "ROUTES", "DEFAULT_PLAN", "DEFAULT_RTX_PLAN", "DEFAULT_PLUGIN_LIBRARY", "DEFAULT_ONNX",
           "DEFAULT_ONNX_FP32", "EngineBuildError", "PluginLibraryError", "BuildOptions", "Plugins", "Network",
           "BuildResult", "resolve_route", "load_plugins", "parse_onnx", "describe_network", "configure",
           "build_serialized", "save_engine", "sidecar_path", "build_engine", "trt_logger", "tensorrt_errors",
           "sha256_file", "main"]

PRECISIONS = ("fp16", "fp32")
ROUTES = ("auto", "strongly-typed", "fp16-flag")
# The GPU variant of the Triton model repository (model_repository/gpu/adnet/config.pbtxt serves this file).
DEFAULT_PLAN = Path("model_repository") / "gpu" / io_contract.MODEL_NAME / "1" / "model.plan"
# TensorRT-RTX plans cannot be served by Triton's TensorRT backend: keep them out of the model repository.
DEFAULT_RTX_PLAN = Path("build") / "rtx" / "model.plan"
DEFAULT_PLUGIN_LIBRARY = Path("build") / "libadnet_plugins.so"
DEFAULT_ONNX = Path("build") / "adnet_dcn_plugin_fp16.onnx"
DEFAULT_ONNX_FP32 = Path("build") / "adnet_dcn_plugin.onnx"
SIDECAR_FORMAT = 1
_NUMPY_NAMES = {"FLOAT": "float32", "HALF": "float16", "BF16": "bfloat16", "INT8": "int8", "INT32": "int32",
                "INT64": "int64", "BOOL": "bool", "UINT8": "uint8", "FP8": "float8", "INT4": "int4", "FP4": "float4"}


class EngineBuildError(PipelineError):
    """Parsing, configuring or building failed; the message carries TensorRT's own errors."""


class PluginLibraryError(PipelineError):
    """The plugin library is missing, was built for another TensorRT, or does not provide AdnetDCNv2."""


# ---- logging ---------------------------------------------------------------------------------------------------

_loggers: dict[str, Any] = {}


def trt_logger(trt: TensorRT, verbose: bool = False):
    """One logger per TensorRT module and process (TensorRT expects the same logger everywhere): prints warnings and
    errors (everything with verbose) to stderr and keeps the recent messages for error reports."""
    key = trt.module.__name__
    if key not in _loggers:
        Severity = trt.module.ILogger.Severity

        class Logger(trt.module.ILogger):
            def __init__(self):
                trt.module.ILogger.__init__(self)
                self.count = 0  # messages so far: a mark for errors(since=...)
                self.records: collections.deque = collections.deque(maxlen=200)  # (number, severity, message)
                self.echo = Severity.WARNING

            def log(self, severity, message):
                self.records.append((self.count, severity, message))
                self.count += 1
                if int(severity) <= int(self.echo):
                    print(f"[{trt.name}] {severity.name}: {message}", file=sys.stderr)

            def errors(self, since: int = 0) -> list[str]:
                return [m for n, s, m in list(self.records) if n >= since and int(s) <= int(Severity.ERROR)]

        _loggers[key] = Logger()
    logger = _loggers[key]
    logger.echo = trt.module.ILogger.Severity.VERBOSE if verbose else trt.module.ILogger.Severity.WARNING
    return logger


def tensorrt_errors(logger, since: int) -> str:
    """"; TensorRT said: ..." with the last errors logged since the mark `since` (logger.count then); "" if none."""
    errors = logger.errors(since)
    return ("; TensorRT said: " + " | ".join(errors[-5:])) if errors else ""


def _stand_in_errors(since: int) -> str:
    errors = trt_python_plugin.errors[since:]
    return (" -- the plugin said: " + " | ".join(errors[-3:])) if errors else ""


# ---- plugins ---------------------------------------------------------------------------------------------------

@dataclass
class Plugins:
    """Where the AdnetDCNv2 creator came from."""

    implementation: str  # "library" | "python-stand-in"
    library: Optional[Path]
    library_sha256: Optional[str]
    creator: Any  # kept alive for the process: the registry holds a raw pointer

    @property
    def runnable(self) -> bool:
        return self.implementation == "library"

    def to_dict(self) -> dict:
        return {"name": contract.PLUGIN_NAME, "version": contract.PLUGIN_VERSION,
                "namespace": contract.PLUGIN_NAMESPACE, "fields": [name for name, _ in contract.FIELDS],
                "implementation": self.implementation,
                "library": str(self.library) if self.library else None, "library_sha256": self.library_sha256,
                "runnable": self.runnable,
                "note": None if self.runnable else trt_python_plugin.STAND_IN_NOTE}


_libraries: dict[tuple[str, str], Plugins] = {}


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def linked_tensorrt_libraries(library: Path) -> set[str]:
    """The TensorRT core libraries (libnvinfer.so.N, libtensorrt_rtx.so.N) named in a shared library's dynamic
    string table: what it was linked against."""
    data = Path(library).read_bytes()
    return {m.decode() for m in re.findall(rb"(libnvinfer\.so\.\d+|libtensorrt_rtx\.so\.\d+)", data)}


def load_plugins(trt: TensorRT, library: Optional[Path] = None, *, stand_in: bool = False) -> Plugins:
    """Register the AdnetDCNv2 creator: from the C++ plugin library (IPluginRegistry.load_library, which calls
    its getCreators), or the Python stand-in (export/trt_python_plugin.py) when stand_in is set. Idempotent."""
    if stand_in:
        return Plugins("python-stand-in", None, None, trt_python_plugin.register(trt.module))
    library = Path(library or DEFAULT_PLUGIN_LIBRARY)
    key = (trt.module.__name__, str(library.resolve()))
    if key in _libraries:
        return _libraries[key]
    if not library.is_file():
        raise PluginLibraryError(
            f"plugin library {library} not found: build it with `make plugin` (needs TensorRT: {CONTAINER_HINT})")
    linked = linked_tensorrt_libraries(library)
    if linked and trt.library_soname not in linked:
        raise PluginLibraryError(
            f"{library} was built for another TensorRT (it links {', '.join(sorted(linked))}; this is {trt}, which "
            f"needs {trt.library_soname}): rebuild it with `make plugin` inside the container you build and serve "
            f"with")
    logger = trt_logger(trt)
    mark = logger.count
    registry = trt.module.get_plugin_registry()
    if registry.get_creator(contract.PLUGIN_NAME, contract.PLUGIN_VERSION, contract.PLUGIN_NAMESPACE) is not None:
        raise PluginLibraryError(f"{contract.PLUGIN_NAME} is already registered in this process (the Python "
                                 f"stand-in or another copy of the library); load one plugin source per process")
    handle = registry.load_library(str(library))
    if handle is None:
        raise PluginLibraryError(f"{trt} could not load {library}{tensorrt_errors(logger, mark)}; rebuild it with "
                                 f"`make plugin` against this TensorRT")
    creator = registry.get_creator(contract.PLUGIN_NAME, contract.PLUGIN_VERSION, contract.PLUGIN_NAMESPACE)
    if creator is None:
        raise PluginLibraryError(
            f"{library} loaded but registers no {contract.PLUGIN_NAME} version {contract.PLUGIN_VERSION} in namespace "
            f"'{contract.PLUGIN_NAMESPACE}' (the contract in plugins/dcnv2/contract.py); it is from another version "
            f"of the plugin: rebuild it with `make plugin`")
    plugins = Plugins("library", library, sha256_file(library), (handle, creator))
    _libraries[key] = plugins
    return plugins


# ---- parse -----------------------------------------------------------------------------------------------------

@dataclass
class Network:
    """A parsed ONNX graph: builder, network and parser must live as long as the network is used."""

    trt: TensorRT
    builder: Any
    network: Any
    parser: Any
    onnx: Path
    strongly_typed: bool
    description: dict = field(default_factory=dict)


def _numpy_name(dtype) -> str:
    return _NUMPY_NAMES.get(dtype.name, dtype.name.lower())


def describe_network(trt: TensorRT, network) -> dict:
    """Layer counts, I/O tensors and plugin layers of a TensorRT network (what can be checked without a GPU).
    graph_compute_dtype: the most common output type of the convolutions, as the graph types them (the engine's
    compute type on strongly typed networks; on TensorRT 10's fp16-flag route the builder may lower it to FP16)."""
    t = trt.module

    def tensor(x) -> dict:
        return {"name": x.name, "dtype": _numpy_name(x.dtype), "shape": list(x.shape)}

    layer_types: collections.Counter = collections.Counter()
    conv_dtypes: collections.Counter = collections.Counter()
    plugins = []
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        layer_types[layer.type.name] += 1
        if layer.type == t.LayerType.CONVOLUTION:
            conv_dtypes[_numpy_name(layer.get_output(0).dtype)] += 1
        elif layer.type == t.LayerType.PLUGIN_V3:
            layer.__class__ = t.IPluginV3Layer  # get_layer returns the base class
            core = layer.plugin.get_capability_interface(t.PluginCapabilityType.CORE)
            plugins.append({"layer": layer.name, "name": core.plugin_name, "version": core.plugin_version,
                            "namespace": core.plugin_namespace,
                            "input_dtypes": [_numpy_name(layer.get_input(j).dtype) for j in range(layer.num_inputs)],
                            "output_dtype": _numpy_name(layer.get_output(0).dtype),
                            "output_shape": list(layer.get_output(0).shape)})
    return {"inputs": [tensor(network.get_input(i)) for i in range(network.num_inputs)],
            "outputs": [tensor(network.get_output(i)) for i in range(network.num_outputs)],
            "layers": network.num_layers, "layer_types": dict(sorted(layer_types.items())),
            "plugin_layers": plugins,
            "graph_compute_dtype": conv_dtypes.most_common(1)[0][0] if conv_dtypes else None}


def _parser_error(error) -> str:
    # node_name / node_operator are not in every TensorRT 10.x binding.
    detail = ", ".join(str(getattr(error, attr)()) for attr in ("node_name", "node_operator") if hasattr(error, attr))
    return f"node {error.node()}{f' ({detail})' if detail else ''}: {error.desc()}"


def parse_onnx(trt: TensorRT, onnx: Path, *, strongly_typed: bool, verbose: bool = False) -> Network:
    """Parse `onnx` into a new network (strongly typed, or weakly typed for TensorRT 10's FP16 flag)."""
    onnx = Path(onnx)
    if not onnx.is_file():
        raise EngineBuildError(f"{onnx}: no such ONNX file; create it with `make onnx` (export + surgery)")
    t = trt.module
    logger = trt_logger(trt, verbose)
    mark = logger.count
    builder = t.Builder(logger)
    if builder is None:
        raise EngineBuildError(f"{trt} could not create a builder{tensorrt_errors(logger, mark)}")
    # TensorRT 11 and RTX are always strongly typed (the flag is deprecated there); TensorRT 10 needs the flag.
    flags = 0
    if strongly_typed and not trt.strongly_typed_only:
        flags = 1 << int(t.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = t.OnnxParser(network, logger)
    stand_in_mark = len(trt_python_plugin.errors)
    if not parser.parse_from_file(str(onnx)):
        errors = [_parser_error(parser.get_error(i)) for i in range(parser.num_errors)]
        hint = _stand_in_errors(stand_in_mark)
        registry = t.get_plugin_registry()
        if registry.get_creator(contract.PLUGIN_NAME, contract.PLUGIN_VERSION, contract.PLUGIN_NAMESPACE) is None:
            hint += (f" -- no {contract.PLUGIN_NAME} creator (version {contract.PLUGIN_VERSION}, namespace "
                     f"'{contract.PLUGIN_NAMESPACE}') is registered: load build/libadnet_plugins.so (make plugin) or, "
                     f"for a build-only check, the Python stand-in (load_plugins)")
        raise EngineBuildError(f"{trt} could not parse {onnx}: " + "; ".join(errors) + hint)
    net = Network(trt, builder, network, parser, onnx, strongly_typed)
    net.description = describe_network(trt, network)
    return net


# ---- configure -------------------------------------------------------------------------------------------------

@dataclass
class BuildOptions:
    precision: str = "fp16"
    route: str = "auto"  # see resolve_route
    profiles: Sequence[Profile] = (DEFAULT_PROFILE,)
    workspace_bytes: Optional[int] = None  # None: TensorRT's default (the device's memory)
    timing_cache: Optional[Path] = None  # read before and written after the build; None: no cache
    optimization_level: Optional[int] = None  # builder optimisation level 0-5; None: TensorRT's default (3)
    compute_capabilities: Sequence[str] = ()  # TensorRT-RTX targets, e.g. ("SM86", "SM89"); () = RTX's default
    show_progress: bool = True
    verbose: bool = False


def resolve_route(trt: TensorRT, precision: str, route: str = "auto") -> str:
    """'strongly-typed' (tensor types from the graph: the FP16 graph for an FP16 engine) or 'fp16-flag' (TensorRT
    10's BuilderFlag.FP16 on the FP32 graph). auto: fp16-flag on TensorRT 10 for fp16, else strongly-typed."""
    if precision not in PRECISIONS:
        raise EngineBuildError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    if route not in ROUTES:
        raise EngineBuildError(f"unknown route {route!r}; choose one of {', '.join(ROUTES)}")
    if route == "auto":
        return "fp16-flag" if precision == "fp16" and not trt.strongly_typed_only else "strongly-typed"
    if route == "fp16-flag" and trt.strongly_typed_only:
        raise EngineBuildError(f"{trt} builds strongly typed networks only (no FP16 builder flag): use the "
                               f"strongly-typed route with the FP16 graph ({DEFAULT_ONNX})")
    if route == "fp16-flag" and precision != "fp16":
        raise EngineBuildError("the fp16-flag route builds FP16 engines only; use --route strongly-typed for fp32")
    return route


def progress_monitor(trt: TensorRT, show: bool = True):
    """An IProgressMonitor that draws a tqdm bar for the builder's top-level phase and each of its sub-phases, and
    records every phase name (`.phases`). Without tqdm it prints the top-level phases."""
    try:
        from tqdm import tqdm
    except ImportError:  # e.g. the container's system Python
        tqdm = None

    class Monitor(trt.module.IProgressMonitor):
        def __init__(self):
            trt.module.IProgressMonitor.__init__(self)
            self.phases: list[str] = []
            self._depth: dict[str, int] = {}
            self._bars: dict[str, Any] = {}
            self._lock = threading.Lock()  # TensorRT may report from several threads

        def phase_start(self, phase_name, parent_phase, num_steps):
            with self._lock:
                depth = self._depth.get(parent_phase, -1) + 1 if parent_phase else 0
                self._depth[phase_name] = depth
                self.phases.append(phase_name)
                if not show or depth > 1:  # deeper phases flash by; recorded, not drawn
                    return
                if tqdm is not None:
                    self._bars[phase_name] = tqdm(total=num_steps, desc=phase_name, position=depth, leave=depth == 0,
                                                  file=sys.stderr, dynamic_ncols=True, unit="step")
                elif depth == 0:
                    print(f"[{trt.name}] {phase_name} ({num_steps} steps)", file=sys.stderr)

        def step_complete(self, phase_name, step):
            with self._lock:
                bar = self._bars.get(phase_name)
                if bar is not None:
                    bar.update(step + 1 - bar.n)
            return True  # never cancel

        def phase_finish(self, phase_name):
            with self._lock:
                bar = self._bars.pop(phase_name, None)
                if bar is not None:
                    bar.update(bar.total - bar.n)
                    bar.close()

    return Monitor()


def _add_profiles(net: Network, config, profiles: Sequence[Profile]) -> None:
    inputs = [i["name"] for i in net.description["inputs"]]
    for number, profile in enumerate(profiles):
        shapes = profile.input_shapes()
        missing = [name for name in inputs if name not in shapes]
        if missing:
            raise EngineBuildError(f"{net.onnx}: inputs {missing} are not the pipeline's ({', '.join(shapes)}); "
                                   f"build from the pipeline graph (make onnx), not the bare network")
        p = net.builder.create_optimization_profile()
        for name in inputs:
            p.set_shape(name, *shapes[name])
        if config.add_optimization_profile(p) < 0:
            raise EngineBuildError(f"{net.trt} rejected optimisation profile {number} ({profile})")


def configure(net: Network, options: BuildOptions, route: str):
    """Builder config for `net`: profiles, precision route, workspace, timing cache, detailed profiling verbosity
    (layer information for the engine inspector) and the progress monitor. Returns (config, monitor); keep the
    monitor alive until the build ends."""
    trt, t = net.trt, net.trt.module
    config = net.builder.create_builder_config()
    _add_profiles(net, config, options.profiles)
    if route == "fp16-flag":
        config.set_flag(t.BuilderFlag.FP16)
    if options.workspace_bytes is not None:
        config.set_memory_pool_limit(t.MemoryPoolType.WORKSPACE, int(options.workspace_bytes))
    if options.optimization_level is not None:
        config.builder_optimization_level = int(options.optimization_level)
    config.profiling_verbosity = t.ProfilingVerbosity.DETAILED
    if options.compute_capabilities:
        if trt.backend != "rtx":
            raise EngineBuildError(f"{trt} builds for the GPU it runs on; target compute capabilities are a "
                                   f"TensorRT-RTX option")
        names = [c.upper() for c in options.compute_capabilities]
        unknown = [c for c in names if c not in t.ComputeCapability.__members__]
        if unknown:
            raise EngineBuildError(f"unknown compute capability {unknown}; {trt} knows "
                                   f"{', '.join(t.ComputeCapability.__members__)}")
        config.num_compute_capabilities = len(names)
        for i, name in enumerate(names):
            config.set_compute_capability(t.ComputeCapability.__members__[name], i)
    if options.timing_cache is not None and _timing_cache_supported(trt):
        cache_path = Path(options.timing_cache)
        data = cache_path.read_bytes() if cache_path.is_file() else b""
        cache = config.create_timing_cache(data)
        if cache is None or not config.set_timing_cache(cache, ignore_mismatch=False):
            print(f"warning: timing cache {cache_path} does not fit {trt}; starting an empty one", file=sys.stderr)
            config.set_timing_cache(config.create_timing_cache(b""), ignore_mismatch=False)
    monitor = progress_monitor(trt, options.show_progress)
    config.progress_monitor = monitor
    return config, monitor


def _timing_cache_supported(trt: TensorRT) -> bool:
    # TensorRT-RTX keeps the API but its timing-cache operations are no-ops (it tunes at run time instead).
    return trt.backend != "rtx"


def _save_timing_cache(config, path: Path) -> None:
    cache = config.get_timing_cache()
    if cache is None:
        return
    _write_atomic(Path(path), memoryview(cache.serialize()).tobytes())


# ---- build and save --------------------------------------------------------------------------------------------

def build_serialized(net: Network, config) -> bytes:
    """Build the serialized engine (plan) or raise EngineBuildError with TensorRT's errors."""
    logger = trt_logger(net.trt)
    mark, stand_in_mark = logger.count, len(trt_python_plugin.errors)
    plan = net.builder.build_serialized_network(net.network, config)
    if plan is None:
        raise EngineBuildError(f"{net.trt} failed to build an engine from {net.onnx}{tensorrt_errors(logger, mark)}"
                               f"{_stand_in_errors(stand_in_mark)}")
    return memoryview(plan).tobytes()


def sidecar_path(plan_path: Path) -> Path:
    """model.plan -> model.plan.json."""
    plan_path = Path(plan_path)
    return plan_path.with_name(plan_path.name + ".json")


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


def save_engine(plan: bytes, out: Path, sidecar: dict) -> tuple[Path, Path]:
    """Write the plan and its sidecar (out + '.json'); both atomically. Returns their paths."""
    out = Path(out)
    _write_atomic(out, plan)
    side = sidecar_path(out)
    _write_atomic(side, (json.dumps(sidecar, indent=2) + "\n").encode())
    return out, side


@dataclass
class BuildResult:
    plan_path: Path
    sidecar_path: Path
    sidecar: dict
    network: dict  # describe_network() of the parsed graph
    plugins: Plugins
    phases: list[str]  # builder phases reported to the progress monitor
    seconds: float


def _device(trt: TensorRT, options: BuildOptions) -> dict:
    if trt.backend == "rtx":
        try:
            gpu = trt_compat.require_gpu()
        except trt_compat.NoGPU:
            gpu = None
        targets = [c.upper() for c in options.compute_capabilities] or "TensorRT-RTX default"
        return {"gpu": gpu, "target_compute_capabilities": targets}
    gpu = trt_compat.require_gpu()
    return {"gpu": gpu, "target_compute_capabilities": [gpu["compute_capability"]]}


def build_engine(onnx: Path, out: Path, options: Optional[BuildOptions] = None, *, trt: Optional[TensorRT] = None,
                 backend: str = "auto", plugin_library: Optional[Path] = None,
                 python_plugin: Optional[bool] = None) -> BuildResult:
    """The whole chain: load TensorRT and the plugin, parse `onnx`, configure, build, save `out` + sidecar.

    python_plugin: None = the stand-in on TensorRT-RTX (unless plugin_library is given), the C++ library on TensorRT.
    """
    options = options or BuildOptions()
    trt = trt or trt_compat.load(backend)
    route = resolve_route(trt, options.precision, options.route)
    device = _device(trt, options)  # raises NoGPU before TensorRT proper tries to build without one
    if python_plugin is None:
        python_plugin = trt.backend == "rtx" and plugin_library is None
    plugins = load_plugins(trt, plugin_library, stand_in=python_plugin)
    started = time.perf_counter()
    net = parse_onnx(trt, onnx, strongly_typed=route == "strongly-typed", verbose=options.verbose)
    compute = net.description["graph_compute_dtype"]
    wanted = {"fp16": "float16", "fp32": "float32"}[options.precision]
    if route == "strongly-typed" and compute != wanted:
        raise EngineBuildError(
            f"{onnx} computes in {compute}, but a strongly typed {options.precision} engine takes its types from the "
            f"graph: use the {options.precision} graph ({DEFAULT_ONNX if wanted == 'float16' else DEFAULT_ONNX_FP32}, "
            f"from `make onnx`)")
    config, monitor = configure(net, options, route)
    plan = build_serialized(net, config)
    seconds = time.perf_counter() - started
    if options.timing_cache is not None and _timing_cache_supported(trt):
        _save_timing_cache(config, options.timing_cache)
    description = net.description
    sidecar = {
        "format": SIDECAR_FORMAT,
        "engine": {"file": Path(out).name, "bytes": len(plan), "sha256": hashlib.sha256(plan).hexdigest()},
        "built": {"at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                  "seconds": round(seconds, 3)},
        "tensorrt": {"name": trt.name, "module": trt.module.__name__, "version": trt.version},
        "device": device,
        "precision": options.precision,
        "route": route,
        "builder": {"workspace_bytes": options.workspace_bytes, "optimization_level": options.optimization_level,
                    "timing_cache": (str(options.timing_cache) if options.timing_cache is not None
                                     and _timing_cache_supported(trt) else None),
                    "profiling_verbosity": "DETAILED"},
        "profiles": [p.to_dict() for p in options.profiles],
        "io": {"inputs": description["inputs"], "outputs": description["outputs"]},
        "network": {"layers": description["layers"], "plugin_layers": len(description["plugin_layers"]),
                    "graph_compute_dtype": description["graph_compute_dtype"]},
        "plugin": plugins.to_dict(),
        "onnx": {"file": str(onnx), "sha256": sha256_file(Path(onnx))},
    }
    plan_path, side = save_engine(plan, out, sidecar)
    return BuildResult(plan_path, side, sidecar, description, plugins, list(monitor.phases), seconds)


# ---- CLI -------------------------------------------------------------------------------------------------------

def default_timing_cache(trt: TensorRT) -> Path:
    """build/timing_cache/<module>-<version>.cache: caches are specific to the TensorRT version (and GPU)."""
    return Path("build") / "timing_cache" / f"{trt.module.__name__}-{trt.version}.cache"


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m export.build_engine", description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--backend", default="auto", choices=("auto",) + trt_compat.BACKENDS,
                        help="tensorrt (GPU hosts; what Triton serves) or rtx (TensorRT-RTX, CPU-only build check); "
                             "auto: tensorrt if installed")
    parser.add_argument("--onnx", type=Path, default=DEFAULT_ONNX,
                        help="surgered pipeline graph with FP16 compute (strongly typed route)")
    parser.add_argument("--onnx-fp32", type=Path, default=DEFAULT_ONNX_FP32,
                        help="surgered pipeline graph with FP32 compute (fp16-flag route, or --precision fp32)")
    parser.add_argument("--out", type=Path, help=f"plan to write (+ .json sidecar); default {DEFAULT_PLAN}, or "
                                                 f"{DEFAULT_RTX_PLAN} for TensorRT-RTX")
    parser.add_argument("--precision", default="fp16", choices=PRECISIONS)
    parser.add_argument("--route", default="auto", choices=ROUTES,
                        help="auto: TensorRT 10 -> fp16-flag on the FP32 graph; TensorRT 11 / RTX -> strongly-typed")
    parser.add_argument("--min", dest="min_size", help=f"smallest BxHxW (default {DEFAULT_PROFILE.min})")
    parser.add_argument("--opt", dest="opt_size",
                        help=f"BxHxW the kernels are tuned for (default {DEFAULT_PROFILE.opt})")
    parser.add_argument("--max", dest="max_size", help=f"largest BxHxW (default {DEFAULT_PROFILE.max})")
    parser.add_argument("--ci-profile", action="store_true", help=f"start from the small CI profile ({CI_PROFILE})")
    parser.add_argument("--workspace", type=float, metavar="MiB", help="builder workspace limit in MiB")
    parser.add_argument("--timing-cache", type=Path, help="timing cache file (default build/timing_cache/"
                                                          "<module>-<version>.cache)")
    parser.add_argument("--no-timing-cache", action="store_true")
    parser.add_argument("--opt-level", type=int, choices=range(6), help="builder optimisation level (default 3)")
    parser.add_argument("--compute-capability", action="append", default=[], metavar="SMxx",
                        help="TensorRT-RTX target, repeatable (SM75 SM80 SM86 SM89 SM120 ...); default RTX's")
    plugin = parser.add_mutually_exclusive_group()
    plugin.add_argument("--plugin", type=Path, help=f"C++ plugin library (default on TensorRT: "
                                                    f"{DEFAULT_PLUGIN_LIBRARY})")
    plugin.add_argument("--python-plugin", action="store_true",
                        help="use the Python build-only stand-in (default on TensorRT-RTX): the engine cannot run")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--verbose", action="store_true", help="TensorRT's verbose log")
    args = parser.parse_args(argv)
    try:
        trt = trt_compat.load(args.backend)
        base = CI_PROFILE if args.ci_profile else DEFAULT_PROFILE
        profile = Profile.parse(args.min_size, args.opt_size, args.max_size, base=base)
        route = resolve_route(trt, args.precision, args.route)
        onnx = args.onnx if route == "strongly-typed" and args.precision == "fp16" else args.onnx_fp32
        out = args.out or (DEFAULT_RTX_PLAN if trt.backend == "rtx" else DEFAULT_PLAN)
        cache = None if args.no_timing_cache else (args.timing_cache or default_timing_cache(trt))
        options = BuildOptions(
            precision=args.precision, route=route, profiles=(profile,),
            workspace_bytes=None if args.workspace is None else int(args.workspace * (1 << 20)),
            timing_cache=cache, optimization_level=args.opt_level,
            compute_capabilities=tuple(args.compute_capability), show_progress=not args.no_progress,
            verbose=args.verbose)
        print(f"building {out} from {onnx} with {trt}: {args.precision} ({route}), profile {profile}",
              file=sys.stderr)
        result = build_engine(onnx, out, options, trt=trt, plugin_library=args.plugin,
                              python_plugin=True if args.python_plugin else None)
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    side = result.sidecar
    runnable = "" if result.plugins.runnable else f" -- {trt_python_plugin.STAND_IN_NOTE}"
    print(f"wrote {result.plan_path} ({side['engine']['bytes'] / 2**20:.1f} MiB, {trt}, {side['precision']} "
          f"{side['route']}, {side['network']['plugin_layers']} {contract.PLUGIN_NAME} layers, "
          f"{result.seconds:.1f} s) and {result.sidecar_path}{runnable}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
