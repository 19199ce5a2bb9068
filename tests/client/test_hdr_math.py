"""Tests for client/hdr_math.py: hand-computed values and independent re-derivations."""

import math
import warnings

import numpy as np
import pytest

from client import hdr_math as hm


def _rand_ldrs(rng, h=6, w=8):
    return [rng.random((h, w, 3), dtype=np.float32) for _ in range(3)]


def test_constants():
    assert hm.NTIRE_GAMMA == 2.24
    assert hm.KALANTARI_GAMMA == 2.2
    assert hm.MU == 5000.0


def test_module_is_pure_numpy():
    src = open(hm.__file__).read()
    assert "import torch" not in src and "import cv2" not in src


# --- EVs and alignment -------------------------------------------------------------------

def test_relative_evs():
    out = hm.relative_evs([-3, -1, 1])
    assert out.dtype == np.float64
    np.testing.assert_array_equal(out, [-2.0, 0.0, 2.0])
    np.testing.assert_array_equal(hm.relative_evs(np.array([[0.0, 2.0, 4.0]])), [-2.0, 0.0, 2.0])


@pytest.mark.parametrize("evs, msg", [
    ([0.0, 1.0], r"exactly 3 EV stops.*got 2"),
    ([0, 1, 2, 3], r"exactly 3 EV stops.*got 4"),
    ([0.0, float("nan"), 1.0], r"finite"),
    ([0.0, float("inf"), 1.0], r"finite"),
])
def test_relative_evs_errors(evs, msg):
    with pytest.raises(ValueError, match=msg):
        hm.relative_evs(evs)


def test_ev_align_by_hand():
    # ((0.5**g) * 2**-1) ** (1/g) = 0.5 * 0.5**(1/g) = 0.5**(1 + 1/2.24)
    assert hm.ev_align(0.5, 1.0) == pytest.approx(0.5 ** (1 + 1 / 2.24), rel=1e-12)
    assert hm.ev_align(0.5, 1.0) == pytest.approx(0.366928, abs=1e-6)
    # ev = -2 with gamma 2: sqrt(0.25 * 4 * 0.25) = 0.5
    assert hm.ev_align(0.5, -2.0, gamma=2.0) == pytest.approx(0.5 * 4 ** 0.5, rel=1e-12)
    assert hm.ev_align(0.3, 0.0) == pytest.approx(0.3, rel=1e-12)


def test_ntire_frames_layout_and_values():
    rng = np.random.default_rng()
    ldrs = _rand_ldrs(rng)
    evs = np.array([-3.0, -1.0, 1.0])
    out = hm.ntire_frames(ldrs, evs)
    assert out.shape == (3, 6, 6, 8) and out.dtype == np.float32
    rel = [-2.0, 0.0, 2.0]
    for i in range(3):
        chw = ldrs[i].transpose(2, 0, 1)
        np.testing.assert_array_equal(out[i, 0:3], chw)
        expected = ((chw.astype(np.float64) ** 2.24) * 2.0 ** (-rel[i])) ** (1 / 2.24)
        np.testing.assert_allclose(out[i, 3:6], expected, rtol=1e-6, atol=1e-7)
    # the medium frame's aligned half is the raw LDR, bit for bit
    assert out[1, 3:6].tobytes() == ldrs[1].transpose(2, 0, 1).astype(np.float32).tobytes()
    # absolute and relative EVs give the same packing
    np.testing.assert_array_equal(hm.ntire_frames(ldrs, rel), out)


def test_ntire_frames_short_frame_brightened():
    ldr = np.full((4, 4, 3), 0.2, dtype=np.float32)
    out = hm.ntire_frames([ldr, ldr, ldr], [-2, 0, 2])
    assert out[0, 3:6].min() > 0.2 > out[2, 3:6].max()


