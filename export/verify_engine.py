"""Check a TensorRT engine against ONNX Runtime FP32 on synthetic HDR scenes, on Polygraphy's comparator.

Two steps, on two machines if need be:

1. record (`make verify-reference`, any machine with the venv): synthetic scenes at DEFAULT_SIZES ->
   build/verify/inputs.json (Polygraphy's --save-inputs format), their outputs from the FP32 reference graph under
   ONNX Runtime -> build/verify/reference.json (Polygraphy RunResults, the --save-outputs format), and
   reference.meta.json (the export it belongs to, the onnxruntime that ran it). The reference graph is
   build/adnet.onnx, the standard DeformConv graph, so the reference does not share our plugin's arithmetic.
2. verify (`make verify-engine`, GPU + TensorRT + Polygraphy; neither onnx nor onnxruntime needed): the engine runs
   the recorded inputs (Comparator.run with the engine's TrtRunner, export.engine_runner), Comparator.compare_accuracy
   compares its outputs with the recorded ones through PsnrMuCompare: per image the max abs error, the max error
   relative to the reference peak and NTIRE PSNR-mu; an image fails below --min-psnr (50 dB) or with non-finite
   values; exit 1 when one fails.

Why recorded: the NGC 24.10 containers run Python 3.10, and the newest onnxruntime for it (1.23.2) has no DeformConv
kernel, so the reference graph cannot run there. `--reference X.onnx` still runs a graph live where it can (ONNX
Runtime >= 1.32 for DeformConv; a surgered graph runs through the plugin's CPU twin with onnxruntime-extensions,
which has cp310 wheels, but then shares the plugin's sampling code).

The same files work with Polygraphy's own CLI (its error statistics; the verdict here is PSNR-mu):

    polygraphy run model_repository/gpu/adnet/1/model.plan --model-type engine --trt \\
        --plugins build/libadnet_plugins.so --load-inputs build/verify/inputs.json \\
        --load-outputs build/verify/reference.json --check-error-stat median --atol 1e-2 --rtol 1e-2

CLI: python -m export.verify_engine --record [--reference-onnx build/adnet.onnx] [--dir build/verify]
     python -m export.verify_engine [--engine model_repository/gpu/adnet/1/model.plan]
         [--reference build/verify/reference.json | X.onnx] [--min-psnr 50]
"""
from __future__ import annotations

import argparse
import datetime
import json
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np

from client import contract as io_contract
from client import hdr_math
from export.engine_files import DEFAULT_PLAN, EngineLoadError
from client.errors import reports_errors
from export.errors import PipelineError
from export.profiles import Shape
from export.trt_process import quiet_polygraphy, sha256_file

__all__ = ["DEFAULT_SIZES", "MIN_PSNR_MU", "DEFAULT_DIR", "DEFAULT_REFERENCE_ONNX", "Verdict", "PsnrMuCompare",
           "compare", "synthetic_batch", "feed_dicts", "onnx_runner", "lacks_deformconv", "record", "load_recorded",
           "compare_runs", "verify", "main"]

# Two batches: one image of a few hundred pixels, and a batch of 2 whose H, W are not multiples of 4 (padding path).
DEFAULT_SIZES = ("1x256x384", "2x130x198")
MIN_PSNR_MU = 50.0
DEFAULT_REFERENCE_ONNX = Path("build") / "adnet.onnx"
DEFAULT_DIR = Path("build") / "verify"
INPUTS_FILE, OUTPUTS_FILE, META_FILE = "inputs.json", "reference.json", "reference.meta.json"
META_FORMAT = 1


# ---- the comparison --------------------------------------------------------------------------------------------

def compare(ref: np.ndarray, res: np.ndarray) -> dict:
    """Errors of `res` against `ref` (HDR [B, H, W, 3], linear): max abs, max abs / ref peak, PSNR-mu per image."""
    ref64, res64 = np.asarray(ref, np.float64), np.asarray(res, np.float64)
    diff = np.abs(res64 - ref64)
    psnrs = [hdr_math.ntire_psnr_mu(hdr_math.delinearize(r), hdr_math.delinearize(np.maximum(s, 0)))
             for r, s in zip(ref64, res64)]
    return {"max_abs": float(diff.max()), "max_rel_to_peak": float(diff.max() / max(np.abs(ref64).max(), 1e-12)),
            "psnr_mu": [float(p) for p in psnrs], "finite": bool(np.isfinite(res64).all())}


