"""Synthetic scenes are the client's Scene, and making one needs numpy only (no OpenCV, no Triton client)."""
import subprocess
import sys

import numpy as np

from client.scenes import NTIRE, Scene
from client.synthetic import make_scene
import secrets


def test_make_scene_is_a_client_scene_with_ground_truth():
    scene = make_scene(18, 26, seed=secrets.randbits(31), name="s1")
    assert isinstance(scene, Scene) and scene.name == "s1" and scene.source == NTIRE and scene.bit_depth == 8
    assert scene.ldrs.shape == (3, 18, 26, 3) and scene.ldrs.dtype == np.uint8
    assert (scene.height, scene.width) == (18, 26)
    np.testing.assert_allclose(scene.gt_linear, scene.gt_gamma.astype(np.float64) ** 2.24, rtol=1e-12)


def test_synthetic_scenes_import_without_opencv_or_tritonclient():
    code = ("import sys; sys.modules['cv2'] = None; sys.modules['tritonclient'] = None\n"
            "from client.synthetic import make_scene\n"
            "print(type(make_scene(8, 8, seed=0)).__module__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "client.scenes"
