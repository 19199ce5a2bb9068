"""Scenes (three exposures + EV stops, optional ground truth) from the layouts HDR data sets use on disk.

A folder is recognised by the files in it:
- NTIRE 2021: `{id}_short.png, {id}_medium.png, {id}_long.png, {id}_exposures.npy` (+ `{id}_gt.png` and
  `{id}_alignratio.npy`); one folder may hold several ids, one scene each.
- NTIRE without ids (one scene per folder): `short.png, medium.png, long.png` or `0.png, 1.png, 2.png`, with
  `exposures.npy` (+ `gt.png` and `alignratio.npy`).
- Kalantari (SIGGRAPH'17): three `.tif` frames, short to long in name order, `exposure.txt` (+ `HDRImg.hdr`,
  linear ground truth).
- A folder of such folders: one level down, one scene (or several NTIRE ids) per sub-folder.
Three image files with EV stops from the caller (the CLI's `--ev`) make a scene too (`scene_from_files`).

The Scene class is numpy-only (client.synthetic makes them in containers without OpenCV); reading files
imports OpenCV (hdr_io) when a scene is loaded.

Finding scenes only lists files; `SceneSource.load()` reads them. So a large data set streams through the server
without being held in memory, and a broken scene fails alone when it is loaded instead of stopping the others.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from . import contract, hdr_math, tiling
from .errors import SceneError

__all__ = ["Scene", "SceneSource", "find_scenes", "scene_from_files", "load_scenes",
           "NTIRE", "KALANTARI", "FILES"]

# Layouts; they also pick the metrics convention for scenes with ground truth (client/outputs.py).
NTIRE = "ntire"
KALANTARI = "kalantari"
FILES = "files"

_NTIRE_ROLES = ("short", "medium", "long")
_NTIRE_ID_FRAME = re.compile(r"^(?P<id>.+)_(?P<role>short|medium|long)\.png$")
_TIFF = (".tif", ".tiff")
_EXPECTED_LAYOUTS = (
    "expected one of: NTIRE `{id}_short.png {id}_medium.png {id}_long.png {id}_exposures.npy` (several ids "
    "allowed); `short.png medium.png long.png exposures.npy` or `0.png 1.png 2.png exposures.npy`; Kalantari: "
    "three .tif frames + exposure.txt; a folder of such folders; or pass three image files with --ev A B C")


@dataclass
class Scene:
    """One scene, decoded and checked: the frames have equal sizes and bit depths, the EVs are 3 finite stops."""

    name: str
    ldrs: np.ndarray                  # [3, H, W, 3] uint8 or uint16 as decoded, RGB: short, medium, long
    evs: np.ndarray                   # [3] float64 stops as stored (the served graph makes them relative)
    bit_depth: int                    # 8 or 16
    gt_gamma: Optional[np.ndarray] = None  # [H, W, 3] float32 ground truth in the gamma (2.24) domain
    source: str = FILES               # layout it came from: NTIRE, KALANTARI or FILES

    @property
    def height(self) -> int:
        return int(self.ldrs.shape[1])

    @property
    def width(self) -> int:
        return int(self.ldrs.shape[2])

    @property
    def gt_linear(self) -> Optional[np.ndarray]:
        """Ground truth as linear radiance (float64), or None."""
        return None if self.gt_gamma is None else hdr_math.linearize(self.gt_gamma.astype(np.float64))


@dataclass(frozen=True)
class SceneSource:
    """Where a scene lies on disk; `load()` reads and checks it. A source found broken while listing carries
    the `problem` and raises it on load, so that it fails alone."""

    name: str
    layout: str
    frames: tuple[Path, ...] = ()
    exposures: Optional[Path] = None          # exposures.npy (NTIRE) or exposure.txt (Kalantari)
    evs: Optional[tuple[float, ...]] = None   # stops given by the caller instead of a file
    gt: tuple[Path, ...] = ()                 # (gt.png, alignratio.npy) for NTIRE, (HDRImg.hdr,) for Kalantari
    problem: Optional[str] = field(default=None, compare=False)

    def load(self) -> Scene:
        from . import hdr_io

        if self.problem:
            raise SceneError(self.problem)
        ldrs, depth = _read_frames(self.name, self.frames)
        if self.evs is not None:
            evs = _check_evs(self.name, self.evs)
        elif self.layout == KALANTARI:
            evs = hdr_io.read_exposure_txt(self.exposures)
        else:
            evs = hdr_io.read_exposures_npy(self.exposures)
        gt = None
        if self.gt and self.layout == NTIRE:
            gt = hdr_io.read_ntire_gt(*self.gt)
        elif self.gt:
            # Kept in the gamma domain like NTIRE's ground truth; gt_linear gives the radiance back (float32
            # round trip, ~1e-7 relative).
            gt = hdr_math.delinearize(hdr_io.read_hdr(self.gt[0]), hdr_math.NTIRE_GAMMA).astype(np.float32)
        if gt is not None and gt.shape != ldrs.shape[1:]:
            raise SceneError(
                f"scene {self.name}: ground truth {self.gt[0]} is {gt.shape[1]}x{gt.shape[0]} but the frames are "
                f"{ldrs.shape[2]}x{ldrs.shape[1]}; use the ground truth of this scene or remove it")
        return Scene(self.name, ldrs, evs, depth, gt, self.layout)


def _check_evs(name: str, evs) -> np.ndarray:
    try:
        return hdr_math.check_evs(evs)
    except (TypeError, ValueError) as exc:
        raise SceneError(f"scene {name}: {exc}") from exc


def _read_frames(name: str, paths: Sequence[Path]) -> tuple[np.ndarray, int]:
    if len(paths) != contract.NUM_FRAMES:
        raise SceneError(f"scene {name}: expected 3 frames (short, medium, long), got {len(paths)}: "
                         f"{', '.join(map(str, paths)) or 'none'}")
    from . import hdr_io

    decoded = [hdr_io.read_ldr_raw(p) for p in paths]
    shapes = [img.shape for img, _ in decoded]
    if len(set(shapes)) > 1:
        sizes = ", ".join(f"{p.name} {s[1]}x{s[0]}" for p, s in zip(paths, shapes))
        raise SceneError(f"scene {name}: frames have different sizes ({sizes}); the three exposures must have "
                         "the same size: crop or resize them to a common one")
    depths = [d for _, d in decoded]
    if len(set(depths)) > 1:
        listed = ", ".join(f"{p.name} {d}-bit" for p, d in zip(paths, depths))
        raise SceneError(f"scene {name}: frames have different bit depths ({listed}); save the three exposures "
                         "with the same bit depth")
    h, w = shapes[0][:2]
    # Larger than one request may carry is fine: the client sends such scenes in tiles (client/tiling.py).
    if min(h, w) < contract.MIN_SIDE or max(h, w) > tiling.MAX_SCENE_SIDE:
        raise SceneError(f"scene {name}: frames are {w}x{h} pixels but each side must lie in "
                         f"[{contract.MIN_SIDE}, {tiling.MAX_SCENE_SIDE}]; crop or resize them")
    return np.stack([img for img, _ in decoded]), depths[0]


def scene_from_files(paths: Sequence[str | Path], evs: Sequence[float], name: Optional[str] = None) -> SceneSource:
    """A scene from three image files (short, medium, long) and their EV stops; named after the medium file."""
    paths = tuple(Path(p) for p in paths)
    if len(paths) != contract.NUM_FRAMES:
        raise SceneError(f"expected 3 image files (short, medium, long), got {len(paths)}: "
                         f"{', '.join(map(str, paths)) or 'none'}")
    name = name or paths[1].stem
    return SceneSource(name, FILES, frames=paths, evs=tuple(_check_evs(name, evs).tolist()))


def _name_of(folder: Path) -> str:
    """A one-scene folder names its scene; resolved so that `.` gives the folder's real name."""
    return folder.resolve().name


