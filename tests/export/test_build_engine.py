"""Engine build (export/build_engine.py) for real on the CPU with TensorRT-RTX and the Python stand-in of AdnetDCNv2;
what can be inspected without a GPU: the parsed network, the stand-in's calls, the serialised plan (plugin records,
profile bounds, header validity), the sidecar; plus the errors that name their fix. Deserialising needs a GPU and is
skipped here with the reason.

Run through `make test`: TensorRT-RTX's ONNX parser needs LD_LIBRARY_PATH to hold the libtensorrt_rtx.so link that
`make setup` creates (without it the `rtx` fixture fails with that message instead of the process aborting)."""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from client import contract as io_contract
from client.synthetic import make_scene
from export import build_engine as be
from export import trt_compat, trt_python_plugin
from export.engine_runner import EngineLoadError, EngineRunner, check_sidecar
from export.verify_engine import MIN_PSNR_MU, compare
from export.profiles import CI_PROFILE, DEFAULT_PROFILE, NTIRE_FRAME, Profile, ProfileError, Shape
from export.surgery import PLUGIN_DOMAIN
from plugins.dcnv2 import contract

REPO = Path(__file__).resolve().parents[2]
FP16 = "float16"


@pytest.fixture(scope="module")
def rtx():
    try:
        return trt_compat.load("rtx")
    except trt_compat.TensorRTNotFound as exc:  # e.g. pytest started without make's LD_LIBRARY_PATH
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture(scope="module")
def stand_in(rtx):
    return trt_python_plugin.register(rtx.module)


@pytest.fixture(scope="module")
def ci_engine(rtx, stand_in, graphs, tmp_path_factory):
    """The FP16 pipeline graph built at the CI profile: (BuildResult, stand-in creations during this build)."""
    before = len(stand_in.created)
    calls_before = dict(stand_in.trace)
    out = tmp_path_factory.mktemp("engine") / "model.plan"
    result = be.build_engine(graphs.path("plugin_fp16"), out, be.BuildOptions(profiles=(CI_PROFILE,),
                                                                                 show_progress=False), trt=rtx)
    calls = {k: v - calls_before.get(k, 0) for k, v in stand_in.trace.items()}
    return result, stand_in.created[before:], calls


# ---- the serialised plan, as TensorRT-RTX 1.7 writes it (tensorrt-rtx-cu13 is pinned in requirements.txt) ----------
# A string is  13 80 01 00 <u64 n> 01 80 0c 80 01 00 <u64 n> <n bytes>;  an int32 is  07 80 01 00 <i32>;  a blob is
# 01 80 03 80 01 00 <u64 n> <n bytes>.  A plugin record: name, version, namespace, field count, then per field: name,
# element count, type name, data.  A profile: per input three dims records (min, opt, max), each
# 07 80 01 00 <i32 rank> 01 80 09 80 01 00 <u64 rank> <rank x i64> a6 7f.

_STR, _STR2 = b"\x13\x80\x01\x00", b"\x01\x80\x0c\x80\x01\x00"
_INT, _BLOB = b"\x07\x80\x01\x00", b"\x01\x80\x03\x80\x01\x00"


def _string(data: bytes, i: int):
    if data[i:i + 4] != _STR or data[i + 12:i + 18] != _STR2:
        return None
    n = struct.unpack_from("<Q", data, i + 4)[0]
    if struct.unpack_from("<Q", data, i + 18)[0] != n:
        return None
    return data[i + 26:i + 26 + n].decode(errors="replace"), i + 26 + n


def _int32(data: bytes, i: int):
    return (struct.unpack_from("<i", data, i + 4)[0], i + 8) if data[i:i + 4] == _INT else None


def _blob(data: bytes, i: int):
    if data[i:i + 6] != _BLOB:
        return None
    n = struct.unpack_from("<Q", data, i + 6)[0]
    return data[i + 14:i + 14 + n], i + 14 + n


