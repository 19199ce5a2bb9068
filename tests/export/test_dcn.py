"""export/dcn.py against a naive float64 reference, ONNX Runtime's DeformConv, and autograd's gradcheck."""
import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper

from export.dcn import DCNPack, deform_conv2d, deform_conv_output_size, onnx_translation_table
from tests.factories import fresh_generator
from tests.reference import dcn_naive, rel_l2

# (batch, C, H, W, Cout, kh, kw, stride, padding, dilation, offset groups, weight groups, offset scale)
CASES = [
    (1, 4, 6, 7, 3, 3, 3, 1, 1, 1, 1, 1, 2.5),   # the ADNet shape in miniature
    (2, 8, 7, 9, 6, 3, 3, 2, 2, 2, 4, 2, 3.0),   # stride, dilation, padding 2, groups everywhere
    (1, 6, 5, 8, 4, 2, 3, 1, 0, 1, 3, 1, 4.0),   # non-square kernel, no padding, big offsets
    (2, 8, 9, 6, 8, 3, 3, 3, 1, 2, 2, 4, 1.5),   # stride 3
    (1, 16, 8, 8, 16, 3, 3, 1, 1, 1, 8, 1, 6.0),  # ADNet's 8 offset groups; most samples leave the image
]


def make_case(b, c, h, w, c_out, kh, kw, s, p, d, dg, groups, scale, dtype=torch.float64, integer_offsets=False):
    gen = fresh_generator()
    ho = deform_conv_output_size(h, kh, s, p, d)
    wo = deform_conv_output_size(w, kw, s, p, d)
    x = torch.randn(b, c, h, w, generator=gen, dtype=dtype)
    offset = torch.randn(b, 2 * dg * kh * kw, ho, wo, generator=gen, dtype=dtype) * scale
    if integer_offsets:
        offset = offset.round()
    mask = torch.rand(b, dg * kh * kw, ho, wo, generator=gen, dtype=dtype)
    weight = torch.randn(c_out, c // groups, kh, kw, generator=gen, dtype=dtype)
    bias = torch.randn(c_out, generator=gen, dtype=dtype)
    return x, offset, weight, bias, mask, (s, p, d)


@pytest.mark.parametrize("case", CASES)
def test_float64_matches_naive_reference(case):
    x, offset, weight, bias, mask, (s, p, d) = make_case(*case)
    out = deform_conv2d(x, offset, weight, bias, stride=s, padding=p, dilation=d, mask=mask)
    ref = dcn_naive(x, offset, weight, bias, s, p, d, mask)
    assert out.shape == ref.shape
    np.testing.assert_allclose(out.numpy(), ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("case", CASES)
def test_float32_within_1e5_of_float64_reference(case):
    x, offset, weight, bias, mask, (s, p, d) = make_case(*case)
    out = deform_conv2d(x.float(), offset.float(), weight.float(), bias.float(), s, p, d, mask.float())
    assert out.dtype == torch.float32
    assert rel_l2(out, dcn_naive(x, offset, weight, bias, s, p, d, mask)) <= 1e-5


def test_samples_inside_outside_and_on_the_border():
    """Hand-placed samples: exact pixels, fractions, the open interval (-1, H), and far outside."""
    x = torch.arange(12, dtype=torch.float64).reshape(1, 1, 3, 4) + 1
    weight = torch.ones(1, 1, 1, 1, dtype=torch.float64)
    cases = [((0.0, 0.0), 1.0),            # pixel (0,0)
             ((1.5, 2.25), None),          # interior fraction -> reference
             ((-0.5, 0.0), 0.5 * 1.0),     # half above the image: only the lower corner counts
             ((-1.0, 0.0), 0.0),           # y == -1 is outside (open interval)
             ((2.0, 3.0), 12.0),           # last pixel exactly
             ((3.0, 0.0), 0.0),            # y == H is outside
             ((2.5, 3.5), 0.25 * 12.0),    # beyond the last pixel by half in both axes
             ((-7.0, 40.0), 0.0)]          # far outside
    for (dy, dx), expected in cases:
        offset = torch.tensor([dy, dx], dtype=torch.float64).view(1, 2, 1, 1)
        # A 1x1 kernel without padding: output (0, 0) samples the input at (dy, dx) exactly.
        out = deform_conv2d(x, offset.expand(1, 2, 3, 4).contiguous(), weight)[0, 0, 0, 0].item()
        ref = dcn_naive(x, offset.expand(1, 2, 3, 4), weight)[0, 0, 0, 0]
        assert out == pytest.approx(ref, abs=1e-12)
        if expected is not None:
            assert out == pytest.approx(expected, abs=1e-12)


def test_integer_offsets_and_no_mask_no_bias():
    x, offset, weight, _, _, (s, p, d) = make_case(1, 4, 6, 6, 2, 3, 3, 1, 1, 1, 2, 1, 2.0, integer_offsets=True)
    out = deform_conv2d(x, offset, weight, None, s, p, d, None)
    np.testing.assert_allclose(out.numpy(), dcn_naive(x, offset, weight, None, s, p, d, None), rtol=1e-12, atol=1e-12)


def test_zero_offsets_unit_mask_equal_a_convolution():
    x, offset, weight, bias, mask, _ = make_case(2, 8, 9, 11, 6, 3, 3, 2, 1, 2, 4, 2, 0.0)
    out = deform_conv2d(x, offset, weight, bias, 2, 1, 2, torch.ones_like(mask))
    conv = torch.nn.functional.conv2d(x, weight, bias, stride=2, padding=1, dilation=2, groups=2)
    torch.testing.assert_close(out, conv, rtol=1e-12, atol=1e-12)


def test_float16_is_close_and_keeps_subpixel_positions_at_large_coordinates():
    x, offset, weight, bias, mask, (s, p, d) = make_case(1, 8, 6, 1500, 4, 3, 3, 1, 1, 1, 2, 1, 2.0)
    out = deform_conv2d(x.half(), offset.half(), weight.half(), bias.half(), s, p, d, mask.half())
    assert out.dtype == torch.float16
    ref = deform_conv2d(x.half().double(), offset.half().double(), weight.half().double(), bias.half().double(),
                        s, p, d, mask.half().double())
    # float16 storage of the columns and a float16 matmul; positions near x=1500 keep their fractions.
    assert rel_l2(out.float(), ref) < 3e-3


def test_gradcheck():
    x, offset, weight, bias, mask, (s, p, d) = make_case(1, 4, 5, 5, 2, 3, 3, 1, 1, 1, 2, 1, 1.3)
    inputs = [t.clone().requires_grad_() for t in (x, offset, weight, bias, mask)]
    assert torch.autograd.gradcheck(
        lambda a, o, w, b, m: deform_conv2d(a, o, w, b, stride=s, padding=p, dilation=d, mask=m), inputs)


def test_gradient_only_for_some_inputs():
    x, offset, weight, bias, mask, _ = make_case(1, 4, 5, 5, 2, 3, 3, 1, 1, 1, 1, 1, 1.0)
    offset.requires_grad_()
    deform_conv2d(x, offset, weight, bias, padding=1, mask=mask).sum().backward()
    assert offset.grad is not None and offset.grad.abs().sum() > 0


def _ort_deform_conv(x, weight, offset, bias, mask, s, p, d, groups, dg):
    elem = TensorProto.DOUBLE if x.dtype == torch.float64 else TensorProto.FLOAT
    names = ["X", "W", "offset", "B", "mask"]
    values = [x, weight, offset, bias, mask]
    node = helper.make_node("DeformConv", names, ["Y"], dilations=[d, d], group=groups, offset_group=dg,
                            kernel_shape=list(weight.shape[2:]), pads=[p, p, p, p], strides=[s, s])
    graph = helper.make_graph([node], "deform_conv",
                              [helper.make_tensor_value_info(n, elem, list(v.shape)) for n, v in zip(names, values)],
                              [helper.make_tensor_value_info("Y", elem, [x.shape[0], weight.shape[0],
                                                                          *offset.shape[2:]])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)])
    onnx.checker.check_model(model, full_check=True)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {n: v.numpy() for n, v in zip(names, values)})[0]


