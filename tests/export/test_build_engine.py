"""Engine build (export/build_engine.py, on Polygraphy) for real on the CPU with TensorRT-RTX and the Python stand-in
of AdnetDCNv2; what can be inspected without a GPU: the parsed network, the stand-in's calls, the builder
configuration (through TensorRT's own API), the plan's header, the sidecar; plus the errors that name their fix.
Deserialising needs a GPU and is skipped here with the reason.

The serialised plan itself is not decoded: its format is private to each TensorRT release. What that check gave
(the plugin fields, profile bounds and RTX targets as written into the plan bytes) is covered here one step earlier,
on what TensorRT was handed (stand-in calls, builder config), and after deserialisation on a GPU
(test_deserialising_the_plan)."""
from __future__ import annotations

import hashlib
import json
import types
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from client import contract as io_contract
from export import build_engine as be
from export import trt_compat, trt_process, trt_python_plugin
from export.engine_files import check_sidecar
from export.profiles import CI_PROFILE, Profile
from export.surgery import PLUGIN_DOMAIN
from plugins.dcnv2 import contract
from tests.child import run_module, run_python

FP16 = "float16"


# ---- the build ---------------------------------------------------------------------------------------------------

def test_network_has_eight_fp16_plugin_layers_from_the_contract(ci_engine):
    result, _, _ = ci_engine
    net = result.network
    assert len(net["plugin_layers"]) == 8
    for layer in net["plugin_layers"]:
        assert (layer["name"], layer["version"], layer["namespace"]) == (
            contract.PLUGIN_NAME, contract.PLUGIN_VERSION, contract.PLUGIN_NAMESPACE)
        assert layer["input_dtypes"] == [FP16] * len(contract.INPUT_NAMES) and layer["output_dtype"] == FP16
        assert layer["output_shape"] == [-1, 64, -1, -1]  # B, H, W stay dynamic through the plugin's expressions
    assert net["graph_compute_dtype"] == FP16 and net["layer_types"]["PLUGIN_V3"] == 8
    assert net["layer_types"]["CONVOLUTION"] > 50


def test_io_names_and_dtypes_are_the_public_contract(ci_engine):
    net = ci_engine[0].network
    frames, colors = io_contract.NUM_FRAMES, io_contract.NUM_COLORS
    assert net["inputs"] == [
        {"name": io_contract.INPUT_LDR, "dtype": io_contract.DEFAULT_LDR_DTYPE, "shape": [-1, frames, -1, -1, colors]},
        {"name": io_contract.INPUT_EV, "dtype": io_contract.EV_DTYPE, "shape": [-1, frames]}]
    assert net["outputs"] == [{"name": io_contract.OUTPUT_HDR, "dtype": io_contract.HDR_DTYPE,
                               "shape": [-1, -1, -1, colors]}]


def test_stand_in_got_the_node_fields_and_answered_the_build_calls(ci_engine):
    _, created, calls = ci_engine
    assert sorted(name for name, _, _ in created) == [f"{contract.PLUGIN_NAME}_{i}" for i in range(8)]
    assert all(fields == contract.FIELD_DEFAULTS and phase == "BUILD" for _, fields, phase in created)
    for call in ("get_output_data_types", "get_output_shapes", "supports_format_combination", "configure_plugin",
                 "get_fields_to_serialize"):
        assert calls.get(call, 0) > 0, (call, calls)


def test_strongly_typed_fp16_route_keeps_pre_and_post_processing_in_fp32(rtx, stand_in, graphs):
    """Issue finding 3: TensorRT 10's FP16 flag may run x ** 2.24 in FP16 (overflow above ~140); the strongly typed
    network, which TensorRT must follow, has the powers (EV scaling 2 ** (-ev/g), linearisation x ** 2.24) in FP32
    and the network in FP16."""
    t = rtx.module
    network = be.parse_onnx(rtx, graphs.path("plugin_fp16"), strongly_typed=True).network
    pows, convs = [], []
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        if layer.type == t.LayerType.ELEMENTWISE:
            layer.__class__ = t.IElementWiseLayer
            if layer.op == t.ElementWiseOperation.POW:
                pows.append(layer.get_output(0).dtype)
        elif layer.type == t.LayerType.CONVOLUTION:
            convs.append(layer.get_output(0).dtype)
    assert pows and all(d == t.DataType.FLOAT for d in pows), pows
    assert convs and all(d == t.DataType.HALF for d in convs)
    assert be.resolve_route(rtx, "fp16") == "strongly-typed"