@dataclass
class Verdict:
    """One output of one iteration: truthy when it passed (what Polygraphy's compare_accuracy counts)."""

    passed: bool
    metrics: dict = field(default_factory=dict)

    def __bool__(self) -> bool:
        return self.passed


class PsnrMuCompare:
    """A Polygraphy compare_func: HDR of the second runner vs the first (the reference); passes when every image is
    finite and reaches `min_psnr` dB PSNR-mu. `verdicts` keeps every comparison made, in order."""

    def __init__(self, min_psnr: float = MIN_PSNR_MU):
        self.min_psnr = min_psnr
        self.verdicts: list[Verdict] = []

    def __call__(self, reference, result) -> "OrderedDict[str, Verdict]":
        name = io_contract.OUTPUT_HDR
        metrics = compare(np.asarray(reference[name]), np.asarray(result[name]))
        verdict = Verdict(metrics["finite"] and min(metrics["psnr_mu"]) >= self.min_psnr, metrics)
        self.verdicts.append(verdict)
        return OrderedDict([(name, verdict)])


# ---- inputs ----------------------------------------------------------------------------------------------------

def synthetic_batch(size: Shape, ldr_dtype, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """LDR [B, 3, H, W, 3] (uint8 codes, or FP16 in [0, 1] for float16-LDR engines) and EV [B, 3] float32."""
    from client.synthetic import make_scene

    scenes = [make_scene(size.height, size.width, seed=seed + i) for i in range(size.batch)]
    ldr = hdr_math.ldr_for_model(np.stack([s.ldrs for s in scenes]), ldr_dtype)
    return ldr, np.stack([s.evs for s in scenes]).astype(np.float32)


def feed_dicts(sizes: Sequence[str], ldr_dtype, seed: int = 0) -> list["OrderedDict[str, np.ndarray]"]:
    """One Polygraphy feed dict {LDR, EV} per size (BxHxW)."""
    feeds = []
    for number, text in enumerate(sizes):
        ldr, ev = synthetic_batch(Shape.parse(text), ldr_dtype, seed + 100 * number)
        feeds.append(OrderedDict([(io_contract.INPUT_LDR, ldr), (io_contract.INPUT_EV, ev)]))
    return feeds


def _graph_ldr_dtype(onnx_path: Path) -> np.dtype:
    import onnx

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    types = {i.name: i.type.tensor_type.elem_type for i in graph.input}
    return np.dtype(np.float16) if types.get(io_contract.INPUT_LDR) == onnx.TensorProto.FLOAT16 else np.dtype(np.uint8)


# ---- the reference ---------------------------------------------------------------------------------------------

def onnx_runner(onnx_path: Path, name: str = "onnxruntime-fp32"):
    """A Polygraphy OnnxrtRunner for a pipeline graph (export.ort_plugin's session: a surgered graph's AdnetDCNv2
    nodes run on the plugin's CPU twin). An onnxruntime without DeformConv is reported with the fix."""
    from polygraphy.backend.onnxrt import OnnxrtRunner

    from export.ort_plugin import session

    onnx_path = Path(onnx_path)
    if not onnx_path.is_file():
        raise PipelineError(f"{onnx_path}: no such reference graph; create it with `make onnx`")
    try:
        sess = session(onnx_path)
    except Exception as exc:  # onnxruntime raises its own exception types (NotImplemented, Fail, ...)
        import onnxruntime

        if lacks_deformconv(str(exc)):
            raise PipelineError(
                f"onnxruntime {onnxruntime.__version__} cannot run {onnx_path} ({str(exc).splitlines()[0]}): its CPU "
                f"DeformConv kernel arrived in 1.32 (Python 3.10's newest, 1.23.2, has none). Record the reference "
                f"where the venv runs (`make verify-reference`) and verify against build/verify/reference.json") \
                from exc
        raise
    return OnnxrtRunner(sess, name=name)


def lacks_deformconv(message: str) -> bool:
    """Whether an onnxruntime session error says it has no DeformConv kernel, as 1.23.2 says: "NOT_IMPLEMENTED :
    Could not find an implementation for DeformConv(19) node with name ..."."""
    return "NOT_IMPLEMENTED" in message and "implementation for DeformConv" in message


def record(onnx_path: Path = DEFAULT_REFERENCE_ONNX, out_dir: Path = DEFAULT_DIR,
           sizes: Sequence[str] = DEFAULT_SIZES, *, seed: int = 0, log: Callable = print) -> dict[str, Path]:
    """Run the reference graph on synthetic scenes and write inputs, outputs and metadata under out_dir."""
    import onnxruntime
    from polygraphy.comparator import Comparator
    from polygraphy.json import save_json

    quiet_polygraphy()
    onnx_path, out_dir = Path(onnx_path), Path(out_dir)
    feeds = feed_dicts(sizes, _graph_ldr_dtype(onnx_path), seed)
    runner = onnx_runner(onnx_path, name=f"onnxruntime-{onnxruntime.__version__} {onnx_path.name}")
    results = Comparator.run([runner], data_loader=feeds)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"inputs": out_dir / INPUTS_FILE, "outputs": out_dir / OUTPUTS_FILE, "meta": out_dir / META_FILE}
    save_json(feeds, str(paths["inputs"]), description="verify-engine inputs")
    results.save(str(paths["outputs"]))
    # The engine's sidecar names the graph it was built from; any graph of the same export is the same network.
    siblings = {p.name: sha256_file(p) for p in sorted(onnx_path.parent.glob("*.onnx"))}
    meta = {"format": META_FORMAT, "graph": onnx_path.name, "graphs_of_this_export": siblings,
            "onnxruntime": onnxruntime.__version__, "sizes": list(sizes), "seed": seed,
            "ldr_dtype": str(feeds[0][io_contract.INPUT_LDR].dtype),
            "recorded_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    paths["meta"].write_text(json.dumps(meta, indent=2) + "\n")
    log(f"recorded {len(feeds)} batches ({', '.join(sizes)}) of {onnx_path} under onnxruntime "
        f"{onnxruntime.__version__} -> {paths['inputs']}, {paths['outputs']}")
    return paths


def load_recorded(reference: Path):
    """(feeds, RunResults, meta) of a recording; `reference` is its reference.json or its folder."""
    from polygraphy.comparator import RunResults
    from polygraphy.json import load_json

    reference = Path(reference)
    folder = reference if reference.is_dir() else reference.parent
    outputs = reference if reference.is_file() else folder / OUTPUTS_FILE
    missing = [p for p in (outputs, folder / INPUTS_FILE, folder / META_FILE) if not p.is_file()]
    if missing:
        raise PipelineError(f"recorded reference incomplete ({', '.join(map(str, missing))} missing): record it "
                            f"where the venv runs with `make verify-reference` (after `make onnx`)")
    meta = json.loads((folder / META_FILE).read_text())
    return load_json(str(folder / INPUTS_FILE)), RunResults.load(str(outputs)), meta


def _check_same_export(meta: dict, sidecar: Optional[dict], engine: Path) -> None:
    onnx = (sidecar or {}).get("onnx", {})
    if onnx.get("sha256") and onnx["sha256"] not in meta.get("graphs_of_this_export", {}).values():
        raise EngineLoadError(f"{engine} was built from {onnx.get('file')}, which is not one of the graphs the "
                              f"reference was recorded with ({', '.join(meta.get('graphs_of_this_export', {}))}): "
                              f"re-record it after `make onnx` (`make verify-reference`) or rebuild the engine")


def compare_runs(reference, results, *, min_psnr: float = MIN_PSNR_MU):
    """Polygraphy compare_accuracy of `results` (RunResults of one runner) against `reference` (RunResults of one
    runner) with PsnrMuCompare. Returns (passed, verdicts in iteration order)."""
    from polygraphy.comparator import Comparator, RunResults

    merged = RunResults()
    merged.extend(reference)
    merged.extend(results)
    func = PsnrMuCompare(min_psnr)
    accuracy = Comparator.compare_accuracy(merged, compare_func=func)
    return bool(accuracy), func.verdicts


def verify(engine: Path, reference: Path, sizes: Sequence[str] = DEFAULT_SIZES, *,
           plugin_library: Optional[Path] = None, min_psnr: float = MIN_PSNR_MU, seed: int = 0, log=print) -> bool:
    """Run the comparison; returns True when every image reaches min_psnr. `reference`: a recording (reference.json
    or its folder) or an ONNX graph to run live."""
    from polygraphy.comparator import Comparator

    from export.engine_runner import EngineRunner

    reference = Path(reference)
    with EngineRunner(engine, plugin_library=plugin_library) as runner:
        ldr_dtype = runner.dtype(io_contract.INPUT_LDR)
        if reference.suffix == ".onnx":
            feeds = feed_dicts(sizes, ldr_dtype, seed)
            ref_results = Comparator.run([onnx_runner(reference)], data_loader=feeds)
            where = f"ONNX Runtime FP32 {reference} (live)"
        else:
            feeds, ref_results, meta = load_recorded(reference)
            _check_same_export(meta, runner.sidecar, Path(engine))
            where = f"{meta['graph']} under onnxruntime {meta['onnxruntime']} (recorded {meta['recorded_at']})"
        for feed in feeds:
            runner.check_inputs(feed[io_contract.INPUT_LDR], feed[io_contract.INPUT_EV])
        log(f"engine {engine} ({runner.trt}, GPU {runner.gpu['name']}) vs {where}")
        results = Comparator.run([runner.polygraphy_runner()], data_loader=feeds)
    ok, verdicts = compare_runs(ref_results, results, min_psnr=min_psnr)
    for feed, verdict in zip(feeds, verdicts):
        r = verdict.metrics
        shape = feed[io_contract.INPUT_LDR].shape
        size = f"{shape[0]}x{shape[2]}x{shape[3]}"
        log(f"  {size}: max abs {r['max_abs']:.3g}, max rel (to peak) {r['max_rel_to_peak']:.3g}, PSNR-mu "
            f"{', '.join(f'{p:.2f}' for p in r['psnr_mu'])} dB{'' if r['finite'] else ', NON-FINITE values'} "
            f"-> {'ok' if verdict else f'FAIL (< {min_psnr} dB)'}")
    return ok


@reports_errors
def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m export.verify_engine", description=__doc__.splitlines()[0])
    parser.add_argument("--record", action="store_true", help="record the reference (inputs + outputs) and exit")
    parser.add_argument("--reference-onnx", type=Path, default=DEFAULT_REFERENCE_ONNX,
                        help="with --record: the FP32 graph run by ONNX Runtime")
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR, help="with --record: where the recording goes")
    parser.add_argument("--engine", type=Path, default=DEFAULT_PLAN)
    parser.add_argument("--reference", type=Path, default=DEFAULT_DIR / OUTPUTS_FILE,
                        help="recorded reference.json (or its folder), or an ONNX graph to run live")
    parser.add_argument("--plugin", type=Path, help="plugin library (default: the one recorded in the sidecar)")
    parser.add_argument("--size", action="append", metavar="BxHxW",
                        help=f"scene batch size, repeatable (default {' '.join(DEFAULT_SIZES)}; recorded references "
                             f"carry their own)")
    parser.add_argument("--min-psnr", type=float, default=MIN_PSNR_MU, help="fail below this PSNR-mu (dB)")
    parser.add_argument("--seed", type=int, default=0, help="first scene seed")
    args = parser.parse_args(argv)
    if args.record:
        record(args.reference_onnx, args.dir, args.size or DEFAULT_SIZES, seed=args.seed)
        return 0
    ok = verify(args.engine, args.reference, args.size or DEFAULT_SIZES, plugin_library=args.plugin,
                min_psnr=args.min_psnr, seed=args.seed)
    print("verify-engine: " + ("PASSED" if ok else "FAILED"))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
