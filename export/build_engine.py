"""Build the FP16 TensorRT engine of the pipeline graph (AdnetDCNv2 plugin nodes) and its JSON sidecar, on Polygraphy.

Small steps, each usable on its own; `build_engine()` chains them:

    trt = trt_compat.load(backend)                      # tensorrt (GPU hosts) or tensorrt_rtx (CPU-only CI)
    plugins = trt_process.load_plugins(trt, library)    # build/libadnet_plugins.so, or the Python stand-in
    net = parse_onnx(trt, onnx, strongly_typed=True)    # Polygraphy's network; our parser errors and description
    config, monitor = configure(net, options, route)    # Polygraphy CreateConfig: profiles, workspace, timing
                                                        # cache, detailed profiling, progress bars
    plan = build_serialized(net, config, cache)         # Polygraphy EngineBytesFromNetwork (+ timing cache save)
    engine_files.save_engine(plan, out, sidecar)        # out + out.json, both atomically

Ours on top of Polygraphy: the precision route, the plugin checks (export/trt_process.py), parser errors that name
the fix (Polygraphy's NetworkFromOnnxPath only logs them), the sidecar, the stand-in plugin and the progress bars.

Precision route. The FP16 engine is built strongly typed from the FP16 graph (build/adnet_dcn_plugin_fp16.onnx) on
every TensorRT: the graph keeps the pre- and post-processing (EV scaling, x ** 2.24) in FP32 and the network in
FP16, and a strongly typed build must keep those types. TensorRT 10's other route, the FP16 builder flag on the FP32
graph, lets TensorRT run any layer in FP16, the power included: gamma-domain values above ~140 then overflow
(140 ** 2.24 = 6.4e4, FP16's maximum is 65504). It stays available as `--route fp16-flag` for comparison.
TensorRT 11 and TensorRT-RTX have no FP16 flag (strongly typed networks only).

CLI: python -m export.build_engine [--backend tensorrt|rtx] [--out model_repository/gpu/adnet/1/model.plan]
         [--min BxHxW] [--opt BxHxW] [--max BxHxW] [--workspace MiB] [--plugin LIB | --python-plugin | --no-plugin]
`make engine` runs it (see export/engine.mk for the variables).
"""
from __future__ import annotations

import argparse
import collections
import datetime
import hashlib
import sys
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

from export import trt_compat, trt_process, trt_python_plugin
from export.engine_files import DEFAULT_PLAN, DEFAULT_RTX_PLAN, SIDECAR_FORMAT, save_engine
from client.errors import reports_errors
from export.errors import PipelineError
from export.profiles import CI_PROFILE, DEFAULT_PROFILE, Profile
from export.trt_compat import TensorRT
from export.trt_process import DEFAULT_PLUGIN_LIBRARY, Plugins, polygraphy_errors, sha256_file, trt_logger
from plugins.dcnv2 import contract

__all__ = ["PRECISIONS", "ROUTES", "PLUGIN_SOURCES", "DEFAULT_ONNX", "DEFAULT_ONNX_FP32", "FP16_FLAG_WARNING",
           "EngineBuildError", "BuildOptions", "Network", "BuildResult", "resolve_route", "parse_onnx",
           "describe_network", "polygraphy_profile", "compute_capability_pairs", "configure", "build_serialized",
           "build_engine", "default_timing_cache", "main"]

PRECISIONS = ("fp16", "fp32")
ROUTES = ("auto", "strongly-typed", "fp16-flag")
# auto: the C++ library on TensorRT, the stand-in on TensorRT-RTX; none: graphs without AdnetDCNv2 nodes (the
# built-in DeformConv baseline).
PLUGIN_SOURCES = ("auto", "library", "stand-in", "none")
DEFAULT_ONNX = Path("build") / "adnet_dcn_plugin_fp16.onnx"
DEFAULT_ONNX_FP32 = Path("build") / "adnet_dcn_plugin.onnx"
FP16_FLAG_WARNING = ("the fp16-flag route lets TensorRT run the FP32 pre/post-processing in FP16 too: gamma-domain "
                     "values above ~140 overflow after x ** 2.24; the default strongly typed route keeps them in FP32")
_NUMPY_NAMES = {"FLOAT": "float32", "HALF": "float16", "BF16": "bfloat16", "INT8": "int8", "INT32": "int32",
                "INT64": "int64", "BOOL": "bool", "UINT8": "uint8", "FP8": "float8", "INT4": "int4", "FP4": "float4"}


