"""Export ADNet to standard ONNX (opset 19, one DeformConv per DCN call), dynamic batch, height and width.

Two graphs from one code path (export/pipeline.py):
- the deployable pipeline (default): the public contract LDR [B,3,H,W,3] + EV [B,3] -> HDR [B,H,W,3];
- the bare network (`--core`): x1, x2, x3 [B,6,H,W] -> gamma-domain output [B,3,H,W] (H, W multiples of 4).

CLI: python -m export.to_onnx [--checkpoint CKPT] --out build/adnet.onnx [--precision fp32|fp16] [--core]
"""
from __future__ import annotations

import argparse
import contextlib
import io
import logging
import sys
import warnings
from pathlib import Path
from typing import Optional

import onnx
import torch

from client import contract
from export.checkpoint import load_adnet, random_adnet
from export.dcn import onnx_translation_table
from client.errors import reports_errors
from export.errors import PipelineError
from export.pipeline import ADNetCore, ADNetPipeline

__all__ = ["PRECISIONS", "OPSET", "export_onnx", "check_onnx", "build_network", "main"]

OPSET = 19  # DeformConv appeared in opset 19
PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16}
LDR_TORCH_DTYPES = {"uint8": torch.uint8, "float16": torch.float16}
CORE_INPUTS = ("x1", "x2", "x3")
CORE_OUTPUT = "hdr_gamma"
MAX_SIDE = contract.MAX_SIDE  # the largest H or W the dynamic shapes admit: what a request may carry
MAX_BATCH = 64
RANDOM_WEIGHTS = "random, seed"  # adnet.weights metadata prefix of graphs exported without a checkpoint


def build_network(checkpoint: Optional[str] = None, seed: int = 0, log=print) -> torch.nn.Module:
    """ADNet from a checkpoint, or seeded random weights with a loud warning when none is given."""
    if checkpoint:
        return load_adnet(checkpoint)
    log(f"WARNING: no --checkpoint given: exporting ADNet with SEEDED RANDOM WEIGHTS (seed {seed}). The graph is "
        f"structurally complete but its output is not an HDR image. Pass --checkpoint to export a trained model.")
    return random_adnet(seed)


def _example_inputs(core: bool, ldr_dtype: str):
    # Batch 2 and sizes that are neither 0/1 nor multiples of 4, so that export keeps B, H, W symbolic.
    if core:
        return tuple(torch.rand(2, 6, 32, 44) for _ in CORE_INPUTS)
    if ldr_dtype == "uint8":
        ldr = torch.randint(0, 256, (2, contract.NUM_FRAMES, 30, 42, contract.NUM_COLORS), dtype=torch.uint8)
    else:
        ldr = torch.rand(2, contract.NUM_FRAMES, 30, 42, contract.NUM_COLORS).to(torch.float16)
    return ldr, torch.tensor([[-2.0, 0.0, 2.0], [-3.0, -1.0, 1.0]])