def test_ntire_frames_errors():
    rng = np.random.default_rng()
    ldrs = _rand_ldrs(rng)
    with pytest.raises(ValueError, match="expected 3 frames"):
        hm.ntire_frames(ldrs[:2], [0, 1, 2])
    with pytest.raises(ValueError, match="same shape"):
        hm.ntire_frames([ldrs[0], ldrs[1], ldrs[2][:5]], [0, 1, 2])
    with pytest.raises(ValueError, match=r"HxWx3.*grayscale"):
        hm.ntire_frames([f[..., 0] for f in ldrs], [0, 1, 2])
    with pytest.raises(ValueError, match=r"in \[0, 1\].*normalize_ldr"):
        hm.ntire_frames([f * 2 for f in ldrs], [0, 1, 2])
    with pytest.raises(ValueError, match=r"dtype uint8.*normalize_ldr"):
        hm.ntire_frames([(f * 255).astype(np.uint8) for f in ldrs], [0, 1, 2])
    with pytest.raises(ValueError, match="exactly 3 EV stops"):
        hm.ntire_frames(ldrs, [0, 1])


# --- normalisation, gamma, tone mapping --------------------------------------------------

def test_normalize_ldr():
    u8 = np.array([[[0, 128, 255]]], dtype=np.uint8)
    np.testing.assert_array_equal(hm.normalize_ldr(u8), np.array([[[0, 128 / 255, 1]]], np.float32))
    u16 = np.array([[[0, 32768, 65535]]], dtype=np.uint16)
    np.testing.assert_array_equal(hm.normalize_ldr(u16), np.array([[[0, 32768 / 65535, 1]]], np.float32))
    f = np.array([[[0.1, 0.5, 0.9]]], dtype=np.float64)
    out = hm.normalize_ldr(f)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, f.astype(np.float32))
    for arr in (u8, u16, f):
        assert hm.normalize_ldr(arr).dtype == np.float32


@pytest.mark.parametrize("dtype", [np.int32, np.int8, bool])
def test_normalize_ldr_rejects(dtype):
    with pytest.raises(TypeError, match=r"uint8, uint16"):
        hm.normalize_ldr(np.zeros((2, 2, 3), dtype=dtype))


def test_linearize_delinearize():
    rng = np.random.default_rng()
    x = rng.random((5, 5, 3))
    np.testing.assert_allclose(hm.linearize(x), x ** 2.24)
    np.testing.assert_allclose(hm.delinearize(hm.linearize(x, 2.2), 2.2), x, rtol=1e-12)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_array_equal(hm.linearize(np.array([-0.5, 4.0]), 2.0), [0.0, 16.0])
        np.testing.assert_array_equal(hm.delinearize(np.array([-1.0, 4.0]), 2.0), [0.0, 2.0])


def test_mu_tonemap():
    assert hm.mu_tonemap(1.0) == 1.0
    assert hm.mu_tonemap(0.0) == 0.0
    assert hm.mu_tonemap(0.5) == pytest.approx(math.log(2501) / math.log(5001), rel=1e-12)
    assert hm.tanh_norm_mu_tonemap(2.0, 4.0) == pytest.approx(
        math.log(1 + 5000 * math.tanh(0.5)) / math.log(5001), rel=1e-12)


# --- metrics ---------------------------------------------------------------------------

def test_psnr_constant_offset_is_20db():
    rng = np.random.default_rng()
    a = rng.random((8, 8, 3)) * 0.9
    assert hm.psnr(a, a + 0.1) == pytest.approx(20.0, abs=1e-9)
    assert hm.psnr(np.zeros(4), np.full(4, 0.01)) == pytest.approx(40.0, abs=1e-9)


def test_psnr_identical_is_inf_without_warning():
    a = np.random.default_rng().random((4, 4, 3))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert hm.psnr(a, a.copy()) == float("inf")


def test_psnr_shape_mismatch():
    with pytest.raises(ValueError, match="same shape"):
        hm.psnr(np.zeros((4, 4, 3)), np.zeros((4, 3, 3)))


def test_ntire_psnr_l_uses_max_of_ref():
    ref = np.zeros((2, 2, 3))
    ref[0, 0, 0] = 2.0
    res = ref.copy()
    res[1, 1, 1] = 0.2  # error 0.2 on one of 12 values; peak max(ref) = 2 -> mse (0.1**2)/12
    assert hm.ntire_psnr_l(ref, res) == pytest.approx(20 + 10 * math.log10(12), abs=1e-9)

    rng = np.random.default_rng()
    ref = rng.random((6, 6, 3)) * 3.0
    res = ref * 0.5 + 0.01 * rng.random((6, 6, 3))
    assert hm.ntire_psnr_l(ref, res) == pytest.approx(hm.psnr(ref / ref.max(), res / ref.max()))
    assert hm.ntire_psnr_l(ref, res) != pytest.approx(hm.ntire_psnr_l(res, ref))


