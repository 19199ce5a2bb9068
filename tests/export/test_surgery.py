"""Graph surgery to AdnetDCNv2 nodes: structure, numerics of the surgered graph under ONNX Runtime (through the
plugin's CPU twin), FP16 accuracy, other producer patterns, and clear failures."""
from collections import Counter

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from client import hdr_math
from client.synthetic import make_scene
from export import surgery as surgery_mod
from export.ort_plugin import session
from export.pipeline import ADNetPipeline
from export.surgery import PLUGIN_DOMAIN, SurgeryError, surgery
from plugins.dcnv2 import contract
from tests.factories import fresh_generator
from tests.reference import rel_l2


def test_node_counts_attributes_and_inputs(graphs):
    model = onnx.load(str(graphs.path("plugin")))
    nodes = model.graph.node
    ops = Counter(n.op_type for n in nodes)
    assert ops["DeformConv"] == 0 and ops[contract.PLUGIN_NAME] == 8
    assert ops["Split"] == 0
    consumers = Counter(i for n in nodes for i in n.input)
    # The only Sigmoids left are the two spatial-attention maps, each multiplying features.
    sigmoids = [n for n in nodes if n.op_type == "Sigmoid"]
    assert len(sigmoids) == 2
    assert all(any(m.op_type == "Mul" and s.output[0] in m.input for m in nodes) for s in sigmoids)
    producers = {o: n for n in nodes for o in n.output}
    inits = {t.name: t for t in model.graph.initializer}
    for node in (n for n in nodes if n.op_type == contract.PLUGIN_NAME):
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        assert attrs == {"plugin_version": contract.PLUGIN_VERSION.encode(),
                         "plugin_namespace": contract.PLUGIN_NAMESPACE.encode(),
                         "stride": 1, "padding": 1, "dilation": 1, "deformable_groups": 8}
        assert node.domain == PLUGIN_DOMAIN and len(node.input) == len(contract.INPUT_NAMES)
        logits_producer = producers[node.input[1]]
        assert logits_producer.op_type == "Conv"
        assert list(inits[logits_producer.input[1]].dims) == [3 * 8 * 9, 64, 3, 3]
        assert consumers[node.input[1]] == 1  # the logits feed nothing else any more
        assert list(inits[node.input[2]].dims) == [64, 64, 3, 3] and list(inits[node.input[3]].dims) == [64]


def test_dynamic_axes_and_inferred_shapes_are_kept(graphs):
    model = onnx.load(str(graphs.path("plugin")))
    dims = [[d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]
            for v in list(model.graph.input) + list(model.graph.output)]
    assert dims == [["B", 3, "H", "W", 3], ["B", 3], ["B", "H", "W", 3]]
    info = {v.name: v for v in model.graph.value_info}
    for node in (n for n in model.graph.node if n.op_type == contract.PLUGIN_NAME):
        shape = info[node.output[0]].type.tensor_type.shape.dim
        assert shape[0].dim_param == "B" and shape[1].dim_value == 64 and shape[2].dim_param


@pytest.mark.parametrize("batch,h,w", [(1, 24, 32), (2, 19, 27)])
def test_surgered_graph_equals_the_original_under_onnxruntime(graphs, batch, h, w):
    gen = fresh_generator()
    feeds = {"LDR": torch.randint(0, 256, (batch, 3, h, w, 3), generator=gen, dtype=torch.uint8).numpy(),
             "EV": np.array([[-2.0, 0.0, 2.0]] * batch, dtype=np.float32)}
    original = session(graphs.path("pipeline")).run(None, feeds)[0]
    surgered = session(graphs.path("plugin")).run(None, feeds)[0]
    assert rel_l2(surgered, original) <= 1e-5


def test_fp16_plugin_graph_psnr_mu_vs_fp32_pytorch(graphs, capsys):
    scene = make_scene(48, 64, seed=int(fresh_generator().initial_seed() % 2**31))
    feeds = {"LDR": scene.ldrs[None], "EV": scene.evs[None].astype(np.float32)}
    with torch.no_grad():
        ref = ADNetPipeline(graphs.net).eval()(torch.from_numpy(feeds["LDR"]), torch.from_numpy(feeds["EV"]))
    ref_gamma = hdr_math.delinearize(ref.numpy()[0])
    results = {}
    for name in ("pipeline_fp16", "plugin_fp16"):
        out = session(graphs.path(name)).run(None, feeds)[0][0]
        results[name] = hdr_math.ntire_psnr_mu(ref_gamma, hdr_math.delinearize(out))
    with capsys.disabled():
        print(f"\nPSNR-mu (NTIRE) of FP16 graphs vs FP32 PyTorch on a synthetic scene: "
              + ", ".join(f"{k} {v:.2f} dB" for k, v in results.items()))
    assert all(v >= 45.0 for v in results.values()), results


