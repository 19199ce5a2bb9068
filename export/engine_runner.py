"""Run a TensorRT plan on the pipeline contract (LDR [B,3,H,W,3], EV [B,3] -> HDR [B,H,W,3]) on the GPU.

Polygraphy does the TensorRT work: EngineFromBytes deserialises, TrtRunner owns the execution context, the CUDA stream
and the device buffers (through libcudart with ctypes: no CUDA Python package needed). Ours on top: before
deserialising, the plan's sidecar (model.plan.json, export/engine_files.py) is checked against this process (same
TensorRT, a runnable plugin, the contract's plugin version), then the GPU, the plugin library (export/trt_process.py)
and the engine's I/O; inputs are checked against the contract and the profile with messages that name the fix.
TensorRT and Polygraphy are imported when a runner is created, never at module import.

    with EngineRunner("model_repository/gpu/adnet/1/model.plan") as runner:
        hdr = runner.infer(ldr, ev)          # numpy in, numpy out

CLI: python -m export.engine_runner PLAN [--plugin LIB] [--describe] [--run BxHxW]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional

import numpy as np

from client import contract as io_contract
from export import trt_compat, trt_process
from export.engine_files import EngineLoadError, check_sidecar, read_sidecar
from client.errors import reports_errors
from export.errors import PipelineError
from export.trt_process import DEFAULT_PLUGIN_LIBRARY, tensorrt_errors, trt_logger
from plugins.dcnv2 import contract

__all__ = ["EngineLoadError", "EngineRunError", "EngineRunner", "main"]


class EngineRunError(PipelineError):
    """Inputs that do not fit the engine (shape outside the profile, wrong dtype) or a failed execution."""


class EngineRunner:
    """A deserialised pipeline engine and a Polygraphy TrtRunner over it (activated on first use)."""

    def __init__(self, plan: Path, *, plugin_library: Optional[Path] = None, backend: str = "tensorrt",
                 verbose: bool = False):
        from polygraphy.exception import PolygraphyException

        self.plan_path = Path(plan)
        if not self.plan_path.is_file():
            raise EngineLoadError(f"{self.plan_path}: no such engine; build it with `make engine`")
        self.trt = trt_compat.load(backend)
        self.sidecar = read_sidecar(self.plan_path)
        if self.sidecar is not None:
            check_sidecar(self.sidecar, self.trt.name, self.trt.version, self.plan_path)
        self.gpu = trt_compat.require_gpu()
        self.plugins = None
        recorded = (self.sidecar or {}).get("plugin", {})
        if self.sidecar is None or recorded is not None:  # a null "plugin": built from a graph without AdnetDCNv2
            self.plugins = trt_process.load_plugins(
                self.trt, plugin_library or recorded.get("library") or DEFAULT_PLUGIN_LIBRARY)
            built_sha = recorded.get("library_sha256")
            if built_sha and built_sha != self.plugins.library_sha256:
                print(f"warning: {self.plugins.library} differs from the plugin library {self.plan_path} was built "
                      f"with (rebuilt since?); rebuild the engine if it fails to load or its results differ",
                      file=sys.stderr)
        self._polygraphy = trt_process.polygraphy(self.trt, verbose)
        logger = trt_logger(self.trt, verbose)
        mark = logger.count
        self.runtime = self.trt.module.Runtime(logger)
        try:
            self.engine = self._polygraphy.engine_from_bytes(self.plan_path.read_bytes(), runtime=self.runtime)
        except PolygraphyException:
            raise EngineLoadError(self._load_failure(logger.errors(mark), tensorrt_errors(logger, mark))) from None
        self.names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        expected = {io_contract.INPUT_LDR, io_contract.INPUT_EV, io_contract.OUTPUT_HDR}
        if set(self.names) != expected:
            raise EngineLoadError(f"{self.plan_path} has I/O {self.names}, not the pipeline contract's "
                                  f"{sorted(expected)}: build it from the pipeline graph (make onnx engine)")
        self._runner = None

    def _load_failure(self, errors: list[str], tail: str) -> str:
        text = " ".join(errors).lower()
        what = f"{self.trt} could not deserialise {self.plan_path}{tail}. "
        if contract.PLUGIN_NAME.lower() in text or "plugin" in text:
            library = self.plugins.library if self.plugins else "(none loaded)"
            return what + (f"The engine's {contract.PLUGIN_NAME} does not match the loaded library {library} "
                           f"(name/version/namespace or fields): rebuild plugin and engine together with "
                           f"`make plugin engine`")
        if "version" in text or "magic" in text or "serializ" in text:
            return what + ("The plan comes from another TensorRT version or GPU: rebuild it with `make engine` on "
                           "the machine and container you serve with")
        return what + "Rebuild it with `make engine` on this machine"

    def polygraphy_runner(self, name: str = "tensorrt"):
        """A new, inactive Polygraphy TrtRunner on this engine (for Comparator.run, which activates it itself)."""
        return self._polygraphy.TrtRunner(self.engine, name=name)

    def dtype(self, name: str) -> np.dtype:
        return np.dtype(self.trt.module.nptype(self.engine.get_tensor_dtype(name)))

    def profile(self, name: str, index: int = 0) -> tuple[tuple[int, ...], ...]:
        """(min, opt, max) shape of input `name` in optimisation profile `index`."""
        return tuple(tuple(s) for s in self.engine.get_tensor_profile_shape(name, index))

    def check_inputs(self, ldr: np.ndarray, ev: np.ndarray) -> dict[str, np.ndarray]:
        """The feed dict for LDR and EV, or EngineRunError naming what does not fit (dtype, layout, profile)."""
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
        from polygraphy.exception import PolygraphyException

        inputs = self.check_inputs(ldr, ev)
        if self._runner is None:
            runner = self.polygraphy_runner()
            runner.activate()
            self._runner = runner
        logger = trt_logger(self.trt)
        mark = logger.count
        try:
            outputs = self._runner.infer(inputs)
        except PolygraphyException as exc:
            raise EngineRunError(f"{self.trt} failed to run the engine: {exc}{tensorrt_errors(logger, mark)}") \
                from None
        return np.array(outputs[io_contract.OUTPUT_HDR], copy=True)  # the runner reuses its host buffer

    def describe(self) -> str:
        """The engine inspector's layer information (JSON; detailed, as export.build_engine builds)."""
        inspector = self.engine.create_engine_inspector()
        return inspector.get_engine_information(self.trt.module.LayerInformationFormat.JSON)

    def close(self) -> None:
        if self._runner is not None:
            self._runner.deactivate()
            self._runner = None

    def __enter__(self) -> "EngineRunner":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@reports_errors
