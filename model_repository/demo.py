"""`make demo`: the whole CPU path on a bundled scene.

Exported pipeline ONNX -> the real Triton server (CPU variant) on loopback -> the gRPC client on the bundled
NTIRE-format sample -> out/ (linear .hdr, tone-mapped preview, metrics, and a contact sheet {name}_sheet.png:
the three exposures, the output and the ground truth side by side, captioned with what the weights are) -> server
stopped.

CLI: python -m model_repository.demo [--onnx build/adnet.onnx] [--scene client/samples] [--out out]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional

import onnx

from model_repository.server import ROOT, ServerError, cpu_server, onnx_16bit_beside

SAMPLES = ROOT / "client" / "samples"


def weights_of(onnx_path: Path) -> str:
    meta = {p.key: p.value for p in onnx.load(str(onnx_path), load_external_data=False).metadata_props}
    return meta.get("adnet.weights", "unknown")


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m model_repository.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--onnx", default=str(ROOT / "build" / "adnet.onnx"), help="pipeline ONNX (make onnx)")
    parser.add_argument("--scene", default=str(SAMPLES), help="scene folder(s) for the client")
    parser.add_argument("--out", default=str(ROOT / "out"), help="where the client writes its results")
    parser.add_argument("--grpc-port", type=int, default=8001)
    parser.add_argument("--http-port", type=int, default=8000)
    parser.add_argument("--metrics-port", type=int, default=8002)
    args = parser.parse_args(argv)

    from client.__main__ import main as client_main

    onnx_path = Path(args.onnx)
    try:
        # Its own ports, found free before anything is staged or started: the demo never reports another server's
        # results as its own, nor rewrites another instance's staged repository.
        server = cpu_server(onnx_path, onnx_16bit=onnx_16bit_beside(onnx_path), grpc_port=args.grpc_port,
                            http_port=args.http_port,
                            metrics_port=args.metrics_port)
        weights = weights_of(onnx_path)
        if weights.startswith("random"):
            print(f"NOTE: {onnx_path} holds SEEDED RANDOM WEIGHTS ({weights}): no public ADNet checkpoint exists, so "
                  f"the demo shows the serving path, not a trained HDR merge. Use `make demo CKPT=your.pth`.")
        print(f"starting Triton (CPU, ONNX Runtime) on {server.grpc_url} ...", flush=True)
        with server:
            print(f"server ready; log: {server.log_path}", flush=True)
            rc = client_main([args.scene, "--out", args.out, "--url", server.grpc_url])
        print("server stopped")
    except ServerError as exc:
        print(f"error: {exc}\nIf a port is taken, pick others: make demo GRPC_PORT=9001 HTTP_PORT=9000 "
              f"METRICS_PORT=9002", file=sys.stderr)
        return 1
    if rc == 0:
        for sheet in write_sheets(args.scene, args.out, weights):
            print(f"contact sheet (inputs, output, ground truth): {sheet}")
        print(f"demo done: results in {args.out}/")
    return rc


def sheet_caption(weights: str, metrics: Optional[dict]) -> list[str]:
    """The contact sheet's caption: what the weights are, what to expect of them, the metrics."""
    if weights.startswith("random"):
        lines = [f"weights: SEEDED RANDOM WEIGHTS ({weights}); no public ADNet checkpoint exists.",
                 "Expect a colour cast or noise and a low PSNR (a few dB): this shows that the serving path works, not "
                 "a trained merge. For a real merge: make demo CKPT=/path/to/best_checkpoint.pth (official format)."]
    else:
        lines = [f"weights: {weights}"]
    if metrics:
        lines.append(f"vs ground truth ({metrics['convention']}): PSNR-l {metrics['psnr_l']:.2f} dB, "
                     f"PSNR-mu {metrics['psnr_mu']:.2f} dB")
    return lines


def write_sheets(scene_path: str, out: str, weights: str) -> list[Path]:
    """out/{name}_sheet.png for every scene the client wrote (its .hdr read back)."""
    from client import hdr_io
    from client.contact_sheet import write_contact_sheet
    from client.outputs import scene_metrics
    from client.scenes import find_scenes

    sheets = []
    for source in find_scenes(scene_path):
        hdr_path = Path(out) / f"{source.name}.hdr"
        if not hdr_path.is_file():
            continue
        scene, hdr = source.load(), hdr_io.read_hdr(hdr_path)
        sheets.append(write_contact_sheet(Path(out) / f"{source.name}_sheet.png", scene, hdr,
                                          sheet_caption(weights, scene_metrics(scene, hdr))))
    return sheets


if __name__ == "__main__":
    raise SystemExit(main())