class EngineBuildError(PipelineError):
    """Parsing, configuring or building failed; the message carries TensorRT's own errors."""


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
    """Parse `onnx` into a new network: strongly typed, or weakly typed for TensorRT 10's FP16 flag.

    The network comes from Polygraphy's create_network; the parse is ours (what Polygraphy's NetworkFromOnnxPath does)
    so that the parser's errors end up in the exception, with the fix."""
    onnx = Path(onnx)
    if not onnx.is_file():
        raise EngineBuildError(f"{onnx}: no such ONNX file; create it with `make onnx` (export + surgery)")
    backend = trt_process.polygraphy(trt, verbose)
    t = trt.module
    logger = trt_logger(trt, verbose)
    # TensorRT 11 and RTX are always strongly typed (the flag is deprecated there); TensorRT 10 needs the flag.
    with polygraphy_errors(trt, EngineBuildError, f"{trt} could not create a network"):
        builder, network = backend.create_network(strongly_typed=strongly_typed and not trt.strongly_typed_only)
    # TensorRT's own plugins: the ONNX parser lowers DeformConv (the built-in baseline graph) to one of them.
    t.init_libnvinfer_plugins(logger, "")
    parser = t.OnnxParser(network, logger)
    stand_in_mark = len(trt_python_plugin.errors)
    if not parser.parse_from_file(str(onnx)):
        errors = [_parser_error(parser.get_error(i)) for i in range(parser.num_errors)]
        hint = trt_process.stand_in_errors(stand_in_mark)
        text = " ".join(errors)
        if contract.PLUGIN_NAME in text and trt_process.registered_creator(trt) is None:
            hint += (f" -- no {contract.PLUGIN_NAME} creator (version {contract.PLUGIN_VERSION}, namespace "
                     f"'{contract.PLUGIN_NAMESPACE}') is registered: load build/libadnet_plugins.so (make plugin) or, "
                     f"for a build-only check, the Python stand-in (--python-plugin)")
        elif "DeformConv" in text:
            hint += (" -- TensorRT imports ONNX DeformConv as its built-in ModulatedDeformConv2d plugin, which "
                     "TensorRT 10's plugin library provides (TensorRT-RTX has none); build the surgered graph with "
                     "our plugin instead (make onnx: build/adnet_dcn_plugin_fp16.onnx)")
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
    """'strongly-typed' (tensor types from the graph: the FP16 graph for an FP16 engine; auto, on every TensorRT) or
    'fp16-flag' (TensorRT 10's BuilderFlag.FP16 on the FP32 graph; asked for explicitly, see the module docstring)."""
    if precision not in PRECISIONS:
        raise EngineBuildError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    if route not in ROUTES:
        raise EngineBuildError(f"unknown route {route!r}; choose one of {', '.join(ROUTES)}")
    if route == "auto":
        return "strongly-typed"
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


def polygraphy_profile(net: Network, profile: Profile):
    """Our profile (export/profiles.py) as a Polygraphy Profile for the network's inputs."""
    backend = trt_process.polygraphy(net.trt)
    shapes = profile.input_shapes()
    inputs = [i["name"] for i in net.description["inputs"]]
    missing = [name for name in inputs if name not in shapes]
    if missing:
        raise EngineBuildError(f"{net.onnx}: inputs {missing} are not the pipeline's ({', '.join(shapes)}); build "
                               f"from the pipeline graph (make onnx), not the bare network")
    result = backend.Profile()
    for name in inputs:
        lo, opt, hi = shapes[name]
        result.add(name, min=lo, opt=opt, max=hi)
    return result


def compute_capability_pairs(trt: TensorRT, names: Sequence[str]) -> list[tuple[int, int]]:
    """["SM86", "sm120"] -> [(8, 6), (12, 0)] (Polygraphy's form), checked against what this TensorRT-RTX knows."""
    if not names:
        return []
    if trt.backend != "rtx":
        raise EngineBuildError(f"{trt} builds for the GPU it runs on; target compute capabilities are a TensorRT-RTX "
                               f"option")
    known = trt.module.ComputeCapability.__members__
    upper = [n.upper() for n in names]
    unknown = [n for n in upper if n not in known or not n[2:].isdigit()]
    if unknown:
        raise EngineBuildError(f"unknown compute capability {unknown}; {trt} knows {', '.join(known)}")
    return [(int(n[2:-1]), int(n[-1])) for n in upper]


def _timing_cache_supported(trt: TensorRT) -> bool:
    # TensorRT-RTX keeps the API but its timing-cache operations are no-ops (it tunes at run time instead).
    return trt.backend != "rtx"


