"""Tiled inference for scenes of any size, in pure numpy (no torch): plan, crop, blend, merge.

ADNet is fully convolutional (no global pooling or normalisation), so a crop of a scene gives the same output as
the whole frame away from the crop's borders; near them it differs. A scene is therefore cut into overlapping
tiles of ONE shape (so that Triton's dynamic batcher and the TensorRT profile can batch them), each tile is
inferred, and the outputs are blended with feathered weights: a linear ramp across each overlap, normalised so that
the weights of the tiles covering a pixel sum to one. Every output pixel is thus a convex combination of the tile
outputs covering it, and its error against the whole-frame output is at most the largest error of those tiles.

- `plan_tiles(H, W, tile, overlap)`: where the tiles lie. Tile starts are multiples of `ALIGN` (4, the network's
  downsampling factor, so that a tile sees the same pyramid grid as the whole frame) except the last one of a row
  or column, which ends at the border. A scene smaller than the tile is one tile: the scene.
- `TilePlan.weight(i)`: the blending weights of tile i; `TilePlan.batches(n)`: tile indices in batches.
- `Merger`: accumulates weighted tile outputs into one preallocated float32 [H, W, C] array, so that merging holds
  the output plus one batch of tiles, whatever the scene size.
- `infer_tiled(ldrs, evs, infer_batch, ...)`: the whole loop around a callable
  `infer_batch(ldr_batch [b, 3, th, tw, 3], ev_batch [b, 3]) -> hdr_batch [b, th, tw, 3]`, with up to `in_flight`
  batches in flight; used by the client (client/infer.py) and by the CPU model (model_repository/cpu/adnet/1).

Defaults: `DEFAULT_OVERLAP` = 32 pixels (benchmarks/tiling.py measures tiled against whole-frame output);
`DEFAULT_TILE` = 1080 x 1920, the GPU engine's largest profile shape (export/profiles.py DEFAULT_PROFILE.max, batch
2 = max_batch_size; tests/client/test_tiling.py checks they agree): a scene up to that size goes whole, a larger one
in batches of two such tiles. A model that declares `tile_max_pixels` in its config (the CPU model, whose memory
grows with the pixels of one ONNX Runtime run) gets tiles of `tile_for_pixels(tile_max_pixels)` instead
(`client_tile()`), so that the server runs them as they come.
"""
from __future__ import annotations

import math
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Iterator, Optional, Sequence

import numpy as np

from . import contract

__all__ = ["ALIGN", "DEFAULT_TILE", "DEFAULT_OVERLAP", "MAX_SCENE_SIDE", "TILES_IN_FLIGHT", "TilePlan", "TilingError",
           "plan_tiles", "tile_for_pixels", "client_tile", "Merger", "iter_tile_batches", "infer_tiled"]

ALIGN = 4                 # tile starts are multiples of the network's total downsampling (2 x stride-2 levels)
DEFAULT_TILE = (1080, 1920)
DEFAULT_OVERLAP = 32
TILES_IN_FLIGHT = 2       # client requests in flight per scene: one computing while the next one travels
# Client-side scene limit: the client holds the decoded frames and the float32 output (8192 x 8192: 0.6 GB of
# uint8 frames + 0.8 GB of output); tiles keep the server's memory independent of the scene size.
MAX_SCENE_SIDE = 16384


class TilingError(ValueError):
    """A tiling request that cannot be planned; the message says which value to change."""


