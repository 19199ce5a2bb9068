"""The AdnetDCNv2 CPU twin (plugins/dcnv2/cpu.py + dcnv2_cpu.cpp) and the pure core (dcnv2_core.cpp).

References are independent of the twin: tests.reference.dcn_naive (float64 loops) and export.dcn in float64 for
larger shapes, with mask = sigmoid(logits) computed in float64. Outputs are poisoned with NaN before every call.
"""
import ctypes
from pathlib import Path

import numpy as np
import pytest
import torch

from export.dcn import deform_conv2d
from plugins.dcnv2 import abi, build, contract
from plugins.dcnv2.cpu import dcnv2_forward, load_library
from plugins.dcnv2.cuda import find_nvcc
from plugins.dcnv2.errors import PluginBuildError
from tests.factories import fresh_generator
from tests.reference import dcn_naive, rel_l2

ROOT = Path(__file__).resolve().parents[2]
DCN_DIR = ROOT / "plugins" / "dcnv2"

# (batch, C, H, W, Cout, kh, kw, stride, padding, dilation, deformable groups, offset scale in pixels)
CASES = [
    (1, 8, 6, 7, 5, 3, 3, 1, 1, 1, 8, 2.5),    # ADNet's layer in miniature: 3x3, dg 8
    (2, 6, 7, 9, 7, 3, 3, 2, 2, 2, 1, 3.0),    # batch 2, stride 2, dilation 2, padding 2, dg 1
    (1, 10, 5, 8, 3, 2, 3, 1, 0, 1, 5, 4.0),   # non-square kernel, no padding, big offsets
    (2, 9, 9, 6, 11, 3, 3, 3, 1, 2, 3, 1.5),   # stride 3, odd channel counts
    (1, 16, 8, 8, 13, 3, 3, 1, 1, 1, 8, 6.0),  # most samples leave the image
]


def rng_from_fresh_seed():
    return np.random.default_rng(fresh_generator().initial_seed())


def out_size(size, k, s, p, d):
    return (size + 2 * p - d * (k - 1) - 1) // s + 1


def make_case(rng, b, c, h, w, cout, kh, kw, s, p, d, dg, scale):
    ho, wo, k = out_size(h, kh, s, p, d), out_size(w, kw, s, p, d), kh * kw
    x = rng.standard_normal((b, c, h, w))
    offsets = rng.standard_normal((b, 2 * dg * k, ho, wo)) * scale
    logits = rng.standard_normal((b, dg * k, ho, wo)) * 2
    weight = rng.standard_normal((cout, c, kh, kw)) / np.sqrt(c * k)
    bias = rng.standard_normal(cout)
    return x, np.concatenate([offsets, logits], axis=1), weight, bias


def sigmoid64(v):
    return 1.0 / (1.0 + np.exp(-np.asarray(v, dtype=np.float64)))


def reference(x, offset_mask, weight, bias, s, p, d, dg, naive=True):
    """float64 DCNv2 with the mask sigmoid applied here (independent of the twin)."""
    n_off = 2 * dg * weight.shape[2] * weight.shape[3]
    offsets, mask = offset_mask[:, :n_off], sigmoid64(offset_mask[:, n_off:])
    if naive:
        return dcn_naive(x, offsets, weight, bias, s, p, d, mask)
    t = [torch.from_numpy(np.asarray(a, dtype=np.float64)) for a in (x, offsets, weight, bias, mask)]
    return deform_conv2d(t[0], t[1], t[2], t[3], stride=s, padding=p, dilation=d, mask=t[4]).numpy()


def run_twin(x, offset_mask, weight, bias, s, p, d, dg, dtype):
    """The twin writing into a NaN-poisoned output buffer; checks every element was written."""
    ho, wo = offset_mask.shape[2:]
    out = np.full((x.shape[0], weight.shape[0], ho, wo), np.nan, dtype=dtype)
    got = dcnv2_forward(x, offset_mask, weight, bias, stride=s, padding=p, dilation=d, deformable_groups=dg,
                        dtype=dtype, out=out)
    assert got is out
    assert not np.isnan(out).any(), "the twin left poisoned outputs unwritten"
    return out


def as_fp16_values(*arrays):
    """The float16-representable inputs (as float64) that a float16 run actually sees."""
    return [np.asarray(a).astype(np.float16).astype(np.float64) for a in arrays]


