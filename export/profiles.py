"""Optimisation profiles of the TensorRT engine (batch, height, width of the pipeline inputs), defined once.

The engine build, the Triton model configs (max_batch_size = DEFAULT_PROFILE.max.batch) and the benchmarks import
these. A profile bounds what the engine accepts: a request outside [min, max] is rejected by TensorRT, and the
kernels are tuned for `opt`. The pipeline graph pads H and W to multiples of 4 itself, so any size in range works.

- DEFAULT_PROFILE: opt is the NTIRE 2021 frame (1 x 1060 x 1900); max admits two landscape Full-HD frames (also
  Kalantari's 1000 x 1500); min is the contract's smallest frame (client/contract.py MIN_SIDE), so the GPU
  and CPU variants accept the same small sizes. Portrait frames need their own
  bounds (e.g. `make engine MAX=1x1920x1080`).
- CI_PROFILE: tiny sizes for CPU-only engine builds (TensorRT-RTX in CI), where only the build is exercised.

Sizes are written BxHxW (or HxW for batch 1), e.g. `make engine SIZE=1x1000x1500 MAX=2x1080x1920`.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from client import contract
from export.errors import PipelineError

__all__ = ["Shape", "Profile", "NTIRE_FRAME", "DEFAULT_PROFILE", "CI_PROFILE", "ProfileError"]

NTIRE_FRAME = (1060, 1900)  # H, W of the NTIRE 2021 HDR challenge frames


class ProfileError(PipelineError):
    """A profile size that cannot be parsed or bounds that are out of order."""


@dataclass(frozen=True)
class Shape:
    """One point of a profile: batch, height, width of the LDR input [B, 3, H, W, 3] (and EV [B, 3])."""

    batch: int
    height: int
    width: int

    @classmethod
    def parse(cls, text: str) -> "Shape":
        """'BxHxW' or 'HxW' (batch 1)."""
        match = re.fullmatch(r"\s*(?:(\d+)\s*[xX]\s*)?(\d+)\s*[xX]\s*(\d+)\s*", str(text))
        if not match:
            raise ProfileError(f"profile size {text!r}: write BxHxW or HxW, e.g. 1x1060x1900")
        batch, height, width = match.groups()
        shape = cls(int(batch or 1), int(height), int(width))
        if min(shape.as_tuple()) < 1:
            raise ProfileError(f"profile size {text!r}: batch, height and width must be >= 1")
        return shape

    def as_tuple(self) -> tuple[int, int, int]:
        return (self.batch, self.height, self.width)

    def __str__(self) -> str:
        return "x".join(map(str, self.as_tuple()))


@dataclass(frozen=True)
class Profile:
    """min <= opt <= max in every dimension."""

    min: Shape
    opt: Shape
    max: Shape

    def __post_init__(self):
        lo, mid, hi = self.min.as_tuple(), self.opt.as_tuple(), self.max.as_tuple()
        if min(lo) < 1 or not all(a <= b <= c for a, b, c in zip(lo, mid, hi)):
            raise ProfileError(f"profile min {self.min} / opt {self.opt} / max {self.max}: need 1 <= min <= opt <= "
                               f"max in batch, height and width")

    @classmethod
    def parse(cls, min_size: str | None = None, opt_size: str | None = None, max_size: str | None = None,
              base: "Profile | None" = None) -> "Profile":
        """`base` (DEFAULT_PROFILE) with the given sizes ('BxHxW') replaced; a bound that is not given widens to
        include the given opt."""
        base = base or DEFAULT_PROFILE
        opt = Shape.parse(opt_size) if opt_size else base.opt
        lo = Shape.parse(min_size) if min_size else Shape(*map(min, base.min.as_tuple(), opt.as_tuple()))
        hi = Shape.parse(max_size) if max_size else Shape(*map(max, base.max.as_tuple(), opt.as_tuple()))
        return cls(lo, opt, hi)

    def input_shapes(self) -> dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]]:
        """(min, opt, max) of each pipeline input, in the contract's layout."""
        def ldr(s: Shape):
            return (s.batch, contract.NUM_FRAMES, s.height, s.width, contract.NUM_COLORS)

        def ev(s: Shape):
            return (s.batch, contract.NUM_FRAMES)

        points = (self.min, self.opt, self.max)
        return {contract.INPUT_LDR: tuple(ldr(s) for s in points), contract.INPUT_EV: tuple(ev(s) for s in points)}

    def to_dict(self) -> dict:
        """JSON form (engine sidecar): {"min": [B, H, W], "opt": ..., "max": ..., "inputs": {name: [min, opt, max]}}."""
        return {"min": list(self.min.as_tuple()), "opt": list(self.opt.as_tuple()), "max": list(self.max.as_tuple()),
                "inputs": {name: [list(s) for s in shapes] for name, shapes in self.input_shapes().items()}}

    def __str__(self) -> str:
        return f"min {self.min}, opt {self.opt}, max {self.max}"


DEFAULT_PROFILE = Profile(min=Shape(1, contract.MIN_SIDE, contract.MIN_SIDE), opt=Shape(1, *NTIRE_FRAME),
                          max=Shape(2, 1080, 1920))
CI_PROFILE = Profile(min=Shape(1, 32, 48), opt=Shape(1, 48, 64), max=Shape(2, 64, 96))
