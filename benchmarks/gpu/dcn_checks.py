"""Correctness checks of the AdnetDCNv2 CUDA kernel: gpu-check's correctness phase and tests/plugins/test_dcnv2_cuda.py.

Each case runs in float32 and float16 and is compared with two references: float64 (export.dcn.deform_conv2d in
float64, a gather + matmul written independently of the kernel, with mask = sigmoid(logits) in float64) and the
plugin's CPU twin (plugins/dcnv2/cpu.py: the kernel's own sampling code and FP16 rounding points, in C++). The
output buffer is poisoned with NaN and fenced by canary values on both sides: an unwritten output or a write past
either end is caught.

Variants that take channels-last tensors (torch_dcn.Kernel.channels_last: the FP16 fast path) also run the FP16 cases
that qualify (C/dg a multiple of 8, 3x3) with x channels-last, and offset_mask and y too where their channel counts
are multiples of 8 (CHANNELS_LAST_CASES adds shapes for it).

Semantics of the special cases (docs/design.md §2: a sample counts when -1 < y < H and -1 < x < W): a NaN
or huge offset fails that test, so its tap samples nothing; the float64 reference gets such offsets as 1e9 (outside
any image). Mask logits of +inf / -inf give a mask of 1 / 0.

    row = run_case(kernel, CASES[0], "float16", device="cuda")    # kernel: torch_dcn.Kernel (or a test fake)
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Optional

import numpy as np

__all__ = ["Case", "CASES", "TOLERANCES", "CANARY", "GUARD", "make_inputs", "as_fp16_values", "reference_float64",
           "CHANNELS_LAST_CASES", "channels_last_applies", "guarded_output", "read_guarded", "compare", "run_case",
           "stream_check", "invalid_arguments_check", "rel_l2"]

CANARY = -30000.0  # exact in float16 and float32, and no DCN output here comes near it
GUARD = 1024  # canary elements on each side of the output
OUTSIDE = 1e9  # an offset that leaves any image: what a NaN offset means for the reference


@dataclass(frozen=True)
class Case:
    name: str
    batch: int
    channels: int
    height: int
    width: int
    cout: int
    kh: int
    kw: int
    stride: int = 1
    padding: int = 1
    dilation: int = 1
    groups: int = 8  # deformable groups
    offset_scale: float = 2.0  # pixels
    special: str = ""  # "" | "huge-offsets" | "nan-offsets" | "inf-logits"

    def out_size(self) -> tuple[int, int]:
        def length(size, k):
            return (size + 2 * self.padding - self.dilation * (k - 1) - 1) // self.stride + 1
        return length(self.height, self.kh), length(self.width, self.kw)

    @property
    def fields(self) -> dict:
        return {"stride": self.stride, "padding": self.padding, "dilation": self.dilation,
                "deformable_groups": self.groups}

    def describe(self) -> str:
        return (f"{self.batch}x{self.channels}x{self.height}x{self.width} -> {self.cout}, {self.kh}x{self.kw}, "
                f"s{self.stride} p{self.padding} d{self.dilation} dg{self.groups}")


_SMALL = dict(batch=1, channels=16, height=9, width=13, cout=8, kh=3, kw=3, groups=4)
CASES = (
    Case("adnet-layer", 1, 64, 33, 59, 64, 3, 3),                        # ADNet's DCN: 3x3, dg 8, 64 -> 64
    Case("batch2-w1901", 2, 16, 6, 1901, 16, 3, 3),                      # odd row past 1024: float positions
    Case("one-channel-per-group", 1, 8, 17, 23, 8, 3, 3, groups=8, offset_scale=1.5),
    Case("cout1", 1, 16, 13, 17, 1, 3, 3, groups=2),
    Case("cout65", 1, 32, 11, 19, 65, 3, 3, groups=4),                   # one output-channel tile and one more
    Case("cout70-stride2-dil2", 2, 12, 9, 11, 70, 3, 3, 2, 2, 2, 1, 3.0),
    Case("kernel5x5", 1, 12, 15, 21, 10, 5, 5, padding=2, groups=3, offset_scale=2.5),
    Case("stride2-dilation2", 2, 12, 20, 26, 14, 3, 3, 2, 2, 2, 2, 3.0),
    Case("kernel10x10", 1, 3, 14, 15, 5, 10, 10, padding=4, groups=3, offset_scale=3.0),  # K = 100 taps
    Case("kernel1x1", 1, 20, 7, 9, 6, 1, 1, padding=0, groups=4, offset_scale=3.0),
    Case("kernel2x3-stride3-batch3", 3, 6, 10, 13, 7, 2, 3, 3, 0, 1, 2, 4.0),
    Case("huge-offsets", **_SMALL, special="huge-offsets"),               # every sample outside: y = bias
    Case("nan-offsets", **_SMALL, special="nan-offsets"),
    Case("inf-mask-logits", **_SMALL, special="inf-logits"),
)
# Shapes for the channels-last fast path besides ADNet's: two channel vectors per group, a tail in every spatial
# dimension, batch 2 past 1024 columns, Cout not a multiple of 8 (y stays NCHW), NaN offsets and +-inf logits.
_FAST = dict(batch=1, channels=16, height=11, width=21, cout=16, kh=3, kw=3, groups=2)
CHANNELS_LAST_CASES = (
    Case("cl-c16-dg1-batch2-w1901", 2, 16, 5, 1901, 24, 3, 3, groups=1),
    Case("cl-c32-dg2-cout12", 1, 32, 13, 19, 12, 3, 3, groups=2),
    Case("cl-stride2-dil2", 1, 16, 20, 26, 16, 3, 3, 2, 2, 2, 2, 3.0),
    Case("cl-nan-offsets", **_FAST, special="nan-offsets"),
    Case("cl-inf-mask-logits", **_FAST, special="inf-logits"),
)
# float32: vs float64 and vs the twin (same arithmetic, other summation order); float16: vs float64 on the
# float16-rounded inputs, and vs the twin (same rounding points): most outputs bit-identical, the rest within two
# output ulps (tensor-core summation order) plus 1e-3 of the output's rms (a column value rounded the other way).
TOLERANCES = {"float32": {"rel_l2_f64": 1e-5, "rel_l2_twin": 2e-6},
              "float16": {"rel_l2_f64": 2e-3, "exact_twin": 0.9, "ulps_twin": 2.0, "rms_twin": 1e-3}}
# Sample positions are float32 (docs/design.md §2): past 1024 rows or columns their spacing is 2^-13 pixels,
# which alone puts a float32 output about 1e-5 (relative L2) from float64.
WIDE_FP32_FACTOR = 5.0


def rel_l2(a, b) -> float:
    """||a - b|| / ||b|| in float64."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300))


