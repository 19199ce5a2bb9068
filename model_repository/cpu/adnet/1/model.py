"""Triton python backend: the ADNet pipeline ONNX on ONNX Runtime (CPU), behind the public contract.

config.pbtxt is the single source of truth: tensor names, types and limits are read from it in initialize(),
and the ONNX graph's own inputs are checked against it there. The session is built once. Every request gets
exactly one response; a bad request gets an error response that says what is wrong and how to fix it, and the
other requests of the same batch are still served.

Bounded memory (model_repository/README.md, "Memory and tiling"): ONNX Runtime's CPU arena and memory patterns are
off and glibc returns large blocks to the system (mallopt + malloc_trim), so the stub gives memory back after each
batch; no single ONNX Runtime run gets more than `tile_max_pixels` pixels: a frame above it is processed as
overlapping tiles of one shape with client/tiling.py (the client library, on PYTHONPATH: model_repository/server.py
puts the project root there), and a batch above it runs in parts. A cancelled request stops between tiles.
"""
import ctypes
import ctypes.util
import json
import os
from collections import defaultdict

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils

from client import tiling

_ONNX_TYPES = {"tensor(uint8)": np.uint8, "tensor(float16)": np.float16, "tensor(float)": np.float32}


class RequestError(ValueError):
    """A request the model cannot serve; the message goes back to the client."""


class Cancelled(Exception):
    """The client cancelled the request (or its deadline passed) while its tiles were running."""


# glibc mallopt parameters (malloc.h). Blocks above the mmap threshold are mapped and unmapped on their own; the
# trim threshold bounds the free memory kept at the top of the heap. ONNX Runtime without its arena frees every
# intermediate tensor (up to hundreds of MB each), which glibc would otherwise keep for reuse, never shrinking.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_MALLOC_THRESHOLD = 1 << 20


def _is_cancelled(request) -> bool:
    return bool(request.is_cancelled())


