"""HDR arithmetic for the ADNet pipeline, in pure numpy (no torch, no OpenCV).

One place for the conventions of docs/design.md §3, so that the exported graph, the
clients, the tests and the benchmarks all agree on them:

* NTIRE 2021 / ADNet: EV stops relative to the medium frame, exposure alignment with
  gamma 2.24, network input frames [LDR, aligned] per exposure, gamma-domain output,
  16-bit PNG + alignratio ground truth, and the challenge's PSNR-l / PSNR-mu scoring.
* Kalantari (SIGGRAPH'17): linear inputs ldr**2.2 / 2**ev and metrics on linear radiance.

Image arrays are HWC RGB unless a docstring says otherwise.
"""

import numpy as np

NTIRE_GAMMA = 2.24
KALANTARI_GAMMA = 2.2
MU = 5000.0


def check_evs(evs):
    """Return `evs` as a float64 array of 3 finite stops, or raise ValueError."""
    arr = np.asarray(evs, dtype=np.float64).ravel()
    if arr.size != 3:
        raise ValueError(
            f"expected exactly 3 EV stops (short, medium, long), got {arr.size}: {arr.tolist()}; "
            "pass one value per exposure, e.g. [-3, -1, 1]")
    if not np.all(np.isfinite(arr)):
        raise ValueError(
            f"EV stops must be finite, got {arr.tolist()}; check the exposures file for NaN/inf")
    return arr


def relative_evs(evs):
    """EV stops made relative to the medium (reference) frame, as NTIRE/ADNet use them.

    Only differences between exposures matter for alignment, so [-3, -1, 1] -> [-2, 0, 2].
    """
    arr = check_evs(evs)
    return arr - arr[1]


def ev_align(ldr, ev, gamma=NTIRE_GAMMA):
    """Bring an LDR frame (values in [0, 1]) to the medium exposure: ((ldr**g) * 2**-ev) ** (1/g).

    This is the NTIRE/ADNet convention: the alignment happens in linear space and the result
    goes back to the gamma domain, so it is not clipped to [0, 1] for negative EVs.
    """
    return ((np.asarray(ldr) ** gamma) * 2.0 ** (-ev)) ** (1.0 / gamma)


def _check_frames(ldrs, what="ldrs"):
    """Return the 3 frames as a float array [3, H, W, 3] with values in [0, 1], or raise ValueError."""
    frames = [np.asarray(f) for f in ldrs]
    if len(frames) != 3:
        raise ValueError(
            f"{what}: expected 3 frames (short, medium, long), got {len(frames)}")
    for i, f in enumerate(frames):
        if f.ndim != 3 or f.shape[2] != 3:
            raise ValueError(
                f"{what}[{i}]: expected an HxWx3 RGB image, got shape {f.shape}; "
                "convert grayscale/RGBA images to 3-channel RGB first")
        if f.shape != frames[0].shape:
            raise ValueError(
                f"{what}: all frames must have the same shape, got "
                f"{[g.shape for g in frames]}; crop or resize them to a common size")
    stack = np.stack(frames)
    if not np.issubdtype(stack.dtype, np.floating):
        raise ValueError(
            f"{what} must be float images in [0, 1], got dtype {stack.dtype}; "
            "convert them with normalize_ldr() first")
    if not np.all(np.isfinite(stack)) or stack.min() < 0 or stack.max() > 1:
        raise ValueError(
            f"{what} must be finite and in [0, 1], got range [{stack.min()}, {stack.max()}]; "
            "convert 8/16-bit images with normalize_ldr() first")
    return stack


def ntire_frames(ldrs, evs, gamma=NTIRE_GAMMA):
    """Pack 3 LDR frames into ADNet's input, float32 [3, 6, H, W].

    Per frame (short, medium, long), channels 0:3 are the LDR (CHW) and channels 3:6 its
    EV-aligned version: the order of the official ADNet training code. `evs` may be absolute
    or relative; they are made relative to the medium frame. The medium frame's aligned half
    is a copy of its LDR (alignment by 0 EV would only add rounding noise).
    """
    ldr = _check_frames(ldrs).astype(np.float32)
    rel = relative_evs(evs)
    out = np.empty((3, 6) + ldr.shape[1:3], dtype=np.float32)
    for i in range(3):
        chw = ldr[i].transpose(2, 0, 1)
        out[i, 0:3] = chw
        if i == 1:
            out[i, 3:6] = chw
        else:
            out[i, 3:6] = ev_align(chw.astype(np.float64), rel[i], gamma)
    return out