def plan_plugin_records(plan: bytes, name: str = contract.PLUGIN_NAME) -> list[dict]:
    """Every serialised plugin record named `name`: {"name", "version", "namespace", "fields": {f: (type, value)}}."""
    records = []
    for match in re.finditer(re.escape(_STR + struct.pack("<Q", len(name))), plan):
        strings, pos = [], match.start()
        for _ in range(3):
            parsed = _string(plan, pos)
            if parsed is None:
                break
            strings.append(parsed[0])
            pos = parsed[1]
        count = _int32(plan, pos) if len(strings) == 3 and strings[0] == name else None
        if count is None:
            continue
        fields, pos = {}, count[1]
        for _ in range(count[0]):
            field_name, length, type_name, blob = _string(plan, pos), None, None, None
            if field_name:
                length = _int32(plan, field_name[1])
            if length:
                type_name = _string(plan, length[1])
            if type_name:
                blob = _blob(plan, type_name[1])
            if blob is None:
                break
            value = np.frombuffer(blob[0], dtype=np.int32).tolist() if type_name[0] == "INT32" else blob[0]
            fields[field_name[0]] = (type_name[0], value)
            pos = blob[1]
        else:
            records.append({"name": strings[0], "version": strings[1], "namespace": strings[2], "fields": fields})
    return records


def _dims_record(dims) -> bytes:
    n = len(dims)
    return _INT + struct.pack("<i", n) + b"\x01\x80\x09\x80\x01\x00" + struct.pack(f"<Q{n}q", n, *dims) + b"\xa6\x7f"


def plan_profile_offset(plan: bytes, shapes) -> int:
    """Where the three consecutive dims records (min, opt, max) of one input start in the plan; -1 if absent."""
    return plan.find(b"".join(_dims_record(s) for s in shapes))


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


def test_plan_carries_eight_plugin_records_with_the_contract_fields(ci_engine):
    plan = ci_engine[0].plan_path.read_bytes()
    records = plan_plugin_records(plan)
    assert len(records) == 8
    for record in records:
        assert (record["name"], record["version"], record["namespace"]) == (
            contract.PLUGIN_NAME, contract.PLUGIN_VERSION, contract.PLUGIN_NAMESPACE)
        assert list(record["fields"]) == [name for name, _ in contract.FIELDS]  # serialisation order
        assert record["fields"] == {name: ("INT32", [value]) for name, value in contract.FIELDS}


def test_plan_carries_the_profile_bounds(ci_engine):
    plan = ci_engine[0].plan_path.read_bytes()
    for name, shapes in CI_PROFILE.input_shapes().items():
        assert plan_profile_offset(plan, shapes) > 0, name
    other = Profile(Shape(1, 32, 48), Shape(1, 48, 64), Shape(3, 64, 96)).input_shapes()[io_contract.INPUT_LDR]
    assert plan_profile_offset(plan, other) == -1  # bounds the engine was not built with are not found