@pytest.mark.parametrize("case", CASES)
def test_float32_matches_float64_naive_reference(case):
    *shape, s, p, d, dg, scale = case
    x, om, w, b = make_case(rng_from_fresh_seed(), *case)
    got = run_twin(x, om, w, b, s, p, d, dg, "float32")
    assert rel_l2(got, reference(x, om, w, b, s, p, d, dg)) <= 1e-5


@pytest.mark.parametrize("case", CASES)
def test_float16_matches_float64_reference(case):
    *shape, s, p, d, dg, scale = case
    x, om, w, b = as_fp16_values(*make_case(rng_from_fresh_seed(), *case))
    got = run_twin(x, om, w, b, s, p, d, dg, "float16")
    assert got.dtype == np.float16
    assert rel_l2(got, reference(x, om, w, b, s, p, d, dg)) <= 2e-3


def test_random_shapes_against_torch_float64():
    """Fresh random shapes each run (seed printed): dg in {1, 8}, odd sizes, strides, dilations, batches."""
    rng = rng_from_fresh_seed()
    for _ in range(4):
        dg = int(rng.choice([1, 8]))
        kh, kw = int(rng.integers(1, 4)), int(rng.integers(1, 4))
        s, p, d = int(rng.integers(1, 3)), int(rng.integers(0, 3)), int(rng.integers(1, 3))
        case = (int(rng.integers(1, 3)), dg * int(rng.integers(1, 4)), int(rng.integers(6, 20)),
                int(rng.integers(6, 20)), int(rng.integers(1, 20)), kh, kw, s, p, d, dg, float(rng.uniform(0.5, 5)))
        print("case", case)
        x, om, w, b = make_case(rng, *case)
        ref = reference(x, om, w, b, s, p, d, dg, naive=False)
        assert rel_l2(run_twin(x, om, w, b, s, p, d, dg, "float32"), ref) <= 1e-5
        x16, om16, w16, b16 = as_fp16_values(x, om, w, b)
        ref16 = reference(x16, om16, w16, b16, s, p, d, dg, naive=False)
        assert rel_l2(run_twin(x16, om16, w16, b16, s, p, d, dg, "float16"), ref16) <= 2e-3


def test_adnet_layer_shape_is_accurate():
    """64 -> 64, 3x3, dg 8 at 64x64 (ADNet's layer). Its time is printed, not asserted: speed is for the benchmarks."""
    import time

    rng = rng_from_fresh_seed()
    x, om, w, b = make_case(rng, 1, 64, 64, 64, 64, 3, 3, 1, 1, 1, 8, 2.0)
    ref = reference(x, om, w, b, 1, 1, 1, 8, naive=False)
    for dtype, tol in (("float32", 1e-5), ("float16", 2e-3)):
        inputs = (x, om, w, b) if dtype == "float32" else as_fp16_values(x, om, w, b)
        ref_d = ref if dtype == "float32" else reference(*inputs, 1, 1, 1, 8, naive=False)
        start = time.perf_counter()
        got = run_twin(*inputs, 1, 1, 1, 8, dtype)
        print(f"{dtype}: {(time.perf_counter() - start) * 1e3:.1f} ms")
        assert rel_l2(got, ref_d) <= tol


def test_float16_keeps_subpixel_positions_at_large_coordinates():
    """Positions are float32: at x ~ 1500 float16 positions would have a spacing of 1 pixel."""
    rng = rng_from_fresh_seed()
    x, om, w, b = as_fp16_values(*make_case(rng, 1, 4, 3, 1500, 3, 3, 3, 1, 1, 1, 2, 2.0))
    got = run_twin(x, om, w, b, 1, 1, 1, 2, "float16")
    assert rel_l2(got, reference(x, om, w, b, 1, 1, 1, 2, naive=False)) <= 2e-3