def configure(net: Network, options: BuildOptions, route: str):
    """Builder config for `net` through Polygraphy's CreateConfig (CreateConfigRTX on TensorRT-RTX): profiles,
    precision route, workspace, optimisation level, timing cache (read), detailed profiling verbosity (layer
    information for the engine inspector), TF32 off (Polygraphy's default: FP32 layers compute in FP32), the progress
    monitor. Returns (config, monitor); keep the monitor alive until the build ends."""
    trt, t = net.trt, net.trt.module
    backend = trt_process.polygraphy(trt)
    monitor = progress_monitor(trt, options.show_progress)
    cache = options.timing_cache
    common = dict(
        profiles=[polygraphy_profile(net, p) for p in options.profiles],
        profiling_verbosity=t.ProfilingVerbosity.DETAILED, progress_monitor=monitor,
        builder_optimization_level=options.optimization_level,
        memory_pool_limits=(None if options.workspace_bytes is None
                            else {t.MemoryPoolType.WORKSPACE: int(options.workspace_bytes)}),
        load_timing_cache=(str(cache) if cache is not None and Path(cache).is_file()
                           and _timing_cache_supported(trt) else None))
    pairs = compute_capability_pairs(trt, options.compute_capabilities)
    with polygraphy_errors(trt, EngineBuildError, f"{trt} rejected the builder configuration"), \
            warnings.catch_warnings():
        if trt.backend == "rtx":
            from polygraphy.backend.tensorrt_rtx import CreateConfigRTX

            # Polygraphy always sets a timing cache, which TensorRT-RTX deprecates (its caches are no-ops).
            warnings.filterwarnings("ignore", "Use Deprecated in TensorRT-RTX", DeprecationWarning)
            loader = CreateConfigRTX(compute_capabilities=pairs or None, **common)
        else:
            loader = backend.CreateConfig(fp16=route == "fp16-flag", **common)
        config = loader(net.builder, net.network)
    return config, monitor


# ---- build -----------------------------------------------------------------------------------------------------

def build_serialized(net: Network, config, timing_cache: Optional[Path] = None) -> bytes:
    """Build the serialized engine (plan) with Polygraphy's EngineBytesFromNetwork, merging the tactic timings into
    `timing_cache` (locked, so concurrent builds can share it); raises EngineBuildError with TensorRT's errors."""
    backend = trt_process.polygraphy(net.trt)
    save_cache = None
    if timing_cache is not None and _timing_cache_supported(net.trt):
        Path(timing_cache).parent.mkdir(parents=True, exist_ok=True)
        save_cache = str(timing_cache)
    stand_in_mark = len(trt_python_plugin.errors)
    with polygraphy_errors(net.trt, EngineBuildError, f"{net.trt} failed to build an engine from {net.onnx}",
                           extra=lambda: trt_process.stand_in_errors(stand_in_mark)):
        plan = backend.EngineBytesFromNetwork((net.builder, net.network, net.parser), config=config,
                                              save_timing_cache=save_cache)()
    return memoryview(plan).tobytes()


@dataclass
class BuildResult:
    plan_path: Path
    sidecar_path: Path
    sidecar: dict
    network: dict  # describe_network() of the parsed graph
    plugins: Optional[Plugins]  # None: a graph without AdnetDCNv2 nodes
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


def _load_plugins(trt: TensorRT, source: str, library: Optional[Path]) -> Optional[Plugins]:
    if source not in PLUGIN_SOURCES:
        raise EngineBuildError(f"unknown plugin source {source!r}; choose one of {', '.join(PLUGIN_SOURCES)}")
    if source == "auto":
        source = "stand-in" if trt.backend == "rtx" and library is None else "library"
    if source == "none":
        return None
    return trt_process.load_plugins(trt, library, stand_in=source == "stand-in")


def _polygraphy_version() -> Optional[str]:
    try:
        import polygraphy
    except ImportError:
        return None
    return polygraphy.__version__


def build_engine(onnx: Path, out: Path, options: Optional[BuildOptions] = None, *, trt: Optional[TensorRT] = None,
                 backend: str = "auto", plugin_library: Optional[Path] = None, plugin: str = "auto") -> BuildResult:
    """The whole chain: load TensorRT and the plugin (`plugin`: one of PLUGIN_SOURCES), parse `onnx`, configure,
    build, save `out` + sidecar."""
    options = options or BuildOptions()
    trt = trt or trt_compat.load(backend)
    route = resolve_route(trt, options.precision, options.route)
    device = _device(trt, options)  # raises NoGPU before TensorRT proper tries to build without one
    plugins = _load_plugins(trt, plugin, plugin_library)
    started = time.perf_counter()
    net = parse_onnx(trt, onnx, strongly_typed=route == "strongly-typed", verbose=options.verbose)
    compute = net.description["graph_compute_dtype"]
    wanted = {"fp16": "float16", "fp32": "float32"}[options.precision]
    if route == "strongly-typed" and compute is not None and compute != wanted:
        raise EngineBuildError(
            f"{onnx} computes in {compute}, but a strongly typed {options.precision} engine takes its types from the "
            f"graph: use the {options.precision} graph ({DEFAULT_ONNX if wanted == 'float16' else DEFAULT_ONNX_FP32}, "
            f"from `make onnx`)")
    config, monitor = configure(net, options, route)
    cache = options.timing_cache if _timing_cache_supported(trt) else None
    plan = build_serialized(net, config, cache)
    seconds = time.perf_counter() - started
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
                    "timing_cache": str(cache) if cache is not None else None, "tf32": False,
                    "profiling_verbosity": "DETAILED", "polygraphy": _polygraphy_version()},
        "profiles": [p.to_dict() for p in options.profiles],
        "io": {"inputs": description["inputs"], "outputs": description["outputs"]},
        "network": {"layers": description["layers"], "plugin_layers": len(description["plugin_layers"]),
                    "graph_compute_dtype": description["graph_compute_dtype"]},
        "plugin": plugins.to_dict() if plugins is not None else None,
        "onnx": {"file": str(onnx), "sha256": sha256_file(Path(onnx))},
    }
    plan_path, side = save_engine(plan, out, sidecar)
    return BuildResult(plan_path, side, sidecar, description, plugins, list(monitor.phases), seconds)