def test_builder_config_carries_profile_workspace_and_targets(rtx, stand_in, graphs):
    net = be.parse_onnx(rtx, graphs.path("plugin_fp16"), strongly_typed=True)
    options = be.BuildOptions(profiles=(CI_PROFILE,), workspace_bytes=256 << 20, compute_capabilities=("SM86", "sm120"),
                              show_progress=False)
    config, _ = be.configure(net, options, "strongly-typed")
    t = rtx.module
    assert config.num_optimization_profiles == 1
    assert config.get_memory_pool_limit(t.MemoryPoolType.WORKSPACE) == 256 << 20
    assert config.profiling_verbosity == t.ProfilingVerbosity.DETAILED
    assert [config.get_compute_capability(i) for i in range(config.num_compute_capabilities)] == [
        t.ComputeCapability.SM86, t.ComputeCapability.SM120]
    profile = be.polygraphy_profile(net, CI_PROFILE).to_trt(net.builder, net.network)
    for name, shapes in CI_PROFILE.input_shapes().items():
        assert [tuple(s) for s in profile.get_shape(name)] == list(shapes), name
    with pytest.raises(be.EngineBuildError, match=r"unknown compute capability \['SM99'\]"):
        be.compute_capability_pairs(rtx, ["sm99"])
    assert be.compute_capability_pairs(rtx, ["SM75", "sm121"]) == [(7, 5), (12, 1)]


def test_plan_header_is_valid_for_this_runtime(rtx, ci_engine):
    runtime = rtx.module.Runtime(trt_process.trt_logger(rtx))
    size = runtime.engine_header_size
    diagnostics = rtx.module.EngineInvalidityDiagnostics.__members__
    bad = int(diagnostics["VERSION_MISMATCH"]) | int(diagnostics["MALFORMED_ENGINE"])
    _, flags = runtime.get_engine_validity(ci_engine[0].plan_path.read_bytes()[:size])
    assert int(flags) & bad == 0, flags  # without a GPU the verdict is INVALID (CUDA), but not for these reasons
    _, flags = runtime.get_engine_validity(b"\x00" * size)
    assert int(flags) & bad  # the check can fail


def test_deserialising_the_plan(rtx, ci_engine):
    try:
        gpu = trt_compat.require_gpu()
    except trt_compat.NoGPU as exc:
        pytest.skip(f"deserialising a TensorRT-RTX engine needs an RTX-class GPU ({exc})")
    if gpu["compute_capability"] not in ("8.0", "8.6", "8.9", "12.0", "12.1"):
        pytest.skip(f"TensorRT-RTX engines do not run on compute capability {gpu['compute_capability']}")
    runtime = rtx.module.Runtime(trt_process.trt_logger(rtx))
    engine = runtime.deserialize_cuda_engine(ci_engine[0].plan_path.read_bytes())
    assert engine is not None
    assert [tuple(s) for s in engine.get_tensor_profile_shape(io_contract.INPUT_LDR, 0)] == \
        list(CI_PROFILE.input_shapes()[io_contract.INPUT_LDR])
    info = json.loads(engine.create_engine_inspector().get_engine_information(
        rtx.module.LayerInformationFormat.JSON))
    assert sum(contract.PLUGIN_NAME in json.dumps(layer) for layer in info["Layers"]) >= 8


