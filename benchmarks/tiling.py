"""python -m benchmarks.tiling: tiled inference (client/tiling.py) — accuracy against the whole frame, and
throughput and resident memory of the real Triton CPU server against frame size (`make bench` runs it).

    python -m benchmarks.tiling --quick      # ~3 min on a 2-core CPU: accuracy at 192x256, a 600x800 request
    python -m benchmarks.tiling              # full: also 1060x1900 (server tiles) and 0.5/2/3.45/12 Mpixel scenes
                                             # through the client's tiling (CPU: ~1 h on 2 cores)
    python -m benchmarks.tiling --sizes 600x800:server,3000x4000:client

1. Accuracy (ONNX Runtime in this process): one random scene, whole frame vs tiles of `--tile` at several overlaps
   (the default overlap among them): NTIRE PSNR-µ (client/hdr_math, gamma-domain) of the tiled output against the
   whole frame's, max abs error, relative L2.
2. Memory and throughput (the real tritonserver 2.51, CPU repository with the shipped config.pbtxt): per size, one
   scene, either as ONE request of the whole frame (`server`: model.py cuts it into tiles of `tile_max_pixels`) or
   through HDRClient (`client`: the client sends tiles of the model's tile size, 2 requests in flight). Measured:
   seconds, Mpixel/s, peak (VmHWM, reset before each size through /proc/PID/clear_refs) and resident (VmRSS, after
   the request) memory of the python stub, of tritonserver and of this client process.

Writes {date}_{machine}[_quick]_tiling_accuracy.csv, ..._tiling_memory.csv, ..._tiling.json and ..._tiling.png to
--out (default benchmarks/results).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

import numpy as np

from benchmarks import machine

ROOT = Path(__file__).resolve().parents[1]
QUICK_SIZES = (((600, 800), "server"),)
FULL_SIZES = (((600, 800), "server"), ((1060, 1900), "server"), ((600, 800), "client"), ((1060, 1900), "client"),
              ((1500, 2300), "client"), ((3000, 4000), "client"))
ACCURACY_FIELDS = ["size", "tile", "overlap", "default", "tiles", "psnr_mu_db", "max_abs", "max_abs_rel", "rel_l2",
                   "whole_s", "tiled_s"]
MEMORY_FIELDS = ["size", "mpixel", "path", "tiles", "seconds", "mpixel_per_s", "stub_peak_mib", "stub_after_mib",
                 "server_peak_mib", "server_after_mib", "client_peak_mib", "client_after_mib", "total_after_mib",
                 "status", "note"]


def _size(text: str) -> tuple[int, int]:
    h, _, w = text.lower().partition("x")
    return int(h), int(w)


def _sized_path(text: str):
    size, _, path = text.partition(":")
    if path not in ("server", "client"):
        raise argparse.ArgumentTypeError(f"expected HxW:server or HxW:client, got {text!r}")
    return _size(size), path


def _reset_peak(pid: int) -> None:
    with open(f"/proc/{pid}/clear_refs", "w") as f:  # "5": reset the peak resident set size (VmHWM)
        f.write("5")


def _session(onnx: Path):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.enable_cpu_mem_arena = False  # as the CPU model: memory follows the run in progress
    options.enable_mem_pattern = False
    return ort.InferenceSession(str(onnx), options, providers=["CPUExecutionProvider"])


def accuracy(onnx: Path, size, tile, overlaps, log=print) -> list[dict]:
    from client import hdr_math, tiling

    session = _session(onnx)
    rng = np.random.default_rng()
    h, w = size
    ldr = rng.integers(0, 256, (1, 3, h, w, 3), dtype=np.uint8)
    ev = np.array([[-2.0, 0.0, 2.0]], np.float32)
    start = time.perf_counter()
    whole = session.run(None, {"LDR": ldr, "EV": ev})[0][0]
    whole_s = time.perf_counter() - start
    rows = []
    for overlap in overlaps:
        plan = tiling.plan_tiles(h, w, tile, overlap)
        start = time.perf_counter()
        tiled = tiling.infer_tiled(ldr[0], ev[0], lambda l, e: session.run(None, {"LDR": l, "EV": e})[0],
                                   plan=plan)
        tiled_s = time.perf_counter() - start
        err = np.abs(tiled.astype(np.float64) - whole)
        row = dict(size=f"{h}x{w}", tile=f"{plan.tile_h}x{plan.tile_w}", overlap=overlap,
                   default=overlap == tiling.DEFAULT_OVERLAP, tiles=len(plan),
                   psnr_mu_db=hdr_math.ntire_psnr_mu(hdr_math.delinearize(whole), hdr_math.delinearize(tiled)),
                   max_abs=float(err.max()), max_abs_rel=float(err.max() / np.abs(whole).max()),
                   rel_l2=float(np.linalg.norm(err) / np.linalg.norm(whole)), whole_s=whole_s, tiled_s=tiled_s)
        log(f"  accuracy {row['size']} tiles {row['tile']} overlap {overlap}: PSNR-mu {row['psnr_mu_db']:.1f} dB, "
            f"max abs {row['max_abs']:.3g} ({row['max_abs_rel']:.2%} of the peak), rel L2 {row['rel_l2']:.2e}")
        rows.append(row)
    return rows


def _server_pids(server) -> dict:
    pids = subprocess.run(["pgrep", "-g", str(server.process.pid)], capture_output=True, text=True).stdout.split()
    stub = [p for p in pids if "triton_python_backend_stub" in Path(f"/proc/{p}/cmdline").read_text()]
    return {"server": server.process.pid, "stub": int(stub[0]) if stub else None}


def memory(onnx: Path, sizes, work: Path, log=print) -> list[dict]:
    import os

    import tritonclient.grpc as grpcclient

    from client import contract, tiling
    from client.infer import HDRClient
    from client.scenes import Scene
    from model_repository.server import TritonServer, free_port, stage_cpu_repository

    repo = stage_cpu_repository(onnx, work)
    server = TritonServer(repo, grpc_port=free_port(), http_port=free_port(), metrics_port=free_port(), stage=work)
    rows = []
    with server:
        pids = _server_pids(server) | {"client": os.getpid()}
        with HDRClient(server.grpc_url, timeout=3600, retries=0) as client:
            info = client.model_info()
            log(f"  Triton CPU at {server.grpc_url}: tile_max_pixels {info.tile_max_pixels}, stub pid {pids['stub']}")
            for (h, w), path in sizes:
                rng = np.random.default_rng()
                ldrs = rng.integers(0, 256, (3, h, w, 3), dtype=np.uint8)
                evs = np.array([-2.0, 0.0, 2.0])
                for pid in pids.values():
                    _reset_peak(pid)
                row = dict(size=f"{h}x{w}", mpixel=h * w / 1e6, path=path, status="ok", note="")
                start = time.perf_counter()
                try:
                    if path == "client":
                        tile = tiling.client_tile(h, w, info.tile_max_pixels)
                        row["tiles"] = len(tiling.plan_tiles(h, w, tile)) if tile else 1
                        hdr = client.infer(Scene(f"{h}x{w}", ldrs, evs, bit_depth=8))
                    else:
                        tile = tiling.tile_for_pixels(info.tile_max_pixels, h, w)
                        row["tiles"] = (len(tiling.plan_tiles(h, w, tile)) if h * w > info.tile_max_pixels else 1)
                        inputs = [grpcclient.InferInput("LDR", [1, 3, h, w, 3], "UINT8"),
                                  grpcclient.InferInput("EV", [1, 3], "FP32")]
                        inputs[0].set_data_from_numpy(ldrs[None])
                        inputs[1].set_data_from_numpy(evs[None].astype(np.float32))
                        raw = grpcclient.InferenceServerClient(server.grpc_url)
                        try:
                            hdr = raw.infer(contract.MODEL_NAME, inputs, client_timeout=3600).as_numpy("HDR")[0]
                        finally:
                            raw.close()
                    row["seconds"] = time.perf_counter() - start
                    row["mpixel_per_s"] = row["mpixel"] / row["seconds"]
                    if hdr.shape != (h, w, 3) or not np.all(np.isfinite(hdr)):
                        row.update(status="error", note=f"output {hdr.shape}, finite {np.all(np.isfinite(hdr))}")
                    del hdr
                except Exception as exc:  # one size failing (e.g. over the server's limit) is a result too
                    row.update(status="error", note=str(exc)[:300], seconds=time.perf_counter() - start)
                del ldrs
                time.sleep(1.0)  # let the stub finish trimming
                for name, pid in pids.items():
                    status = machine.process_memory_mib(pid)
                    row[f"{name}_peak_mib"], row[f"{name}_after_mib"] = status["VmHWM"], status["VmRSS"]
                row["total_after_mib"] = row["stub_after_mib"] + row["server_after_mib"]
                log(f"  {row['size']} ({row['mpixel']:.2f} MP, {path} tiles: {row['tiles']}): "
                    f"{row.get('seconds', 0):.1f} s; stub peak {row['stub_peak_mib']:.0f} MiB, after "
                    f"{row['stub_after_mib']:.0f}; tritonserver peak {row['server_peak_mib']:.0f}, after "
                    f"{row['server_after_mib']:.0f}; client peak {row['client_peak_mib']:.0f} MiB "
                    f"{row['status']} {row['note']}")
                rows.append(row)
    return rows


def plot(results: dict, path: Path) -> Optional[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in results["memory"] if r["status"] == "ok"]
    if not rows:
        return None
    fig, (ax_mem, ax_speed) = plt.subplots(1, 2, figsize=(11, 4))
    metrics = (("stub_peak_mib", "stub peak", "C0", "-"), ("stub_after_mib", "stub after", "C0", "--"),
               ("server_peak_mib", "tritonserver peak", "C1", "-"), ("server_after_mib", "tritonserver after", "C1",
                                                                     "--"),
               ("client_peak_mib", "client peak", "C2", "-"))
    for path_kind, marker in (("server", "o"), ("client", "s")):
        sel = sorted((r for r in rows if r["path"] == path_kind), key=lambda r: r["mpixel"])
        if not sel:
            continue
        mp = [r["mpixel"] for r in sel]
        for key, label, color, style in metrics:
            ax_mem.plot(mp, [r[key] for r in sel], marker=marker, color=color, ls=style,
                        label=f"{label} ({path_kind} tiles)")
        ax_speed.plot(mp, [r["mpixel_per_s"] for r in sel], marker=marker, label=f"{path_kind} tiles")
    ax_speed.set_ylim(bottom=0)
    ax_mem.axhline(3 * 1024, color="red", lw=0.8, label="3 GiB goal (all server processes)")
    ax_mem.set(xlabel="frame (Mpixel)", ylabel="resident memory (MiB)", title="Triton CPU memory per request")
    ax_speed.set(xlabel="frame (Mpixel)", ylabel="Mpixel / s", title="throughput (one scene at a time)")
    ax_mem.legend(fontsize=7)
    ax_speed.legend(fontsize=7)
    fig.suptitle(f"ADNet tiled inference, {results['machine'].get('label', '')} "
                 f"(random weights; tile_max_pixels {results.get('tile_max_pixels')})", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _write_csv(rows, fields, path: Path) -> None:
    import csv

    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items() if k in fields})


def main(argv: Optional[list[str]] = None) -> int:
    from client import tiling

    p = argparse.ArgumentParser(prog="python -m benchmarks.tiling", description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="\n".join(__doc__.splitlines()[1:]))
    p.add_argument("--quick", action="store_true", help="accuracy at 192x256, memory of one 600x800 request")
    p.add_argument("--onnx", type=Path, default=ROOT / "build" / "adnet.onnx", help="pipeline ONNX (FP32)")
    p.add_argument("--sizes", type=lambda t: tuple(_sized_path(s) for s in t.split(",") if s),
                   help="memory part: HxW:server|client,... (default: QUICK 600x800:server; full adds 1060x1900 and "
                        "0.5/2/3.45/12 Mpixel scenes through the client)")
    p.add_argument("--accuracy-size", type=_size, help="accuracy scene HxW (QUICK 192x256, full 384x512)")
    p.add_argument("--tile", type=_size, help="accuracy tiles HxW (QUICK 128x128, full 256x256)")
    p.add_argument("--overlaps", type=lambda t: sorted({int(v) for v in t.split(",") if v}),
                   help="accuracy overlaps in pixels (QUICK 0,16,32; full 0,16,32,48)")
    p.add_argument("--parts", default="accuracy,memory", help="accuracy,memory (default both)")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    p.add_argument("--work", type=Path, default=ROOT / "build" / "bench" / "tiling")
    p.add_argument("--label", help="machine label in file names (default: from the CPU/GPU name)")
    args = p.parse_args(argv)
    if not args.onnx.is_file():
        print(f"error: {args.onnx} not found: run `make onnx` first", file=sys.stderr)
        return 1
    from benchmarks import report

    info = machine.describe()
    stem = report.stem(info, args.quick, args.label) + "_tiling"
    parts = set(args.parts.split(","))
    results = {"machine": info, "quick": args.quick, "default_overlap": tiling.DEFAULT_OVERLAP,
               "accuracy": [], "memory": []}
    started = time.perf_counter()
    if "accuracy" in parts:
        size = args.accuracy_size or ((192, 256) if args.quick else (384, 512))
        tile = args.tile or ((128, 128) if args.quick else (256, 256))
        overlaps = args.overlaps or sorted({0, 16, tiling.DEFAULT_OVERLAP} | (set() if args.quick else {48}))
        print(f"tiling accuracy: {size[0]}x{size[1]} whole vs tiles of {tile[0]}x{tile[1]}, overlaps {overlaps}")
        results["accuracy"] = accuracy(args.onnx, size, tile, overlaps)
    if "memory" in parts:
        sizes = args.sizes or (QUICK_SIZES if args.quick else FULL_SIZES)
        print(f"tiling memory and throughput through Triton CPU: {', '.join(f'{h}x{w} ({k})' for (h, w), k in sizes)}")
        args.work.mkdir(parents=True, exist_ok=True)
        results["memory"] = memory(args.onnx, sizes, args.work)
        config = (ROOT / "model_repository" / "cpu" / "adnet" / "config.pbtxt").read_text()
        import re

        found = re.search(r'key: "tile_max_pixels", value: \{ string_value: "(\d+)"', config)
        results["tile_max_pixels"] = int(found.group(1)) if found else None
    results["elapsed_s"] = time.perf_counter() - started
    args.out.mkdir(parents=True, exist_ok=True)
    _write_csv(results["accuracy"], ACCURACY_FIELDS, args.out / f"{stem}_accuracy.csv")
    _write_csv(results["memory"], MEMORY_FIELDS, args.out / f"{stem}_memory.csv")
    (args.out / f"{stem}.json").write_text(json.dumps(report._clean(results), indent=1) + "\n")
    written = plot(results, args.out / f"{stem}.png") if results["memory"] else None
    print(f"wrote {args.out}/{stem}_accuracy.csv, _memory.csv, .json{', .png' if written else ''} "
          f"(elapsed {results['elapsed_s']:.0f} s)")
    failed = [r for r in results["memory"] if r["status"] != "ok"]
    return 3 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