def ldr_for_model(ldrs, ldr_dtype) -> np.ndarray:
    """Decoded frames (uint8 or uint16, any shape) as a model whose LDR input is `ldr_dtype` takes them.

    float16 model: float16 in [0, 1] (every 8- and 16-bit code keeps its value to FP16 precision). uint8 model:
    8-bit codes as they are; 16-bit codes rounded to 8 bits (65535 / 255 = 257 exactly).
    """
    ldrs = np.asarray(ldrs)
    dtype = np.dtype(ldr_dtype)
    if ldrs.dtype not in (np.uint8, np.uint16):
        raise TypeError(f"LDR frames must be uint8 or uint16 as decoded, got {ldrs.dtype}")
    if dtype == np.float16:
        return normalize_ldr(ldrs).astype(np.float16)
    if dtype == np.uint8:
        if ldrs.dtype == np.uint16:
            return np.round(ldrs / np.float32(257.0)).astype(np.uint8)
        return np.ascontiguousarray(ldrs)
    raise ValueError(f"LDR element type {dtype.name}: a model takes uint8 or float16 frames")


def normalize_ldr(img):
    """Map an integer LDR image to float32 in [0, 1] (uint8 / 255, uint16 / 65535).

    Float images are assumed to be normalised already and are only cast to float32.
    """
    img = np.asarray(img)
    if img.dtype == np.uint8:
        return img.astype(np.float32) / np.float32(255.0)
    if img.dtype == np.uint16:
        return img.astype(np.float32) / np.float32(65535.0)
    if np.issubdtype(img.dtype, np.floating):
        return img.astype(np.float32, copy=False)
    raise TypeError(
        f"unsupported image dtype {img.dtype}; supported: uint8, uint16, or float already in [0, 1]")


def _as_float(x):
    x = np.asarray(x)
    return x if np.issubdtype(x.dtype, np.floating) else x.astype(np.float64)


def linearize(x, gamma=NTIRE_GAMMA):
    """Gamma domain -> linear radiance, x**gamma. Negatives are clipped to 0 (no NaN)."""
    return np.maximum(_as_float(x), 0) ** gamma


def delinearize(x, gamma=NTIRE_GAMMA):
    """Linear radiance -> gamma domain, x**(1/gamma). Negatives are clipped to 0 (no NaN)."""
    return np.maximum(_as_float(x), 0) ** (1.0 / gamma)


def mu_tonemap(x, mu=MU):
    """mu-law compression log(1 + mu*x) / log(1 + mu); maps [0, 1] onto [0, 1]."""
    return np.log1p(mu * _as_float(x)) / np.log1p(mu)


def tanh_norm_mu_tonemap(x, norm, mu=MU):
    """NTIRE's tone map: bound x/norm with tanh, then mu-law."""
    return mu_tonemap(np.tanh(_as_float(x) / norm), mu)


def _check_pair(ref, res):
    ref = np.asarray(ref, dtype=np.float64)
    res = np.asarray(res, dtype=np.float64)
    if ref.shape != res.shape:
        raise ValueError(
            f"ref and res must have the same shape, got {ref.shape} and {res.shape}; "
            "crop the output to the reference size")
    return ref, res


def psnr(a, b):
    """PSNR in dB for images whose value range is 1, in float64; inf when identical."""
    a, b = _check_pair(a, b)
    mse = np.mean((a - b) ** 2)
    if mse == 0:
        return float("inf")
    return float(-10.0 * np.log10(mse))


def ntire_psnr_l(ref, res):
    """NTIRE 2021 PSNR-l: PSNR of gamma-domain images, both divided by max(ref)."""
    ref, res = _check_pair(ref, res)
    peak = ref.max()
    if not np.isfinite(peak) or peak <= 0:
        raise ValueError(f"ref must have a finite positive maximum, got {peak}; PSNR-l is undefined")
    return psnr(ref / peak, res / peak)