def _libc():
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:  # not glibc: nothing to tune
        return None


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        inputs = {i["name"]: i for i in config["input"]}
        outputs = {o["name"]: o for o in config["output"]}
        if len(inputs) != 2 or len(outputs) != 1:
            raise pb_utils.TritonModelException("config.pbtxt must declare the LDR and EV inputs and the HDR output")
        self.ldr_name, self.ev_name = config["input"][0]["name"], config["input"][1]["name"]
        self.hdr_name = config["output"][0]["name"]
        self.ldr_dtype = pb_utils.triton_string_to_numpy(inputs[self.ldr_name]["data_type"])
        self.hdr_dtype = pb_utils.triton_string_to_numpy(outputs[self.hdr_name]["data_type"])
        self.min_side = int(params.get("min_side", 8))
        self.max_side = int(params.get("max_side", 4096))
        self.max_pixels = int(params.get("max_pixels", 2_100_000))
        self.tile_max_pixels = int(params.get("tile_max_pixels", 131072))
        self.tile_overlap = int(params.get("tile_overlap", tiling.DEFAULT_OVERLAP))
        if self.tile_max_pixels < 64 * 64:
            raise pb_utils.TritonModelException(f"tile_max_pixels {self.tile_max_pixels} in config.pbtxt is too "
                                                "small: set at least 4096 (64 x 64)")
        side = tiling.tile_for_pixels(self.tile_max_pixels, 1 << 14, 1 << 14)[0]
        try:  # a tile must leave room for two overlaps
            tiling.plan_tiles(2 * side, 2 * side, (side, side), self.tile_overlap)
        except tiling.TilingError as exc:
            raise pb_utils.TritonModelException(f"config.pbtxt: tile_overlap {self.tile_overlap} does not fit "
                                                f"tiles of {side}x{side} (tile_max_pixels): {exc}") from None
        self.libc = _libc()
        if self.libc is not None and hasattr(self.libc, "mallopt"):
            self.libc.mallopt(_M_MMAP_THRESHOLD, _MALLOC_THRESHOLD)
            self.libc.mallopt(_M_TRIM_THRESHOLD, _MALLOC_THRESHOLD)

        path = os.path.join(args["model_repository"], args["model_version"], params.get("onnx_file", "adnet.onnx"))
        if not os.path.isfile(path):
            raise pb_utils.TritonModelException(
                f"{path} not found: export the pipeline with `make onnx` (or `python -m export.to_onnx --out "
                f"{path}`); `make serve` copies build/adnet.onnx there")
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(params.get("intra_op_threads", 0))
        options.inter_op_num_threads = 1
        # The arena keeps the largest run's buffers for good and memory patterns pre-plan one block per shape;
        # without them memory follows the run in progress (measured in model_repository/README.md).
        options.enable_cpu_mem_arena = False
        options.enable_mem_pattern = False
        self.session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        graph_inputs = {i.name: i.type for i in self.session.get_inputs()}
        want = {self.ldr_name: self.ldr_dtype, self.ev_name: np.float32}
        for name, dtype in want.items():
            got = _ONNX_TYPES.get(graph_inputs.get(name))
            if got is not dtype:
                raise pb_utils.TritonModelException(
                    f"{path}: input {name} is {graph_inputs.get(name)} but config.pbtxt declares "
                    f"{np.dtype(dtype).name}; export with the matching --ldr-dtype or fix config.pbtxt")

    def _check(self, ldr, ev):
        if ldr.ndim != 5 or ldr.shape[1] != 3 or ldr.shape[4] != 3:
            raise RequestError(f"{self.ldr_name} must be [B, 3, H, W, 3], got {list(ldr.shape)}")
        h, w = ldr.shape[2], ldr.shape[3]
        if ldr.size == 0:
            raise RequestError(f"{self.ldr_name} is empty (shape {list(ldr.shape)}); send three decoded frames")
        if min(h, w) < self.min_side:
            raise RequestError(f"frames of {h}x{w} are too small: each side must be at least {self.min_side} pixels")
        if max(h, w) > self.max_side or h * w > self.max_pixels:
            raise RequestError(f"frames of {h}x{w} are over this server's limit (sides <= {self.max_side}, "
                               f"H*W <= {self.max_pixels}); downscale or tile the scene")
        if ev.shape != (ldr.shape[0], 3):
            raise RequestError(f"{self.ev_name} must be [B, 3] with B = {ldr.shape[0]}, got {list(ev.shape)}")
        if not np.all(np.isfinite(ev)):
            raise RequestError(f"{self.ev_name} must be finite stops, got {ev.tolist()}; check the exposure files")
        if ldr.dtype == np.float16 and not (np.all(np.isfinite(ldr)) and ldr.min() >= 0 and ldr.max() <= 1):
            raise RequestError(f"{self.ldr_name} (float16) must hold values in [0, 1]")

    def execute(self, requests):
        responses = [None] * len(requests)
        groups = defaultdict(list)  # equal shapes run as one batch
        for index, request in enumerate(requests):
            ldr = pb_utils.get_input_tensor_by_name(request, self.ldr_name).as_numpy()
            ev = pb_utils.get_input_tensor_by_name(request, self.ev_name).as_numpy()
            try:
                self._check(ldr, ev)
            except RequestError as exc:
                error = pb_utils.TritonError(str(exc), pb_utils.TritonError.INVALID_ARG)
                responses[index] = pb_utils.InferenceResponse(error=error)
                continue
            groups[ldr.shape[1:]].append((index, ldr, ev))
        for members in groups.values():
            self._run_group(requests, members, responses)
        if self.libc is not None and hasattr(self.libc, "malloc_trim"):
            self.libc.malloc_trim(0)
        return responses

    def _infer(self, ldr, ev):
        return self.session.run(None, {self.ldr_name: ldr, self.ev_name: ev})[0]

    def _infer_tiled(self, request, ldr, ev, out):
        """One frame ([3, H, W, 3]) into `out` ([H, W, 3] float32) from tiles of one shape; raises Cancelled."""
        h, w = ldr.shape[1:3]
        plan = tiling.plan_tiles(h, w, tiling.tile_for_pixels(self.tile_max_pixels, h, w), self.tile_overlap)
        batch = max(1, self.tile_max_pixels // (plan.tile_h * plan.tile_w))
        try:
            tiling.infer_tiled(ldr, ev, self._infer, plan=plan, batch_size=batch, out=out,
                               stop=lambda: _is_cancelled(request))
        except tiling.TilingError as exc:
            if _is_cancelled(request):
                raise Cancelled(str(exc)) from None
            raise

    def _run_group(self, requests, members, responses):
        """Requests of one frame shape: ONNX Runtime runs of at most tile_max_pixels pixels (frames above it
        alone, tiled), written into each request's output; one response per request."""
        h, w = members[0][1].shape[2:4]
        inputs = {index: (ldr, ev) for index, ldr, ev in members}
        outs = {index: np.empty((ldr.shape[0], h, w, 3), np.float32) for index, ldr, _ in members}
        frames = [(index, i) for index, ldr, _ in members for i in range(ldr.shape[0])]
        per_run = max(1, self.tile_max_pixels // (h * w))
        errors = {}
        for start in range(0, len(frames), per_run):
            for index in {index for index, _ in frames[start:start + per_run]}:
                if index not in errors and _is_cancelled(requests[index]):
                    errors[index] = pb_utils.TritonError("request cancelled", pb_utils.TritonError.CANCELLED)
            run = [(index, i) for index, i in frames[start:start + per_run] if index not in errors]
            if not run:
                continue
            try:
                if h * w > self.tile_max_pixels:  # per_run is 1
                    (index, i), = run
                    self._infer_tiled(requests[index], inputs[index][0][i], inputs[index][1][i], outs[index][i])
                else:
                    hdr = self._infer(np.stack([inputs[index][0][i] for index, i in run]),
                                      np.stack([inputs[index][1][i] for index, i in run]))
                    for k, (index, i) in enumerate(run):
                        outs[index][i] = hdr[k]
            except Cancelled as exc:
                errors[run[0][0]] = pb_utils.TritonError(f"request cancelled: {exc}", pb_utils.TritonError.CANCELLED)
            except Exception as exc:  # an ORT failure must not take the other requests down
                error = pb_utils.TritonError(f"ONNX Runtime failed on {len(run)} frame(s) of {h}x{w}: {exc}")
                for index, _ in run:
                    errors[index] = error
        for index in outs:
            if index in errors:
                responses[index] = pb_utils.InferenceResponse(error=errors[index])
            else:
                hdr = outs[index].astype(self.hdr_dtype, copy=False)
                responses[index] = pb_utils.InferenceResponse([pb_utils.Tensor(self.hdr_name, hdr)])
