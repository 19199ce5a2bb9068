"""`make demo`: the whole CPU path on a bundled scene.

Exported pipeline ONNX -> the real Triton server (CPU variant) on loopback -> the gRPC client on the bundled
NTIRE-format sample -> out/ (linear .hdr, tone-mapped preview, metrics) -> server stopped.

CLI: python -m model_repository.demo [--onnx build/adnet.onnx] [--scene client/samples] [--out out]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional

import onnx

from model_repository.server import ROOT, ServerError, cpu_server

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
        server = cpu_server(onnx_path, grpc_port=args.grpc_port, http_port=args.http_port,
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
        print(f"demo done: results in {args.out}/")
    return rc


if __name__ == "__main__":
    raise SystemExit(main())
