"""Files written per scene (`write_scene`) and metrics against ground truth (`scene_metrics`, `write_metrics`).

Per scene `{name}`: `{name}.hdr` (Radiance RGBE, linear, the served values), optionally `{name}.exr` (float32),
`{name}_preview.png` (NTIRE tanh + mu-law tone map), optionally NTIRE's `{name}.png` (16-bit) +
`{name}_alignratio.npy` holding the gamma-domain (2.24) image like NTIRE's ground truth.
"""
from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from . import hdr_io, hdr_math
from .errors import ClientError, SceneError
from .scenes import KALANTARI, NTIRE, Scene

__all__ = ["WrittenScene", "scene_metrics", "write_scene", "write_metrics"]


@dataclass
class WrittenScene:
    name: str
    files: list[Path] = field(default_factory=list)
    metrics: Optional[dict] = None   # {"convention", "psnr_l", "psnr_mu"} (dB) when the scene has ground truth


def _check_hdr(name: str, scene: Scene, hdr: np.ndarray) -> np.ndarray:
    hdr = np.asarray(hdr, dtype=np.float32)
    if hdr.shape != (scene.height, scene.width, 3):
        raise ClientError(f"scene {name}: HDR is {list(hdr.shape)}, expected [{scene.height}, {scene.width}, 3]")
    if not np.all(np.isfinite(hdr)) or hdr.min() < 0:
        raise ClientError(f"scene {name}: the server returned non-finite or negative radiance; check the model "
                          "(a checkpoint trained for this pipeline) and the server log")
    return hdr


def scene_metrics(scene: Scene, hdr_linear: np.ndarray) -> Optional[dict]:
    """PSNR-l and PSNR-mu of the served HDR against the scene's ground truth, in the scene's own convention;
    None without ground truth. NTIRE: on gamma-domain images (challenge scoring). Kalantari: on linear radiance."""
    if scene.gt_gamma is None:
        return None
    hdr = np.asarray(hdr_linear, dtype=np.float64)
    try:
        if scene.source == KALANTARI:
            # Kalantari's ground truth is in the scale of exposure.txt's EV 0 (inputs ldr**g / 2**ev); the served
            # radiance is in the medium frame's scale, hence the factor 2**-ev_medium.
            res = hdr * 2.0 ** -scene.evs[1]
            ref = scene.gt_linear
            return {"convention": KALANTARI, "psnr_l": hdr_math.kalantari_psnr_l(ref, res),
                    "psnr_mu": hdr_math.kalantari_psnr_mu(ref, res)}
        res = hdr_math.delinearize(hdr, hdr_math.NTIRE_GAMMA)
        ref = scene.gt_gamma
        return {"convention": NTIRE, "psnr_l": hdr_math.ntire_psnr_l(ref, res),
                "psnr_mu": hdr_math.ntire_psnr_mu(ref, res)}
    except ValueError as exc:
        raise SceneError(f"scene {scene.name}: ground truth unusable for metrics: {exc}") from exc


def write_scene(out_dir: str | Path, scene: Scene, hdr_linear: np.ndarray, *, exr: bool = False,
                ntire_png: bool = False, preview: bool = True) -> WrittenScene:
    """Write the outputs of one scene into `out_dir` (created if needed) and compute its metrics."""
    out = Path(out_dir)
    name = scene.name
    hdr = _check_hdr(name, scene, hdr_linear)
    written = WrittenScene(name, metrics=scene_metrics(scene, hdr))
    written.files.append(hdr_io.write_hdr(out / f"{name}.hdr", hdr))
    if exr:
        written.files.append(hdr_io.write_exr(out / f"{name}.exr", hdr))
    if preview:
        written.files.append(hdr_io.write_png8(out / f"{name}_preview.png", hdr_math.tonemap_preview(hdr)))
    if ntire_png:
        png, ratio = out / f"{name}.png", out / f"{name}_alignratio.npy"
        try:
            hdr_io.write_ntire_gt(png, ratio, hdr_math.delinearize(hdr, hdr_math.NTIRE_GAMMA))
        except ValueError as exc:  # an all-black image has no alignratio
            raise ClientError(f"scene {name}: cannot write {png.name}: {exc}") from exc
        written.files += [png, ratio]
    return written


def _number(value: float):
    # JSON has no inf (identical images give PSNR inf); keep it readable rather than invalid.
    return round(value, 4) if math.isfinite(value) else str(value)


def write_metrics(out_dir: str | Path, written: Sequence[WrittenScene]) -> list[Path]:
    """metrics.json and metrics.csv (name, convention, psnr_l, psnr_mu) for the scenes with metrics, plus their
    means per convention in the JSON; nothing when no scene has ground truth."""
    rows = [w for w in written if w.metrics]
    if not rows:
        return []
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    means = {}
    for convention in sorted({w.metrics["convention"] for w in rows}):
        group = [w.metrics for w in rows if w.metrics["convention"] == convention]
        means[convention] = {k: _number(float(np.mean([m[k] for m in group]))) for k in ("psnr_l", "psnr_mu")}
        means[convention]["scenes"] = len(group)
    scenes = {w.name: {k: (_number(v) if isinstance(v, float) else v) for k, v in w.metrics.items()} for w in rows}
    json_path = out / "metrics.json"
    json_path.write_text(json.dumps({"unit": "dB", "scenes": scenes, "mean": means}, indent=2) + "\n")
    csv_path = out / "metrics.csv"
    with open(csv_path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["name", "convention", "psnr_l", "psnr_mu"])
        for w in rows:
            writer.writerow([w.name, w.metrics["convention"], _number(w.metrics["psnr_l"]),
                             _number(w.metrics["psnr_mu"])])
    return [json_path, csv_path]
