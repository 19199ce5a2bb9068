"""A contact sheet of one scene: the three exposures, the merged output and the ground truth side by side, with a
caption (what the weights are, the metrics) under them, so a newcomer sees at a glance what went in and came out.

Frames are shown as decoded (16-bit ones scaled to 8 bits for display); the output and the ground truth with the
same tone map as `{name}_preview.png` (NTIRE's tanh + mu-law, each normalised by its own 99th percentile). OpenCV
draws the text (Hershey font, so no font files are needed).
"""
from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Optional, Sequence

import cv2
import numpy as np

from . import hdr_io, hdr_math
from .scenes import Scene

__all__ = ["contact_sheet", "write_contact_sheet", "PANEL_TITLES"]

PANEL_TITLES = ("short", "medium", "long", "output (tone-mapped)", "ground truth")
_FONT = cv2.FONT_HERSHEY_SIMPLEX
_BACKGROUND = 24
_TEXT = (235, 235, 235)
_MARGIN = 8
_TITLE_H = 26
_LINE_H = 20


def _display(frame: np.ndarray) -> np.ndarray:
    frame = np.asarray(frame)
    if frame.dtype == np.uint16:
        return (frame >> 8).astype(np.uint8)
    if frame.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 or uint16 as decoded, got {frame.dtype}")
    return frame


def _fit(img: np.ndarray, width: int, height: int) -> np.ndarray:
    return cv2.resize(img, (width, height), interpolation=cv2.INTER_AREA if img.shape[1] > width else cv2.INTER_NEAREST)


def _text(canvas: np.ndarray, text: str, x: int, y: int, scale: float = 0.5) -> None:
    cv2.putText(canvas, text, (x, y), _FONT, scale, _TEXT, 1, cv2.LINE_AA)


def contact_sheet(scene: Scene, hdr_linear: np.ndarray, caption: Sequence[str] = (), panel_width: int = 300) -> np.ndarray:
    """The sheet as a uint8 RGB image: five panels of `panel_width` (height in the scene's aspect) and the caption
    lines under them, wrapped to the sheet's width."""
    hdr = np.asarray(hdr_linear, dtype=np.float32)
    if hdr.shape != (scene.height, scene.width, 3):
        raise ValueError(f"HDR is {list(hdr.shape)}, expected [{scene.height}, {scene.width}, 3] for {scene.name}")
    panel_h = max(1, round(panel_width * scene.height / scene.width))
    panels: list[Optional[np.ndarray]] = [_display(f) for f in scene.ldrs]
    panels.append(hdr_math.tonemap_preview(hdr))
    gt = scene.gt_linear
    panels.append(None if gt is None else hdr_math.tonemap_preview(gt))
    width = len(panels) * panel_width + (len(panels) + 1) * _MARGIN
    chars = max(20, int((width - 2 * _MARGIN) / 8.5))  # Hershey simplex at scale 0.5: ~8.5 px per character
    lines = [part for line in caption for part in (textwrap.wrap(line, chars) or [""])]
    height = _TITLE_H + panel_h + 2 * _MARGIN + len(lines) * _LINE_H + (_MARGIN if lines else 0)
    sheet = np.full((height, width, 3), _BACKGROUND, np.uint8)
    for i, (title, panel) in enumerate(zip(PANEL_TITLES, panels)):
        x = _MARGIN + i * (panel_width + _MARGIN)
        _text(sheet, title, x, _TITLE_H - 8)
        if panel is None:
            sheet[_TITLE_H:_TITLE_H + panel_h, x:x + panel_width] = 60
            _text(sheet, "(no ground truth)", x + 8, _TITLE_H + panel_h // 2)
        else:
            sheet[_TITLE_H:_TITLE_H + panel_h, x:x + panel_width] = _fit(panel, panel_width, panel_h)
    y = _TITLE_H + panel_h + _MARGIN + _LINE_H - 6
    for line in lines:
        _text(sheet, line, _MARGIN, y)
        y += _LINE_H
    return sheet


def write_contact_sheet(path: str | Path, scene: Scene, hdr_linear: np.ndarray, caption: Sequence[str] = (),
                        panel_width: int = 300) -> Path:
    """Write the sheet as an 8-bit PNG; returns the path."""
    return hdr_io.write_png8(Path(path), contact_sheet(scene, hdr_linear, caption, panel_width))
