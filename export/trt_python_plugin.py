"""A Python IPluginV3 with the build-time contract of AdnetDCNv2, for engine builds without the C++ plugin.

CI has no TensorRT headers and no GPU, so it cannot compile or run plugins/dcnv2; it builds real engines with
TensorRT-RTX on the CPU instead, with this stand-in registered under the plugin's name, version and namespace.
Everything the builder asks of a plugin comes from plugins/dcnv2/contract.py, with the same rules as the C++ adapter
(plugins/dcnv2/dcnv2_plugin.cpp):
- fields: the contract's names in serialisation order, scalar integers (ONNX INT attributes arrive as INT32),
  contract defaults for absent fields, serialised back as INT32;
- output shape y = [B, Cout, Ho, Wo] with Ho = (H + 2p - d*(kh-1) - 1) // s + 1 (likewise Wo), as dimension
  expressions so B, H and W stay dynamic; the input shapes checked where they are known;
- output type = type of x; formats: linear, all four inputs and the output FP32, or all FP16; no workspace.
Its enqueue raises: an engine built with it is for inspection (layers, types, profiles, serialised fields), not for
running. `register(trt)` is idempotent per TensorRT module and returns the creator, whose `trace` records the calls.
"""
from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from export.errors import PipelineError
from plugins.dcnv2 import contract

__all__ = ["STAND_IN_NOTE", "StandInError", "register", "output_length", "parse_fields", "errors"]

STAND_IN_NOTE = "CI build-only stand-in (export/trt_python_plugin.py): engines built with it cannot run"

_X, _OFFSET_MASK, _WEIGHT, _BIAS = range(len(contract.INPUT_NAMES))
_INTEGER_FIELD_TYPES = ("INT8", "INT16", "INT32", "INT64")
_registered: dict[str, Any] = {}  # TensorRT module name -> creator (kept alive: the registry holds a raw pointer)
# Messages of the StandInErrors raised inside TensorRT's callbacks, which TensorRT reports only as a failed call.
errors: list[str] = []


class StandInError(PipelineError):
    """A field or shape that the AdnetDCNv2 contract rejects (the C++ plugin rejects it too)."""

    def __init__(self, message: str):
        super().__init__(message)
        errors.append(message)


def output_length(size: int, kernel: int, stride: int, padding: int, dilation: int) -> int:
    """The contract's shape rule on integers (the C++ core's outputLength): 0 when the input is too small."""
    span = size + 2 * padding - dilation * (kernel - 1) - 1
    return span // stride + 1 if span >= 0 else 0


def _check_field(name: str, value: int) -> None:
    # Same ranges as the C++ core: positive stride, dilation and groups; non-negative padding.
    lowest = 0 if name == "padding" else 1
    if value < lowest:
        raise StandInError(f"{contract.PLUGIN_NAME}: field '{name}' = {value} must be >= {lowest}")


def parse_fields(collection) -> dict[str, int]:
    """Contract fields from a PluginFieldCollection (or a list of PluginFields): the contract's defaults, overridden
    by the given fields; raises StandInError on unknown names, non-integer or non-scalar data, out-of-range values."""
    fields = dict(contract.FIELD_DEFAULTS)
    for field in collection:
        name = field.name
        if name not in fields:
            raise StandInError(f"{contract.PLUGIN_NAME}: unknown field '{name}'; the fields are "
                               f"{', '.join(fields)}")
        type_name = field.type.name
        data = np.asarray(field.data).ravel()
        if type_name not in _INTEGER_FIELD_TYPES or data.size != 1:
            raise StandInError(f"{contract.PLUGIN_NAME}: field '{name}' must be one integer (ONNX INT attributes "
                               f"arrive as INT32), got {type_name} x {data.size}")
        fields[name] = int(data[0])
        _check_field(name, fields[name])
    return fields


def _field_collection(trt, fields: dict[str, int]):
    return trt.PluginFieldCollection([trt.PluginField(name, np.array([fields[name]], dtype=np.int32),
                                                      trt.PluginFieldType.INT32) for name, _ in contract.FIELDS])


