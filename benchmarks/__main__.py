"""python -m benchmarks: latency, serving and accuracy of the ADNet deployment on this machine (`make bench`).

    python -m benchmarks --quick                    # < 3 min on a 2-core CPU: small sizes, few runs
    python -m benchmarks                            # full: CPU 128x192 + 256x256; GPU 256x256, 1000x1500, 1060x1900
    python -m benchmarks --sizes 1060x1900 --url localhost:8001    # against a running (GPU) Triton
    python -m benchmarks --table benchmarks/results/<stem>.json [--markdown]    # print a saved run's tables
    python -m benchmarks --replot benchmarks/results/<stem>.json                # redraw its plots

Exit status: 0 when the run completed (skips are normal), 1 when it could not start, 3 when a part failed.
"""
from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path
from typing import Optional

from benchmarks.config import PARTS, make_config, parse_sizes
from benchmarks.inputs import parse_size
from client.errors import reports_errors


def _size(text: str):
    try:
        return parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _sizes(text: str):
    try:
        return parse_sizes(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _ints(text: str):
    try:
        values = tuple(int(v) for v in text.replace(" ", ",").split(",") if v)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def _parts(text: str):
    parts = tuple(p for p in text.replace(" ", ",").split(",") if p)
    unknown = set(parts) - set(PARTS)
    if unknown or not parts:
        raise argparse.ArgumentTypeError(f"parts are {', '.join(PARTS)}; got {text!r}")
    return parts


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="\n".join(__doc__.splitlines()[1:]))
    p.add_argument("--quick", action="store_true", help="small sizes, few runs, concurrency 1,2,4")
    p.add_argument("--sizes", type=_sizes, help="latency sizes HxW,HxW (run on every backend, CPU ones too)")
    p.add_argument("--serving-size", type=_size, help="frame size of the serving part (HxW)")
    p.add_argument("--concurrency", type=_ints, help="concurrency levels, e.g. 1,2,4,8,16")
    p.add_argument("--runs", type=int, help="timed runs per backend and size (cut to fit --max-seconds)")
    p.add_argument("--warmup", type=int, help="untimed runs first (at least 1)")
    p.add_argument("--max-seconds", type=float, help="time budget per backend and size")
    p.add_argument("--input-sets", type=int, help="different inputs cycled through by the timing loops")
    p.add_argument("--requests", type=int, dest="serving_requests", help="serving: requests per level (at least)")
    p.add_argument("--accuracy-size", type=_size, help="size of the synthetic accuracy scenes (HxW)")
    p.add_argument("--accuracy-scenes", type=int, help="number of synthetic accuracy scenes")
    p.add_argument("--data", type=Path, help="NTIRE-format folder: accuracy vs PyTorch FP32 and vs ground truth")
    p.add_argument("--data-limit", type=int, help="at most this many DATA scenes (default 2)")
    p.add_argument("--parts", type=_parts, help=f"subset of {','.join(PARTS)}")
    p.add_argument("--url", help="benchmark a running Triton at host:port (gRPC) instead of starting the CPU one")
    p.add_argument("--no-perf-analyzer", dest="perf_analyzer", action="store_false", default=None)
    p.add_argument("--onnx", type=Path, help="pipeline ONNX, FP32 (default build/adnet.onnx); the PyTorch reference "
                   "takes its weights from it")
    p.add_argument("--onnx-fp16", type=Path, help="pipeline ONNX, FP16 (default build/adnet_fp16.onnx)")
    p.add_argument("--onnx-plugin", type=Path, help="surgered FP32 graph (default build/adnet_dcn_plugin.onnx)")
    p.add_argument("--onnx-plugin-fp16", type=Path, help="surgered FP16 graph")
    p.add_argument("--plan", type=Path, help="TensorRT plan with our plugin (default model_repository/gpu/...)")
    p.add_argument("--builtin-plan", type=Path, help="TensorRT plan with the built-in DeformConv (built if missing)")
    p.add_argument("--out", type=Path, help="results folder (default benchmarks/results)")
    p.add_argument("--work", type=Path, help="scratch folder (default build/bench)")
    p.add_argument("--label", help="machine label in file names (default: from the CPU/GPU name)")
    p.add_argument("--no-plots", dest="plots", action="store_false", default=None)
    p.add_argument("--table", type=Path, metavar="JSON", help="print the tables of a saved run and exit")
    p.add_argument("--markdown", action="store_true", help="with --table: Markdown (for benchmarks/README.md)")
    p.add_argument("--replot", type=Path, metavar="JSON", help="redraw the plots of a saved run and exit")
    return p


@reports_errors
def main(argv: Optional[list[str]] = None) -> int:
    args = parser().parse_args(argv)
    from benchmarks import report

    if args.table or args.replot:
        path = args.table or args.replot
        results = report.load_results(path)
        if args.table:
            print(report.markdown_tables(results) if args.markdown else report.text_tables(results))
        else:
            stem = Path(path).stem
            for plot, suffix in ((report.plot_latency, "latency"), (report.plot_serving, "serving")):
                written = plot(results, Path(path).parent / f"{stem}_{suffix}.png")
                print(f"wrote {written}" if written else f"no {suffix} data to plot")
        return 0

    # SIGTERM (a CI timeout, kill) must still stop the server this process started.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    from benchmarks import harness, machine

    device, _ = machine.gpu()
    overrides = {k: v for k, v in vars(args).items() if k not in ("quick", "table", "markdown", "replot")}
    cfg = make_config(quick=args.quick, gpu=device is not None, cpu_cores=machine.cpu_count(), **overrides)
    results = harness.run(cfg)
    harness.save(results, cfg)
    print()
    print(report.text_tables(results))
    print(f"\n(elapsed {results['elapsed_s']:.0f} s)")
    failed = [r for table in ("latency", "serving", "accuracy") for r in results[table] if r.get("status") == "error"]
    return 3 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