def _axis_starts(length: int, tile: int, overlap: int) -> tuple[int, ...]:
    """Starts of tiles of `tile` pixels covering [0, length) with neighbours overlapping by >= `overlap`."""
    if length <= tile:
        return (0,)
    last = length - tile
    n = math.ceil(last / (tile - overlap)) + 1
    while True:  # rounding the starts down to ALIGN may widen a gap beyond tile - overlap: then one tile more
        starts = sorted({int(round(i * last / (n - 1))) // ALIGN * ALIGN for i in range(n - 1)} | {last})
        if all(b - a <= tile - overlap for a, b in zip(starts, starts[1:])):
            return tuple(starts)
        n += 1


def _axis_weights(length: int, tile: int, overlap: int, starts: Sequence[int]) -> list[np.ndarray]:
    """Per-tile 1-D weights along one axis: linear ramps of `overlap` pixels at inner tile edges, normalised so
    that the weights covering each position sum to one (float64)."""
    n = len(starts)
    pos = np.arange(tile) + 0.5
    ramps = []
    for i, _ in enumerate(starts):
        lead = pos / overlap if (i > 0 and overlap > 0) else np.ones(tile)
        trail = (tile - pos) / overlap if (i < n - 1 and overlap > 0) else np.ones(tile)
        ramps.append(np.clip(np.minimum(lead, trail), 0.0, 1.0))
    total = np.zeros(length)
    for s, r in zip(starts, ramps):
        total[s:s + tile] += r
    return [r / total[s:s + tile] for s, r in zip(starts, ramps)]


@dataclass(frozen=True)
class TilePlan:
    """Tiles of one shape (tile_h x tile_w) covering an H x W scene: tile i = (row i // cols, column i % cols)."""

    height: int
    width: int
    tile_h: int
    tile_w: int
    overlap: int
    ys: tuple[int, ...]
    xs: tuple[int, ...]

    def __len__(self) -> int:
        return len(self.ys) * len(self.xs)

    @property
    def tile_shape(self) -> tuple[int, int]:
        return self.tile_h, self.tile_w

    def origin(self, index: int) -> tuple[int, int]:
        """Top-left (y, x) of tile `index`."""
        if not 0 <= index < len(self):
            raise IndexError(f"tile {index} out of range: the plan has {len(self)} tiles")
        return self.ys[index // len(self.xs)], self.xs[index % len(self.xs)]

    def window(self, index: int) -> tuple[slice, slice]:
        """(rows, columns) of tile `index` in the scene."""
        y, x = self.origin(index)
        return slice(y, y + self.tile_h), slice(x, x + self.tile_w)

    def weight(self, index: int) -> np.ndarray:
        """Blending weights of tile `index`, float32 [tile_h, tile_w]; over all tiles they sum to one per pixel."""
        wy, wx = self._weights()
        row, col = divmod(index, len(self.xs))
        return np.outer(wy[row], wx[col]).astype(np.float32)

    def _weights(self):
        # Cached on the frozen instance: a few kB per axis.
        cached = self.__dict__.get("_cache")
        if cached is None:
            cached = (_axis_weights(self.height, self.tile_h, self.overlap, self.ys),
                      _axis_weights(self.width, self.tile_w, self.overlap, self.xs))
            object.__setattr__(self, "_cache", cached)
        return cached

    def batches(self, batch_size: int) -> Iterator[list[int]]:
        """Tile indices in batches of at most `batch_size`, in row-major order."""
        if batch_size < 1:
            raise TilingError(f"batch size must be at least 1, got {batch_size}")
        indices = list(range(len(self)))
        for start in range(0, len(indices), batch_size):
            yield indices[start:start + batch_size]


def plan_tiles(height: int, width: int, tile: Sequence[int] = DEFAULT_TILE,
               overlap: int = DEFAULT_OVERLAP) -> TilePlan:
    """Plan tiles of one shape covering an H x W scene; see the module docstring. Allocates nothing per pixel."""
    height, width = int(height), int(width)
    tile_h, tile_w = (int(t) for t in tile)
    overlap = int(overlap)
    if height < 1 or width < 1:
        raise TilingError(f"scene of {height}x{width} pixels: both sides must be at least 1")
    if max(height, width) > MAX_SCENE_SIDE:
        raise TilingError(f"scene of {height}x{width} pixels: sides up to {MAX_SCENE_SIDE} are supported (the "
                          "client holds the whole output in memory); downscale or split the scene")
    if overlap < 0:
        raise TilingError(f"overlap must be >= 0 pixels, got {overlap}")
    for name, t, length in (("height", tile_h, height), ("width", tile_w, width)):
        if t < 1:
            raise TilingError(f"tile {name} must be at least 1 pixel, got {t}")
        # Only an axis longer than the tile is cut. Its tiles need a stride of at least ALIGN after rounding, so
        # that planning terminates and no pixel lies in more than two tiles of a row or column.
        if length > t and (t % ALIGN or t < 2 * overlap + 2 * ALIGN):
            raise TilingError(f"tile {name} {t} must be a multiple of {ALIGN} and at least 2 * overlap + "
                              f"{2 * ALIGN} = {2 * overlap + 2 * ALIGN}; pick a larger tile or a smaller overlap")
    th, tw = min(tile_h, height), min(tile_w, width)
    return TilePlan(height, width, th, tw, overlap, _axis_starts(height, th, overlap),
                    _axis_starts(width, tw, overlap))


def tile_for_pixels(max_pixels: int, height: int, width: int) -> tuple[int, int]:
    """The largest tile of at most `max_pixels` pixels for an H x W scene, sides multiples of ALIGN and at most
    the contract's MAX_SIDE: square, unless the scene is thinner than that square, in which case the tile spans
    the thin side (rounded up to ALIGN) and is as long as the pixel budget allows."""
    max_pixels = int(max_pixels)
    side = max(ALIGN, math.isqrt(max_pixels) // ALIGN * ALIGN)

    def spanning(thin: int) -> tuple[int, int]:
        thin = -(-thin // ALIGN) * ALIGN
        return thin, min(contract.MAX_SIDE, max(side, max_pixels // thin // ALIGN * ALIGN))

    if height < side:
        return spanning(height)
    if width < side:
        return spanning(width)[::-1]
    return side, side


def client_tile(height: int, width: int, tile_max_pixels: Optional[int] = None) -> Optional[tuple[int, int]]:
    """The tile a client should cut an H x W scene into for a model, or None when the scene goes in one request.

    A model with `tile_max_pixels` (its config parameter) gets scenes above that many pixels in tiles of
    `tile_for_pixels(tile_max_pixels)`; any other model (the GPU engine) scenes larger than DEFAULT_TILE."""
    if tile_max_pixels:
        if height * width <= tile_max_pixels and max(height, width) <= contract.MAX_SIDE:
            return None
        return tile_for_pixels(tile_max_pixels, height, width)
    if height <= DEFAULT_TILE[0] and width <= DEFAULT_TILE[1]:
        return None
    return DEFAULT_TILE


class Merger:
    """Blends tile outputs ([b, tile_h, tile_w, C]) into a preallocated float32 [H, W, C] array."""

    def __init__(self, plan: TilePlan, channels: int = 3, out: Optional[np.ndarray] = None):
        shape = (plan.height, plan.width, channels)
        if out is None:
            out = np.zeros(shape, np.float32)
        elif out.shape != shape or out.dtype != np.float32:
            raise TilingError(f"output buffer must be float32 {list(shape)}, got {out.dtype} {list(out.shape)}")
        else:
            out[...] = 0
        self.plan, self.out = plan, out
        self._done = np.zeros(len(plan), bool)

    def add(self, indices: Sequence[int], outputs: np.ndarray) -> None:
        want = (len(indices), self.plan.tile_h, self.plan.tile_w, self.out.shape[2])
        if tuple(outputs.shape) != want:
            raise TilingError(f"tile outputs must be {list(want)}, got {list(outputs.shape)}")
        for index, tile in zip(indices, outputs):
            if self._done[index]:
                raise TilingError(f"tile {index} was merged twice")
            rows, cols = self.plan.window(index)
            self.out[rows, cols] += tile * self.plan.weight(index)[..., None]
            self._done[index] = True

    @property
    def complete(self) -> bool:
        return bool(self._done.all())

    def result(self) -> np.ndarray:
        if not self.complete:
            raise TilingError(f"{int((~self._done).sum())} of {len(self.plan)} tiles were never merged")
        return self.out


def iter_tile_batches(frames: np.ndarray, plan: TilePlan, batch_size: int,
                      axes: tuple[int, int] = (1, 2)) -> Iterator[tuple[list[int], np.ndarray]]:
    """(indices, crops) per batch: crops stacked on a new first axis, copied (contiguous), from `frames` whose
    `axes` are H and W (default [3, H, W, 3] frames -> [b, 3, tile_h, tile_w, 3])."""
    if (frames.shape[axes[0]], frames.shape[axes[1]]) != (plan.height, plan.width):
        raise TilingError(f"frames of shape {list(frames.shape)} do not match the plan's "
                          f"{plan.height}x{plan.width} scene")
    for indices in plan.batches(batch_size):
        crops = []
        for index in indices:
            window = [slice(None)] * frames.ndim
            window[axes[0]], window[axes[1]] = plan.window(index)
            crops.append(frames[tuple(window)])
        yield indices, np.stack(crops)


def infer_tiled(ldrs: np.ndarray, evs: np.ndarray,
                infer_batch: Callable[[np.ndarray, np.ndarray], np.ndarray], *,
                tile: Sequence[int] = DEFAULT_TILE, overlap: int = DEFAULT_OVERLAP, batch_size: int = 1,
                in_flight: int = 1, plan: Optional[TilePlan] = None, out: Optional[np.ndarray] = None,
                stop: Optional[Callable[[], bool]] = None) -> np.ndarray:
    """HDR [H, W, 3] float32 of one scene (frames `ldrs` [3, H, W, 3], stops `evs` [3]) from tiles.

    `infer_batch(ldr_batch, ev_batch)` gets up to `batch_size` tiles of one shape ([b, 3, th, tw, 3], and the
    scene's EVs repeated [b, 3]) and returns [b, th, tw, 3]; with `in_flight` > 1 it is called from that many
    threads at once (several requests in flight). `stop()`, checked between batches, aborts with TilingError
    (the CPU model passes the request's cancellation).
    """
    if ldrs.ndim != 4:
        raise TilingError(f"frames must be [3, H, W, 3], got {list(ldrs.shape)}")
    if in_flight < 1:
        raise TilingError(f"in_flight must be at least 1, got {in_flight}")
    plan = plan or plan_tiles(ldrs.shape[1], ldrs.shape[2], tile, overlap)
    merger = Merger(plan, out=out)
    evs = np.asarray(evs, np.float32).reshape(1, -1)

    def run(indices, crops):
        hdr = np.asarray(infer_batch(crops, np.repeat(evs, len(indices), axis=0)))
        return indices, hdr

    def check_stop():
        if stop is not None and stop():
            raise TilingError(f"stopped after {int(merger._done.sum())} of {len(plan)} tiles")

    if in_flight == 1:
        for indices, crops in iter_tile_batches(ldrs, plan, batch_size):
            check_stop()
            merger.add(*run(indices, crops))
        return merger.result()
    # Futures are merged in submission order (a deterministic sum); at most `in_flight` batches are held.
    with ThreadPoolExecutor(max_workers=in_flight, thread_name_prefix="adnet-tile") as pool:
        pending = deque()
        try:
            for indices, crops in iter_tile_batches(ldrs, plan, batch_size):
                check_stop()
                if len(pending) >= in_flight:
                    merger.add(*pending.popleft().result())
                pending.append(pool.submit(run, indices, crops))
            while pending:
                merger.add(*pending.popleft().result())
        finally:
            for future in pending:
                future.cancel()
    return merger.result()
