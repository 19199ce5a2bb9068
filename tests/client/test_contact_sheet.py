"""The demo's contact sheet: the three inputs, the output and the ground truth side by side, with a caption."""
import secrets

import cv2
import numpy as np
import pytest

from client import hdr_io, hdr_math
from client.contact_sheet import PANEL_TITLES, contact_sheet, write_contact_sheet
from client.scenes import Scene
from client.synthetic import make_scene

WIDTH = 120


def panel(sheet, i, scene):
    h = round(WIDTH * scene.height / scene.width)
    x = 8 + i * (WIDTH + 8)
    return sheet[26:26 + h, x:x + WIDTH]


def test_panels_show_the_inputs_output_and_ground_truth_and_the_caption_is_drawn(tmp_path):
    scene = make_scene(60, 90, seed=secrets.randbits(31))
    hdr = (scene.gt_linear * 0.5).astype(np.float32)
    sheet = contact_sheet(scene, hdr, ["weights: SEEDED RANDOM WEIGHTS (seed 0)", "PSNR-mu 3.1 dB"], WIDTH)
    assert sheet.dtype == np.uint8 and sheet.shape[1] == len(PANEL_TITLES) * (WIDTH + 8) + 8
    for i in range(3):  # the exposures, resized as decoded
        want = cv2.resize(scene.ldrs[i], (WIDTH, 80), interpolation=cv2.INTER_NEAREST)
        np.testing.assert_array_equal(panel(sheet, i, scene), want)
    want_out = cv2.resize(hdr_math.tonemap_preview(hdr), (WIDTH, 80), interpolation=cv2.INTER_NEAREST)
    np.testing.assert_array_equal(panel(sheet, 3, scene), want_out)
    # the output is half the ground truth: each panel has its own normalisation, so they look alike
    assert np.abs(panel(sheet, 3, scene).astype(int) - panel(sheet, 4, scene)).mean() < 2
    caption = sheet[26 + 80 + 8:]
    assert caption.shape[0] >= 2 * 20 and (caption > 100).sum() > 200  # two lines of light text
    path = write_contact_sheet(tmp_path / "sheet.png", scene, hdr, ["x"], WIDTH)
    np.testing.assert_array_equal(hdr_io.read_ldr_raw(path)[0], contact_sheet(scene, hdr, ["x"], WIDTH))  # lossless


def test_sixteen_bit_frames_and_scenes_without_ground_truth():
    rng = np.random.default_rng(secrets.randbits(31))
    u16 = rng.integers(0, 65536, (3, 40, 30, 3), dtype=np.uint16)
    scene = Scene("sixteen", u16, np.array([-2.0, 0.0, 2.0]), 16)
    sheet = contact_sheet(scene, np.ones((40, 30, 3), np.float32), [], 30)
    np.testing.assert_array_equal(panel_of(sheet, 0, 30, 40), (u16[0] >> 8).astype(np.uint8))
    assert (panel_of(sheet, 4, 30, 40) == 60).mean() > 0.5  # placeholder panel


def panel_of(sheet, i, width, height):
    x = 8 + i * (width + 8)
    return sheet[26:26 + height, x:x + width]


def test_a_wrong_output_shape_is_refused():
    scene = make_scene(16, 24, seed=1)
    with pytest.raises(ValueError, match=r"expected \[16, 24, 3\]"):
        contact_sheet(scene, np.zeros((16, 25, 3), np.float32))
