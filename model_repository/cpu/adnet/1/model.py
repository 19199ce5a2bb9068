"""Triton python backend: the ADNet pipeline ONNX on ONNX Runtime (CPU), behind the public contract.

config.pbtxt is the single source of truth: tensor names, types and limits are read from it in initialize(),
and the ONNX graph's own inputs are checked against it there. The session is built once. Every request gets
exactly one response; a bad request gets an error response that says what is wrong and how to fix it, and the
other requests of the same batch are still served.
"""
import json
import os
from collections import defaultdict

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils

_ONNX_TYPES = {"tensor(uint8)": np.uint8, "tensor(float16)": np.float16, "tensor(float)": np.float32}


class RequestError(ValueError):
    """A request the model cannot serve; the message goes back to the client."""


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

        path = os.path.join(args["model_repository"], args["model_version"], params.get("onnx_file", "adnet.onnx"))
        if not os.path.isfile(path):
            raise pb_utils.TritonModelException(
                f"{path} not found: export the pipeline with `make onnx` (or `python -m export.to_onnx --out "
                f"{path}`); `make serve` copies build/adnet.onnx there")
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(params.get("intra_op_threads", 0))
        options.inter_op_num_threads = 1
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
            ldr = np.concatenate([m[1] for m in members])
            ev = np.concatenate([m[2] for m in members])
            try:
                hdr = self.session.run(None, {self.ldr_name: ldr, self.ev_name: ev})[0].astype(self.hdr_dtype)
            except Exception as exc:  # an ORT failure must not take the other requests down
                error = pb_utils.TritonError(f"ONNX Runtime failed on a {list(ldr.shape)} batch: {exc}")
                for index, _, _ in members:
                    responses[index] = pb_utils.InferenceResponse(error=error)
                continue
            start = 0
            for index, one, _ in members:
                part = hdr[start:start + one.shape[0]]
                start += one.shape[0]
                responses[index] = pb_utils.InferenceResponse([pb_utils.Tensor(self.hdr_name, part)])
        return responses
