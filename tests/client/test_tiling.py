"""client/tiling.py: tile plans of one shape, blending weights that sum to one, merging, and the tiled loop,
against independent references (float64 loops over the plan, a whole-frame "model" applied once)."""
import secrets
import threading
import tracemalloc

import numpy as np
import pytest

from client import contract, tiling
from client.tiling import ALIGN, Merger, TilingError, infer_tiled, plan_tiles, tile_for_pixels


def rng():
    seed = secrets.randbits(32)
    print(f"seed {seed}")
    return np.random.default_rng(seed)


def scene(h, w, gen=None):
    gen = gen or rng()
    return gen.random((3, h, w, 3), dtype=np.float32), gen.uniform(-3, 3, 3).astype(np.float32)


def weight_sum(plan):
    """Sum of every tile's weights per pixel, accumulated in float64 with one loop over the tiles."""
    total = np.zeros((plan.height, plan.width))
    for i in range(len(plan)):
        rows, cols = plan.window(i)
        total[rows, cols] += plan.weight(i)
    return total


def check_plan(plan, h, w):
    assert (plan.height, plan.width) == (h, w)
    assert plan.tile_h <= h and plan.tile_w <= w
    cover = np.zeros((h, w), int)
    for i in range(len(plan)):
        y, x = plan.origin(i)
        assert 0 <= y <= h - plan.tile_h and 0 <= x <= w - plan.tile_w
        rows, cols = plan.window(i)
        cover[rows, cols] += 1
    assert cover.min() >= 1, "a pixel is in no tile"
    # Starts are aligned to the network's downsampling, except the last of each axis (it ends at the border).
    assert all(y % ALIGN == 0 for y in plan.ys[:-1]) and all(x % ALIGN == 0 for x in plan.xs[:-1])
    assert plan.ys[-1] + plan.tile_h == h and plan.xs[-1] + plan.tile_w == w
    # Neighbours overlap by at least the requested overlap.
    for starts, t in ((plan.ys, plan.tile_h), (plan.xs, plan.tile_w)):
        for a, b in zip(starts, starts[1:]):
            assert a + t - b >= plan.overlap


@pytest.mark.parametrize("h, w, tile, overlap", [
    (37, 53, (64, 64), 16),          # scene smaller than the tile: one tile, the scene
    (64, 64, (64, 64), 16),          # scene exactly one tile
    (112, 208, (64, 64), 16),        # exact multiples: 112 = 2 * 48 + 16, 208 = 4 * 48 + 16
    (1001, 777, (256, 320), 32),     # odd sizes
    (300, 50, (128, 128), 32),       # width < tile: one column
    (8, 4096, (64, 512), 24),        # a strip
    (129, 131, (40, 40), 0),         # no overlap
])
def test_plans_cover_the_scene_with_one_tile_shape_and_weights_sum_to_one(h, w, tile, overlap):
    plan = plan_tiles(h, w, tile, overlap)
    check_plan(plan, h, w)
    assert (plan.tile_h, plan.tile_w) == (min(tile[0], h), min(tile[1], w))
    total = weight_sum(plan)
    np.testing.assert_allclose(total, 1.0, rtol=0, atol=1e-6)
    assert all(plan.weight(i).min() > 0 for i in range(len(plan)))


def test_scene_smaller_than_a_tile_is_one_tile_with_weight_one():
    plan = plan_tiles(37, 53, (64, 64), 16)
    assert len(plan) == 1 and plan.tile_shape == (37, 53) and plan.origin(0) == (0, 0)
    assert np.all(plan.weight(0) == 1.0)


def test_exact_overlap_gives_a_linear_ramp():
    # 2 tiles of 64 with 16 pixels in common: in the overlap the first tile's weight falls linearly 1 -> 0.
    plan = plan_tiles(8, 112, (64, 64), 16)
    assert plan.xs == (0, 48)
    first, second = plan.weight(0)[0], plan.weight(1)[0]
    k = np.arange(16)
    np.testing.assert_allclose(first[48:], 1 - (k + 0.5) / 16, atol=1e-7)
    np.testing.assert_allclose(second[:16], (k + 0.5) / 16, atol=1e-7)
    assert np.all(first[:48] == 1) and np.all(second[16:] == 1)


def test_planning_8192_squared_allocates_no_image():
    tracemalloc.start()
    try:
        plan = plan_tiles(8192, 8192)  # defaults
        ys_weights = plan._weights()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2 * 2**20, f"planning took {peak} bytes"  # one 8192x8192x3 float32 image is 805 MB
    assert plan.tile_shape == tiling.DEFAULT_TILE
    # Coverage and weights per axis (the 2-D weights are their outer products).
    for length, tile, starts, weights in ((8192, plan.tile_h, plan.ys, ys_weights[0]),
                                          (8192, plan.tile_w, plan.xs, ys_weights[1])):
        total = np.zeros(length)
        for s, wgt in zip(starts, weights):
            total[s:s + tile] += wgt
        np.testing.assert_allclose(total, 1.0, atol=1e-12)
        assert starts[-1] + tile == length
    assert len(plan) == len(plan.ys) * len(plan.xs) > 1