@pytest.mark.parametrize("case", CASES)
def test_matches_onnxruntime_deformconv(case):
    x, offset, weight, bias, mask, (s, p, d) = make_case(*case, dtype=torch.float32)
    groups, dg = x.shape[1] // weight.shape[1], offset.shape[1] // (2 * weight.shape[2] * weight.shape[3])
    ours = deform_conv2d(x, offset, weight, bias, s, p, d, mask)
    theirs = _ort_deform_conv(x, weight, offset, bias, mask, s, p, d, groups, dg)
    assert rel_l2(ours, theirs) <= 1e-5


def test_dcnpack_splits_offsets_and_mask_like_the_official_module():
    gen = fresh_generator()
    pack = DCNPack(16, 16, 3, deformable_groups=8).double()
    torch.nn.init.normal_(pack.conv_offset_mask.weight, std=0.3, generator=gen)
    x = torch.randn(2, 16, 8, 10, generator=gen, dtype=torch.float64)
    fea = torch.randn(2, 16, 8, 10, generator=gen, dtype=torch.float64)
    logits = pack.conv_offset_mask(fea)
    assert logits.shape[1] == 3 * 8 * 9
    # offset = cat(o1, o2) = the first 2*dg*K channels; mask = sigmoid(the last dg*K)
    ref = dcn_naive(x, logits[:, :144].detach(), pack.weight.detach(), pack.bias.detach(), 1, 1, 1,
                    torch.sigmoid(logits[:, 144:]).detach())
    np.testing.assert_allclose(pack(x, fea).detach().numpy(), ref, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("bad,match", [
    (dict(offset_channels=17), "multiple of 2\\*kh\\*kw"),
    (dict(mask_channels=5), "mask shape"),
    (dict(offset_hw=(3, 3)), "offset shape"),
    (dict(bias_len=3), "bias shape"),
    (dict(dtype_mismatch=True), "convert all tensors"),
])
def test_bad_shapes_raise_clear_errors(bad, match):
    x = torch.randn(1, 4, 6, 6)
    offset = torch.randn(1, bad.get("offset_channels", 18), *bad.get("offset_hw", (6, 6)))
    mask = torch.rand(1, bad.get("mask_channels", 9), 6, 6)
    weight = torch.randn(2, 4, 3, 3)
    bias = torch.randn(bad.get("bias_len", 2))
    if bad.get("dtype_mismatch"):
        weight = weight.double()
    with pytest.raises(ValueError, match=match):
        deform_conv2d(x, offset, weight, bias, padding=1, mask=mask)


def test_onnx_export_emits_one_deformconv_per_call(tmp_path):
    class TwoCalls(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.a = DCNPack(16, 16, 3, deformable_groups=8)
            self.b = DCNPack(16, 16, 3, deformable_groups=8)
            for pack in (self.a, self.b):
                torch.nn.init.normal_(pack.conv_offset_mask.weight, std=0.2)

        def forward(self, x, fea):
            return self.b(self.a(x, fea), fea)

    model = TwoCalls().eval()
    dims = {0: torch.export.Dim("B"), 2: torch.export.Dim("H"), 3: torch.export.Dim("W")}
    program = torch.onnx.export(model, (torch.randn(1, 16, 12, 20), torch.randn(1, 16, 12, 20)), dynamo=True,
                                opset_version=19, custom_translation_table=onnx_translation_table(),
                                dynamic_shapes={"x": dims, "fea": dims}, verbose=False)
    path = tmp_path / "two_dcn.onnx"
    program.save(str(path))
    graph = onnx.load(str(path)).graph
    ops = [n.op_type for n in graph.node]
    assert ops.count("DeformConv") == 2
    assert [d.dim_param for d in graph.input[0].type.tensor_type.shape.dim] == ["B", "", "H", "W"]
    x, fea = torch.randn(2, 16, 9, 13), torch.randn(2, 16, 9, 13)  # another size than traced
    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(
        None, {"x": x.numpy(), "fea": fea.numpy()})[0]
    with torch.no_grad():
        assert rel_l2(got, model(x, fea)) <= 1e-5


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (CI has none)")
def test_cuda_matches_cpu():
    x, offset, weight, bias, mask, (s, p, d) = make_case(*CASES[1], dtype=torch.float32)
    cpu = deform_conv2d(x, offset, weight, bias, s, p, d, mask)
    gpu = deform_conv2d(*(t.cuda() for t in (x, offset, weight, bias)), s, p, d, mask.cuda())
    assert rel_l2(gpu.cpu(), cpu) <= 1e-5