# ---- CLI -------------------------------------------------------------------------------------------------------

def default_timing_cache(trt: TensorRT) -> Path:
    """build/timing_cache/<module>-<version>.cache: caches are specific to the TensorRT version (and GPU)."""
    return Path("build") / "timing_cache" / f"{trt.module.__name__}-{trt.version}.cache"


@reports_errors
def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m export.build_engine", description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--backend", default="auto", choices=("auto",) + trt_compat.BACKENDS,
                        help="tensorrt (GPU hosts; what Triton serves) or rtx (TensorRT-RTX, CPU-only build check); "
                             "auto: tensorrt if installed")
    parser.add_argument("--onnx", type=Path, default=DEFAULT_ONNX,
                        help="surgered pipeline graph with FP16 compute (strongly typed FP16 engine)")
    parser.add_argument("--onnx-fp32", type=Path, default=DEFAULT_ONNX_FP32,
                        help="surgered pipeline graph with FP32 compute (--precision fp32, or the fp16-flag route)")
    parser.add_argument("--out", type=Path, help=f"plan to write (+ .json sidecar); default {DEFAULT_PLAN}, or "
                                                 f"{DEFAULT_RTX_PLAN} for TensorRT-RTX")
    parser.add_argument("--precision", default="fp16", choices=PRECISIONS)
    parser.add_argument("--route", default="auto", choices=ROUTES,
                        help="auto = strongly-typed (types from the graph); fp16-flag: TensorRT 10's FP16 builder "
                             "flag on the FP32 graph, for comparison only (pre/post-processing may drop to FP16)")
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
    plugin.add_argument("--no-plugin", action="store_true",
                        help="load no AdnetDCNv2 plugin: for graphs without its nodes (the unsurgered graph, whose "
                             "DeformConv TensorRT maps to its built-in plugin)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--verbose", action="store_true", help="TensorRT's and Polygraphy's verbose log")
    args = parser.parse_args(argv)
    trt = trt_compat.load(args.backend)
    base = CI_PROFILE if args.ci_profile else DEFAULT_PROFILE
    profile = Profile.parse(args.min_size, args.opt_size, args.max_size, base=base)
    route = resolve_route(trt, args.precision, args.route)
    if route == "fp16-flag":
        print(f"warning: {FP16_FLAG_WARNING}", file=sys.stderr)
    onnx = args.onnx if route == "strongly-typed" and args.precision == "fp16" else args.onnx_fp32
    out = args.out or (DEFAULT_RTX_PLAN if trt.backend == "rtx" else DEFAULT_PLAN)
    cache = None if args.no_timing_cache else (args.timing_cache or default_timing_cache(trt))
    options = BuildOptions(
        precision=args.precision, route=route, profiles=(profile,),
        workspace_bytes=None if args.workspace is None else int(args.workspace * (1 << 20)),
        timing_cache=cache, optimization_level=args.opt_level,
        compute_capabilities=tuple(args.compute_capability), show_progress=not args.no_progress,
        verbose=args.verbose)
    source = "none" if args.no_plugin else "stand-in" if args.python_plugin else "auto"
    print(f"building {out} from {onnx} with {trt}: {args.precision} ({route}), profile {profile}",
          file=sys.stderr)
    result = build_engine(onnx, out, options, trt=trt, plugin_library=args.plugin, plugin=source)
    side = result.sidecar
    plugins = result.plugins
    runnable = "" if plugins is None or plugins.runnable else f" -- {trt_python_plugin.STAND_IN_NOTE}"
    print(f"wrote {result.plan_path} ({side['engine']['bytes'] / 2**20:.1f} MiB, {trt}, {side['precision']} "
          f"{side['route']}, {side['network']['plugin_layers']} {contract.PLUGIN_NAME} layers, "
          f"{result.seconds:.1f} s) and {result.sidecar_path}{runnable}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