def ntire_psnr_mu(ref, res, percentile=99, gamma=NTIRE_GAMMA):
    """NTIRE 2021 PSNR-mu of gamma-domain images.

    Both are linearised (**gamma); norm is the `percentile` of the LINEAR reference; both are
    tone mapped with tanh_norm_mu_tonemap(., norm) and compared with peak 1.
    """
    ref, res = _check_pair(ref, res)
    ref_lin = linearize(ref, gamma)
    res_lin = linearize(res, gamma)
    norm = np.percentile(ref_lin, percentile)
    if not np.isfinite(norm) or norm <= 0:
        raise ValueError(
            f"the {percentile}th percentile of the linear reference is {norm}; "
            "PSNR-mu is undefined for a (mostly) black or non-finite reference")
    return psnr(tanh_norm_mu_tonemap(ref_lin, norm), tanh_norm_mu_tonemap(res_lin, norm))


def kalantari_linear_inputs(ldrs, evs, gamma=KALANTARI_GAMMA):
    """Kalantari's linear inputs ldr**gamma / 2**ev, EVs as given in exposure.txt (not relative)."""
    stack = _check_frames(ldrs).astype(np.float32)
    ev = check_evs(evs)
    return [(stack[i] ** gamma / 2.0 ** ev[i]).astype(np.float32) for i in range(3)]


def kalantari_psnr_l(ref_lin, res_lin):
    """Kalantari PSNR-l: PSNR on linear radiance with value range 1."""
    return psnr(ref_lin, res_lin)


def kalantari_psnr_mu(ref_lin, res_lin, mu=MU):
    """Kalantari PSNR-mu: PSNR after mu-law tone mapping, without normalisation."""
    ref, res = _check_pair(ref_lin, res_lin)
    return psnr(mu_tonemap(ref, mu), mu_tonemap(res, mu))


def ntire_encode_u16(hdr):
    """Encode an HDR image as NTIRE's 16-bit PNG payload: (uint16 array, alignratio).

    As the official writer: alignratio = 65535 / max(hdr), pixels = round(hdr * alignratio),
    so the maximum maps to 65535 and hdr = pixels / alignratio.
    """
    hdr = np.asarray(hdr, dtype=np.float64)
    peak = hdr.max()
    if not np.all(np.isfinite(hdr)) or peak <= 0:
        raise ValueError(
            f"HDR image must be finite with a positive maximum, got max {peak}; "
            "an all-black or NaN/inf image cannot be encoded")
    if hdr.min() < 0:
        raise ValueError(f"HDR image must be non-negative, got min {hdr.min()}; clip it at 0 first")
    alignratio = float(65535.0 / peak)
    u16 = np.clip(np.round(hdr * alignratio), 0, 65535).astype(np.uint16)
    return u16, alignratio


def ntire_decode_u16(u16, alignratio):
    """Decode NTIRE's 16-bit payload: float32 u16 / float32(alignratio), as the official reader."""
    return np.asarray(u16).astype(np.float32) / np.float32(alignratio)


def tonemap_preview(hdr_linear, percentile=99):
    """uint8 HWC RGB preview of a linear HDR image with NTIRE's tanh + mu-law tone map.

    The image is normalised by its own `percentile`. NaN and negative values show as black, and
    a (mostly) black image falls back to its maximum, or to all black, instead of producing NaN.
    """
    x = np.asarray(hdr_linear, dtype=np.float64)
    if x.ndim != 3 or x.shape[2] != 3:
        raise ValueError(f"expected an HxWx3 RGB image, got shape {x.shape}")
    x = np.nan_to_num(x, nan=0.0, posinf=np.finfo(np.float64).max, neginf=0.0)
    x = np.maximum(x, 0.0)
    norm = np.percentile(x, percentile)
    if norm <= 0:
        norm = x.max()
    if norm <= 0:
        return np.zeros(x.shape, dtype=np.uint8)
    tm = tanh_norm_mu_tonemap(x, norm)
    return np.round(np.clip(tm, 0.0, 1.0) * 255.0).astype(np.uint8)