def _known(dims) -> list[int]:
    return [int(d) for d in dims]


def _check_shapes(fields: dict[str, int], x, offset_mask, weight, bias) -> None:
    """The C++ core's validateShapes on the dims known at build time (-1 = dynamic, skipped)."""
    def known(v):
        return v >= 0

    where = contract.PLUGIN_NAME
    for name, dims, rank in (("x", x, 4), ("offset_mask_logits", offset_mask, 4), ("weight", weight, 4),
                             ("bias", bias, 1)):
        if len(dims) != rank:
            raise StandInError(f"{where}: {name} must have rank {rank}, got {list(dims)}")
    dg = fields["deformable_groups"]
    if known(x[0]) and known(offset_mask[0]) and x[0] != offset_mask[0]:
        raise StandInError(f"{where}: offset_mask_logits batch {offset_mask[0]} differs from x batch {x[0]}")
    if known(weight[1]) and known(x[1]) and weight[1] != x[1]:
        raise StandInError(f"{where}: weight {list(weight)} has {weight[1]} input channels but x has {x[1]}")
    if known(x[1]) and x[1] % dg:
        raise StandInError(f"{where}: deformable_groups = {dg} must divide the input channels C = {x[1]}")
    if known(weight[2]) and known(weight[3]) and known(offset_mask[1]):
        expected = (contract.OFFSET_BLOCKS + contract.MASK_BLOCKS) * dg * weight[2] * weight[3]
        if offset_mask[1] != expected:
            raise StandInError(f"{where}: offset_mask_logits has {offset_mask[1]} channels, expected {expected} "
                               f"(3 * deformable_groups * kh * kw)")
    if known(bias[0]) and known(weight[0]) and bias[0] != weight[0]:
        raise StandInError(f"{where}: bias has {bias[0]} values but weight has Cout = {weight[0]}")


