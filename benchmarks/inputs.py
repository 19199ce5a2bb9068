"""Benchmark inputs in the public contract's form: LDR [1, 3, H, W, 3] + EV [1, 3] per request.

Synthetic scenes (client/synthetic.py, numpy only) by default: several different input sets per size, cycled
through by the timing loops, so that no run reuses the previous run's data from a cache. A user's NTIRE-format
folder (`{id}_short|medium|long.png`, `{id}_exposures.npy`, optional `{id}_gt.png` + `{id}_alignratio.npy`) can
be read for the accuracy part (DATA=).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from client import contract, hdr_math

__all__ = ["Frame", "synthetic_frames", "ntire_folder_frames", "parse_size", "format_size"]

SEED_BASE = 7000  # scene i of a size uses seed SEED_BASE + i: the same inputs on every machine


@dataclass
class Frame:
    name: str
    ldr: np.ndarray                      # [1, 3, H, W, 3], the graph's LDR dtype (uint8, or float16 in [0, 1])
    ev: np.ndarray                       # [1, 3] float32 stops
    gt_gamma: Optional[np.ndarray] = None  # [H, W, 3] ground truth, gamma domain (NTIRE convention), if known

    @property
    def size(self) -> tuple[int, int]:
        return int(self.ldr.shape[2]), int(self.ldr.shape[3])


def parse_size(text: str) -> tuple[int, int]:
    """'HxW' -> (H, W)."""
    try:
        h, w = (int(v) for v in str(text).lower().replace("×", "x").split("x"))
    except ValueError:
        raise ValueError(f"size {text!r}: write HxW, e.g. 1060x1900") from None
    if min(h, w) < contract.MIN_SIDE or max(h, w) > contract.MAX_SIDE:
        raise ValueError(f"size {text!r}: each side must lie in [{contract.MIN_SIDE}, {contract.MAX_SIDE}] (the "
                         f"serving contract's limits)")
    return h, w


def format_size(size) -> str:
    return f"{size[0]}x{size[1]}"


def synthetic_frames(h: int, w: int, count: int, ldr_dtype: str = contract.DEFAULT_LDR_DTYPE) -> list[Frame]:
    """`count` different synthetic scenes of H x W (fixed seeds), with their ground truth."""
    from client.synthetic import make_scene

    frames = []
    for i in range(count):
        scene = make_scene(h, w, seed=SEED_BASE + i)
        frames.append(Frame(f"synthetic-{h}x{w}-{i}", hdr_math.ldr_for_model(scene.ldrs, ldr_dtype)[None],
                            scene.evs.astype(np.float32)[None], scene.gt_gamma))
    return frames


def ntire_folder_frames(folder: str | Path, ldr_dtype: str = contract.DEFAULT_LDR_DTYPE,
                        limit: Optional[int] = None) -> list[Frame]:
    """Scenes of an NTIRE 2021 folder, sorted by id; ground truth where {id}_gt.png and {id}_alignratio.npy exist."""
    from client import hdr_io

    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"DATA={folder}: no such folder; point it at NTIRE-format scenes "
                                f"({{id}}_short.png, {{id}}_medium.png, {{id}}_long.png, {{id}}_exposures.npy)")
    ids = sorted(p.name[:-len("_medium.png")] for p in folder.glob("*_medium.png"))
    if not ids:
        raise FileNotFoundError(f"DATA={folder} holds no NTIRE scene ({{id}}_medium.png not found); write one with "
                                f"`python -m client.synthetic --out DIR`")
    frames = []
    for scene_id in ids[:limit]:
        ldr = hdr_math.ldr_for_model(np.stack([hdr_io.read_ldr_raw(folder / f"{scene_id}_{role}.png")[0]
                                               for role in ("short", "medium", "long")]), ldr_dtype)
        ev = hdr_io.read_exposures_npy(folder / f"{scene_id}_exposures.npy").astype(np.float32)
        gt_png, ratio = folder / f"{scene_id}_gt.png", folder / f"{scene_id}_alignratio.npy"
        gt = hdr_io.read_ntire_gt(gt_png, ratio).astype(np.float32) if gt_png.is_file() and ratio.is_file() else None
        frames.append(Frame(scene_id, ldr[None], ev[None], gt))
    return frames