def _toy_dcn_graph(pattern, with_sigmoid=True):
    """Conv -> (Split | three Slices) -> Concat/Sigmoid -> DeformConv on 8 channels, dg 2, 3x3."""
    gen = np.random.default_rng()
    c, dg, k = 8, 2, 9
    inits = [numpy_helper.from_array(gen.normal(0, 0.3, (3 * dg * k, c, 3, 3)).astype(np.float32), "ow"),
             numpy_helper.from_array(gen.normal(0, 0.1, (3 * dg * k,)).astype(np.float32), "ob"),
             numpy_helper.from_array(gen.normal(0, 0.3, (c, c, 3, 3)).astype(np.float32), "w"),
             numpy_helper.from_array(gen.normal(0, 0.1, (c,)).astype(np.float32), "b")]
    nodes = [helper.make_node("Conv", ["fea", "ow", "ob"], ["logits"], pads=[1, 1, 1, 1])]
    n = dg * k
    if pattern == "split":
        nodes.append(helper.make_node("Split", ["logits"], ["o1", "o2", "m"], axis=1, num_outputs=3))
    else:
        for name, start in (("o1", 0), ("o2", n), ("m", 2 * n)):
            for suffix, value in (("s", start), ("e", start + n), ("a", 1)):
                inits.append(numpy_helper.from_array(np.array([value], np.int64), f"{name}_{suffix}"))
            nodes.append(helper.make_node("Slice", ["logits", f"{name}_s", f"{name}_e", f"{name}_a"], [name]))
    nodes.append(helper.make_node("Concat", ["o1", "o2"], ["offset"], axis=1))
    nodes.append(helper.make_node("Sigmoid" if with_sigmoid else "Relu", ["m"], ["mask"]))
    nodes.append(helper.make_node("DeformConv", ["x", "w", "offset", "b", "mask"], ["y"], dilations=[1, 1],
                                  group=1, offset_group=dg, pads=[1, 1, 1, 1], strides=[1, 1]))
    value = lambda name: helper.make_tensor_value_info(name, TensorProto.FLOAT, ["N", c, "H", "W"])
    graph = helper.make_graph(nodes, "toy", [value("x"), value("fea")], [value("y")], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)])


@pytest.mark.parametrize("pattern", ["split", "slices"])
def test_split_and_slice_producers_are_both_recognised(tmp_path, pattern):
    src, dst = tmp_path / "toy.onnx", tmp_path / "toy_plugin.onnx"
    onnx.save(_toy_dcn_graph(pattern), str(src))
    assert surgery(src, dst) == 1
    ops = Counter(n.op_type for n in onnx.load(str(dst)).graph.node)
    assert ops == {"Conv": 1, contract.PLUGIN_NAME: 1}
    gen = np.random.default_rng()
    feeds = {"x": gen.normal(size=(2, 8, 7, 9)).astype(np.float32),
             "fea": gen.normal(size=(2, 8, 7, 9)).astype(np.float32)}
    want = ort.InferenceSession(str(src), providers=["CPUExecutionProvider"]).run(None, feeds)[0]
    assert rel_l2(session(dst).run(None, feeds)[0], want) <= 1e-5


def test_pattern_mismatch_is_a_clear_error(tmp_path):
    src = tmp_path / "relu_mask.onnx"
    onnx.save(_toy_dcn_graph("split", with_sigmoid=False), str(src))
    with pytest.raises(SurgeryError, match="mask is not produced by a Sigmoid"):
        surgery(src, tmp_path / "out.onnx")


def test_graph_without_deformconv_is_refused(tmp_path):
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    src = tmp_path / "relu.onnx"
    onnx.save(helper.make_model(graph), str(src))
    with pytest.raises(SurgeryError, match="no DeformConv node"):
        surgery(src, tmp_path / "out.onnx")


def test_cli(tmp_path, capsys):
    src = tmp_path / "toy.onnx"
    onnx.save(_toy_dcn_graph("split"), str(src))
    assert surgery_mod.main([str(src), str(tmp_path / "out.onnx")]) == 0
    assert "1 DeformConv -> AdnetDCNv2" in capsys.readouterr().out
    assert surgery_mod.main([str(tmp_path / "missing.onnx"), str(tmp_path / "o.onnx")]) == 1
    assert "no such ONNX file" in capsys.readouterr().err
    (tmp_path / "junk.onnx").write_bytes(b"not a protobuf at all \xff\xff")
    assert surgery_mod.main([str(tmp_path / "junk.onnx"), str(tmp_path / "o.onnx")]) == 1
    assert "not a readable ONNX model" in capsys.readouterr().err
