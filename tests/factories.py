"""Fresh random test data. Every call draws a new seed and prints it, so a failure can be replayed."""
from __future__ import annotations

import secrets

import torch

from export.adnet import ADNet


def fresh_generator(seed: int | None = None) -> torch.Generator:
    seed = secrets.randbits(63) if seed is None else seed
    print(f"random seed: {seed}")
    return torch.Generator().manual_seed(seed)


def random_official_state_dict(seed: int | None = None, offset_gain: float = 3.0) -> dict[str, torch.Tensor]:
    """Float64 ADNet weights in the official format with He-scaled convolutions and offset predictors large
    enough that DCN samples move by pixels (the official initialisation would give zero offsets)."""
    gen = fresh_generator(seed)
    state = {}
    for name, ref in ADNet().state_dict().items():
        if name.endswith(".weight"):
            fan_in = ref[0].numel()
            gain = offset_gain if "conv_offset_mask" in name else 2 ** 0.5
            std = gain / fan_in ** 0.5
        else:
            std = 0.05
        state[name] = torch.randn(ref.shape, generator=gen, dtype=torch.float64) * std
    return state


def random_frames(batch: int, h: int, w: int, seed: int | None = None) -> torch.Tensor:
    """One [B, 6, H, W] float64 input frame with values in [0, 1]."""
    return torch.rand(batch, 6, h, w, generator=fresh_generator(seed), dtype=torch.float64)
