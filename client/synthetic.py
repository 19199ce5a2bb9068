"""Synthetic hand-held HDR scenes with ground truth, in numpy (no torch): for tests, demos and benchmarks.

A scene is linear radiance with textured content (smooth shading, gratings, random blobs) and a few bright light
sources far above the medium exposure's white point. Three exposures (short, medium, long) are rendered from
slightly shifted windows of a larger canvas (camera shake), with the NTIRE camera response (gamma 2.24), sensor
noise, clipping and 8-bit quantisation. The ground truth is the medium window's radiance, as NTIRE stores it
(gamma domain, before any clipping).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from client.hdr_math import NTIRE_GAMMA

__all__ = ["Scene", "make_scene"]


@dataclass
class Scene:
    ldrs: np.ndarray      # [3, H, W, 3] uint8: short, medium, long
    evs: np.ndarray       # [3] float64 stops
    gt_gamma: np.ndarray  # [H, W, 3] float32: ground-truth HDR in the gamma domain (NTIRE's gt)
    shifts: np.ndarray    # [3, 2] int: (dy, dx) of each frame's window relative to the medium frame

    @property
    def gt_linear(self) -> np.ndarray:
        return self.gt_gamma.astype(np.float64) ** NTIRE_GAMMA


def _radiance(h: int, w: int, rng: np.random.Generator, n_lights: int) -> np.ndarray:
    yy, xx = np.meshgrid(np.linspace(0, 1, h), np.linspace(0, 1, w), indexing="ij")
    base = 0.05 + 0.25 * (0.6 * yy + 0.4 * xx)
    rad = np.repeat(base[..., None], 3, axis=2) * rng.uniform(0.6, 1.0, 3)
    for _ in range(3):  # gratings: fine texture for the alignment to lock onto
        fy, fx = rng.uniform(2, 12, 2) * 2 * np.pi
        rad *= 1 + 0.3 * np.sin(fy * yy + fx * xx + rng.uniform(0, 2 * np.pi))[..., None]
    for _ in range(12):  # coloured blobs (objects)
        cy, cx, r = rng.uniform(0, 1), rng.uniform(0, 1), rng.uniform(0.03, 0.15)
        blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r))
        rad += blob[..., None] * rng.uniform(0.0, 0.6, 3)
    rad *= 0.12 / np.median(rad)  # mid-grey-ish at the medium exposure, so the long frame is not all white
    for _ in range(n_lights):  # light sources, 5-40x above white at the medium exposure
        cy, cx, r = rng.uniform(0.1, 0.9), rng.uniform(0.1, 0.9), rng.uniform(0.01, 0.04)
        blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r))
        rad += blob[..., None] * rng.uniform(5, 40) * rng.uniform(0.8, 1.0, 3)
    return rad


def make_scene(h: int = 64, w: int = 96, seed: Optional[int] = None, evs=(-2.0, 0.0, 2.0), max_shift: int = 3,
               noise: float = 0.004, n_lights: int = 3) -> Scene:
    """Render a scene of H x W pixels. `max_shift` bounds the camera shake in pixels (per frame, per axis)."""
    if h < 1 or w < 1:
        raise ValueError(f"scene size must be positive, got {h}x{w}")
    rng = np.random.default_rng(seed)
    m = max_shift
    canvas = _radiance(h + 2 * m, w + 2 * m, rng, n_lights)
    shifts = rng.integers(-m, m + 1, size=(3, 2)) if m else np.zeros((3, 2), dtype=int)
    shifts[1] = 0
    evs = np.asarray(evs, dtype=np.float64)
    ldrs = np.empty((3, h, w, 3), dtype=np.uint8)
    for i in range(3):
        dy, dx = shifts[i]
        window = canvas[m + dy:m + dy + h, m + dx:m + dx + w]
        exposed = window * 2.0 ** (evs[i] - evs[1])
        exposed = exposed + rng.normal(0, noise, exposed.shape) * np.sqrt(np.maximum(exposed, 1e-6))
        gamma = np.clip(exposed, 0, 1) ** (1 / NTIRE_GAMMA)
        ldrs[i] = np.round(gamma * 255).astype(np.uint8)
    gt = canvas[m:m + h, m:m + w] ** (1 / NTIRE_GAMMA)
    return Scene(ldrs=ldrs, evs=evs, gt_gamma=gt.astype(np.float32), shifts=shifts)
