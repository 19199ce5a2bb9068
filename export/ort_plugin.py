"""Run the surgered graph (AdnetDCNv2 plugin nodes) on the CPU with ONNX Runtime, through the plugin's CPU twin.

The AdnetDCNv2 nodes are served by an onnxruntime-extensions Python custom op that calls
plugins.dcnv2.cpu.dcnv2_forward, i.e. the same C++ sampling code the CUDA kernel is compiled from, so the exact
graph handed to TensorRT is checked numerically in CI, with our own arithmetic.

ONNX Runtime's Python custom-op API only takes float32 tensors. A graph whose plugin nodes are float16 (the fp16
export) is therefore run as a copy in which each AdnetDCNv2 node is wrapped in exact Casts (fp16 -> fp32 -> fp16)
and served by the twin's float16 path, which rounds where the FP16 kernel rounds. The float32 graph runs as is.
"""
from __future__ import annotations

import copy
import threading
from pathlib import Path
from typing import Union

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper

from plugins.dcnv2 import contract

__all__ = ["session", "with_fp16_twin"]

FP16_TWIN_OP = contract.PLUGIN_NAME + "Fp16Twin"  # only ever in the in-memory copy described above
_lock = threading.Lock()
_library: str | None = None


def _register() -> str:
    """Register the custom ops once per process; returns the extensions library to load into sessions."""
    global _library
    with _lock:
        if _library is None:
            from onnxruntime_extensions import PyCustomOpDef, get_library_path, onnx_op

            from plugins.dcnv2.cpu import dcnv2_forward

            attrs = {name: PyCustomOpDef.dt_int64 for name, _ in contract.FIELDS}
            attrs.update(plugin_version=PyCustomOpDef.dt_string, plugin_namespace=PyCustomOpDef.dt_string)
            types = [PyCustomOpDef.dt_float] * len(contract.INPUT_NAMES)

            def make(dtype: str):
                def run(x, offset_mask_logits, weight, bias, **fields):
                    fields = {k: fields[k] for k, _ in contract.FIELDS}
                    return dcnv2_forward(x, offset_mask_logits, weight, bias, dtype=dtype, **fields).astype(
                        np.float32, copy=False)
                return run

            onnx_op(op_type=contract.PLUGIN_NAME, inputs=types, outputs=[PyCustomOpDef.dt_float],
                    attrs=attrs)(make("float32"))
            onnx_op(op_type=FP16_TWIN_OP, inputs=types, outputs=[PyCustomOpDef.dt_float],
                    attrs=attrs)(make("float16"))
            _library = get_library_path()
    return _library


def _elem_types(model: onnx.ModelProto) -> dict[str, int]:
    g = model.graph
    types = {t.name: t.data_type for t in g.initializer}
    for vi in list(g.input) + list(g.value_info) + list(g.output):
        types.setdefault(vi.name, vi.type.tensor_type.elem_type)
    for node in g.node:
        if node.op_type == "Constant":
            types.setdefault(node.output[0], node.attribute[0].t.data_type)
    return types


def with_fp16_twin(model: onnx.ModelProto) -> onnx.ModelProto:
    """Copy of `model` in which float16 AdnetDCNv2 nodes are wrapped in Casts and use the twin's fp16 path."""
    model = onnx.shape_inference.infer_shapes(model)
    types = _elem_types(model)
    nodes = []
    changed = False
    for node in model.graph.node:
        is_fp16 = node.op_type == contract.PLUGIN_NAME and types.get(node.input[2]) == TensorProto.FLOAT16
        if not is_fp16:
            nodes.append(node)
            continue
        changed = True
        cast_in = []
        for name in node.input:
            nodes.append(helper.make_node("Cast", [name], [f"{node.name}/{name}/fp32"], to=TensorProto.FLOAT))
            cast_in.append(f"{node.name}/{name}/fp32")
        twin = copy.deepcopy(node)
        twin.op_type = FP16_TWIN_OP
        del twin.input[:]
        twin.input.extend(cast_in)
        twin.output[0] = f"{node.name}/out/fp32"
        nodes.append(twin)
        nodes.append(helper.make_node("Cast", [twin.output[0]], [node.output[0]], to=TensorProto.FLOAT16))
    if not changed:
        return model
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    return model


def session(model: Union[str, Path, onnx.ModelProto], threads: int = 0) -> ort.InferenceSession:
    """ONNX Runtime CPU session for a graph with or without AdnetDCNv2 nodes (threads=0: ORT's default)."""
    proto = onnx.load(str(model)) if isinstance(model, (str, Path)) else model
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    uses_plugin = any(n.op_type == contract.PLUGIN_NAME and n.domain == contract.PLUGIN_DOMAIN for n in proto.graph.node)
    if uses_plugin:
        options.register_custom_ops_library(_register())
        proto = with_fp16_twin(proto)
    return ort.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])
