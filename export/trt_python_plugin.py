"""A Python IPluginV3 with the build-time contract of AdnetDCNv2, for engine builds without the C++ plugin.

CI has no TensorRT headers and no GPU, so it cannot compile or run plugins/dcnv2; it builds real engines with
TensorRT-RTX on the CPU instead, with this stand-in registered under the plugin's name, version and namespace.
Names come from plugins/dcnv2/contract.py, and every rule is the C++ core's own, called through its C ABI in the CPU
twin library (plugins/dcnv2/abi.py), exactly as the C++ adapter (plugins/dcnv2/dcnv2_plugin.cpp) calls it:
- fields: parsed by the core's setField (scalar integers; ONNX INT attributes arrive as INT32), contract defaults
  for absent fields, serialised back as INT32;
- output shape y = [B, Cout, Ho, Wo] with Ho, Wo those of offset_mask_logits (B, H and W stay dynamic); the core's
  validation on the dims known at each call (the offsets' spatial size, an empty output, the index limits...);
- output type = type of x; all four inputs and the output FP32, or all FP16; formats as the C++ adapter advertises
  them (the core's formatSupported): linear everywhere, and FP16 channel-last (HWC8, HWC) for x when the fast
  path serves the problem, then for the offsets and the output too; no workspace.
Its enqueue raises: an engine built with it is for inspection (layers, types, profiles, serialised fields), not for
running. `register(trt)` is idempotent per TensorRT module and returns the creator, whose `trace` records the calls.
"""
from __future__ import annotations

from collections import Counter
from typing import Any

import ctypes

import numpy as np

from export.errors import PipelineError
from plugins.dcnv2 import abi, contract
from plugins.dcnv2.cpu import load_library
from plugins.dcnv2.errors import PluginArgumentError

__all__ = ["STAND_IN_NOTE", "StandInError", "register", "output_length", "parse_fields", "errors"]

STAND_IN_NOTE = "CI build-only stand-in (export/trt_python_plugin.py): engines built with it cannot run"

_X, _OFFSET_MASK, _WEIGHT, _BIAS = range(len(contract.INPUT_NAMES))
_registered: dict[str, Any] = {}  # TensorRT module name -> creator (kept alive: the registry holds a raw pointer)
# Messages of the StandInErrors raised inside TensorRT's callbacks, which TensorRT reports only as a failed call.
errors: list[str] = []


class StandInError(PipelineError):
    """A field or shape that the AdnetDCNv2 contract rejects (the message is the C++ core's)."""

    def __init__(self, message: str):
        super().__init__(message)
        errors.append(message)


def output_length(size: int, kernel: int, stride: int, padding: int, dilation: int) -> int:
    """The core's shape rule on integers (outputLength): 0 when the input is too small, -1 for an unknown size."""
    return load_library().adnet_dcn_output_length(size, kernel, stride, padding, dilation)


def parse_fields(collection) -> dict[str, int]:
    """Contract fields from a PluginFieldCollection (or a list of PluginFields): the contract's defaults, overridden
    by the given fields through the core's setField; raises StandInError with the core's message on unknown names,
    non-integer or non-scalar data, out-of-range values."""
    lib = load_library()
    values = (ctypes.c_int32 * len(contract.FIELDS))()
    lib.adnet_dcn_default_fields(values)
    for field in collection:
        data = np.ascontiguousarray(field.data).ravel()
        code = abi.FIELD_TYPES.get(field.type.name, abi.FIELD_TYPE_OTHER)
        if lib.adnet_dcn_set_field(values, field.name.encode(), code, data.ctypes.data, data.size) != 0:
            raise StandInError(abi.last_error(lib))
    return {name: int(v) for (name, _), v in zip(contract.FIELDS, values)}


def _field_collection(trt, fields: dict[str, int]):
    return trt.PluginFieldCollection([trt.PluginField(name, np.array([fields[name]], dtype=np.int32),
                                                      trt.PluginFieldType.INT32) for name, _ in contract.FIELDS])


def _known(dims) -> list[int]:
    return [int(d) for d in dims]


def _format_name(trt, fmt) -> str | None:
    """The core's format name for a TensorRT format (HWC8 and HWC are the same memory for C % 8 == 0)."""
    if fmt == trt.TensorFormat.LINEAR:
        return "linear"
    if fmt in (trt.TensorFormat.HWC8, trt.TensorFormat.HWC):
        return "channels_last"
    return None


def _dtype_name(trt, dtype) -> str | None:
    return {trt.DataType.FLOAT: "float32", trt.DataType.HALF: "float16"}.get(dtype)