def test_samples_on_the_border_and_outside():
    """Hand-placed samples through a 1x1 kernel: exact pixels, fractions, the open interval (-1, H), far away."""
    x = np.arange(12, dtype=np.float64).reshape(1, 1, 3, 4) + 1
    w, b = np.ones((1, 1, 1, 1)), np.zeros(1)
    for (dy, dx), expected in [((0.0, 0.0), 1.0), ((1.5, 2.25), None), ((-0.5, 0.0), 0.5), ((-1.0, 0.0), 0.0),
                               ((2.0, 3.0), 12.0), ((3.0, 0.0), 0.0), ((2.5, 3.5), 3.0), ((-7.0, 40.0), 0.0),
                               ((0.0, -0.25), 0.75)]:
        om = np.zeros((1, 3, 3, 4))
        om[0, 0], om[0, 1], om[0, 2] = dy, dx, 100.0  # sigmoid(100) == 1 in float32 and float64
        for dtype in ("float32", "float16"):
            got = run_twin(x, om, w, b, 1, 0, 1, 1, dtype)[0, 0, 0, 0]
            ref = reference(x, om, w, b, 1, 0, 1, 1)[0, 0, 0, 0]
            assert got == pytest.approx(ref, abs=1e-6 if dtype == "float32" else 1e-2)
            if expected is not None:
                assert got == pytest.approx(expected, abs=1e-6 if dtype == "float32" else 1e-2)


# ---- the FP16 rounding points ------------------------------------------------------------------------------------

def emulate_fp16_rounding(x, offset_mask, weight, bias, s, p, d, dg, round_columns=True):
    """Independent numpy emulation of the FP16 kernel's arithmetic (dcnv2_cpu.cpp lists the rounding points):
    float32 positions, bilinear weights and sigmoid; column value sigmoid*bilinear rounded to float16; float16
    weights times columns accumulated exactly (float64) plus bias. Returns the float64 value before the output
    rounding and the sum of the absolute terms (bounds float32 accumulation error)."""
    f32 = np.float32
    x, om = (np.asarray(a, dtype=np.float16).astype(f32) for a in (x, offset_mask))
    weight, bias = (np.asarray(a, dtype=np.float16).astype(np.float64) for a in (weight, bias))
    n, c, h, w = x.shape
    cout, _, kh, kw = weight.shape
    k_taps, cg = kh * kw, c // dg
    ho, wo = om.shape[2:]
    base_y = (np.arange(ho) * s - p)[:, None]
    base_x = (np.arange(wo) * s - p)[None, :]
    cols = np.zeros((n, c, k_taps, ho, wo), dtype=np.float64)
    bidx = np.arange(n)[:, None, None, None]
    for g in range(dg):
        chans = np.arange(g * cg, (g + 1) * cg)[None, :, None, None]
        for k in range(k_taps):
            i, j = divmod(k, kw)
            py = (base_y + i * d).astype(f32) + om[:, g * 2 * k_taps + 2 * k]
            px = (base_x + j * d).astype(f32) + om[:, g * 2 * k_taps + 2 * k + 1]
            # exp correctly rounded to float32 (glibc's expf nearly always is; numpy's float32 exp often is not)
            e = np.exp(-om[:, 2 * dg * k_taps + g * k_taps + k].astype(np.float64)).astype(f32)
            m = f32(1) / (f32(1) + e)
            inside = (py > -1) & (py < h) & (px > -1) & (px < w)
            y0f, x0f = np.floor(py), np.floor(px)
            ly, lx = py - y0f, px - x0f
            hy, hx = f32(1) - ly, f32(1) - lx
            y0, x0 = y0f.astype(np.int64), x0f.astype(np.int64)
            acc = np.zeros((n, cg, ho, wo), dtype=f32)
            for yy, xx, wgt in ((y0, x0, hy * hx), (y0, x0 + 1, hy * lx), (y0 + 1, x0, ly * hx),
                                (y0 + 1, x0 + 1, ly * lx)):
                ok = inside & (yy >= 0) & (yy < h) & (xx >= 0) & (xx < w)
                vals = x[bidx, chans, np.clip(yy, 0, h - 1)[:, None], np.clip(xx, 0, w - 1)[:, None]]
                acc = acc + np.where(ok, wgt, f32(0))[:, None] * np.where(ok[:, None], vals, f32(0))
            value = m[:, None] * acc
            cols[:, g * cg:(g + 1) * cg, k] = value.astype(np.float16) if round_columns else value
    wmat = weight.reshape(cout, c, k_taps)
    value = np.einsum("ock,nckhw->nohw", wmat, cols) + bias[None, :, None, None]
    magnitude = np.einsum("ock,nckhw->nohw", np.abs(wmat), np.abs(cols)) + np.abs(bias)[None, :, None, None]
    return value, magnitude


def ulp16(v):
    """Spacing of float16 at |v| (subnormal spacing near zero)."""
    a = np.abs(np.asarray(v, dtype=np.float16))
    return np.spacing(a).astype(np.float64)