def _dynamic_shapes(core: bool):
    batch = torch.export.Dim("B", min=1, max=MAX_BATCH)
    if core:
        # Multiples of 4: the two stride-2 pyramid levels must upsample back to the same size.
        h, w = 4 * torch.export.Dim("H4", min=1, max=MAX_SIDE // 4), 4 * torch.export.Dim("W4", min=1, max=MAX_SIDE // 4)
        return {name: {0: batch, 2: h, 3: w} for name in CORE_INPUTS}
    h, w = torch.export.Dim("H", min=1, max=MAX_SIDE), torch.export.Dim("W", min=1, max=MAX_SIDE)
    return {"ldr": {0: batch, 2: h, 3: w}, "ev": {0: batch}}


def export_onnx(net: torch.nn.Module, out: str | Path, *, core: bool = False, precision: str = "fp32",
                ldr_dtype: str = contract.DEFAULT_LDR_DTYPE, weights: str = "unspecified",
                verbose: bool = False) -> Path:
    """Export `net` (an ADNet) to `out`; returns the path. The graph is checked with onnx.checker (full).

    `weights` describes where the weights came from; it is stored in the model's metadata (adnet.weights), so
    that later stages can say whether they serve a trained model or random weights."""
    if precision not in PRECISIONS:
        raise PipelineError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    if ldr_dtype not in LDR_TORCH_DTYPES:
        raise PipelineError(f"unknown LDR dtype {ldr_dtype!r}; choose one of {', '.join(LDR_TORCH_DTYPES)}")
    compute = PRECISIONS[precision]
    model = (ADNetCore(net, compute) if core else ADNetPipeline(net, compute)).eval()
    inputs = list(CORE_INPUTS) if core else [contract.INPUT_LDR, contract.INPUT_EV]
    outputs = [CORE_OUTPUT] if core else [contract.OUTPUT_HDR]
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    quiet = contextlib.nullcontext() if verbose else _quiet()
    with quiet, torch.no_grad():
        program = torch.onnx.export(
            model, _example_inputs(core, ldr_dtype), dynamo=True, opset_version=OPSET,
            custom_translation_table=onnx_translation_table(), dynamic_shapes=_dynamic_shapes(core),
            input_names=inputs, output_names=outputs, verbose=False)
        program.save(str(out))
    _annotate(out, core=core, precision=precision, ldr_dtype=ldr_dtype, weights=weights)
    check_onnx(out)
    return out


@contextlib.contextmanager
def _quiet():
    """Silence the exporter's progress lines and known-harmless warnings (torchvision absent, axis renames)."""
    logger = logging.getLogger("torch")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


# torch.export names derived dims by their expression; the core graph's H and W are 4*H4 and 4*W4.
_DIM_NAMES = {"4*H4": "H", "4*W4": "W"}


def _annotate(path: Path, **props) -> None:
    model = onnx.load(str(path))
    model.producer_name = "adnet-deploy export.to_onnx"
    g = model.graph
    for value in list(g.input) + list(g.output) + list(g.value_info):
        for dim in value.type.tensor_type.shape.dim:
            if dim.dim_param in _DIM_NAMES:
                dim.dim_param = _DIM_NAMES[dim.dim_param]
    meta = {p.key: p.value for p in model.metadata_props}
    meta.update({f"adnet.{k}": str(v) for k, v in props.items()})
    del model.metadata_props[:]
    for key, value in sorted(meta.items()):
        model.metadata_props.add(key=key, value=value)
    onnx.save(model, str(path))


def check_onnx(path: str | Path) -> None:
    """onnx.checker with full_check (strict shape inference); custom-domain nodes are checked for form only."""
    onnx.checker.check_model(str(path), full_check=True)


@reports_errors
def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m export.to_onnx", description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", help="official ADNet checkpoint; without one, seeded random weights")
    parser.add_argument("--out", required=True, help="output .onnx path, e.g. build/adnet.onnx")
    parser.add_argument("--precision", default="fp32", help="fp32 (TensorRT 10 FP16-flag route) or fp16 "
                        "(FP16 compute, for strongly typed networks); I/O types are the contract's either way")
    parser.add_argument("--ldr-dtype", default=contract.DEFAULT_LDR_DTYPE,
                        help="LDR input type: uint8 (8-bit sources) or float16 (16-bit sources, values in [0,1])")
    parser.add_argument("--core", action="store_true", help="export the bare network (x1, x2, x3) instead")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights (no --checkpoint)")
    parser.add_argument("--verbose", action="store_true", help="show the exporter's own output")
    args = parser.parse_args(argv)
    if args.precision not in PRECISIONS:
        raise PipelineError(f"unknown precision {args.precision!r}; choose one of {', '.join(PRECISIONS)}")
    net = build_network(args.checkpoint, args.seed, log=lambda m: print(m, file=sys.stderr))
    weights = f"checkpoint {Path(args.checkpoint).name}" if args.checkpoint else f"{RANDOM_WEIGHTS} {args.seed}"
    path = export_onnx(net, args.out, core=args.core, precision=args.precision, ldr_dtype=args.ldr_dtype,
                       weights=weights, verbose=args.verbose)
    graph = onnx.load(str(path), load_external_data=False).graph
    n_dcn = sum(node.op_type == "DeformConv" for node in graph.node)
    print(f"wrote {path} ({'core' if args.core else 'pipeline'}, {args.precision}, {n_dcn} DeformConv, "
          f"inputs {[i.name for i in graph.input]}, outputs {[o.name for o in graph.output]})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