def supports(trt, fields: dict[str, int], pos: int, in_out) -> bool:
    """The C++ adapter's supportsFormatCombination: the core's formatSupported on the decided positions."""
    desc = [t.desc for t in in_out]
    dtype, fmt = _dtype_name(trt, desc[pos].type), _format_name(trt, desc[pos].format)
    if dtype is None or fmt is None or (pos > 0 and desc[pos].type != desc[_X].type):
        return False
    if pos in (_WEIGHT, _BIAS):
        return fmt == "linear"
    formats = {"x_format": _format_name(trt, desc[_X].format)}
    if pos >= _OFFSET_MASK:
        formats["offset_mask_format"] = _format_name(trt, desc[_OFFSET_MASK].format)
    if pos == len(contract.INPUT_NAMES):
        formats["y_format"] = fmt
    if None in formats.values():
        return False
    dims = [_known(d.dims) for d in desc[:len(contract.INPUT_NAMES)]]
    problem = abi.make_problem(dtype, fields, *dims[:3], dims[_BIAS][0], **formats)
    return bool(load_library().adnet_dcn_supports(ctypes.byref(problem), pos))


def _check_shapes(fields: dict[str, int], x, offset_mask, weight, bias, dtype: str = "float32") -> None:
    """The core's validation on the dims known at this call (-1 = dynamic, skipped)."""
    for name, dims, rank in zip(contract.INPUT_NAMES, (x, offset_mask, weight, bias), (4, 4, 4, 1)):
        if len(dims) != rank:
            raise StandInError(f"{contract.PLUGIN_NAME}: {name} must have rank {rank}, got {list(dims)}")
    try:
        abi.check(load_library(), abi.make_problem(dtype, fields, x, offset_mask, weight, bias[0]))
    except PluginArgumentError as exc:
        raise StandInError(str(exc)) from None


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
            copy = DCNv2StandIn(self.fields, self.phase, self.trace)
            if hasattr(self, "configured"):
                copy.configured = self.configured
            return copy

        def get_output_data_types(self, input_types):
            self._count("get_output_data_types")
            x = input_types[_X]
            if x not in (trt.DataType.FLOAT, trt.DataType.HALF) or any(t != x for t in input_types):
                raise StandInError(f"{contract.PLUGIN_NAME}: inputs are {[t.name for t in input_types]}; all four "
                                   f"inputs must be FP32, or all FP16")
            return [x]

        def get_output_shapes(self, inputs, shape_inputs, builder):
            self._count("get_output_shapes")
            known = [[d.get_constant_value() if d.is_constant() else -1 for d in dims] for dims in inputs]
            _check_shapes(self.fields, *known)
            # Ho, Wo are those of the offsets (the core checked them against the convolution's output size).
            x, offset_mask, weight = inputs[_X], inputs[_OFFSET_MASK], inputs[_WEIGHT]
            out = trt.DimsExprs(4)
            out[0], out[1], out[2], out[3] = x[0], weight[0], offset_mask[2], offset_mask[3]
            return [out]

        def supports_format_combination(self, pos, in_out, num_inputs):
            self._count("supports_format_combination")
            ok = supports(trt, self.fields, pos, in_out)
            if ok:
                self.trace[f"format {pos} {in_out[pos].desc.type.name} {in_out[pos].desc.format.name}"] += 1
            return ok

        def configure_plugin(self, inputs, outputs):
            self._count("configure_plugin")
            _check_shapes(self.fields, *[_known(t.desc.dims) for t in inputs])
            # What TensorRT chose (x, offset_mask, y), for inspection without a GPU.
            self.configured = tuple((t.desc.type.name, t.desc.format.name) for t in (inputs[_X], inputs[_OFFSET_MASK],
                                                                                   outputs[0]))
            self.trace[f"configured {self.configured}"] += 1

        def get_workspace_size(self, inputs, outputs):
            self._count("get_workspace_size")
            return 0  # the implicit-GEMM kernels need none (dcnv2_plugin.cpp workspace)

        def get_valid_tactics(self):
            return []

        def get_fields_to_serialize(self):
            self._count("get_fields_to_serialize")
            # The plugin object the engine keeps is serialised: its last configuration is the one TensorRT chose.
            self.trace[f"serialized {getattr(self, 'configured', None)}"] += 1
            return _field_collection(trt, self.fields)

        def on_shape_change(self, inputs, outputs):
            self._count("on_shape_change")

        def set_tactic(self, tactic):
            pass

        def attach_to_context(self, context):
            return self.clone()

        def enqueue(self, input_desc, output_desc, inputs, outputs, workspace, stream):
            raise StandInError(STAND_IN_NOTE)

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