def test_ntire_psnr_mu_step_by_step():
    rng = np.random.default_rng()
    ref = rng.random((7, 9, 3)) * 1.5
    res = np.clip(ref + rng.normal(0, 0.05, ref.shape), 0, None)
    ref_lin = ref ** 2.24
    res_lin = res ** 2.24
    norm = np.percentile(ref_lin, 99)
    t_ref = np.log(1 + 5000 * np.tanh(ref_lin / norm)) / np.log(5001)
    t_res = np.log(1 + 5000 * np.tanh(res_lin / norm)) / np.log(5001)
    expected = -10 * np.log10(np.mean((t_ref - t_res) ** 2))
    assert hm.ntire_psnr_mu(ref, res) == pytest.approx(expected, rel=1e-12)


def test_ntire_psnr_mu_percentile_is_of_linear_ref():
    rng = np.random.default_rng()
    ref = rng.random((8, 8, 3)) * 2.0
    res = ref * 0.9
    # the percentile of the gamma-domain ref, raised to 2.24, differs from the linear percentile
    # in general; only the linear one must reproduce the metric
    norm_lin = np.percentile(ref ** 2.24, 99)

    def score(norm):
        return hm.psnr(hm.tanh_norm_mu_tonemap(ref ** 2.24, norm), hm.tanh_norm_mu_tonemap(res ** 2.24, norm))

    assert hm.ntire_psnr_mu(ref, res) == pytest.approx(score(norm_lin), rel=1e-12)
    assert hm.ntire_psnr_mu(ref, res) != pytest.approx(score(np.percentile(ref, 99)), rel=1e-6)
    assert hm.ntire_psnr_mu(ref, res) != pytest.approx(hm.ntire_psnr_mu(res, ref), rel=1e-6)


def test_ntire_metric_errors():
    with pytest.raises(ValueError, match="same shape"):
        hm.ntire_psnr_mu(np.ones((4, 4, 3)), np.ones((4, 4)))
    with pytest.raises(ValueError, match="positive maximum"):
        hm.ntire_psnr_l(np.zeros((4, 4, 3)), np.ones((4, 4, 3)))
    with pytest.raises(ValueError, match="percentile"):
        hm.ntire_psnr_mu(np.zeros((4, 4, 3)), np.ones((4, 4, 3)))


def test_kalantari():
    ldr = np.full((2, 3, 3), 0.5, dtype=np.float32)
    lin = hm.kalantari_linear_inputs([ldr, ldr, ldr], [0.0, 2.0, 4.0])
    assert len(lin) == 3 and all(x.dtype == np.float32 for x in lin)
    for x, ev in zip(lin, [0.0, 2.0, 4.0]):  # EVs used as given, not relative to the medium
        np.testing.assert_allclose(x, 0.5 ** 2.2 / 2 ** ev, rtol=1e-6)

    rng = np.random.default_rng()
    ref = rng.random((5, 5, 3))
    res = np.clip(ref + 0.1, 0, None)
    assert hm.kalantari_psnr_l(ref, ref + 0.1) == pytest.approx(20.0, abs=1e-9)
    mu = lambda x: np.log(1 + 5000 * x) / np.log(5001)  # noqa: E731
    expected = -10 * np.log10(np.mean((mu(ref) - mu(res)) ** 2))
    assert hm.kalantari_psnr_mu(ref, res) == pytest.approx(expected, rel=1e-12)
    with pytest.raises(ValueError, match="exactly 3 EV stops"):
        hm.kalantari_linear_inputs([ldr, ldr, ldr], [0.0, 2.0])


# --- NTIRE 16-bit encoding and preview --------------------------------------------------