def _classes(trt):
    """The plugin and creator classes for one TensorRT module (tensorrt or tensorrt_rtx)."""

    class DCNv2StandIn(trt.IPluginV3, trt.IPluginV3OneCore, trt.IPluginV3OneBuild, trt.IPluginV3OneRuntime):
        def __init__(self, fields: dict[str, int], phase, trace: Counter):
            trt.IPluginV3.__init__(self)
            trt.IPluginV3OneCore.__init__(self)
            trt.IPluginV3OneBuild.__init__(self)
            trt.IPluginV3OneRuntime.__init__(self)
            self.num_outputs = len(contract.OUTPUT_NAMES)
            self.plugin_name = contract.PLUGIN_NAME
            self.plugin_version = contract.PLUGIN_VERSION
            self.plugin_namespace = contract.PLUGIN_NAMESPACE
            self.fields = dict(fields)
            self.phase = phase
            self.trace = trace

        def _count(self, call: str) -> None:
            self.trace[call] += 1

        def get_capability_interface(self, capability):
            return self

        def clone(self):
            self._count("clone")
            return DCNv2StandIn(self.fields, self.phase, self.trace)

        def get_output_data_types(self, input_types):
            self._count("get_output_data_types")
            x = input_types[_X]
            if x not in (trt.DataType.FLOAT, trt.DataType.HALF) or any(t != x for t in input_types):
                raise StandInError(f"{contract.PLUGIN_NAME}: inputs are {[t.name for t in input_types]}; all four "
                                   f"inputs must be FP32, or all FP16")
            return [x]

        def get_output_shapes(self, inputs, shape_inputs, builder):
            self._count("get_output_shapes")
            x, weight = inputs[_X], inputs[_WEIGHT]
            known = [[d.get_constant_value() if d.is_constant() else -1 for d in dims] for dims in inputs]
            _check_shapes(self.fields, *known)
            s, p, d = self.fields["stride"], self.fields["padding"], self.fields["dilation"]

            def length(size, kernel):
                # (size + 2p - (d*(kernel-1) + 1)) // s + 1, as dimension expressions
                span = builder.operation(trt.DimensionOperation.SUM, builder.operation(
                    trt.DimensionOperation.PROD, builder.constant(d),
                    builder.operation(trt.DimensionOperation.SUB, kernel, builder.constant(1))), builder.constant(1))
                padded = builder.operation(trt.DimensionOperation.SUM, size, builder.constant(2 * p))
                steps = builder.operation(trt.DimensionOperation.FLOOR_DIV,
                                          builder.operation(trt.DimensionOperation.SUB, padded, span),
                                          builder.constant(s))
                return builder.operation(trt.DimensionOperation.SUM, steps, builder.constant(1))

            out = trt.DimsExprs(4)
            out[0], out[1] = x[0], weight[0]
            out[2], out[3] = length(x[2], weight[2]), length(x[3], weight[3])
            return [out]

        def supports_format_combination(self, pos, in_out, num_inputs):
            self._count("supports_format_combination")
            desc = in_out[pos].desc
            return (desc.format == trt.TensorFormat.LINEAR and desc.type in (trt.DataType.FLOAT, trt.DataType.HALF)
                    and (pos == 0 or desc.type == in_out[0].desc.type))

        def configure_plugin(self, inputs, outputs):
            self._count("configure_plugin")
            _check_shapes(self.fields, *[_known(t.desc.dims) for t in inputs])

        def get_workspace_size(self, inputs, outputs):
            self._count("get_workspace_size")
            return 0  # the implicit-GEMM kernel needs none (dcnv2_core.h workspaceSize)

        def get_valid_tactics(self):
            return []

        def get_fields_to_serialize(self):
            self._count("get_fields_to_serialize")
            return _field_collection(trt, self.fields)

        def on_shape_change(self, inputs, outputs):
            self._count("on_shape_change")

        def set_tactic(self, tactic):
            pass

        def attach_to_context(self, context):
            return self.clone()

        def enqueue(self, input_desc, output_desc, inputs, outputs, workspace, stream):
            raise RuntimeError(STAND_IN_NOTE)

    class DCNv2StandInCreator(trt.IPluginCreatorV3One):
        def __init__(self):
            trt.IPluginCreatorV3One.__init__(self)
            self.name = contract.PLUGIN_NAME
            self.plugin_version = contract.PLUGIN_VERSION
            self.plugin_namespace = contract.PLUGIN_NAMESPACE
            self.field_names = _field_collection(trt, contract.FIELD_DEFAULTS)
            self.trace = Counter()
            self.created: list[tuple[str, dict[str, int], str]] = []  # (layer name, fields, phase)

        def create_plugin(self, name, collection, phase):
            fields = parse_fields(collection)
            self.created.append((name, fields, getattr(phase, "name", str(phase))))
            return DCNv2StandIn(fields, phase, self.trace)

    return DCNv2StandInCreator


def register(trt) -> Any:
    """Register the stand-in creator with `trt`'s plugin registry (trt: the tensorrt or tensorrt_rtx module) under
    the contract's name, version and namespace; idempotent. Returns the creator."""
    key = trt.__name__
    if key in _registered:
        return _registered[key]
    registry = trt.get_plugin_registry()
    existing = registry.get_creator(contract.PLUGIN_NAME, contract.PLUGIN_VERSION, contract.PLUGIN_NAMESPACE)
    if existing is not None:
        raise StandInError(f"{contract.PLUGIN_NAME} version {contract.PLUGIN_VERSION} (namespace "
                           f"{contract.PLUGIN_NAMESPACE}) is already registered in this process, probably by the C++ "
                           f"plugin library; use one or the other")
    creator = _classes(trt)()
    if not registry.register_creator(creator, contract.PLUGIN_NAMESPACE):
        raise StandInError(f"{trt.__name__}: registering the {contract.PLUGIN_NAME} stand-in creator failed")
    _registered[key] = creator
    return creator
