"""Image and exposure file I/O for the ADNet pipeline, on top of OpenCV.

OpenCV stores colour images as BGR; every function here takes and returns RGB HWC arrays so
that callers never see the BGR order. Failures raise ImageIOError with the file name and what
to do about it, rather than OpenCV's silent None or generic cv2.error.
"""

import os
from pathlib import Path

import numpy as np

# OpenCV reads this switch when the EXR codec is first used; set it before importing cv2
# (setdefault keeps an explicit user choice).
os.environ.setdefault("OPENCV_IO_ENABLE_OPENEXR", "1")
import cv2  # noqa: E402

from . import hdr_math  # noqa: E402
from .errors import SceneError  # noqa: E402


class ImageIOError(SceneError):
    """An image or exposure file is missing, unreadable or not in the expected format."""


def _require_file(path):
    path = Path(path)
    if not path.is_file():
        raise ImageIOError(f"{path}: file not found; check the path and the file name")
    return path


def _imread(path):
    """cv2.imread(IMREAD_UNCHANGED) with errors instead of None."""
    path = _require_file(path)
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise ImageIOError(
            f"{path}: cannot decode the image (corrupt file or unsupported format); "
            "re-export it as PNG or TIFF")
    return path, img


def _to_rgb(path, img):
    """BGR(A) image from OpenCV -> RGB HWC; drops alpha, rejects grayscale."""
    channels = 1 if img.ndim == 2 else img.shape[2]
    if channels == 4:
        img = img[:, :, :3]
    elif channels != 3:
        raise ImageIOError(
            f"{path}: image has {channels} channel(s) but 3 (RGB) are needed; "
            "convert it to RGB (grayscale frames are not supported)")
    return np.ascontiguousarray(img[:, :, ::-1])


def _check_rgb(arr, what):
    arr = np.asarray(arr)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"{what}: expected an HxWx3 RGB image, got shape {arr.shape}")
    return arr


def _imwrite(path, rgb, params=()):
    """Write an RGB image with cv2.imwrite, creating parent directories."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    bgr = np.ascontiguousarray(rgb[:, :, ::-1])
    try:
        ok = cv2.imwrite(str(path), bgr, list(params))
    except cv2.error as exc:
        raise ImageIOError(f"{path}: OpenCV cannot write this file: {exc}") from exc
    if not ok:
        raise ImageIOError(f"{path}: OpenCV failed to write the file; check the extension and permissions")
    return path


def read_ldr_raw(path):
    """Read an 8- or 16-bit PNG/TIFF LDR frame as decoded -> (uint8 or uint16 HWC RGB, bit depth 8 or 16)."""
    path, img = _imread(path)
    if img.dtype == np.uint8:
        depth = 8
    elif img.dtype == np.uint16:
        depth = 16
    else:
        raise ImageIOError(
            f"{path}: unsupported bit depth ({img.dtype}); LDR frames must be 8- or 16-bit "
            "integer PNG/TIFF")
    return _to_rgb(path, img), depth


def read_ldr(path):
    """Read an 8- or 16-bit PNG/TIFF LDR frame -> (float32 HWC RGB in [0, 1], bit depth 8 or 16)."""
    rgb, depth = read_ldr_raw(path)
    return hdr_math.normalize_ldr(rgb), depth


def read_ntire_gt(png_path, alignratio_path):
    """Read an NTIRE ground truth ({id}_gt.png + {id}_alignratio.npy) -> float32 HWC RGB, gamma domain."""
    path, img = _imread(png_path)
    if img.dtype != np.uint16:
        raise ImageIOError(
            f"{path}: NTIRE ground truth must be a 16-bit PNG, got {img.dtype}; "
            "write it with write_ntire_gt()")
    ratio_path = _require_file(alignratio_path)
    try:
        ratio = np.load(ratio_path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ImageIOError(f"{ratio_path}: cannot read the alignratio .npy file: {exc}") from exc
    if ratio.size != 1 or not np.isfinite(ratio).all() or float(ratio.ravel()[0]) <= 0:
        raise ImageIOError(
            f"{ratio_path}: alignratio must be one finite positive number, got {ratio!r}; "
            "regenerate it with the PNG")
    return hdr_math.ntire_decode_u16(_to_rgb(path, img), float(ratio.ravel()[0]))


def write_ntire_gt(png_path, alignratio_path, hdr):
    """Write an HDR image (gamma domain, HWC RGB) in NTIRE's 16-bit PNG + alignratio format.

    The alignratio is saved as a float64 numpy scalar, as the official writer does; note that
    np.save appends '.npy' when the path lacks it. Returns the alignratio.
    """
    hdr = _check_rgb(hdr, "hdr")
    u16, ratio = hdr_math.ntire_encode_u16(hdr)
    _imwrite(png_path, u16)
    ratio_path = Path(alignratio_path)
    ratio_path.parent.mkdir(parents=True, exist_ok=True)
    np.save(ratio_path, np.float64(ratio))
    return ratio


def _three_stops(path, values):
    try:
        return hdr_math.check_evs(values)
    except ValueError as exc:
        raise ImageIOError(f"{path}: {exc}") from exc


def read_exposures_npy(path):
    """Read NTIRE's {id}_exposures.npy -> float64 array of 3 EV stops (absolute, as stored)."""
    path = _require_file(path)
    try:
        values = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ImageIOError(f"{path}: cannot read the exposures .npy file: {exc}") from exc
    return _three_stops(path, values)


