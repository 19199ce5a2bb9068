"""Every config.pbtxt parses with Triton's own model_config protobuf and implements the public contract; the
CPU and GPU variants are interchangeable for a client."""
from pathlib import Path

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from client import contract

REPO = Path(__file__).resolve().parents[2] / "model_repository"
CONFIGS = sorted(REPO.glob("*/*/config.pbtxt"))


def load(path):
    return text_format.Parse(path.read_text(), mc.ModelConfig())


def io_signature(config):
    return ([(i.name, mc.DataType.Name(i.data_type), list(i.dims)) for i in config.input],
            [(o.name, mc.DataType.Name(o.data_type), list(o.dims)) for o in config.output])


def test_both_variants_exist():
    assert {p.parent.parent.name for p in CONFIGS} == {"cpu", "gpu"}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.parent.parent.name)
def test_config_implements_the_contract(path):
    config = load(path)
    assert config.name == contract.MODEL_NAME == path.parent.name
    assert config.max_batch_size >= 1 and config.HasField("dynamic_batching")
    inputs, outputs = io_signature(config)
    assert inputs == [(contract.INPUT_LDR, contract.LDR_DTYPES[contract.DEFAULT_LDR_DTYPE], [3, -1, -1, 3]),
                      (contract.INPUT_EV, "TYPE_FP32", [3])]
    assert outputs == [(contract.OUTPUT_HDR, "TYPE_FP32", [-1, -1, 3])]


def test_variants_are_interchangeable():
    cpu, gpu = (load(REPO / v / contract.MODEL_NAME / "config.pbtxt") for v in ("cpu", "gpu"))
    assert io_signature(cpu) == io_signature(gpu)
    assert cpu.max_batch_size == gpu.max_batch_size


def test_gpu_batch_and_sizes_fit_the_default_engine_profile():
    from export.profiles import DEFAULT_PROFILE

    gpu = load(REPO / "gpu" / contract.MODEL_NAME / "config.pbtxt")
    assert gpu.max_batch_size == DEFAULT_PROFILE.max.batch
    assert DEFAULT_PROFILE.min.height == DEFAULT_PROFILE.min.width == contract.MIN_SIDE
    assert max(DEFAULT_PROFILE.max.height, DEFAULT_PROFILE.max.width) <= contract.MAX_SIDE


def test_gpu_variant_is_a_tensorrt_plan_on_gpu_instances():
    config = load(REPO / "gpu" / contract.MODEL_NAME / "config.pbtxt")
    assert config.platform == "tensorrt_plan" and config.default_model_filename == "model.plan"
    assert [g.kind for g in config.instance_group] == [mc.ModelInstanceGroup.KIND_GPU]
    assert list(config.instance_group[0].profile) == ["0"]


def test_cpu_variant_is_the_python_backend_with_the_contract_limits():
    config = load(REPO / "cpu" / contract.MODEL_NAME / "config.pbtxt")
    assert config.backend == "python"
    assert [g.kind for g in config.instance_group] == [mc.ModelInstanceGroup.KIND_CPU]
    params = {k: v.string_value for k, v in config.parameters.items()}
    assert int(params["min_side"]) == contract.MIN_SIDE and int(params["max_side"]) == contract.MAX_SIDE
    assert int(params["max_pixels"]) >= 1060 * 1900  # the NTIRE frame
    assert params["onnx_file"].endswith(".onnx") and int(params["intra_op_threads"]) >= 0
    assert (REPO / "cpu" / contract.MODEL_NAME / "1" / "model.py").is_file()
