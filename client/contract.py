"""The public serving contract (docs/design.md §6), defined once for the exporter, the Triton configs and the client.

Triton model `adnet`, identical on GPU (TensorRT plan) and CPU (python backend + ONNX Runtime):
- input  LDR [B, 3, H, W, 3]: short, medium, long frames, HWC as decoded; UINT8 for 8-bit sources (default) or
  FP16 in [0, 1] for 16-bit sources, chosen at export (TensorRT has no UINT16 tensors);
- input  EV  [B, 3] FP32: exposure of each frame in stops (any reference; the graph makes them relative);
- output HDR [B, H, W, 3] FP32: linear radiance (the network's gamma-domain output ** 2.24).
"""
from __future__ import annotations

MODEL_NAME = "adnet"
# Its 16-bit twin: the same network and contract with LDR FP16 in [0, 1], served beside `adnet` so that 16-bit sources
# keep their precision by default while 8-bit ones keep the compact UINT8 wire (the client picks by bit depth).
MODEL_NAME_16BIT = "adnet_16bit"
INPUT_LDR = "LDR"
INPUT_EV = "EV"
OUTPUT_HDR = "HDR"

NUM_FRAMES = 3  # short, medium (reference), long
NUM_COLORS = 3
# Element types of LDR chosen at export: numpy dtype name -> Triton config data_type.
LDR_DTYPES = {"uint8": "TYPE_UINT8", "float16": "TYPE_FP16"}
DEFAULT_LDR_DTYPE = "uint8"
EV_DTYPE = "float32"
HDR_DTYPE = "float32"

# Request limits, shared by both model variants (the GPU engine's profile bounds must lie within them).
MIN_SIDE = 8      # smaller frames carry no scene; the network's coarsest level would be 2x2
MAX_SIDE = 4096   # larger frames are refused before any work is done

# Restricted endpoints (model repository control, shared memory) need this header key when the server has a token
# (model_repository/server.py). Over gRPC, Triton expects the key with a fixed prefix: Triton 2.51 answers
# "This protocol is restricted, expecting header 'triton-grpc-protocol-adnet-admin-key'" otherwise.
ADMIN_HEADER = "adnet-admin-key"
GRPC_ADMIN_HEADER = "triton-grpc-protocol-" + ADMIN_HEADER

# Where a local server manager keeps the token of its restricted endpoints (a 0600 file in a 0700 folder of this
# user), so that a client on the same machine finds it from the server's gRPC port alone; `ADNET_RUN_DIR` moves it.
RUN_DIR_ENV = "ADNET_RUN_DIR"


def admin_token_path(grpc_port: int) -> "Path":
    """The token file of the local server whose gRPC endpoint listens on `grpc_port`."""
    import os
    import tempfile
    from pathlib import Path

    base = os.environ.get(RUN_DIR_ENV) or os.path.join(
        os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir(), f"adnet-{os.getuid()}")
    return Path(base) / f"triton-grpc-{int(grpc_port)}.token"