def read_exposure_txt(path):
    """Read Kalantari's exposure.txt (whitespace-separated EV stops) -> float64 array of 3."""
    path = _require_file(path)
    try:
        values = [float(t) for t in path.read_text().split()]
    except (UnicodeDecodeError, ValueError) as exc:
        raise ImageIOError(f"{path}: exposure.txt must contain only numbers: {exc}") from exc
    return _three_stops(path, values)


def write_hdr(path, hdr_linear):
    """Write linear HDR (HWC RGB, finite, >= 0) as Radiance RGBE .hdr (about 1% precision)."""
    hdr = _check_rgb(hdr_linear, "hdr_linear").astype(np.float32)
    if not np.all(np.isfinite(hdr)) or hdr.min() < 0:
        raise ValueError("hdr_linear must be finite and non-negative; Radiance RGBE cannot store other values")
    if Path(path).suffix.lower() != ".hdr":
        raise ImageIOError(f"{path}: Radiance files need the .hdr extension")
    return _imwrite(path, hdr)


def read_hdr(path):
    """Read a Radiance .hdr (or any float image OpenCV decodes) -> float32 HWC RGB."""
    path, img = _imread(path)
    if img.dtype != np.float32:
        raise ImageIOError(f"{path}: expected a floating-point HDR image, got {img.dtype}")
    return _to_rgb(path, img)


def write_exr(path, hdr):
    """Write HDR (HWC RGB) as float32 OpenEXR; needs an OpenCV with the EXR codec enabled."""
    hdr = _check_rgb(hdr, "hdr").astype(np.float32)
    try:
        return _imwrite(path, hdr)
    except ImageIOError as exc:
        raise ImageIOError(
            f"{path}: this OpenCV cannot write EXR (set OPENCV_IO_ENABLE_OPENEXR=1 before "
            f"importing cv2, or use write_hdr): {exc}") from exc


def write_png8(path, rgb_uint8):
    """Write an 8-bit RGB preview PNG (e.g. from hdr_math.tonemap_preview)."""
    rgb = _check_rgb(rgb_uint8, "rgb_uint8")
    if rgb.dtype != np.uint8:
        raise ValueError(f"rgb_uint8 must be uint8, got {rgb.dtype}; use hdr_math.tonemap_preview()")
    return _imwrite(path, rgb)