def make_inputs(case: Case, rng: np.random.Generator):
    """x, offset_mask_logits (offsets first, then mask logits), weight, bias as float64 arrays."""
    ho, wo = case.out_size()
    k = case.kh * case.kw
    x = rng.standard_normal((case.batch, case.channels, case.height, case.width))
    offsets = rng.standard_normal((case.batch, 2 * case.groups * k, ho, wo)) * case.offset_scale
    logits = rng.standard_normal((case.batch, case.groups * k, ho, wo)) * 2
    if case.special == "huge-offsets":
        offsets = np.where(rng.random(offsets.shape) < 0.5, -1.0, 1.0) * 1e4  # 1e4 is exact in float16
    elif case.special == "nan-offsets":
        offsets[rng.random(offsets.shape) < 0.1] = np.nan
    elif case.special == "inf-logits":
        draw = rng.random(logits.shape)
        logits[draw < 0.1] = np.inf
        logits[draw > 0.9] = -np.inf
    weight = rng.standard_normal((case.cout, case.channels, case.kh, case.kw)) / np.sqrt(case.channels * k)
    bias = rng.standard_normal(case.cout)
    return x, np.concatenate([offsets, logits], axis=1), weight, bias


def as_fp16_values(*arrays):
    """The float16-representable inputs (as float64) that a float16 run actually sees."""
    return [np.asarray(a).astype(np.float16).astype(np.float64) for a in arrays]


def reference_float64(case: Case, x, offset_mask, weight, bias, device: str = "cpu") -> np.ndarray:
    """export.dcn.deform_conv2d in float64 with mask = sigmoid(logits); non-finite offsets become OUTSIDE."""
    import torch

    from export.dcn import deform_conv2d

    n_off = 2 * case.groups * case.kh * case.kw
    offsets = np.where(np.isfinite(offset_mask[:, :n_off]), offset_mask[:, :n_off], OUTSIDE)
    with np.errstate(over="ignore"):
        mask = 1.0 / (1.0 + np.exp(-np.asarray(offset_mask[:, n_off:], np.float64)))
    t = [torch.from_numpy(np.ascontiguousarray(a, np.float64)).to(device) for a in (x, offsets, weight, bias, mask)]
    out = deform_conv2d(t[0], t[1], t[2], t[3], stride=case.stride, padding=case.padding, dilation=case.dilation,
                        mask=t[4])
    return out.cpu().numpy()


