"""Run a TensorRT plan on the pipeline contract (LDR [B,3,H,W,3], EV [B,3] -> HDR [B,H,W,3]) on the GPU.

TensorRT and CUDA Python (`cuda-python`, for device memory and the stream) are imported when a runner is created,
never at module import, so this module imports on any machine. Before deserialising, the runner checks the engine's
sidecar (model.plan.json from export.build_engine) against this process: same TensorRT, a runnable plugin (not the
CI stand-in), the contract's plugin version; then the GPU, the plugin library and the engine's I/O.

    with EngineRunner("model_repository/gpu/adnet/1/model.plan") as runner:
        hdr = runner.infer(ldr, ev)          # numpy in, numpy out

CLI: python -m export.engine_runner PLAN [--plugin LIB] [--describe] [--run BxHxW]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Optional

import numpy as np

from client import contract as io_contract
from export import trt_compat
from export.build_engine import DEFAULT_PLUGIN_LIBRARY, load_plugins, sidecar_path, tensorrt_errors, trt_logger
from export.errors import PipelineError
from export.trt_compat import CONTAINER_HINT
from plugins.dcnv2 import contract

__all__ = ["EngineLoadError", "EngineRunError", "EngineRunner", "read_sidecar", "check_sidecar", "main"]


class EngineLoadError(PipelineError):
    """The plan cannot be loaded here: other TensorRT, stand-in plugin, plugin mismatch, not a pipeline engine."""


class EngineRunError(PipelineError):
    """Inputs that do not fit the engine (shape outside the profile, wrong dtype) or a failed CUDA call."""


def read_sidecar(plan: Path) -> Optional[dict]:
    """The sidecar next to `plan` (model.plan.json), or None when there is none."""
    side = sidecar_path(plan)
    return json.loads(side.read_text()) if side.is_file() else None


def check_sidecar(sidecar: dict, trt: trt_compat.TensorRT, plan: Path) -> None:
    """Refuse engines that cannot load in this process, with the fix, before TensorRT fails less clearly."""
    plugin = sidecar.get("plugin", {})
    if plugin.get("implementation") == "python-stand-in":
        raise EngineLoadError(f"{plan} was built with the CI build-only Python stand-in of {contract.PLUGIN_NAME}; "
                              f"it cannot run. Rebuild it on a GPU host with the C++ plugin: `make plugin engine`")
    built = sidecar.get("tensorrt", {})
    if (built.get("name"), built.get("version")) != (trt.name, trt.version):
        raise EngineLoadError(f"{plan} was built with {built.get('name')} {built.get('version')}, this is {trt}: a "
                              f"plan loads only in the TensorRT version that built it. Rebuild it with `make engine` "
                              f"in the container you serve with ({CONTAINER_HINT})")
    if (plugin.get("version"), plugin.get("namespace")) != (contract.PLUGIN_VERSION, contract.PLUGIN_NAMESPACE):
        raise EngineLoadError(f"{plan} uses {contract.PLUGIN_NAME} version {plugin.get('version')} namespace "
                              f"'{plugin.get('namespace')}', this checkout provides version {contract.PLUGIN_VERSION} "
                              f"namespace '{contract.PLUGIN_NAMESPACE}': rebuild plugin and engine together "
                              f"(`make plugin engine`)")


def _cudart():
    try:
        from cuda.bindings import runtime as cudart  # cuda-python >= 12.6
    except ImportError:
        try:
            from cuda import cudart  # older cuda-python
        except ImportError as exc:
            raise EngineLoadError("running an engine needs CUDA Python: pip install \"cuda-python==<CUDA major>.*\" "
                                  "(the CUDA major version of the container, e.g. 12.* or 13.*)") from exc
    return cudart


class EngineRunner:
    """A deserialised pipeline engine with one execution context, one CUDA stream and reusable device buffers."""

    def __init__(self, plan: Path, *, plugin_library: Optional[Path] = None, backend: str = "tensorrt",
                 verbose: bool = False):
        self.plan_path = Path(plan)
        if not self.plan_path.is_file():
            raise EngineLoadError(f"{self.plan_path}: no such engine; build it with `make engine`")
        self.trt = trt_compat.load(backend)
        self.sidecar = read_sidecar(self.plan_path)
        if self.sidecar is not None:
            check_sidecar(self.sidecar, self.trt, self.plan_path)
        self.gpu = trt_compat.require_gpu()
        recorded = (self.sidecar or {}).get("plugin", {}).get("library")
        self.plugins = load_plugins(self.trt, plugin_library or recorded or DEFAULT_PLUGIN_LIBRARY)
        built_sha = (self.sidecar or {}).get("plugin", {}).get("library_sha256")
        if built_sha and built_sha != self.plugins.library_sha256:
            print(f"warning: {self.plugins.library} differs from the plugin library {self.plan_path} was built with "
                  f"(rebuilt since?); rebuild the engine if it fails to load or its results differ", file=sys.stderr)
        self._cudart = _cudart()
        t = self.trt.module
        logger = trt_logger(self.trt, verbose)
        mark = logger.count
        self.runtime = t.Runtime(logger)
        self.engine = self.runtime.deserialize_cuda_engine(self.plan_path.read_bytes())
        if self.engine is None:
            raise EngineLoadError(self._load_failure(logger.errors(mark), tensorrt_errors(logger, mark)))
        self.context = self.engine.create_execution_context()
        if self.context is None:
            raise EngineLoadError(f"{self.trt} could not create an execution context{tensorrt_errors(logger, mark)} "
                                  f"(out of GPU memory?)")
        self.names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        expected = {io_contract.INPUT_LDR, io_contract.INPUT_EV, io_contract.OUTPUT_HDR}
        if set(self.names) != expected:
            raise EngineLoadError(f"{self.plan_path} has I/O {self.names}, not the pipeline contract's "
                                  f"{sorted(expected)}: build it from the pipeline graph (make onnx engine)")
        self.stream = self._check(self._cudart.cudaStreamCreate(), "cudaStreamCreate")
        self._buffers: dict[str, tuple[int, int]] = {}

    def _load_failure(self, errors: list[str], tail: str) -> str:
        text = " ".join(errors).lower()
        what = f"{self.trt} could not deserialise {self.plan_path}{tail}. "
        if contract.PLUGIN_NAME.lower() in text or "plugin" in text:
            return what + (f"The engine's {contract.PLUGIN_NAME} does not match the loaded library "
                           f"{self.plugins.library} (name/version/namespace or fields): rebuild plugin and engine "
                           f"together with `make plugin engine`")
        if "version" in text or "magic" in text or "serializ" in text:
            return what + ("The plan comes from another TensorRT version or GPU: rebuild it with `make engine` on "
                           "the machine and container you serve with")
        return what + "Rebuild it with `make engine` on this machine"

    def _check(self, result, call: str):
        err, *rest = result
        if int(err) != 0:
            _, text = self._cudart.cudaGetErrorString(err)
            raise EngineRunError(f"{call} failed: {text.decode() if isinstance(text, bytes) else text}")
        return rest[0] if len(rest) == 1 else (tuple(rest) or None)

    def dtype(self, name: str) -> np.dtype:
        return np.dtype(self.trt.module.nptype(self.engine.get_tensor_dtype(name)))

    def profile(self, name: str, index: int = 0) -> tuple[tuple[int, ...], ...]:
        """(min, opt, max) shape of input `name` in optimisation profile `index`."""
        return tuple(tuple(s) for s in self.engine.get_tensor_profile_shape(name, index))

    def _device_buffer(self, name: str, nbytes: int) -> int:
        ptr, size = self._buffers.get(name, (0, 0))
        if size < nbytes:
            if ptr:
                self._check(self._cudart.cudaFree(ptr), "cudaFree")
            ptr = int(self._check(self._cudart.cudaMalloc(max(nbytes, 1)), f"cudaMalloc({nbytes})"))
            self._buffers[name] = (ptr, nbytes)
        return ptr

    def _checked_inputs(self, ldr: np.ndarray, ev: np.ndarray) -> dict[str, np.ndarray]:
        want = self.dtype(io_contract.INPUT_LDR)
        ldr = np.asarray(ldr)
        if ldr.dtype != want:  # never convert silently: uint8 codes and [0, 1] floats differ by 255x
            raise EngineRunError(f"LDR is {ldr.dtype}, the engine takes {want} (chosen at export with --ldr-dtype)")
        ev = np.asarray(ev, dtype=self.dtype(io_contract.INPUT_EV))
        if ldr.ndim != 5 or ldr.shape[1] != io_contract.NUM_FRAMES or ldr.shape[4] != io_contract.NUM_COLORS:
            raise EngineRunError(f"LDR must be [B, {io_contract.NUM_FRAMES}, H, W, {io_contract.NUM_COLORS}], got "
                                 f"{list(ldr.shape)}")
        if ev.shape != (ldr.shape[0], io_contract.NUM_FRAMES):
            raise EngineRunError(f"EV must be [B, {io_contract.NUM_FRAMES}] with LDR's B = {ldr.shape[0]}, got "
                                 f"{list(ev.shape)}")
        for name, array in ((io_contract.INPUT_LDR, ldr), (io_contract.INPUT_EV, ev)):
            lo, _, hi = self.profile(name)
            if not all(a <= s <= b for a, s, b in zip(lo, array.shape, hi)):
                raise EngineRunError(f"{name} shape {list(array.shape)} is outside the engine's profile "
                                     f"[{list(lo)} .. {list(hi)}]: rebuild with wider bounds (make engine MIN=... "
                                     f"MAX=...)")
        return {io_contract.INPUT_LDR: np.ascontiguousarray(ldr), io_contract.INPUT_EV: np.ascontiguousarray(ev)}

    def infer(self, ldr: np.ndarray, ev: np.ndarray) -> np.ndarray:
        """HDR [B, H, W, 3] float32 (linear radiance) for LDR [B, 3, H, W, 3] and EV [B, 3]."""
        cudart = self._cudart
        inputs = self._checked_inputs(ldr, ev)
        for name, array in inputs.items():
            if not self.context.set_input_shape(name, array.shape):
                raise EngineRunError(f"the engine rejected {name} shape {list(array.shape)}")
        out_name = io_contract.OUTPUT_HDR
        out = np.empty(tuple(self.context.get_tensor_shape(out_name)), dtype=self.dtype(out_name))
        h2d, d2h = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        for name, array in inputs.items():
            ptr = self._device_buffer(name, array.nbytes)
            self._check(cudart.cudaMemcpyAsync(ptr, array.ctypes.data, array.nbytes, h2d, self.stream),
                        f"copy of {name} to the GPU")
            self.context.set_tensor_address(name, ptr)
        out_ptr = self._device_buffer(out_name, out.nbytes)
        self.context.set_tensor_address(out_name, out_ptr)
        logger = trt_logger(self.trt)
        mark = logger.count
        if not self.context.execute_async_v3(int(self.stream)):
            raise EngineRunError(f"{self.trt} failed to enqueue the engine{tensorrt_errors(logger, mark)}")
        self._check(cudart.cudaMemcpyAsync(out.ctypes.data, out_ptr, out.nbytes, d2h, self.stream),
                    f"copy of {out_name} from the GPU")
        self._check(cudart.cudaStreamSynchronize(self.stream), "cudaStreamSynchronize (the engine's kernels)")
        return out

    def describe(self) -> str:
        """The engine inspector's layer information (JSON; detailed, as export.build_engine builds)."""
        inspector = self.engine.create_engine_inspector()
        return inspector.get_engine_information(self.trt.module.LayerInformationFormat.JSON)

    def close(self) -> None:
        for ptr, _ in self._buffers.values():
            self._cudart.cudaFree(ptr)
        self._buffers.clear()
        if getattr(self, "stream", None) is not None:
            self._cudart.cudaStreamDestroy(self.stream)
            self.stream = None

    def __enter__(self) -> "EngineRunner":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def main(argv: Optional[list[str]] = None) -> int:
    from client.synthetic import make_scene
    from export.profiles import Shape

    parser = argparse.ArgumentParser(prog="python -m export.engine_runner", description=__doc__.splitlines()[0])
    parser.add_argument("plan", type=Path, help="e.g. model_repository/gpu/adnet/1/model.plan")
    parser.add_argument("--plugin", type=Path, help="plugin library (default: the sidecar's, else "
                                                    f"{DEFAULT_PLUGIN_LIBRARY})")
    parser.add_argument("--describe", action="store_true", help="print the engine inspector's layer information")
    parser.add_argument("--run", metavar="BxHxW", help="run a synthetic scene of this size and print statistics")
    args = parser.parse_args(argv)
    try:
        with EngineRunner(args.plan, plugin_library=args.plugin) as runner:
            print(f"{args.plan}: {runner.trt}, GPU {runner.gpu['name']} ({runner.gpu['compute_capability']}), "
                  f"I/O {', '.join(f'{n} {runner.dtype(n)}' for n in runner.names)}")
            if args.describe:
                print(runner.describe())
            if args.run:
                size = Shape.parse(args.run)
                scenes = [make_scene(size.height, size.width, seed=i) for i in range(size.batch)]
                ldr = np.stack([s.ldrs for s in scenes])
                if runner.dtype(io_contract.INPUT_LDR) == np.float16:
                    ldr = (ldr / 255.0).astype(np.float16)
                hdr = runner.infer(ldr, np.stack([s.evs for s in scenes]).astype(np.float32))
                print(f"HDR {list(hdr.shape)} {hdr.dtype}: min {hdr.min():.4g}, mean {hdr.mean():.4g}, "
                      f"max {hdr.max():.4g}, finite {bool(np.isfinite(hdr).all())}")
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