def test_sidecar_describes_the_engine(rtx, ci_engine, graphs):
    result = ci_engine[0]
    side = json.loads(result.sidecar_path.read_text())
    assert result.sidecar_path == result.plan_path.with_name("model.plan.json") and side == result.sidecar
    plan = result.plan_path.read_bytes()
    assert side["engine"] == {"file": "model.plan", "bytes": len(plan), "sha256": hashlib.sha256(plan).hexdigest()}
    assert side["tensorrt"] == {"name": "TensorRT-RTX", "module": "tensorrt_rtx", "version": rtx.version}
    assert side["precision"] == "fp16" and side["route"] == "strongly-typed"
    assert side["profiles"] == [CI_PROFILE.to_dict()]
    assert side["profiles"][0]["inputs"]["LDR"][2] == [2, 3, 64, 96, 3]
    assert side["io"] == {"inputs": result.network["inputs"], "outputs": result.network["outputs"]}
    assert side["network"] == {"layers": result.network["layers"], "plugin_layers": 8, "graph_compute_dtype": FP16}
    assert side["plugin"] | {"note": None} == {
        "name": contract.PLUGIN_NAME, "version": contract.PLUGIN_VERSION, "namespace": contract.PLUGIN_NAMESPACE,
        "fields": [name for name, _ in contract.FIELDS], "implementation": "python-stand-in", "library": None,
        "library_sha256": None, "runnable": False, "note": None}
    onnx_path = Path(side["onnx"]["file"])
    assert onnx_path == graphs.path("plugin_fp16")
    assert side["onnx"]["sha256"] == hashlib.sha256(onnx_path.read_bytes()).hexdigest()
    assert side["device"]["target_compute_capabilities"] == "TensorRT-RTX default"
    assert side["builder"]["timing_cache"] is None  # timing-cache operations are no-ops in TensorRT-RTX
    assert side["builder"]["polygraphy"] == trt_process.POLYGRAPHY_VERSION and side["builder"]["tf32"] is False


def test_progress_monitor_saw_the_builder_phases(ci_engine):
    phases = ci_engine[0].phases
    assert len(phases) >= 3 and phases[0] == "Building engine", phases


def test_strongly_typed_fp16_build_rejects_the_fp32_graph(rtx, graphs, tmp_path):
    with pytest.raises(be.EngineBuildError, match="computes in float32.*fp16 graph"):
        be.build_engine(graphs.path("plugin"), tmp_path / "x.plan",
                        be.BuildOptions(profiles=(CI_PROFILE,), show_progress=False), trt=rtx)
    assert not (tmp_path / "x.plan").exists()


def test_cli_builds_with_make_style_sizes_and_rtx_targets(graphs, tmp_path):
    out = tmp_path / "cli" / "model.plan"
    proc = run_module("export.build_engine", "--backend", "rtx", "--onnx", str(graphs.path("plugin_fp16")),
                      "--out", str(out), "--min", "1x32x32", "--opt", "48x64", "--max", "3x64x128", "--no-progress",
                      "--compute-capability", "SM86", "--compute-capability", "sm120", "--workspace", "256",
                      timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "CI build-only stand-in" in proc.stdout
    side = json.loads(out.with_name("model.plan.json").read_text())
    assert side["profiles"][0]["min"] == [1, 32, 32] and side["profiles"][0]["opt"] == [1, 48, 64]
    assert side["profiles"][0]["max"] == [3, 64, 128]
    assert side["device"]["target_compute_capabilities"] == ["SM86", "SM120"]
    assert side["builder"]["workspace_bytes"] == 256 << 20


# ---- graphs without AdnetDCNv2 nodes -----------------------------------------------------------------------------

def _pipeline_like_graph(path: Path) -> Path:
    """LDR/EV in, HDR out, no plugin node: a Cast, a Pow and a Transpose (enough to build an engine)."""
    ldr = helper.make_tensor_value_info(io_contract.INPUT_LDR, TensorProto.UINT8, ["B", 3, "H", "W", 3])
    ev = helper.make_tensor_value_info(io_contract.INPUT_EV, TensorProto.FLOAT, ["B", 3])
    hdr = helper.make_tensor_value_info(io_contract.OUTPUT_HDR, TensorProto.FLOAT, None)
    nodes = [helper.make_node("Cast", [io_contract.INPUT_LDR], ["f"], to=TensorProto.FLOAT),
             helper.make_node("ReduceMean", ["f", "axes"], ["m"], keepdims=0),
             helper.make_node("Pow", ["m", "gamma"], ["p"]),
             helper.make_node("Sum", ["p", "e"], [io_contract.OUTPUT_HDR]),
             helper.make_node("ReduceSum", [io_contract.INPUT_EV], ["e"], keepdims=0)]
    inits = [numpy_helper.from_array(np.array([1], np.int64), "axes"),
             numpy_helper.from_array(np.array(2.24, np.float32), "gamma")]
    graph = helper.make_graph([nodes[0], nodes[1], nodes[2], nodes[4], nodes[3]], "plain", [ldr, ev], [hdr], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)]), str(path))
    return path