@pytest.mark.parametrize("h, w, tile, overlap", [(233, 301, (64, 96), 16), (40, 40, (64, 64), 8),
                                                 (160, 100, (64, 64), 16), (99, 257, (32, 48), 0)])
def test_identity_model_reproduces_the_input(h, w, tile, overlap):
    ldrs, evs = scene(h, w)
    shapes = set()

    def medium_frame(ldr, ev):
        shapes.add(ldr.shape[1:])
        assert ldr.shape[0] <= 3 and ev.shape == (ldr.shape[0], 3)
        return ldr[:, 1].copy()

    out = infer_tiled(ldrs, evs, medium_frame, tile=tile, overlap=overlap, batch_size=3)
    assert out.dtype == np.float32 and out.shape == (h, w, 3)
    assert len(shapes) == 1, f"tiles of several shapes: {shapes}"
    # Weights sum to one up to float32 rounding of w_a * x + w_b * x.
    np.testing.assert_allclose(out, ldrs[1], rtol=0, atol=4e-7)


def box_blur(img, r):
    """Mean over a (2r+1)^2 window with edge replication, by explicit shifts (the whole-frame reference)."""
    h, w = img.shape[:2]
    padded = np.pad(img.astype(np.float64), ((r, r), (r, r), (0, 0)), mode="edge")
    acc = np.zeros(img.shape, np.float64)
    for dy in range(2 * r + 1):
        for dx in range(2 * r + 1):
            acc += padded[dy:dy + h, dx:dx + w]
    return acc / (2 * r + 1) ** 2


def test_a_local_model_is_exact_away_from_seams_and_bounded_by_its_tiles_near_them():
    r = 3
    h, w, tile, overlap = 250, 190, (80, 64), 16
    ldrs, evs = scene(h, w)
    gain = 2.0 ** -evs  # the model also uses the EVs: a per-frame gain

    def model(ldr, ev):
        mixed = np.einsum("bkhwc,bk->bhwc", ldr.astype(np.float64), 2.0 ** -ev.astype(np.float64))
        return np.stack([box_blur(m, r) for m in mixed]).astype(np.float32)

    whole = box_blur(np.einsum("khwc,k->hwc", ldrs.astype(np.float64), gain.astype(np.float64)), r)
    out = infer_tiled(ldrs, evs, model, tile=tile, overlap=overlap, batch_size=2)
    plan = plan_tiles(h, w, tile, overlap)
    # Pixels at least r away from every inner tile edge see the same window as in the whole frame.
    seam = np.zeros((h, w), bool)
    for starts, t, axis in ((plan.ys, plan.tile_h, 0), (plan.xs, plan.tile_w, 1)):
        for s in starts:
            for edge in (s, s + t):
                if 0 < edge < (h, w)[axis]:
                    sl = slice(max(edge - r, 0), edge + r)
                    if axis == 0:
                        seam[sl, :] = True
                    else:
                        seam[:, sl] = True
    err = np.abs(out - whole)
    assert err[~seam].max() <= 1e-5 * np.abs(whole).max()
    assert err[seam].max() > 1e-4, "the seams should show the tiles' edge effects (else the test checks nothing)"
    # Each output pixel is a convex combination of the tiles covering it: its error is at most theirs.
    bound = np.zeros((h, w))
    for i in range(len(plan)):
        rows, cols = plan.window(i)
        y, x = plan.origin(i)
        crop = ldrs[:, rows, cols]
        tile_out = model(crop[None], evs[None])[0]
        bound[rows, cols] = np.maximum(bound[rows, cols], np.abs(tile_out - whole[rows, cols]).max(-1))
    assert np.all(err.max(-1) <= bound + 1e-5 * np.abs(whole).max())


def test_several_batches_in_flight_give_the_same_output():
    h, w = 300, 260
    ldrs, evs = scene(h, w)
    weights = rng().random(3).astype(np.float32)
    active, most = [0], [0]
    lock = threading.Lock()

    def model(ldr, ev):
        with lock:
            active[0] += 1
            most[0] = max(most[0], active[0])
        try:
            threading.Event().wait(0.01)  # let other threads start their batch
            return np.einsum("bkhwc,k->bhwc", ldr, weights)
        finally:
            with lock:
                active[0] -= 1

    kw = dict(tile=(96, 96), overlap=16, batch_size=2)
    one = infer_tiled(ldrs, evs, model, in_flight=1, **kw)
    four = infer_tiled(ldrs, evs, model, in_flight=4, **kw)
    assert np.array_equal(one, four)  # merged in submission order
    assert 1 < most[0] <= 4
    np.testing.assert_allclose(one, np.einsum("khwc,k->hwc", ldrs, weights), atol=2e-6)