def main(argv: Optional[list[str]] = None) -> int:
    from export.profiles import Shape
    from export.verify_engine import synthetic_batch

    parser = argparse.ArgumentParser(prog="python -m export.engine_runner", description=__doc__.splitlines()[0])
    parser.add_argument("plan", type=Path, help="e.g. model_repository/gpu/adnet/1/model.plan")
    parser.add_argument("--plugin", type=Path, help="plugin library (default: the sidecar's, else "
                                                    f"{DEFAULT_PLUGIN_LIBRARY})")
    parser.add_argument("--describe", action="store_true", help="print the engine inspector's layer information")
    parser.add_argument("--run", metavar="BxHxW", help="run a synthetic scene of this size and print statistics")
    args = parser.parse_args(argv)
    with EngineRunner(args.plan, plugin_library=args.plugin) as runner:
        print(f"{args.plan}: {runner.trt}, GPU {runner.gpu['name']} ({runner.gpu['compute_capability']}), "
              f"I/O {', '.join(f'{n} {runner.dtype(n)}' for n in runner.names)}")
        if args.describe:
            print(runner.describe())
        if args.run:
            ldr, ev = synthetic_batch(Shape.parse(args.run), runner.dtype(io_contract.INPUT_LDR), seed=0)
            hdr = runner.infer(ldr, ev)
            print(f"HDR {list(hdr.shape)} {hdr.dtype}: min {hdr.min():.4g}, mean {hdr.mean():.4g}, "
                  f"max {hdr.max():.4g}, finite {bool(np.isfinite(hdr).all())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