def test_float16_rounds_where_the_kernel_rounds():
    """The twin's float16 output is the float16 rounding of the emulated value: exactly in >= 99% of outputs, and
    everywhere within one float16 ulp, the float32 accumulation bound (R+1) * 2^-24 * sum|terms| and one column
    value rounded the other way (a 1-ulp float32 difference in expf can flip it). Without the column rounding the
    exact comparison fails, so the test tells the rounding points apart."""
    rng = rng_from_fresh_seed()
    for case in (CASES[0], CASES[1], (1, 24, 16, 20, 16, 3, 3, 1, 1, 1, 8, 2.0)):
        *shape, s, p, d, dg, scale = case
        x, om, w, b = as_fp16_values(*make_case(rng, *case))
        got = run_twin(x, om, w, b, s, p, d, dg, "float16").astype(np.float64)
        emulated, magnitude = emulate_fp16_rounding(x, om, w, b, s, p, d, dg)
        rounded = emulated.astype(np.float16).astype(np.float64)
        exact = np.mean(got == rounded)
        terms = w[0].size + 1
        column_flip = np.abs(w).max() * ulp16(np.abs(x).max())
        within = np.abs(got - emulated) <= ulp16(emulated) + terms * 2.0 ** -24 * magnitude + column_flip
        unrounded, _ = emulate_fp16_rounding(x, om, w, b, s, p, d, dg, round_columns=False)
        exact_unrounded = np.mean(got == unrounded.astype(np.float16).astype(np.float64))
        print(f"{case}: equal to the emulation's float16 output: {exact:.4f} (rel L2 {rel_l2(got, rounded):.1e}); "
              f"to an emulation without the column rounding: {exact_unrounded:.4f}")
        assert exact >= 0.99
        assert within.all()
        if got.size > 2000:  # enough outputs for the rate to be stable (~0.8 here, vs >= 0.99 above)
            assert exact_unrounded < 0.95


def test_float_to_half_matches_numpy_bit_for_bit():
    rng = rng_from_fresh_seed()
    special = np.array([0.0, -0.0, np.inf, -np.inf, 65504, 65519.99, 65520, 1e6, -1e6, 2.0 ** -24, 2.0 ** -25,
                        1.5 * 2.0 ** -25, 2.0 ** -26, 2.0 ** -14, 2.0 ** -14 - 2.0 ** -25, 1e-40, -1e-40, 1.0,
                        1.0 + 2.0 ** -11, 1.0 + 3 * 2.0 ** -11, 1024.5, 2049.0, 3.0 * 2.0 ** -25], dtype=np.float32)
    randoms = (rng.standard_normal(200_000) * np.exp2(rng.uniform(-30, 18, 200_000))).astype(np.float32)
    ulp_ties = (rng.integers(1, 2048, 20_000) * 2.0 ** -11 + 2.0 ** -12).astype(np.float32)  # exact ties
    values = np.concatenate([special, -special, randoms, ulp_ties])
    bits = np.empty(values.shape, dtype=np.uint16)
    load_library().adnet_dcn_float_to_half(values.ctypes.data, bits.ctypes.data, values.size)
    with np.errstate(over="ignore"):  # values beyond 65520 become inf, as intended
        expected = values.astype(np.float16).view(np.uint16)
    np.testing.assert_array_equal(bits, expected)
    nan_bits = np.empty(1, dtype=np.uint16)
    nan = np.array([np.nan], dtype=np.float32)
    load_library().adnet_dcn_float_to_half(nan.ctypes.data, nan_bits.ctypes.data, 1)
    assert np.isnan(nan_bits.view(np.float16)[0])


# ---- validation --------------------------------------------------------------------------------------------------

def _valid():
    rng = np.random.default_rng(0)
    return make_case(rng, 1, 8, 6, 7, 4, 3, 3, 1, 1, 1, 2, 1.0)