def test_stop_aborts_between_batches():
    ldrs, evs = scene(200, 200)
    calls = []

    def model(ldr, ev):
        calls.append(1)
        return ldr[:, 0]

    with pytest.raises(TilingError, match="stopped after 2 of"):
        infer_tiled(ldrs, evs, model, tile=(64, 64), overlap=8, stop=lambda: len(calls) >= 2)
    assert len(calls) == 2


@pytest.mark.parametrize("kwargs, match", [
    (dict(height=100, width=100, tile=(64, 64), overlap=-1), "overlap must be >= 0"),
    (dict(height=100, width=100, tile=(62, 64), overlap=8), "multiple of 4"),
    (dict(height=100, width=100, tile=(64, 64), overlap=30), "at least 2 \\* overlap"),
    (dict(height=0, width=100), "at least 1"),
    (dict(height=tiling.MAX_SCENE_SIDE + 1, width=8), "sides up to"),
    (dict(height=100, width=100, tile=(0, 64)), "at least 1 pixel"),
])
def test_bad_plans_are_refused_with_the_fix(kwargs, match):
    with pytest.raises(TilingError, match=match):
        plan_tiles(**kwargs)


def test_merger_refuses_wrong_shapes_duplicates_and_missing_tiles():
    plan = plan_tiles(100, 100, (64, 64), 8)
    merger = Merger(plan)
    with pytest.raises(TilingError, match="must be"):
        merger.add([0], np.zeros((1, 64, 60, 3), np.float32))
    merger.add([0], np.zeros((1, 64, 64, 3), np.float32))
    with pytest.raises(TilingError, match="twice"):
        merger.add([0], np.zeros((1, 64, 64, 3), np.float32))
    with pytest.raises(TilingError, match="never merged"):
        merger.result()
    with pytest.raises(TilingError, match="float32"):
        Merger(plan, out=np.zeros((100, 100, 3), np.float64))


def test_merger_writes_into_the_given_buffer():
    ldrs, evs = scene(90, 70)
    out = np.full((90, 70, 3), np.nan, np.float32)
    got = infer_tiled(ldrs, evs, lambda l, e: l[:, 2], tile=(48, 48), overlap=8, out=out)
    assert got is out
    np.testing.assert_allclose(out, ldrs[2], atol=4e-7)


@pytest.mark.parametrize("budget, h, w", [(131072, 600, 800), (131072, 64, 8192), (131072, 8192, 30),
                                          (262144, 5000, 5000), (1000, 10, 10), (131072, 3, 100000)])
def test_tile_for_pixels_stays_within_the_budget_and_the_contract(budget, h, w):
    th, tw = tile_for_pixels(budget, h, w)
    assert th % ALIGN == 0 and tw % ALIGN == 0
    assert th * tw <= max(budget, ALIGN * ALIGN)
    assert max(th, tw) <= contract.MAX_SIDE
    if min(h, w) >= np.sqrt(budget):
        assert th == tw and (th + ALIGN) ** 2 > budget  # the largest aligned square


def test_the_default_tile_is_the_gpu_profiles_largest_shape():
    from export.profiles import DEFAULT_PROFILE

    assert tiling.DEFAULT_TILE == (DEFAULT_PROFILE.max.height, DEFAULT_PROFILE.max.width)
    assert all(t % ALIGN == 0 for t in tiling.DEFAULT_TILE)
    assert 2 * tiling.DEFAULT_OVERLAP + 2 * ALIGN <= min(tiling.DEFAULT_TILE)


@pytest.mark.parametrize("h, w, tile_max_pixels, expected", [
    (1060, 1900, None, None),                      # the NTIRE frame goes whole to the GPU engine
    (3000, 4000, None, tiling.DEFAULT_TILE),       # a 12 MP phone frame in GPU-profile tiles
    (1920, 1080, None, tiling.DEFAULT_TILE),       # portrait: the same tile shape, clamped by the plan
    (300, 400, 131072, None),                      # fits the CPU model's budget
    (600, 800, 131072, (360, 360)),
    (8, 5000, 131072, (8, contract.MAX_SIDE)),      # few pixels, but a side over the contract's MAX_SIDE
])
def test_client_tile(h, w, tile_max_pixels, expected):
    assert tiling.client_tile(h, w, tile_max_pixels) == expected


def test_8192_squared_in_default_tiles():
    plan = plan_tiles(8192, 8192, tiling.client_tile(8192, 8192))
    check_plan(plan, 8192, 8192)
    assert plan.tile_shape == tiling.DEFAULT_TILE