def _ntire_with_ids(folder: Path, names: set[str]) -> list[SceneSource]:
    ids = sorted({m["id"] for m in map(_NTIRE_ID_FRAME.match, names) if m})
    sources = []
    for scene_id in ids:
        frames = tuple(folder / f"{scene_id}_{role}.png" for role in _NTIRE_ROLES)
        exposures = folder / f"{scene_id}_exposures.npy"
        gt = (folder / f"{scene_id}_gt.png", folder / f"{scene_id}_alignratio.npy")
        sources.append(_ntire_source(scene_id, folder, frames, exposures, gt, names))
    return sources


def _ntire_source(name, folder, frames, exposures, gt, names) -> SceneSource:
    missing = [p.name for p in frames + (exposures,) if p.name not in names]
    gt_present = [p.name in names for p in gt]
    problem = None
    if missing:
        problem = (f"scene {name} in {folder}: missing {', '.join(missing)}; an NTIRE scene needs the three "
                   f"frames and the EV stops ({exposures.name}, e.g. np.save('{exposures.name}', [-2, 0, 2]))")
    elif any(gt_present) and not all(gt_present):
        have, lack = (gt[0], gt[1]) if gt_present[0] else (gt[1], gt[0])
        problem = (f"scene {name} in {folder}: {have.name} is there but {lack.name} is missing; NTIRE ground "
                   "truth needs both (remove the other one to run without ground truth)")
    return SceneSource(name, NTIRE, frames=frames, exposures=exposures, gt=gt if all(gt_present) else (),
                       problem=problem)


