"""The Python stand-in of AdnetDCNv2 (export/trt_python_plugin.py) in TensorRT-RTX 1.7 on the CPU: it validates
through the C++ core (the checks it had lost: the offsets' spatial size, an empty output, the 2^24 index limit), and
it offers the formats the C++ adapter offers, so that an FP16 engine built on a CPU shows what TensorRT chose.

What can be seen without a GPU: IEngineInspector needs a deserialised engine (a GPU), the builder's kVERBOSE log of
TensorRT-RTX 1.7 has the parser's messages but no layer or format selection, and configurePlugin is called for every
format combination the builder considers (not only the chosen one). The serialised plan, however, carries the
compiled program as text: each plugin is a `custom_layer` whose input and output tensors are declared with their
strides, and every kernel names the ONNX layers it was made for. The acceptance check reads those.

Run through `make test` (TensorRT-RTX's ONNX parser needs the LD_LIBRARY_PATH that make sets)."""
from __future__ import annotations

import re

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from export import build_engine as be
from export import trt_compat, trt_python_plugin
from export.surgery import PLUGIN_DOMAIN
from plugins.dcnv2 import contract


@pytest.fixture(scope="module")
def rtx():
    try:
        return trt_compat.load("rtx")
    except trt_compat.TensorRTNotFound as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture(scope="module")
def stand_in(rtx):
    return trt_python_plugin.register(rtx.module)


def dcn_graph(path, *, x_shape=(1, 64, -1, -1), om_shape=None, c=64, dg=8, kernel=3, cout=64, neighbours=True,
              dtype=np.float16):
    """input -> conv -> x; conv(x) -> offsets (3*dg*K); AdnetDCNv2(x, offsets) -> conv -> output (FP16 convs as in
    ADNet's PCD module), or the plugin alone when `neighbours` is False."""
    rng = np.random.default_rng(0)
    elem = TensorProto.FLOAT16 if dtype == np.float16 else TensorProto.FLOAT
    k2 = kernel * kernel
    init = lambda name, *shape: numpy_helper.from_array((rng.standard_normal(shape) * 0.1).astype(dtype), name)  # noqa
    dims = [d if d > 0 else f"d{i}" for i, d in enumerate(x_shape)]
    nodes, inits, inputs = [], [init("w", cout, c, kernel, kernel), init("b", cout)], []
    if neighbours:
        inputs.append(helper.make_tensor_value_info("input", elem, dims))
        inits += [init("w_in", c, c, 3, 3), init("b_in", c), init("w_om", 3 * dg * k2, c, 3, 3),
                  init("b_om", 3 * dg * k2), init("w_out", c, cout, 3, 3), init("b_out", c)]
        nodes += [helper.make_node("Conv", ["input", "w_in", "b_in"], ["x"], pads=[1] * 4),
                  helper.make_node("Conv", ["x", "w_om", "b_om"], ["om"], pads=[1] * 4)]
    else:
        om_dims = [d if d > 0 else f"o{i}" for i, d in enumerate(om_shape)]
        inputs += [helper.make_tensor_value_info("x", elem, dims), helper.make_tensor_value_info("om", elem, om_dims)]
    nodes.append(helper.make_node(contract.PLUGIN_NAME, ["x", "om", "w", "b"], ["y"], domain=PLUGIN_DOMAIN,
                                  name=f"{contract.PLUGIN_NAME}_0", plugin_version=contract.PLUGIN_VERSION,
                                  plugin_namespace=contract.PLUGIN_NAMESPACE, deformable_groups=dg))
    if neighbours:
        nodes.append(helper.make_node("Conv", ["y", "w_out", "b_out"], ["output"], pads=[1] * 4))
    graph = helper.make_graph(nodes, "dcn", inputs, [helper.make_tensor_value_info(
        "output" if neighbours else "y", elem, None)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19), helper.make_opsetid(PLUGIN_DOMAIN, 1)])
    onnx.save(model, str(path))
    return path


# ---- validation through the core ---------------------------------------------------------------------------------

@pytest.mark.parametrize("x_shape,om_shape,match", [
    ((1, 64, 20, 30), (1, 216, 19, 30), "offset_mask_logits spatial size 19x30 must equal the output size 20x30"),
    ((1, 64, 1, 30), (1, 216, 1, 30), None),  # padding 1: a 1-row input still has an output row
    ((1, 64, 1 << 24, 4), (1, 216, 1 << 24, 4), "H and W must be below 2\\^24"),
])
def test_stand_in_rejects_what_the_core_rejects(rtx, stand_in, tmp_path, x_shape, om_shape, match):
    path = dcn_graph(tmp_path / "one.onnx", x_shape=x_shape, om_shape=om_shape, neighbours=False)
    if match is None:
        net = be.parse_onnx(rtx, path, strongly_typed=True)
        assert net.description["outputs"][0]["shape"] == [1, 64, om_shape[2], om_shape[3]]
        return
    with pytest.raises(be.EngineBuildError, match=match):
        be.parse_onnx(rtx, path, strongly_typed=True)