def test_graph_without_plugin_nodes_builds_without_any_plugin(rtx, tmp_path):
    result = be.build_engine(_pipeline_like_graph(tmp_path / "plain.onnx"), tmp_path / "plain.plan",
                             be.BuildOptions(profiles=(CI_PROFILE,), precision="fp32", show_progress=False),
                             trt=rtx, plugin="none")
    assert result.plugins is None and result.sidecar["plugin"] is None
    assert result.network["plugin_layers"] == []
    check_sidecar(result.sidecar, rtx.name, rtx.version, result.plan_path)  # no plugin asked of the runner


def test_builtin_deformconv_graph_is_refused_by_tensorrt_rtx_with_the_reason(rtx, graphs, tmp_path):
    # TensorRT 10 maps DeformConv to its built-in plugin (the benchmark's baseline); TensorRT-RTX ships none.
    with pytest.raises(be.EngineBuildError, match="built-in ModulatedDeformConv2d.*TensorRT-RTX has none"):
        be.build_engine(graphs.path("pipeline_fp16"), tmp_path / "builtin.plan",
                        be.BuildOptions(profiles=(CI_PROFILE,), show_progress=False), trt=rtx, plugin="none")
    with pytest.raises(be.EngineBuildError, match="unknown plugin source"):
        be.build_engine(graphs.path("pipeline_fp16"), tmp_path / "x.plan", trt=rtx, plugin="pyhton")


# ---- the stand-in's shape rule and field checks on a one-node graph ---------------------------------------------

def _one_node_graph(x_shape, kernel, cout, fields, offset_channels=None):
    n, c, h, w = x_shape
    s, p, d, dg = (fields[k] for k in ("stride", "padding", "dilation", "deformable_groups"))
    ho = (h + 2 * p - d * (kernel - 1) - 1) // s + 1
    wo = (w + 2 * p - d * (kernel - 1) - 1) // s + 1
    k2 = kernel * kernel
    offset_channels = offset_channels or 3 * dg * k2
    weight = numpy_helper.from_array(np.zeros((cout, c, kernel, kernel), np.float32), "weight")
    bias = numpy_helper.from_array(np.zeros(cout, np.float32), "bias")
    node = helper.make_node(contract.PLUGIN_NAME, ["x", "logits", "weight", "bias"], ["y"], domain=PLUGIN_DOMAIN,
                            plugin_version=contract.PLUGIN_VERSION, plugin_namespace=contract.PLUGIN_NAMESPACE,
                            **fields)
    graph = helper.make_graph(
        [node], "one", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x_shape)),
                        helper.make_tensor_value_info("logits", TensorProto.FLOAT, [n, offset_channels, ho, wo])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [weight, bias])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19), helper.make_opsetid(PLUGIN_DOMAIN, 1)])


@pytest.mark.parametrize("fields,kernel", [
    ({"stride": 1, "padding": 1, "dilation": 1, "deformable_groups": 8}, 3),
    ({"stride": 2, "padding": 0, "dilation": 2, "deformable_groups": 2}, 3),
    ({"stride": 3, "padding": 2, "dilation": 1, "deformable_groups": 4}, 5),
])
def test_stand_in_output_shape_matches_a_convolution(rtx, stand_in, tmp_path, fields, kernel):
    x_shape, cout = (2, 8, 17, 23), 6
    path = tmp_path / "one.onnx"
    onnx.save(_one_node_graph(x_shape, kernel, cout, fields), str(path))
    net = be.parse_onnx(rtx, path, strongly_typed=True)
    # Independent reference: the output size of a plain convolution with the same stride, padding and dilation.
    expected = torch.nn.functional.conv2d(torch.zeros(x_shape), torch.zeros(cout, x_shape[1], kernel, kernel),
                                          stride=fields["stride"], padding=fields["padding"],
                                          dilation=fields["dilation"]).shape
    assert net.description["outputs"][0]["shape"] == list(expected)
    assert trt_python_plugin.output_length(17, kernel, fields["stride"], fields["padding"], fields["dilation"]) == \
        expected[2]
    assert stand_in.created[-1][1] == fields