@pytest.mark.parametrize("change,match", [
    (dict(deformable_groups=3), "deformable_groups = 3 must divide the input channels C = 8"),
    (dict(deformable_groups=0), "deformable_groups = 0 is out of range"),
    (dict(stride=0), "stride = 0 is out of range"),
    (dict(padding=-1), "padding = -1 is out of range"),
    (dict(dilation=0), "dilation = 0 is out of range"),
    (dict(om_channels=53), "offset_mask_logits has 53 channels, expected 54 = 3\\*deformable_groups\\*kh\\*kw = "
                           "3\\*2\\*9"),
    (dict(om_hw=(5, 7)), "spatial size 5x7 must equal the output size 6x7"),
    (dict(bias_len=5), "bias has 5 elements, expected Cout = 4"),
    (dict(weight_c=6), "weight groups = 1"),
    (dict(om_batch=2), "batch 2 differs from x batch 1"),
    (dict(x_hw=(1, 7), padding=0), "output would be empty"),
    (dict(dtype="float64"), "dtype must be one of"),
    (dict(x_ndim=3), "x must be 4-D"),
])
def test_invalid_arguments_raise_the_core_message(change, match):
    x, om, w, b = _valid()
    kwargs = dict(stride=1, padding=1, dilation=1, deformable_groups=2)
    kwargs.update({k: v for k, v in change.items() if k in kwargs})
    if "om_channels" in change:
        om = om[:, :change["om_channels"]]
    if "om_hw" in change:
        om = om[:, :, :change["om_hw"][0], :change["om_hw"][1]]
    if "om_batch" in change:
        om = np.concatenate([om, om])
    if "bias_len" in change:
        b = np.zeros(change["bias_len"])
    if "weight_c" in change:
        w = w[:, :change["weight_c"]]
    if "x_hw" in change:
        x = x[:, :, :change["x_hw"][0], :change["x_hw"][1]]
    if "x_ndim" in change:
        x = x[0]
    with pytest.raises(ValueError, match=match):
        dcnv2_forward(x, om, w, b, dtype=change.get("dtype", "float32"), **kwargs)


def test_out_argument_is_checked():
    x, om, w, b = _valid()
    with pytest.raises(ValueError, match="out must be"):
        dcnv2_forward(x, om, w, b, deformable_groups=2, out=np.empty((1, 4, 6, 7), dtype=np.float16))
    with pytest.raises(ValueError, match="out must be"):
        dcnv2_forward(x, om, w, b, deformable_groups=2, out=np.empty((1, 4, 6, 8), dtype=np.float32))


def test_raw_abi_rejects_null_pointers_and_bad_dtype():
    lib = load_library()
    x, om, w, b = (np.ascontiguousarray(a, dtype=np.float32) for a in _valid())
    y = np.empty((1, 4, 6, 7), dtype=np.float32)
    problem = abi.make_problem("float32", dict(deformable_groups=2), x.shape, om.shape, w.shape, 4)
    tensors = abi.Tensors(x.ctypes.data, om.ctypes.data, w.ctypes.data, b.ctypes.data, y.ctypes.data)
    assert lib.adnet_dcn_forward_cpu(ctypes.byref(problem), ctypes.byref(tensors)) == 0
    problem.dtype = 2
    assert lib.adnet_dcn_forward_cpu(ctypes.byref(problem), ctypes.byref(tensors)) == -1
    assert "dtype 2 is not supported" in lib.adnet_dcn_last_error().decode()
    problem.dtype = 0
    tensors.bias = None
    assert lib.adnet_dcn_forward_cpu(ctypes.byref(problem), ctypes.byref(tensors)) == -1
    assert "the bias pointer is null" in lib.adnet_dcn_last_error().decode()
    problem.x[2] = -1  # a launch needs every dim
    tensors.bias = b.ctypes.data
    assert lib.adnet_dcn_forward_cpu(ctypes.byref(problem), ctypes.byref(tensors)) == -1
    assert "launch dims must be known" in lib.adnet_dcn_last_error().decode()


def test_empty_batch_is_a_no_op():
    x, om, w, b = _valid()
    got = dcnv2_forward(x[:0], om[:0], w, b, deformable_groups=2)
    assert got.shape == (0, 4, 6, 7)


def test_unknown_dims_are_skipped_at_build_time():
    """The adapters validate with -1 for dynamic dims before shapes are known."""
    lib = load_library()

    def check(x, om, w=(64, 64, 3, 3), bias=64):
        return lib.adnet_dcn_check(ctypes.byref(abi.make_problem("float16", {}, x, om, w, bias)))

    assert check((-1, 64, -1, -1), (-1, 216, -1, -1)) == 0
    assert check((-1, 64, -1, -1), (-1, 215, -1, -1)) == -1
    assert "expected 216 = 3*deformable_groups*kh*kw" in lib.adnet_dcn_last_error().decode()
    assert check((1, 64, 1 << 24, 2), (1, 216, 1 << 24, 2)) == -1
    assert "below 2^24" in lib.adnet_dcn_last_error().decode()
    assert check((1, 64, 20, -1), (1, 216, 19, -1)) == -1  # the offsets' spatial size against the known H
    assert "spatial size 19x-1 must equal the output size 20x-1" in lib.adnet_dcn_last_error().decode()


