"""Tests for client/hdr_io.py: round trips through real files written with OpenCV, RGB order."""

import cv2
import numpy as np
import pytest

from client import hdr_io
from client.hdr_io import ImageIOError


def _red(h=4, w=5, dtype=np.uint8, value=255):
    rgb = np.zeros((h, w, 3), dtype=dtype)
    rgb[..., 0] = value
    return rgb


@pytest.mark.parametrize("name, dtype, depth, scale", [
    ("f.png", np.uint8, 8, 255),
    ("f.png", np.uint16, 16, 65535),
    ("f.tif", np.uint16, 16, 65535),
])
def test_read_ldr_round_trip(tmp_path, name, dtype, depth, scale):
    rng = np.random.default_rng()
    rgb = rng.integers(0, scale + 1, size=(6, 7, 3), dtype=dtype)
    path = tmp_path / name
    assert cv2.imwrite(str(path), rgb[..., ::-1].copy())
    img, bits = hdr_io.read_ldr(path)
    assert bits == depth and img.dtype == np.float32 and img.shape == (6, 7, 3)
    np.testing.assert_array_equal(img, rgb.astype(np.float32) / np.float32(scale))


@pytest.mark.parametrize("name, dtype, value", [
    ("red.png", np.uint8, 255), ("red16.png", np.uint16, 65535), ("red.tif", np.uint16, 65535)])
def test_read_ldr_rgb_order(tmp_path, name, dtype, value):
    path = tmp_path / name
    assert cv2.imwrite(str(path), _red(dtype=dtype, value=value)[..., ::-1].copy())  # BGR on disk
    img, _ = hdr_io.read_ldr(path)
    np.testing.assert_array_equal(img[0, 0], [1.0, 0.0, 0.0])


def test_read_ldr_drops_alpha(tmp_path):
    bgra = np.zeros((3, 3, 4), dtype=np.uint8)
    bgra[..., 2] = 255  # red
    bgra[..., 3] = 128
    path = tmp_path / "alpha.png"
    assert cv2.imwrite(str(path), bgra)
    img, bits = hdr_io.read_ldr(path)
    assert img.shape == (3, 3, 3) and bits == 8
    np.testing.assert_array_equal(img[1, 1], [1.0, 0.0, 0.0])


def test_read_ldr_errors(tmp_path):
    with pytest.raises(ImageIOError, match=r"missing\.png: file not found"):
        hdr_io.read_ldr(tmp_path / "missing.png")

    gray = tmp_path / "gray.png"
    assert cv2.imwrite(str(gray), np.zeros((4, 4), dtype=np.uint8))
    with pytest.raises(ImageIOError, match=r"gray\.png: image has 1 channel.*convert it to RGB"):
        hdr_io.read_ldr(gray)

    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"not a png at all")
    with pytest.raises(ImageIOError, match=r"corrupt\.png: cannot decode"):
        hdr_io.read_ldr(corrupt)

    floattif = tmp_path / "float.tif"
    assert cv2.imwrite(str(floattif), np.zeros((4, 4, 3), dtype=np.float32))
    with pytest.raises(ImageIOError, match=r"unsupported bit depth.*8- or 16-bit"):
        hdr_io.read_ldr(floattif)


def test_ntire_gt_round_trip(tmp_path):
    rng = np.random.default_rng()
    hdr = (rng.random((5, 6, 3)) * 7.5).astype(np.float32)
    png, ratio_path = tmp_path / "sub" / "0001_gt.png", tmp_path / "sub" / "0001_alignratio.npy"
    ratio = hdr_io.write_ntire_gt(png, ratio_path, hdr)
    stored = np.load(ratio_path)
    assert stored.dtype == np.float64 and stored.shape == () and float(stored) == ratio
    raw = cv2.imread(str(png), cv2.IMREAD_UNCHANGED)
    assert raw.dtype == np.uint16 and raw.max() == 65535
    back = hdr_io.read_ntire_gt(png, ratio_path)
    assert back.dtype == np.float32 and back.shape == hdr.shape
    assert np.abs(back - hdr).max() <= hdr.max() / 65535
    # the channel holding the maximum stays in place (RGB order survives the BGR file)
    assert np.unravel_index(back.argmax(), back.shape) == np.unravel_index(hdr.argmax(), hdr.shape)