def test_stand_in_rejects_shapes_and_fields_the_contract_rejects(rtx, stand_in, tmp_path):
    fields = dict(contract.FIELD_DEFAULTS)
    path = tmp_path / "bad.onnx"
    onnx.save(_one_node_graph((1, 64, 8, 8), 3, 64, fields, offset_channels=200), str(path))
    with pytest.raises(be.EngineBuildError, match="offset_mask_logits has 200 channels, expected 216"):
        be.parse_onnx(rtx, path, strongly_typed=True)
    t = rtx.module
    with pytest.raises(trt_python_plugin.StandInError, match="stride.*>= 1"):
        trt_python_plugin.parse_fields([t.PluginField("stride", np.array([0], np.int32), t.PluginFieldType.INT32)])
    with pytest.raises(trt_python_plugin.StandInError, match="unknown field 'groups'"):
        trt_python_plugin.parse_fields([t.PluginField("groups", np.array([1], np.int32), t.PluginFieldType.INT32)])
    with pytest.raises(trt_python_plugin.StandInError, match="one integer"):
        trt_python_plugin.parse_fields([t.PluginField("padding", np.array([1.0], np.float32),
                                                         t.PluginFieldType.FLOAT32)])
    assert trt_python_plugin.parse_fields([]) == contract.FIELD_DEFAULTS


def test_parse_registers_tensorrts_own_plugins_before_the_parser(rtx, tmp_path):
    """TensorRT 10's ONNX parser lowers DeformConv (the unsurgered graph of the built-in baseline, build_engine
    --no-plugin) to ModulatedDeformConv2d from TensorRT's own plugin library, whose creators exist only after
    init_libnvinfer_plugins: parse_onnx must call it before it creates the parser."""
    calls = []

    class Recording(types.ModuleType):
        def __getattr__(self, name):
            return getattr(rtx.module, name)

    module = Recording(rtx.module.__name__)

    def init_libnvinfer_plugins(logger, namespace):
        calls.append(("init_libnvinfer_plugins", namespace))
        return rtx.module.init_libnvinfer_plugins(logger, namespace)

    def parser(network, logger):
        calls.append(("OnnxParser",))
        return rtx.module.OnnxParser(network, logger)

    module.init_libnvinfer_plugins, module.OnnxParser = init_libnvinfer_plugins, parser
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "relu",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 4, 4])])
    path = tmp_path / "relu.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)]), str(path))
    net = be.parse_onnx(trt_compat.TensorRT(module, rtx.backend), path, strongly_typed=True)
    assert calls == [("init_libnvinfer_plugins", ""), ("OnnxParser",)]
    assert net.description["outputs"][0]["shape"] == [1, 3, 4, 4]


def test_missing_onnx_file_names_make_onnx(rtx, tmp_path):
    with pytest.raises(be.EngineBuildError, match="no such ONNX file; create it with `make onnx`"):
        be.parse_onnx(rtx, tmp_path / "missing.onnx", strongly_typed=True)


# What the NGC TensorRT container has: numpy, TensorRT, Polygraphy (pip install --no-deps), no torch or onnx stack.
CONTAINER_ABSENT = ("torch", "onnx", "onnxruntime", "onnx_graphsurgeon", "onnxruntime_extensions", "onnxscript",
                    "tqdm", "cv2", "tritonclient")


def test_build_runs_with_what_the_ngc_container_has(graphs, tmp_path):
    code = (f"import sys\nfrom export import build_engine\n"
            f"sys.exit(build_engine.main(['--backend', 'rtx', '--ci-profile', '--onnx', "
            f"{str(graphs.path('plugin_fp16'))!r}, '--out', {str(tmp_path / 'model.plan')!r}]))\n")
    proc = run_python(code, absent=CONTAINER_ABSENT, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "Building engine" in proc.stderr  # the progress monitor's fallback without tqdm
    assert json.loads((tmp_path / "model.plan.json").read_text())["network"]["plugin_layers"] == 8