def test_plan_header_is_valid_for_this_runtime(rtx, ci_engine):
    runtime = rtx.module.Runtime(be.trt_logger(rtx))
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
    engine = rtx.module.Runtime(be.trt_logger(rtx)).deserialize_cuda_engine(ci_engine[0].plan_path.read_bytes())
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
    proc = subprocess.run(
        [sys.executable, "-m", "export.build_engine", "--backend", "rtx", "--onnx", str(graphs.path("plugin_fp16")),
         "--out", str(out), "--min", "1x32x32", "--opt", "48x64", "--max", "3x64x128", "--no-progress",
         "--compute-capability", "SM86", "--compute-capability", "sm120", "--workspace", "256"],
        cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "CI build-only stand-in" in proc.stdout
    side = json.loads(out.with_name("model.plan.json").read_text())
    assert side["profiles"][0]["min"] == [1, 32, 32] and side["profiles"][0]["opt"] == [1, 48, 64]
    assert side["profiles"][0]["max"] == [3, 64, 128]
    assert side["device"]["target_compute_capabilities"] == ["SM86", "SM120"]
    assert side["builder"]["workspace_bytes"] == 256 << 20
    plan = out.read_bytes()
    assert plan_profile_offset(plan, Profile.parse("1x32x32", "48x64", "3x64x128").input_shapes()["LDR"]) > 0
    assert b"accelerators={sm86 sm120 }" in plan  # the targets reach the compiled program


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


# ---- version detection and routes --------------------------------------------------------------------------------

class _FakeModule:
    def __init__(self, version, fp16_flag):
        self.__version__ = version
        self.__name__ = "tensorrt"
        self.BuilderFlag = type("BuilderFlag", (), {"FP16": 1} if fp16_flag else {})


@pytest.mark.parametrize("version,flag,precision,route", [
    ("10.13.0.35", True, "fp16", "fp16-flag"),
    ("10.13.0.35", True, "fp32", "strongly-typed"),
    ("11.1.0.106", False, "fp16", "strongly-typed"),
])
def test_route_follows_the_tensorrt_version(version, flag, precision, route):
    trt = trt_compat.TensorRT(_FakeModule(version, flag), "tensorrt")
    assert be.resolve_route(trt, precision) == route
    assert trt.library_soname == f"libnvinfer.so.{version.split('.')[0]}"


def test_fp16_flag_route_is_refused_where_there_is_no_flag(rtx):
    with pytest.raises(be.EngineBuildError, match="strongly typed networks only"):
        be.resolve_route(rtx, "fp16", "fp16-flag")
    with pytest.raises(be.EngineBuildError, match="fp16-flag route builds FP16 engines only"):
        be.resolve_route(trt_compat.TensorRT(_FakeModule("10.8.0", True), "tensorrt"), "fp32", "fp16-flag")


# ---- errors that name the fix ------------------------------------------------------------------------------------

def test_missing_rtx_link_fails_clearly_instead_of_aborting(graphs, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "LD_LIBRARY_PATH"}
    proc = subprocess.run([sys.executable, "-m", "export.build_engine", "--backend", "rtx", "--ci-profile",
                           "--onnx", str(graphs.path("plugin_fp16")), "--out", str(tmp_path / "x.plan")],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stderr
    assert "libtensorrt_rtx.so" in proc.stderr and "LD_LIBRARY_PATH=" in proc.stderr
    assert "terminate called" not in proc.stderr


def _tensorrt_importable() -> bool:
    try:
        trt_compat.load("tensorrt")
        return True
    except trt_compat.TensorRTNotFound:
        return False


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_engine_without_tensorrt_names_the_container():
    if _tensorrt_importable():
        pytest.skip("TensorRT is installed here: `make engine` builds for real")
    # -o: never reinstall the venv from inside a test, even when requirements.txt is newer than its stamp.
    proc = subprocess.run(["make", "--no-print-directory", "-o", ".venv/.requirements.stamp", "engine",
                           f"PY={sys.executable}"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert "TensorRT not found" in proc.stderr and "nvcr.io/nvidia/tritonserver:<yy.mm>-py3" in proc.stderr
    assert "docker run --gpus all" in proc.stderr and "Traceback" not in proc.stderr


def test_plugin_library_errors(rtx, stand_in, tmp_path):
    with pytest.raises(be.PluginLibraryError, match="not found: build it with `make plugin`"):
        be.load_plugins(rtx, tmp_path / "libadnet_plugins.so")
    other = tmp_path / "other.so"
    other.write_bytes(b"\x7fELF" + b"\0" * 60 + b"libnvinfer.so.10\0libcudart.so.12\0")
    with pytest.raises(be.PluginLibraryError, match=r"another TensorRT.*libnvinfer\.so\.10.*libtensorrt_rtx\.so\.1"):
        be.load_plugins(rtx, other)
    same = tmp_path / "same.so"
    same.write_bytes(b"\x7fELF" + b"\0" * 60 + b"libtensorrt_rtx.so.1\0")
    with pytest.raises(be.PluginLibraryError, match="already registered"):  # the stand-in holds the name here
        be.load_plugins(rtx, same)


def test_no_gpu_is_reported_with_the_fix():
    try:
        gpu = trt_compat.require_gpu()
    except trt_compat.NoGPU as exc:
        assert "no GPU" in str(exc) and "--gpus all" in str(exc)
    else:
        pytest.skip(f"this machine has a GPU ({gpu['name']})")


def test_runner_refuses_stand_in_and_mismatched_engines_before_loading(rtx, ci_engine, tmp_path):
    result = ci_engine[0]
    with pytest.raises(EngineLoadError, match="stand-in.*cannot run"):
        EngineRunner(result.plan_path, backend="rtx")
    side = json.loads(json.dumps(result.sidecar))
    side["plugin"]["implementation"] = "library"
    check_sidecar(side, rtx, result.plan_path)  # a matching engine passes
    other = json.loads(json.dumps(side))
    other["tensorrt"]["version"] = "0.9.0"
    with pytest.raises(EngineLoadError, match="loads only in the TensorRT version that built it"):
        check_sidecar(other, rtx, result.plan_path)
    other = json.loads(json.dumps(side))
    other["plugin"]["version"] = "2"
    with pytest.raises(EngineLoadError, match="rebuild plugin and engine together"):
        check_sidecar(other, rtx, result.plan_path)


def test_engine_modules_import_without_tensorrt():
    code = ("import sys; sys.modules['tensorrt'] = sys.modules['tensorrt_rtx'] = None\n"
            "import export.build_engine, export.engine_runner, export.verify_engine, export.trt_compat\n"
            "from export import trt_compat\n"
            "try:\n    trt_compat.load('auto')\nexcept trt_compat.TensorRTNotFound as e:\n    print(e)\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "TensorRT not found" in proc.stdout and "nvcr.io/nvidia/tensorrt:<yy.mm>-py3" in proc.stdout


# ---- profiles ----------------------------------------------------------------------------------------------------

def test_profile_defaults_and_parsing():
    assert DEFAULT_PROFILE.opt == Shape(1, *NTIRE_FRAME) == Shape.parse("1060x1900")
    assert DEFAULT_PROFILE.min.batch == 1 and DEFAULT_PROFILE.max.batch >= 2
    assert str(Profile.parse(opt_size="2x1200x2000")) == "min 1x8x8, opt 2x1200x2000, max 2x1200x2000"
    shapes = Profile.parse("1x16x16", "1x64x64", "4x128x256").input_shapes()
    assert shapes == {io_contract.INPUT_LDR: ((1, 3, 16, 16, 3), (1, 3, 64, 64, 3), (4, 3, 128, 256, 3)),
                      io_contract.INPUT_EV: ((1, 3), (1, 3), (4, 3))}
    for bad in ("1060", "0x10x10", "ax2x3", "1x2x3x4"):
        with pytest.raises(ProfileError, match="profile size"):
            Shape.parse(bad)
    with pytest.raises(ProfileError, match="min <= opt <= max"):
        Profile.parse("2x64x64", "1x64x64", "2x64x64")


# ---- verify-engine's comparison (the GPU run itself is `make verify-engine`) -----------------------------------------

def test_verify_comparison_passes_fp16_like_errors_and_fails_real_ones():
    rng = np.random.default_rng()
    ref = np.stack([make_scene(48, 64, seed=int(rng.integers(1 << 30))).gt_linear for _ in range(2)])
    close = ref * (1 + rng.normal(0, 1e-3, ref.shape))  # about FP16's relative precision
    r = compare(ref, close)
    assert r["finite"] and min(r["psnr_mu"]) >= MIN_PSNR_MU and r["max_abs"] > 0
    assert r["max_rel_to_peak"] == pytest.approx(np.abs(close - ref).max() / ref.max())
    off = compare(ref, ref * 1.2)  # a 20% exposure error
    assert max(off["psnr_mu"]) < MIN_PSNR_MU
    broken = close.copy()
    broken[1, 3, 4, 0] = np.nan
    assert not compare(ref, broken)["finite"]