def channels_last_applies(case: Case, dtype: str) -> bool:
    """Whether the fast path (plugins/dcnv2/cuda.py, variant v2) takes this case with x channels-last."""
    return dtype == "float16" and (case.channels // case.groups) % 8 == 0 and (case.kh, case.kw) == (3, 3)


def guarded_output(shape, dtype, device: str, channels_last: bool = False):
    """(buffer, view): a flat torch buffer of NaN with GUARD canaries at both ends, and the NCHW output view inside
    (dense NCHW, or NHWC memory with `channels_last`)."""
    import torch

    n = int(np.prod(shape))
    buffer = torch.full((n + 2 * GUARD,), float("nan"), dtype=getattr(torch, dtype), device=device)
    buffer[:GUARD] = CANARY
    buffer[GUARD + n:] = CANARY
    inside = buffer[GUARD:GUARD + n]
    if channels_last:
        b, c, h, w = shape
        return buffer, inside.view(b, h, w, c).permute(0, 3, 1, 2)
    return buffer, inside.view(*shape)


def read_guarded(buffer, shape, channels_last: bool = False) -> tuple[np.ndarray, bool, int]:
    """(NCHW output as float64, canaries intact, number of outputs left NaN)."""
    host = buffer.float().cpu().numpy().astype(np.float64)
    n = int(np.prod(shape))
    intact = bool(np.all(host[:GUARD] == CANARY) and np.all(host[GUARD + n:] == CANARY))
    inside = host[GUARD:GUARD + n]
    if channels_last:
        b, c, h, w = shape
        out = inside.reshape(b, h, w, c).transpose(0, 3, 1, 2)
    else:
        out = inside.reshape(shape)
    return out, intact, int(np.isnan(out).sum())


def compare(dtype: str, got: np.ndarray, ref: np.ndarray, twin: Optional[np.ndarray], *, wide: bool = False) -> dict:
    """The metrics of one output and whether they meet TOLERANCES[dtype] (`wide`: an input side above 1024, see
    WIDE_FP32_FACTOR); "failures" lists what did not."""
    tol = TOLERANCES[dtype]
    metrics = {"rel_l2_f64": rel_l2(got, ref)}
    failures = []
    f64_limit = tol["rel_l2_f64"] * (WIDE_FP32_FACTOR if wide and dtype == "float32" else 1.0)
    if not metrics["rel_l2_f64"] <= f64_limit:
        failures.append(f"rel L2 vs float64 {metrics['rel_l2_f64']:.2e} > {f64_limit:.0e}")
    if twin is not None:
        metrics["rel_l2_twin"] = rel_l2(got, twin)
        if dtype == "float32":
            if not metrics["rel_l2_twin"] <= tol["rel_l2_twin"]:
                failures.append(f"rel L2 vs twin {metrics['rel_l2_twin']:.2e} > {tol['rel_l2_twin']:.0e}")
        else:
            metrics["exact_twin"] = float(np.mean(got == twin))
            rms = float(np.sqrt(np.mean(twin ** 2)))
            bound = tol["ulps_twin"] * np.spacing(np.abs(twin).astype(np.float16)).astype(np.float64) \
                + tol["rms_twin"] * rms
            metrics["beyond_bound_twin"] = int(np.sum(np.abs(got - twin) > bound))
            if metrics["exact_twin"] < tol["exact_twin"]:
                failures.append(f"{metrics['exact_twin']:.3f} of outputs equal the twin's < {tol['exact_twin']}")
            if metrics["beyond_bound_twin"]:
                failures.append(f"{metrics['beyond_bound_twin']} outputs differ from the twin by more than "
                                f"{tol['ulps_twin']:.0f} ulps + {tol['rms_twin']:.0e} rms")
    return {**metrics, "failures": failures}


def _twin(case: Case, dtype: str, x, offset_mask, weight, bias) -> np.ndarray:
    from plugins.dcnv2.cpu import dcnv2_forward

    return dcnv2_forward(x, offset_mask, weight, bias, dtype=dtype, **case.fields).astype(np.float64)


def run_case(kernel, case: Case, dtype: str, *, device: str = "cuda", seed: Optional[int] = None,
             twin: bool = True, channels_last: bool = False) -> dict:
    """One case in one dtype through `kernel.launch` (torch tensors on `device`; with `channels_last`, x and, where
    their channel counts are multiples of 8, offset_mask and y in NHWC memory); a result row with "passed"."""
    import torch

    rng = np.random.default_rng(seed)
    x, om, w, b = make_inputs(case, rng)
    if dtype == "float16":
        x, om, w, b = as_fp16_values(x, om, w, b)
    ref = reference_float64(case, x, om, w, b, device=device)
    ho, wo = case.out_size()
    shape = (case.batch, case.cout, ho, wo)
    tensors = [torch.from_numpy(np.ascontiguousarray(a)).to(device, getattr(torch, dtype)) for a in (x, om, w, b)]
    y_channels_last = channels_last and case.cout % 8 == 0
    if channels_last:
        tensors[0] = tensors[0].to(memory_format=torch.channels_last)
        if tensors[1].shape[1] % 8 == 0:
            tensors[1] = tensors[1].to(memory_format=torch.channels_last)
    buffer, out = guarded_output(shape, dtype, device, channels_last=y_channels_last)
    kernel.launch(*tensors, out, **case.fields)
    if device == "cuda":
        torch.cuda.synchronize()
    got, intact, unwritten = read_guarded(buffer, shape, channels_last=y_channels_last)
    result = compare(dtype, got, ref, _twin(case, dtype, x, om, w, b) if twin else None,
                     wide=max(case.height, case.width) > 1024)
    if not intact:
        result["failures"].append("a canary next to the output was overwritten (write out of bounds)")
    if unwritten:
        result["failures"].append(f"{unwritten} outputs left unwritten (still NaN)")
    if case.special == "huge-offsets" and not np.array_equal(got, np.broadcast_to(
            np.asarray(b, np.float64).astype(dtype).astype(np.float64).reshape(1, -1, 1, 1), shape)):
        result["failures"].append("with every sample outside the image the output must be the bias")
    return {"check": case.name, "shape": case.describe(), "dtype": dtype,
            "layout": "channels-last" if channels_last else "nchw", "canaries_intact": intact,
            "unwritten": unwritten, **{k: v for k, v in result.items() if k != "failures"},
            "passed": not result["failures"], "failures": "; ".join(result["failures"])}


def stream_check(kernel, *, sleep_cycles: int = 2_000_000_000) -> dict:
    """Our kernel on a side stream while the default stream is busy (a long device sleep): it must finish and be
    correct before the default stream does, i.e. it ran on the stream it was given and waited for nothing else."""
    import torch

    case = replace(CASES[0], name="side-stream", batch=1, height=64, width=96)
    rng = np.random.default_rng()
    x, om, w, b = make_inputs(case, rng)
    ref = reference_float64(case, x, om, w, b, device="cuda")
    tensors = [torch.from_numpy(a).to("cuda", torch.float32) for a in (x, om, w, b)]
    ho, wo = case.out_size()
    shape = (case.batch, case.cout, ho, wo)
    buffer, out = guarded_output(shape, "float32", "cuda")
    side = torch.cuda.Stream()
    torch.cuda.synchronize()
    torch.cuda._sleep(sleep_cycles)  # occupies the default stream for about a second
    kernel.launch(*tensors, out, stream=side, **case.fields)
    with torch.cuda.stream(side):  # read back on the side stream: a kernel queued elsewhere would not be done
        snapshot = buffer.float().cpu()
    default_still_busy = not torch.cuda.default_stream().query()
    torch.cuda.synchronize()
    got, intact, unwritten = read_guarded(snapshot, shape)
    result = compare("float32", got, ref, None)
    if not default_still_busy:
        result["failures"].append("the default stream was idle when the side stream finished: the sleep was too "
                                  "short to tell, or the kernel waited for the default stream")
    if not intact or unwritten:
        result["failures"].append(f"canaries intact {intact}, {unwritten} outputs unwritten")
    return {"check": case.name, "shape": case.describe(), "dtype": "float32", "canaries_intact": intact,
            "unwritten": unwritten, "default_stream_busy": default_still_busy,
            "rel_l2_f64": result["rel_l2_f64"], "passed": not result["failures"],
            "failures": "; ".join(result["failures"])}


def invalid_arguments_check(kernel) -> dict:
    """Invalid parameters (5 deformable groups for 12 channels) are refused with the core's message."""
    import torch

    x = torch.zeros(1, 12, 6, 6, device="cuda")
    om = torch.zeros(1, 3 * 5 * 9, 6, 6, device="cuda")
    weight, bias, out = torch.zeros(4, 12, 3, 3, device="cuda"), torch.zeros(4, device="cuda"), \
        torch.zeros(1, 4, 6, 6, device="cuda")
    expected = "deformable_groups = 5 must divide the input channels C = 12"
    try:
        kernel.launch(x, om, weight, bias, out, stride=1, padding=1, dilation=1, deformable_groups=5)
    except Exception as exc:  # KernelError with the library's message; anything else is a finding too
        message = f"{type(exc).__name__}: {exc}"
    else:
        message = "accepted"
    torch.cuda.synchronize()
    passed = message.startswith("KernelError") and expected in message
    return {"check": "invalid-arguments", "dtype": "float32", "passed": passed,
            "failures": "" if passed else f"got {message!r}; expected a KernelError with {expected!r}"}
