"""The real Triton server (CPU variant): bad requests get clear errors while the server keeps serving, restricted
endpoints, and start/stop leaving no process behind."""
import os
import subprocess

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from client import contract
from model_repository.server import ADMIN_HEADER, TritonServer, docker_command, free_port, stage_cpu_repository
from tests.reference import rel_l2


def tensor(name, array, triton_type=None):
    triton_type = triton_type or {np.uint8: "UINT8", np.float32: "FP32", np.float16: "FP16"}[array.dtype.type]
    t = grpcclient.InferInput(name, list(array.shape), triton_type)
    t.set_data_from_numpy(array)
    return t


def good_inputs(h=16, w=20, batch=1):
    rng = np.random.default_rng()
    ldr = rng.integers(0, 256, (batch, 3, h, w, 3), dtype=np.uint8)
    ev = np.tile(np.array([[-2.0, 0.0, 2.0]], np.float32), (batch, 1))
    return ldr, ev


def bad_requests():
    ldr, ev = good_inputs()
    return {
        "wrong dtype": ([tensor("LDR", ldr.astype(np.float32)), tensor("EV", ev)], "data-type"),
        "wrong rank": ([tensor("LDR", ldr[:, :, :, :, 0]), tensor("EV", ev)], "shape"),
        "wrong channel count": ([tensor("LDR", np.concatenate([ldr, ldr[..., :1]], -1)), tensor("EV", ev)], "shape"),
        "empty tensor": ([tensor("LDR", ldr[:, :, :0]), tensor("EV", ev)], "empty"),
        "1x1 image": ([tensor("LDR", ldr[:, :, :1, :1]), tensor("EV", ev)], "too small"),
        "over the size limit": ([tensor("LDR", np.zeros((1, 3, 8, contract.MAX_SIDE + 1, 3), np.uint8)),
                                 tensor("EV", ev)], "over this server's limit"),
        "NaN EV": ([tensor("LDR", ldr), tensor("EV", np.array([[np.nan, 0, 2]], np.float32))], "finite"),
        "inf EV": ([tensor("LDR", ldr), tensor("EV", np.array([[-2, 0, np.inf]], np.float32))], "finite"),
        "missing input": ([tensor("LDR", ldr)], "EV"),
        "extra input": ([tensor("LDR", ldr), tensor("EV", ev), tensor("MASK", ev)], "MASK"),
        "batch of mismatched shapes": ([tensor("LDR", np.concatenate([ldr, ldr])), tensor("EV", ev)], "batch"),
    }


@pytest.fixture(scope="module")
def grpc(triton_cpu):
    client = grpcclient.InferenceServerClient(triton_cpu.grpc_url)
    yield client
    client.close()


@pytest.mark.parametrize("kind", list(bad_requests()))
def test_bad_request_gets_a_clear_error_and_the_server_keeps_serving(grpc, kind):
    inputs, expected = bad_requests()[kind]
    with pytest.raises(InferenceServerException) as err:
        grpc.infer(contract.MODEL_NAME, inputs, client_timeout=60)
    message = str(err.value)
    assert expected.lower() in message.lower(), message
    assert grpc.is_server_live() and grpc.is_server_ready() and grpc.is_model_ready(contract.MODEL_NAME)


def test_unknown_model(grpc):
    ldr, ev = good_inputs()
    with pytest.raises(InferenceServerException, match="nosuch"):
        grpc.infer("nosuch", [tensor("LDR", ldr), tensor("EV", ev)])
    assert grpc.is_server_ready()


def test_good_requests_after_bad_ones_and_batches_are_split_correctly(grpc, graphs):
    import onnxruntime as ort

    ldr, ev = good_inputs(13, 27, batch=2)
    ev[1] = [-1.0, 1.0, 3.0]
    got = grpc.infer(contract.MODEL_NAME, [tensor("LDR", ldr), tensor("EV", ev)]).as_numpy("HDR")
    want = ort.InferenceSession(str(graphs.path("pipeline")), providers=["CPUExecutionProvider"]).run(
        None, {"LDR": ldr, "EV": ev})[0]
    assert got.shape == (2, 13, 27, 3)
    assert rel_l2(got, want) <= 1e-4


def test_restricted_endpoints_need_the_token(graphs, tmp_path):
    repo = stage_cpu_repository(graphs.path("pipeline"), tmp_path)
    server = TritonServer(repo, grpc_port=free_port(), http_port=free_port(), metrics_port=free_port(),
                          admin_token="s3cret", stage=tmp_path)
    with server:
        client = grpcclient.InferenceServerClient(server.grpc_url)
        with pytest.raises(InferenceServerException, match="restricted"):
            client.get_system_shared_memory_status()
        header = {contract.GRPC_ADMIN_HEADER: "s3cret"}
        assert client.get_system_shared_memory_status(headers=header) is not None
        assert client.is_model_ready(contract.MODEL_NAME)  # inference and health stay open
        client.close()