def test_read_ntire_gt_errors(tmp_path):
    png8 = tmp_path / "gt8.png"
    assert cv2.imwrite(str(png8), np.zeros((2, 2, 3), dtype=np.uint8))
    np.save(tmp_path / "r.npy", np.float64(2.0))
    with pytest.raises(ImageIOError, match="16-bit PNG"):
        hdr_io.read_ntire_gt(png8, tmp_path / "r.npy")
    png16 = tmp_path / "gt16.png"
    assert cv2.imwrite(str(png16), np.ones((2, 2, 3), dtype=np.uint16))
    with pytest.raises(ImageIOError, match=r"nope\.npy: file not found"):
        hdr_io.read_ntire_gt(png16, tmp_path / "nope.npy")
    np.save(tmp_path / "bad.npy", np.float64(0.0))
    with pytest.raises(ImageIOError, match="finite positive"):
        hdr_io.read_ntire_gt(png16, tmp_path / "bad.npy")


def test_read_exposures(tmp_path):
    npy = tmp_path / "0001_exposures.npy"
    np.save(npy, np.array([-3.0, -1.0, 1.0]))
    out = hdr_io.read_exposures_npy(npy)
    assert out.dtype == np.float64
    np.testing.assert_array_equal(out, [-3.0, -1.0, 1.0])

    txt = tmp_path / "exposure.txt"
    txt.write_text("0\n2.0\r\n 4 \n")
    np.testing.assert_array_equal(hdr_io.read_exposure_txt(txt), [0.0, 2.0, 4.0])


def test_read_exposures_errors(tmp_path):
    bad = tmp_path / "two_exposures.npy"
    np.save(bad, np.array([0.0, 1.0]))
    with pytest.raises(ImageIOError, match=r"two_exposures\.npy: expected exactly 3 EV stops.*got 2"):
        hdr_io.read_exposures_npy(bad)
    nan = tmp_path / "nan_exposures.npy"
    np.save(nan, np.array([0.0, np.nan, 1.0]))
    with pytest.raises(ImageIOError, match="finite"):
        hdr_io.read_exposures_npy(nan)
    txt = tmp_path / "exposure.txt"
    txt.write_text("0 2 abc")
    with pytest.raises(ImageIOError, match="only numbers"):
        hdr_io.read_exposure_txt(txt)
    txt.write_text("0 2 4 6")
    with pytest.raises(ImageIOError, match="got 4"):
        hdr_io.read_exposure_txt(txt)
    with pytest.raises(ImageIOError, match="file not found"):
        hdr_io.read_exposure_txt(tmp_path / "none.txt")


def test_hdr_round_trip(tmp_path):
    rng = np.random.default_rng()
    hdr = (rng.random((8, 9, 3)) * 100 + 1e-3).astype(np.float32)
    hdr[0, 0] = [1.0, 0.0, 0.0]  # red pixel: RGB order check
    path = tmp_path / "deep" / "out.hdr"
    hdr_io.write_hdr(path, hdr)
    back = hdr_io.read_hdr(path)
    assert back.dtype == np.float32 and back.shape == hdr.shape
    # RGBE shares one exponent per pixel: error is ~1% of the pixel's largest channel
    tol = 0.01 * hdr.max(axis=2, keepdims=True)
    assert np.all(np.abs(back - hdr) <= tol)
    assert back[0, 0, 0] == pytest.approx(1.0, rel=0.01) and back[0, 0, 1] == back[0, 0, 2] == 0


def test_write_hdr_errors(tmp_path):
    with pytest.raises(ImageIOError, match=r"\.hdr extension"):
        hdr_io.write_hdr(tmp_path / "x.png", np.ones((2, 2, 3), np.float32))
    with pytest.raises(ValueError, match="non-negative"):
        hdr_io.write_hdr(tmp_path / "x.hdr", -np.ones((2, 2, 3), np.float32))


def test_write_exr(tmp_path):
    hdr = (np.random.default_rng().random((4, 5, 3)) * 50).astype(np.float32)
    path = tmp_path / "out.exr"
    try:
        hdr_io.write_exr(path, hdr)
    except ImageIOError as exc:
        assert "EXR" in str(exc)
        return
    np.testing.assert_array_equal(hdr_io.read_hdr(path), hdr)


def test_write_png8(tmp_path):
    path = tmp_path / "previews" / "p.png"
    rgb = _red()
    hdr_io.write_png8(path, rgb)
    np.testing.assert_array_equal(cv2.imread(str(path))[..., ::-1], rgb)
    with pytest.raises(ValueError, match="uint8"):
        hdr_io.write_png8(path, rgb.astype(np.float32))
