"""`make demo`'s contact sheet: written for each scene the client wrote, captioned with what the weights are."""
import numpy as np

from client import hdr_io
from client.synthetic import make_scene, write_ntire_scene
from model_repository.demo import sheet_caption, write_sheets


def test_a_sheet_per_written_scene_with_the_weights_in_the_caption(tmp_path):
    scenes, out = tmp_path / "scenes", tmp_path / "out"
    for i, scene_id in enumerate(("0001", "0002")):
        write_ntire_scene(make_scene(24, 36, seed=i), scenes, scene_id)
    hdr_io.write_hdr(out / "0002.hdr", make_scene(24, 36, seed=1).gt_linear.astype(np.float32))  # 0001 failed
    sheets = write_sheets(str(scenes), str(out), "random, seed 0")
    assert [s.name for s in sheets] == ["0002_sheet.png"] and sheets[0].is_file()
    assert hdr_io.read_ldr_raw(sheets[0])[0].shape[1] > 5 * 36


def test_caption_says_what_the_weights_are_and_how_to_get_a_real_merge():
    metrics = {"convention": "ntire", "psnr_l": -6.6, "psnr_mu": 5.7}
    random = sheet_caption("random, seed 0", metrics)
    assert "SEEDED RANDOM WEIGHTS" in random[0] and "CKPT=" in random[1] and "PSNR-mu 5.70 dB" in random[2]
    trained = sheet_caption("checkpoint best.pth", None)
    assert trained == ["weights: checkpoint best.pth"]
