"""ONNX export: the pipeline graph under ONNX Runtime vs PyTorch, the in-graph pre-processing vs the numpy HDR
math, the bare network, graph structure, and the CLI's errors."""
from collections import Counter

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from client import contract, hdr_math
from export import to_onnx
from export.checkpoint import random_adnet
from export.pipeline import ADNetPipeline
from tests.factories import fresh_generator
from tests.reference import rel_l2


def run_ort(path, feeds):
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)[0]


def random_request(batch, h, w, ldr_dtype="uint8"):
    gen = fresh_generator()
    if ldr_dtype == "uint8":
        ldr = torch.randint(0, 256, (batch, 3, h, w, 3), generator=gen, dtype=torch.uint8)
    else:
        ldr = torch.rand(batch, 3, h, w, 3, generator=gen).to(torch.float16)
    base = torch.randint(-4, 3, (batch, 1), generator=gen).float()
    ev = base + torch.tensor([[-2.0, 0.0, 2.0]]) * torch.randint(1, 3, (batch, 1), generator=gen)
    return ldr, ev


@pytest.mark.parametrize("batch,h,w", [(1, 32, 48), (2, 29, 39), (3, 18, 22), (1, 5, 7)])
def test_pipeline_onnxruntime_matches_pytorch(graphs, batch, h, w):
    ldr, ev = random_request(batch, h, w)
    got = run_ort(graphs.path("pipeline"), {"LDR": ldr.numpy(), "EV": ev.numpy()})
    with torch.no_grad():
        want = ADNetPipeline(graphs.net).eval()(ldr, ev).numpy()
    assert got.shape == (batch, h, w, 3) and got.dtype == np.float32
    assert rel_l2(got, want) <= 1e-4


def test_pipeline_with_float16_ldr_input(graphs):
    ldr, ev = random_request(2, 21, 26, ldr_dtype="float16")
    got = run_ort(graphs.path("pipeline_ldr16"), {"LDR": ldr.numpy(), "EV": ev.numpy()})
    with torch.no_grad():
        want = ADNetPipeline(graphs.net).eval()(ldr, ev).numpy()
    assert rel_l2(got, want) <= 1e-4


def test_pipeline_equals_numpy_preprocessing_network_and_linearisation(graphs):
    """Independent path: official EV alignment (hdr_math, with powers), edge padding in numpy, the network,
    crop and x**2.24 -- against the exported pipeline."""
    ldr, ev = random_request(1, 23, 30)
    ldr_np = ldr.numpy()[0]
    padded = np.pad(hdr_math.normalize_ldr(ldr_np), ((0, 0), (0, 1), (0, 2), (0, 0)), mode="edge")
    frames = hdr_math.ntire_frames(list(padded), ev.numpy()[0])  # [3, 6, 24, 32]
    with torch.no_grad():
        gamma = graphs.net(*(torch.from_numpy(f[None]).float() for f in frames)).numpy()[0]
    want = hdr_math.linearize(gamma[:, :23, :30].transpose(1, 2, 0))
    got = run_ort(graphs.path("pipeline"), {"LDR": ldr.numpy(), "EV": ev.numpy()})[0]
    assert rel_l2(got, want) <= 1e-4


def test_ev_alignment_in_the_graph_equals_the_official_formula(graphs):
    ldr, ev = random_request(2, 8, 12)
    frames = ADNetPipeline(graphs.net).frames(ldr, ev)
    for b in range(2):
        official = hdr_math.ntire_frames(list(hdr_math.normalize_ldr(ldr.numpy()[b])), ev.numpy()[b])
        for i in range(3):
            np.testing.assert_allclose(frames[i][b].numpy(), official[i], rtol=2e-6, atol=2e-7)


def test_graph_contract_and_structure(graphs):
    model = onnx.load(str(graphs.path("pipeline")))
    io = {v.name: (v.type.tensor_type.elem_type, [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim])
          for v in list(model.graph.input) + list(model.graph.output)}
    assert io == {contract.INPUT_LDR: (onnx.TensorProto.UINT8, ["B", 3, "H", "W", 3]),
                  contract.INPUT_EV: (onnx.TensorProto.FLOAT, ["B", 3]),
                  contract.OUTPUT_HDR: (onnx.TensorProto.FLOAT, ["B", "H", "W", 3])}
    ops = Counter(n.op_type for n in model.graph.node)
    assert ops["DeformConv"] == 8  # 4 per PCD call, PCD called twice
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 19
    onnx.checker.check_model(model, full_check=True)


def test_fp16_graph_keeps_the_contract_io_and_computes_in_fp16(graphs):
    model = onnx.load(str(graphs.path("pipeline_fp16")))
    types = {v.name: v.type.tensor_type.elem_type for v in list(model.graph.input) + list(model.graph.output)}
    assert types == {"LDR": onnx.TensorProto.UINT8, "EV": onnx.TensorProto.FLOAT, "HDR": onnx.TensorProto.FLOAT}
    weights = [t for t in model.graph.initializer if t.dims and len(t.dims) == 4]
    assert weights and all(t.data_type == onnx.TensorProto.FLOAT16 for t in weights)


def test_core_graph_matches_the_network(graphs):
    gen = fresh_generator()
    xs = [torch.rand(2, 6, 16, 24, generator=gen) for _ in range(3)]
    got = run_ort(graphs.path("core"), {n: x.numpy() for n, x in zip(to_onnx.CORE_INPUTS, xs)})
    with torch.no_grad():
        want = graphs.net(*xs).numpy()
    assert rel_l2(got, want) <= 1e-4
    dims = [[d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]
            for v in onnx.load(str(graphs.path("core"))).graph.input]
    assert dims == [["B", 6, "H", "W"]] * 3


@pytest.mark.slow  # exports ADNet
def test_cli_exports_with_a_checkpoint(tmp_path, capsys):
    ckpt = tmp_path / "adnet.pth"
    torch.save({"epoch": 1, "state_dict": {f"module.{k}": v for k, v in random_adnet(3).state_dict().items()}},
               ckpt)
    out = tmp_path / "core.onnx"
    assert to_onnx.main(["--checkpoint", str(ckpt), "--out", str(out), "--core"]) == 0
    assert "8 DeformConv" in capsys.readouterr().out and out.is_file()


@pytest.mark.parametrize("args,message", [
    (["--checkpoint", "/nonexistent.pth"], "checkpoint not found"),
    (["--precision", "int8"], "unknown precision 'int8'"),
    (["--ldr-dtype", "uint16"], "unknown LDR dtype 'uint16'"),
])
def test_cli_errors(tmp_path, capsys, args, message):
    assert to_onnx.main(args + ["--out", str(tmp_path / "x.onnx")]) == 1
    assert message in capsys.readouterr().err
    assert not (tmp_path / "x.onnx").exists()


def test_cli_rejects_a_checkpoint_with_wrong_keys(tmp_path, capsys):
    ckpt = tmp_path / "other.pth"
    torch.save({"conv.weight": torch.zeros(3, 3, 1, 1)}, ckpt)
    assert to_onnx.main(["--checkpoint", str(ckpt), "--out", str(tmp_path / "x.onnx")]) == 1
    err = capsys.readouterr().err
    assert "missing keys (110)" in err and "unexpected keys (1): conv.weight" in err


@pytest.mark.slow  # exports ADNet
def test_fp16_export_leaves_the_callers_network_in_float32(tmp_path):
    net = random_adnet(5)
    to_onnx.export_onnx(net, tmp_path / "fp16.onnx", core=True, precision="fp16")
    assert all(p.dtype == torch.float32 for p in net.parameters())
