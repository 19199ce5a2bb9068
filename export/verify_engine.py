"""Check a TensorRT engine against ONNX Runtime FP32 on synthetic HDR scenes (GPU + TensorRT; `make verify-engine`).

For each scene size (within the engine's profile) the same LDR/EV batch goes through the engine (export.engine_runner)
and through ONNX Runtime on the FP32 reference graph (default build/adnet.onnx, the standard DeformConv graph, so the
reference does not share our plugin's arithmetic; a graph with AdnetDCNv2 nodes runs through the CPU twin). Printed:
max abs error, max error relative to the reference peak, and NTIRE PSNR-mu per image. Exit 1 when any image is below
--min-psnr (50 dB).

CLI: python -m export.verify_engine [--engine model_repository/gpu/adnet/1/model.plan]
         [--reference build/adnet.onnx] [--size BxHxW ...] [--min-psnr 50]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from client import contract as io_contract
from client import hdr_math
from client.synthetic import make_scene
from export.build_engine import DEFAULT_PLAN
from export.errors import PipelineError
from export.profiles import Shape

__all__ = ["DEFAULT_SIZES", "MIN_PSNR_MU", "compare", "verify", "main"]

# Two batches: one image of a few hundred pixels, and a batch of 2 whose H, W are not multiples of 4 (padding path).
DEFAULT_SIZES = ("1x256x384", "2x130x198")
MIN_PSNR_MU = 50.0
DEFAULT_REFERENCE = Path("build") / "adnet.onnx"


def compare(ref: np.ndarray, res: np.ndarray) -> dict:
    """Errors of `res` against `ref` (HDR [B, H, W, 3], linear): max abs, max abs / ref peak, min PSNR-mu (NTIRE)."""
    ref64, res64 = np.asarray(ref, np.float64), np.asarray(res, np.float64)
    diff = np.abs(res64 - ref64)
    psnrs = [hdr_math.ntire_psnr_mu(hdr_math.delinearize(r), hdr_math.delinearize(np.maximum(s, 0)))
             for r, s in zip(ref64, res64)]
    return {"max_abs": float(diff.max()), "max_rel_to_peak": float(diff.max() / max(np.abs(ref64).max(), 1e-12)),
            "psnr_mu": [float(p) for p in psnrs], "finite": bool(np.isfinite(res64).all())}


def _batch(size: Shape, ldr_dtype: np.dtype, seed: int) -> tuple[np.ndarray, np.ndarray]:
    scenes = [make_scene(size.height, size.width, seed=seed + i) for i in range(size.batch)]
    ldr = np.stack([s.ldrs for s in scenes])
    if ldr_dtype == np.float16:  # 16-bit-source engines take [0, 1] FP16
        ldr = (ldr / 255.0).astype(np.float16)
    return ldr, np.stack([s.evs for s in scenes]).astype(np.float32)


def verify(engine: Path, reference: Path, sizes: Sequence[str] = DEFAULT_SIZES, *,
           plugin_library: Optional[Path] = None, min_psnr: float = MIN_PSNR_MU, seed: int = 0, log=print) -> bool:
    """Run the comparison; returns True when every image reaches min_psnr."""
    from export.engine_runner import EngineRunner
    from export.ort_plugin import session

    if not Path(reference).is_file():
        raise PipelineError(f"{reference}: no such reference graph; create it with `make onnx`")
    ok = True
    with EngineRunner(engine, plugin_library=plugin_library) as runner:
        ort = session(reference)
        log(f"engine {engine} ({runner.trt}, GPU {runner.gpu['name']}) vs ONNX Runtime FP32 {reference}")
        for number, text in enumerate(sizes):
            size = Shape.parse(text)
            ldr, ev = _batch(size, runner.dtype(io_contract.INPUT_LDR), seed + 100 * number)
            got = runner.infer(ldr, ev)
            want = ort.run(None, {io_contract.INPUT_LDR: ldr, io_contract.INPUT_EV: ev})[0]
            r = compare(want, got)
            passed = r["finite"] and min(r["psnr_mu"]) >= min_psnr
            ok &= passed
            log(f"  {size}: max abs {r['max_abs']:.3g}, max rel (to peak) {r['max_rel_to_peak']:.3g}, PSNR-mu "
                f"{', '.join(f'{p:.2f}' for p in r['psnr_mu'])} dB{'' if r['finite'] else ', NON-FINITE values'} "
                f"-> {'ok' if passed else f'FAIL (< {min_psnr} dB)'}")
    return ok


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m export.verify_engine", description=__doc__.splitlines()[0])
    parser.add_argument("--engine", type=Path, default=DEFAULT_PLAN)
    parser.add_argument("--reference", type=Path, default=DEFAULT_REFERENCE,
                        help="FP32 ONNX graph run by ONNX Runtime (same LDR dtype as the engine)")
    parser.add_argument("--plugin", type=Path, help="plugin library (default: the one recorded in the sidecar)")
    parser.add_argument("--size", action="append", metavar="BxHxW", help=f"scene batch size, repeatable "
                                                                          f"(default {' '.join(DEFAULT_SIZES)})")
    parser.add_argument("--min-psnr", type=float, default=MIN_PSNR_MU, help="fail below this PSNR-mu (dB)")
    parser.add_argument("--seed", type=int, default=0, help="first scene seed")
    args = parser.parse_args(argv)
    try:
        ok = verify(args.engine, args.reference, args.size or DEFAULT_SIZES, plugin_library=args.plugin,
                    min_psnr=args.min_psnr, seed=args.seed)
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print("verify-engine: " + ("PASSED" if ok else "FAILED"))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