def test_ntire_encode_decode_round_trip():
    rng = np.random.default_rng()
    hdr = (rng.random((9, 11, 3)) * rng.uniform(0.5, 20)).astype(np.float32)
    u16, ratio = hm.ntire_encode_u16(hdr)
    assert u16.dtype == np.uint16 and isinstance(ratio, float)
    assert ratio == 65535.0 / float(hdr.max())
    assert u16.max() == 65535
    np.testing.assert_array_equal(u16, np.round(hdr.astype(np.float64) * ratio).astype(np.uint16))
    back = hm.ntire_decode_u16(u16, ratio)
    assert back.dtype == np.float32
    assert np.abs(back - hdr).max() <= hdr.max() / 65535


def test_ntire_decode_casts_alignratio_to_float32():
    u16 = np.array([1, 1000, 65535], dtype=np.uint16)
    ratio = 65535 / 3.7
    expected = u16.astype(np.float32) / np.float32(ratio)
    np.testing.assert_array_equal(hm.ntire_decode_u16(u16, ratio), expected)


@pytest.mark.parametrize("hdr, msg", [
    (np.zeros((2, 2, 3)), "positive maximum"),
    (np.full((2, 2, 3), np.nan), "finite"),
    (np.array([[[1.0, np.inf, 0.0]]]), "finite"),
    (np.array([[[1.0, -0.5, 0.0]]]), "non-negative"),
])
def test_ntire_encode_errors(hdr, msg):
    with pytest.raises(ValueError, match=msg):
        hm.ntire_encode_u16(hdr)


def test_tonemap_preview():
    rng = np.random.default_rng()
    hdr = rng.random((6, 7, 3)) * 10
    out = hm.tonemap_preview(hdr)
    assert out.shape == (6, 7, 3) and out.dtype == np.uint8
    norm = np.percentile(hdr, 99)
    expected = np.round(np.log(1 + 5000 * np.tanh(hdr / norm)) / np.log(5001) * 255).astype(np.uint8)
    np.testing.assert_array_equal(out, expected)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_array_equal(hm.tonemap_preview(np.zeros((3, 3, 3))), np.zeros((3, 3, 3), np.uint8))
        sparse = np.zeros((10, 10, 3))
        sparse[0, 0, 0] = 1.0  # 1 of 300 values: the 99th percentile is 0, falls back to the maximum
        assert np.percentile(sparse, 99) == 0
        out = hm.tonemap_preview(sparse)
        assert out[0, 0, 0] == round(255 * np.log1p(5000 * np.tanh(1.0)) / np.log1p(5000))
        assert out.sum() == out[0, 0, 0]


def test_ldr_for_model_keeps_16_bit_codes_for_fp16_models_and_rounds_them_for_uint8_ones():
    rng = np.random.default_rng()
    codes16 = rng.integers(0, 65536, size=(3, 5, 7, 3), dtype=np.uint16)
    codes16.flat[:3] = (0, 65535, 257 * 100 + 129)  # ends of the range; 100.502 -> 101
    codes8 = rng.integers(0, 256, size=(3, 5, 7, 3), dtype=np.uint8)
    # Independent references: exact rationals rounded once.
    fp16 = hm.ldr_for_model(codes16, "float16")
    assert fp16.dtype == np.float16
    np.testing.assert_array_equal(fp16, (codes16.astype(np.float64) / 65535).astype(np.float16))
    u8 = hm.ldr_for_model(codes16, np.uint8)
    assert u8.dtype == np.uint8
    np.testing.assert_array_equal(u8, np.floor(codes16.astype(np.int64) * 2 / 257 + 1) // 2)
    assert u8.flat[2] == 101
    np.testing.assert_array_equal(hm.ldr_for_model(codes8, "uint8"), codes8)
    np.testing.assert_array_equal(hm.ldr_for_model(codes8, "float16"),
                                  (codes8.astype(np.float64) / 255).astype(np.float16))
    # 16-bit values the 8-bit rounding merges stay distinct in FP16.
    assert len(np.unique(hm.ldr_for_model(np.arange(256, 513, dtype=np.uint16), "float16"))) > 200
    with pytest.raises(TypeError, match="uint8 or uint16"):
        hm.ldr_for_model(codes16.astype(np.float32), "float16")
    with pytest.raises(ValueError, match="uint8 or float16"):
        hm.ldr_for_model(codes8, "float32")
