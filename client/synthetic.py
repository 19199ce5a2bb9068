"""Synthetic hand-held HDR scenes with ground truth, in numpy (no torch): for tests, demos and benchmarks.

A scene is linear radiance with textured content (smooth shading, gratings, random blobs) and a few bright light
sources far above the medium exposure's white point. Three exposures (short, medium, long) are rendered from
slightly shifted windows of a larger canvas (camera shake), with the NTIRE camera response (gamma 2.24), sensor
noise, clipping and 8-bit quantisation. The ground truth is the medium window's radiance, as NTIRE stores it
(gamma domain, before any clipping).

CLI: python -m client.synthetic --out DIR [--size 128x192] [--seed N] [--count K] writes NTIRE-format scenes
(`{id}_short|medium|long.png`, `{id}_exposures.npy`, `{id}_gt.png`, `{id}_alignratio.npy`), ids 0001, 0002, ...
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional

import numpy as np

from client.hdr_math import NTIRE_GAMMA
from client.scenes import NTIRE, Scene

__all__ = ["make_scene", "write_ntire_scene", "main"]


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
               noise: float = 0.004, n_lights: int = 3, name: str = "synthetic") -> Scene:
    """Render an 8-bit NTIRE-style scene of H x W pixels with its ground truth, as the client's Scene.
    `max_shift` bounds the camera shake in pixels (per frame, per axis; the medium frame is the reference)."""
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
    return Scene(name, ldrs, evs, 8, gt.astype(np.float32), NTIRE)


def write_ntire_scene(scene: Scene, folder: str | Path, scene_id: str) -> list[Path]:
    """Write `scene` in NTIRE format under `folder`; returns the files written."""
    from client import hdr_io  # OpenCV only where files are written; make_scene stays numpy-only

    folder = Path(folder)
    paths = [hdr_io.write_png8(folder / f"{scene_id}_{role}.png", ldr)
             for role, ldr in zip(("short", "medium", "long"), scene.ldrs)]
    exposures = folder / f"{scene_id}_exposures.npy"
    np.save(exposures, scene.evs.astype(np.float64))
    gt, ratio = folder / f"{scene_id}_gt.png", folder / f"{scene_id}_alignratio.npy"
    hdr_io.write_ntire_gt(gt, ratio, scene.gt_gamma)
    return paths + [exposures, gt, ratio]


def _size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must be HxW, e.g. 128x192, got {text!r}") from None
    if h < 1 or w < 1:
        raise argparse.ArgumentTypeError(f"size must be positive, got {text!r}")
    return h, w


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m client.synthetic",
                                     description="Write synthetic HDR scenes with ground truth in NTIRE format.")
    parser.add_argument("--out", required=True, type=Path, help="output folder (created if needed)")
    parser.add_argument("--size", type=_size, default=(128, 192), metavar="HxW", help="frame size (default 128x192)")
    parser.add_argument("--seed", type=int, help="seed of the first scene (scene i uses seed + i); random if unset")
    parser.add_argument("--count", type=int, default=1, help="number of scenes (default 1)")
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # usage errors: return argparse's code instead of exiting the caller
        return int(exc.code or 0)
    if args.count < 1:
        print("error: --count must be at least 1", file=sys.stderr)
        return 2
    h, w = args.size
    for i in range(args.count):
        scene_id = f"{i + 1:04d}"
        seed = None if args.seed is None else args.seed + i
        scene = make_scene(h, w, seed=seed)
        write_ntire_scene(scene, args.out, scene_id)
        print(f"wrote {args.out / scene_id}_*: {h}x{w}, EV stops {scene.evs.tolist()}, seed {seed}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