def test_output_length_is_the_convolution_rule():
    lib = load_library()
    for size, k, s, p, d in [(17, 3, 1, 1, 1), (17, 3, 2, 0, 2), (23, 5, 3, 2, 1), (2, 3, 1, 0, 1)]:
        expected = max((size + 2 * p - d * (k - 1) - 1) // s + 1, 0)
        assert lib.adnet_dcn_output_length(size, k, s, p, d) == expected
    assert lib.adnet_dcn_output_length(-1, 3, 1, 1, 1) == -1


# ---- fields (what TensorRT's ONNX parser hands the creator) --------------------------------------------------------

FIELD_TYPE = dict(INT32=0, INT64=1, INT16=2, INT8=3, FLOAT32=4, FLOAT64=5, CHAR=6, OTHER=7)
CTYPE = dict(INT32=ctypes.c_int32, INT64=ctypes.c_int64, INT16=ctypes.c_int16, INT8=ctypes.c_int8,
             FLOAT32=ctypes.c_float, FLOAT64=ctypes.c_double, CHAR=ctypes.c_char)


def defaults():
    values = (ctypes.c_int32 * contract.FIELDS.__len__())()
    load_library().adnet_dcn_default_fields(values)
    return values


def set_field(values, name, type_name, value, length=1):
    data = CTYPE[type_name](value)
    return load_library().adnet_dcn_set_field(values, name.encode(), FIELD_TYPE[type_name], ctypes.byref(data), length)


def test_compiled_defaults_are_the_contract_defaults():
    assert list(defaults()) == [v for _, v in contract.FIELDS]


def test_set_field_accepts_integer_types_and_round_trips():
    values = defaults()
    for (name, _), type_name, value in zip(contract.FIELDS, ("INT32", "INT64", "INT16", "INT8"), (2, 0, 3, 4)):
        assert set_field(values, name, type_name, value) == 0, load_library().adnet_dcn_last_error()
    assert list(values) == [2, 0, 3, 4]
    copy = (ctypes.c_int32 * len(values))(*values)
    for (name, _), v in zip(contract.FIELDS, list(values)):  # serialise -> deserialise through INT32 fields
        assert set_field(copy, name, "INT32", v) == 0
    assert list(copy) == list(values)
    # and the parameters work: stride 2, padding 0, dilation 3, dg 4 on a small problem
    rng = rng_from_fresh_seed()
    x, om, w, b = make_case(rng, 1, 8, 11, 12, 3, 3, 3, 2, 0, 3, 4, 2.0)
    got = run_twin(x, om, w, b, 2, 0, 3, 4, "float32")
    assert rel_l2(got, reference(x, om, w, b, 2, 0, 3, 4)) <= 1e-5


@pytest.mark.parametrize("name,type_name,value,length,match", [
    ("stride", "FLOAT32", 1.0, 1, "must be an integer"),
    ("stride", "FLOAT64", 1.0, 1, "must be an integer"),
    ("padding", "CHAR", b"1", 1, "must be an integer"),
    ("stride", "INT32", 1, 2, "exactly one value, got length 2"),
    ("stride", "INT32", 1, 0, "exactly one value, got length 0"),
    ("stride", "INT64", 1 << 40, 1, "out of range"),
    ("dilation", "INT8", 0, 1, "dilation = 0 is out of range"),
    ("padding", "INT16", -2, 1, "padding = -2 is out of range"),
    ("groups", "INT32", 1, 1, "unknown field 'groups'; the fields are stride, padding, dilation, deformable_groups"),
])
def test_set_field_rejects_with_a_message(name, type_name, value, length, match):
    values = defaults()
    before = list(values)
    assert set_field(values, name, type_name, value, length) == -1
    assert match in load_library().adnet_dcn_last_error().decode()
    assert list(values) == before


# ---- CUDA sources compile (no GPU needed) --------------------------------------------------------------------------

@pytest.mark.slow  # nvcc
def test_nvcc_compiles_the_kernel(tmp_path):
    """`make kernel-objects` with warnings as errors, for one target (the full build is `make kernels` in CI)."""
    if find_nvcc() is None:
        pytest.skip("nvcc not found (CUDA toolkit not installed): the kernel compile check needs it")
    build.make("kernel-objects", BUILD=str(tmp_path), DCN_WERROR="1",
               DCN_GENCODE="-gencode arch=compute_80,code=sm_80")
    assert sorted(p.name for p in (tmp_path / "dcnv2").rglob("*.o")) == ["dcnv2_core.o", "dcnv2_kernel.o"]


def test_missing_compiler_is_a_clear_error(tmp_path):
    with pytest.raises(PluginBuildError, match="C\\+\\+ compiler 'no-such-compiler-for-adnet' not found"):
        build.make("twin", BUILD=str(tmp_path), CXX="no-such-compiler-for-adnet")
    assert issubclass(PluginBuildError, RuntimeError)


# ---- formats and kernel variants (what the adapters advertise; the fast path's preconditions) -----------------------

def _problem(dtype="float16", c=64, dg=8, k=3, cout=64, h=20, w=30, fields=None, **formats):
    om = 3 * dg * k * k
    return abi.make_problem(dtype, dict(deformable_groups=dg, **(fields or {})), (1, c, h, w), (1, om, h, w),
                            (cout, c, k, k), cout, **formats)


def supported(position, **kwargs):
    return load_library().adnet_dcn_supports(ctypes.byref(_problem(**kwargs)), position) == 1


def test_channels_last_is_offered_where_the_fast_path_serves():
    last = "channels_last"
    assert supported(0) and supported(0, dtype="float32")  # linear: always
    assert supported(0, x_format=last)  # ADNet: FP16, C/dg = 8, 3x3
    assert not supported(0, x_format=last, dtype="float32")
    assert not supported(0, x_format=last, c=12, dg=1)  # C/dg = 12
    assert not supported(0, x_format=last, c=64, dg=16)  # C/dg = 4
    assert not supported(0, x_format=last, k=5)
    assert supported(0, x_format=last, c=1024, dg=128) and not supported(0, x_format=last, c=1032, dg=129)
    assert supported(1, x_format=last, offset_mask_format=last)  # 216 offset channels
    assert not supported(1, x_format=last, offset_mask_format=last, c=64, dg=2)  # 54
    assert not supported(1, offset_mask_format=last)  # needs channels-last x
    assert supported(4, x_format=last, y_format=last) and not supported(4, x_format=last, y_format=last, cout=70)
    assert not supported(4, y_format=last)


@pytest.mark.parametrize("kwargs,match", [
    (dict(x_format="channels_last", variant="v1"), "the v1 kernel reads NCHW only"),
    (dict(x_format="channels_last", dtype="float32"), "channels-last tensors must be float16"),
    (dict(x_format="channels_last", c=12, dg=1), "C/deformable_groups a multiple of 8"),
    (dict(y_format="channels_last"), "need channels-last x"),
    (dict(x_format="channels_last", offset_mask_format="channels_last", dg=2), "needs a multiple of 8 channels"),
    # the fast path's own limits: its segment table (C), 16-bit tap positions (dilation), 32-bit offsets
    (dict(x_format="channels_last", c=1032, dg=129), "channels-last x needs C <= 1024"),
    (dict(x_format="channels_last", fields=dict(dilation=16384, padding=16384)), "needs dilation <= 16383"),
    (dict(x_format="channels_last", h=3200, w=3200), "offset_mask_logits 216x3200x3200 has more than 2^31-1 elements"),
])
def test_format_and_variant_errors_name_the_fix(kwargs, match):
    lib = load_library()
    assert lib.adnet_dcn_check(ctypes.byref(_problem(**kwargs))) == -1
    assert match in lib.adnet_dcn_last_error().decode()
    assert lib.adnet_dcn_check(ctypes.byref(_problem(x_format="channels_last", variant="v2"))) == 0


def test_cuda_binding_reads_formats_from_strides_and_lists_the_variants():
    from plugins.dcnv2 import cuda

    assert cuda.VARIANTS == ("v1", "v2")
    x = torch.zeros(2, 16, 5, 7)
    assert cuda.tensor_format(x) == "linear"
    assert cuda.tensor_format(x.to(memory_format=torch.channels_last)) == "channels_last"
    with pytest.raises(ValueError, match="dense NCHW or channels-last"):
        cuda.tensor_format(x[:, :, :, ::2])