def test_every_server_gets_a_token_loopback_too():
    # Deliberately changed (issue #10, finding 3): any local process could register shared memory on loopback.
    for host in ("0.0.0.0", "127.0.0.1", "::1"):
        assert TritonServer("/nonexistent", host=host).admin_token
    assert TritonServer("/nonexistent").admin_token != TritonServer("/nonexistent").admin_token


def _group_alive(pgid):
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False


def test_start_stop_leaves_no_process(graphs, tmp_path):
    repo = stage_cpu_repository(graphs.path("pipeline"), tmp_path)
    server = TritonServer(repo, grpc_port=free_port(), http_port=free_port(), metrics_port=free_port(), stage=tmp_path)
    server.start()
    pgid = server.process.pid
    stubs = subprocess.run(["pgrep", "-g", str(pgid)], capture_output=True, text=True).stdout.split()
    assert len(stubs) >= 2  # tritonserver and its python backend stub
    server.stop()
    assert not _group_alive(pgid)
    server.stop()  # idempotent


def test_a_failing_start_reports_the_log_and_cleans_up(tmp_path):
    from model_repository.server import ServerError

    bogus = tmp_path / "repository" / contract.MODEL_NAME
    (bogus / "1").mkdir(parents=True)
    (bogus / "config.pbtxt").write_text('name: "adnet"\nbackend: "python"\n')
    (bogus / "1" / "model.py").write_text("raise RuntimeError('broken model for the test')\n")
    server = TritonServer(tmp_path / "repository", grpc_port=free_port(), http_port=free_port(),
                          metrics_port=free_port(), stage=tmp_path)
    with pytest.raises(ServerError, match="not ready|exited"):
        server.start(timeout=30)
    assert server.process is None


def test_docker_command_for_gpu_hosts():
    cmd = docker_command(admin_token="t")
    assert "nvcr.io/nvidia/tritonserver:" in cmd and "--gpus all" in cmd
    assert "--backend-config=tensorrt,plugins=/plugins/libadnet_plugins.so" in cmd
    assert f"{ADMIN_HEADER}=t" in cmd


def test_gpu_server_command_runs_the_plugin_preflight_before_docker(tmp_path, monkeypatch, capsys):
    """`python -m model_repository.server --gpu` on a docker + GPU host: the plugin pre-flight runs first and a failed
    one stops the start (Triton itself would only log the plugin and fail the model later)."""
    from export import plugin_preflight
    from model_repository import server

    monkeypatch.chdir(tmp_path)
    plan = tmp_path / "model_repository" / "gpu" / contract.MODEL_NAME / "1" / "model.plan"
    plan.parent.mkdir(parents=True)
    plan.write_bytes(b"plan")
    monkeypatch.setattr(server.shutil, "which", lambda name: f"/usr/bin/{name}")
    ran, checked, verdict = [], [], {"rc": 1}
    monkeypatch.setattr(server.subprocess, "call", lambda cmd, shell=False: ran.append(cmd) or 0)
    monkeypatch.setattr(plugin_preflight, "main", lambda argv: checked.append(argv) or verdict["rc"])
    assert server.main(["--gpu"]) == 1
    assert ran == [] and "not started: fix what the plugin pre-flight says" in capsys.readouterr().err
    assert checked == [["--plan", "model_repository/gpu/adnet/1/model.plan", "--plugin", "build/libadnet_plugins.so",
                        "--docker"]]
    verdict["rc"] = 0
    assert server.main(["--gpu"]) == 0 and len(ran) == 1 and "nvcr.io/nvidia/tritonserver:" in ran[0]
    assert server.main(["--gpu", "--preflight-done"]) == 0  # make serve GPU=1 ran gpu-serve-preflight already
    assert len(checked) == 2 and len(ran) == 2


def test_the_16_bit_twin_is_staged_served_and_canaried_beside_adnet(triton_cpu, graphs, tmp_path):
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2 as mc

    from model_repository.server import ServerError, served_models

    repo = triton_cpu.repository
    assert served_models(repo) == {contract.MODEL_NAME: "TYPE_UINT8", contract.MODEL_NAME_16BIT: "TYPE_FP16"}
    staged = text_format.Parse((repo / contract.MODEL_NAME_16BIT / "config.pbtxt").read_text(), mc.ModelConfig())
    source = text_format.Parse((repo / contract.MODEL_NAME / "config.pbtxt").read_text(), mc.ModelConfig())
    assert staged.name == contract.MODEL_NAME_16BIT and staged.input[0].data_type == mc.TYPE_FP16
    staged.name, staged.input[0].data_type = source.name, source.input[0].data_type
    assert staged == source  # the same model config but for the name and the LDR type
    with grpcclient.InferenceServerClient(triton_cpu.grpc_url) as client:
        assert client.is_model_ready(contract.MODEL_NAME) and client.is_model_ready(contract.MODEL_NAME_16BIT)
    assert triton_cpu.status()["models"] == [contract.MODEL_NAME, contract.MODEL_NAME_16BIT]  # both canaried
    with pytest.raises(ServerError, match="--ldr-dtype float16"):  # a UINT8 export cannot be the 16-bit twin
        stage_cpu_repository(graphs.path("pipeline"), tmp_path, graphs.path("pipeline"))