def _ntire_without_ids(folder: Path, names: set[str]) -> Optional[SceneSource]:
    for frame_names in ([f"{role}.png" for role in _NTIRE_ROLES], ["0.png", "1.png", "2.png"]):
        if any(n in names for n in frame_names):
            frames = tuple(folder / n for n in frame_names)
            gt = (folder / "gt.png", folder / "alignratio.npy")
            return _ntire_source(_name_of(folder), folder, frames, folder / "exposures.npy", gt, names)
    return None


def _kalantari(folder: Path, names: set[str]) -> Optional[SceneSource]:
    tiffs = sorted(n for n in names if n.lower().endswith(_TIFF))
    if not tiffs:
        return None
    name = _name_of(folder)
    problem = None
    if len(tiffs) != contract.NUM_FRAMES:
        problem = (f"scene {name} in {folder}: found {len(tiffs)} .tif frames ({', '.join(tiffs)}); a "
                   "Kalantari scene has exactly 3 (short, medium, long in name order)")
    elif "exposure.txt" not in names:
        problem = (f"scene {name} in {folder}: exposure.txt is missing; a Kalantari scene needs the EV "
                   "stops of its three frames in exposure.txt (one number per line)")
    gt = (folder / "HDRImg.hdr",) if "HDRImg.hdr" in names else ()
    return SceneSource(name, KALANTARI, frames=tuple(folder / n for n in tiffs),
                       exposures=folder / "exposure.txt", gt=gt, problem=problem)


def _scenes_in_folder(folder: Path) -> Optional[list[SceneSource]]:
    names = {p.name for p in folder.iterdir() if p.is_file()}
    found = _ntire_with_ids(folder, names)
    if found:
        return found
    for detect in (_ntire_without_ids, _kalantari):
        source = detect(folder, names)
        if source is not None:
            return [source]
    return None


def _unknown_layout(folder: Path) -> str:
    entries = sorted(p.name + ("/" if p.is_dir() else "") for p in folder.iterdir())
    shown = ", ".join(entries[:12]) + (f" and {len(entries) - 12} more" if len(entries) > 12 else "")
    return f"{folder}: unknown scene layout; found {shown or 'an empty folder'}; {_EXPECTED_LAYOUTS}"


def find_scenes(path: str | Path) -> list[SceneSource]:
    """The scenes in a folder (see the module docstring for the layouts), sorted by name.

    Raises SceneError when `path` is missing, is a file, or holds no known layout. Scenes found incomplete
    (a missing frame or EV file) are returned with their problem and fail on load.
    """
    folder = Path(path)
    if not folder.exists():
        raise SceneError(f"{folder}: not found; pass a scene folder (or three image files with --ev A B C)")
    if not folder.is_dir():
        raise SceneError(f"{folder} is a file; pass a scene folder, or three image files with --ev A B C")
    found = _scenes_in_folder(folder)
    if found is not None:
        return found
    subfolders = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    sources = []
    for sub in subfolders:
        inner = _scenes_in_folder(sub)
        sources.extend(inner if inner is not None else [SceneSource(sub.name, FILES, problem=_unknown_layout(sub))])
    if not sources:
        raise SceneError(_unknown_layout(folder))
    return sources


def load_scenes(path: str | Path) -> list[Scene]:
    """Every scene of a folder, loaded; the first broken one raises."""
    return [source.load() for source in find_scenes(path)]