def test_empty_output_is_rejected_by_the_core(stand_in):
    with pytest.raises(trt_python_plugin.StandInError, match="output would be empty"):
        trt_python_plugin._check_shapes(dict(contract.FIELD_DEFAULTS, padding=0), (1, 64, 2, 8), (1, 216, 0, 6),
                                        (64, 64, 3, 3), (64,))


# ---- formats: what an FP16 engine built on the CPU shows -----------------------------------------------------------

def _declarations(plan_text: str) -> dict[str, dict]:
    """Tensor declarations of the plan's program: name -> {"strides": [...], "base": name or None}."""
    found = {}
    for kind, body in re.findall(r"\b(tensor|sub_tensor)=\{ (.*?) \}(?= *\n|\s+(?:tensor|sub_tensor)=)", plan_text):
        name = re.search(r'name="([^"]+)"', body)
        strides = re.search(r"strides=\{ ([^}]*) \}", body)
        if name and strides:
            base = re.search(r'base="([^"]+)"', body) if kind == "sub_tensor" else None
            found[name.group(1)] = {"strides": strides.group(1).split(), "base": base.group(1) if base else None}
    return found


def channels_last(declarations: dict, name: str) -> bool:
    """Channel stride 1 (NHWC), or a view of a [B, C/8, 8, H, W] tensor whose 8 channels are contiguous (HWC8)."""
    decl = declarations[name]
    while decl["base"] is not None:
        decl = declarations[decl["base"]]
    strides = decl["strides"]
    return strides[1] == "1" if len(strides) == 4 else len(strides) == 5 and strides[2] == "1"


def build_plan(rtx, path) -> bytes:
    t = rtx.module
    net = be.parse_onnx(rtx, path, strongly_typed=True)
    config = net.builder.create_builder_config()
    profile = net.builder.create_optimization_profile()
    profile.set_shape("input", (1, 64, 16, 16), (1, 64, 64, 96), (1, 64, 128, 192))
    config.add_optimization_profile(profile)
    plan = net.builder.build_serialized_network(net.network, config)
    assert plan is not None
    return bytes(plan)


def test_fp16_engine_gives_the_plugin_channel_last_io(rtx, stand_in, tmp_path):
    """FP16 convolutions around the plugin, as in ADNet: TensorRT-RTX 1.7 (CPU build) hands the plugin its offsets
    and takes its output channel-last (HWC8) straight from / to the convolutions, no kernel in between. x reaches the
    plugin channel-last too, but through one move kernel that TensorRT-RTX attributes to the plugin layer (it made
    the convolution's output linear first); without the channel-last formats every plugin tensor is linear and the
    conversions sit in the convolutions' transposes instead."""
    plan = build_plan(rtx, dcn_graph(tmp_path / "dcn.onnx")).decode("latin-1")
    layer = re.search(r'custom_layer=\{ name="AdnetDCNv2_0" output=\{"([^"]+)" \} input=\{"([^"]+)" "([^"]+)" ', plan)
    assert layer, "the plan has no AdnetDCNv2 custom layer"
    y, x, offsets = layer.groups()
    declarations = _declarations(plan)
    assert channels_last(declarations, offsets) and channels_last(declarations, y)
    assert channels_last(declarations, x)
    kernels = re.findall(r'function=\{ name=(\w+) [^\n]*?layers="\[ONNX Layer: AdnetDCNv2_0\]"', plan)
    print(f"kernels attributed to the plugin layer: {kernels}")
    assert all("Move" in k or "Tran" in k for k in kernels) and len(kernels) <= 1, kernels
    assert stand_in.trace["format 0 HALF HWC8"] > 0 and stand_in.trace["format 4 HALF HWC8"] > 0


def test_fp32_and_unsupported_channel_counts_stay_linear(rtx, stand_in, tmp_path):
    """FP32, or C/dg not a multiple of 8 (dg 16 on 64 channels): linear only, as the C++ adapter decides."""
    for name, kwargs in (("fp32", dict(dtype=np.float32)), ("dg16", dict(dg=16))):
        before = sum(v for k, v in stand_in.trace.items() if k.startswith("format 0") and "HWC" in k)
        plan = build_plan(rtx, dcn_graph(tmp_path / f"{name}.onnx", **kwargs)).decode("latin-1")
        after = sum(v for k, v in stand_in.trace.items() if k.startswith("format 0") and "HWC" in k)
        assert after == before, name
        layer = re.search(r'custom_layer=\{ name="AdnetDCNv2_0" output=\{"([^"]+)" \} input=\{"([^"]+)"', plan)
        assert layer and not channels_last(_declarations(plan), layer.group(2)), name
