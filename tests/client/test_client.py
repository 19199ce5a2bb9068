"""The ADNet client (client/scenes, infer, outputs, CLI) against the real Triton server (CPU variant, random-weight
pipeline ONNX), with ONNX Runtime on the same graph as the independent reference."""
from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
import tomllib
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest

import client
from client import contract, hdr_io, hdr_math, tiling
from client.__main__ import main
from client.errors import ClientError, SceneError
from client.infer import HDRClient, PrecisionWarning, local_admin_token
from client.outputs import scene_metrics
from client.scenes import FILES, KALANTARI, NTIRE, Scene, find_scenes, load_scenes, scene_from_files
from client.synthetic import main as synthetic_main
from client.synthetic import make_scene, write_ntire_scene
from model_repository.server import free_port

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = Path(client.__file__).resolve().parent / "samples"
TOKEN = "client-test-token"


def fresh_seed() -> int:
    seed = secrets.randbits(31)
    print(f"random seed: {seed}")
    return seed


def run_ort(session, ldr, evs):
    feeds = {contract.INPUT_LDR: ldr[None], contract.INPUT_EV: np.asarray(evs, np.float32)[None]}
    return session.run(None, feeds)[0][0]


def assert_close(got, want, rel=1e-4):
    assert got.shape == want.shape and got.dtype == np.float32
    err = np.abs(got.astype(np.float64) - want).max() / np.abs(want).max()
    assert err <= rel, f"max error {err:.3g} of the peak"


@pytest.fixture(scope="module")
def ort_pipeline(graphs):
    import onnxruntime as ort

    return ort.InferenceSession(str(graphs.path("pipeline")), providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def sample():
    (scene,) = load_scenes(SAMPLES)
    return scene


@pytest.fixture(scope="module")
def sample_reference(ort_pipeline, sample):
    return run_ort(ort_pipeline, sample.ldrs, sample.evs)


@pytest.fixture
def url(triton_cpu):
    return triton_cpu.grpc_url


# -- against the server -----------------------------------------------------------------------------------------

def test_sample_scene_equals_onnxruntime(url, sample, sample_reference):
    assert sample.name == "0001" and sample.source == NTIRE and sample.bit_depth == 8
    assert sample.ldrs.shape == (3, 128, 192, 3) and sample.gt_gamma.shape == (128, 192, 3)
    with HDRClient(url) as hdr_client:
        info = hdr_client.wait_until_ready()
        assert info.ldr_dtype == np.uint8 and info.max_batch_size >= 1
        got = hdr_client.infer(sample)
    assert_close(got, sample_reference)


def test_eight_concurrent_requests_of_mixed_sizes(url, ort_pipeline):
    seed = fresh_seed()
    rng = np.random.default_rng(seed)
    # Four equal sizes first (the dynamic batcher merges them when they queue together), then odd sizes.
    sizes = [(32, 48)] * 4 + [(33, 50), (37, 45), (40, 64), (29, 43)]
    scenes = [make_scene(h, w, name=f"s{i}", seed=seed + i, evs=tuple(np.sort(rng.uniform(-4, 4, 3))))
              for i, (h, w) in enumerate(sizes)]
    with HDRClient(url) as hdr_client:
        results = list(hdr_client.infer_many(scenes, concurrency=8, progress=False))
        stats = hdr_client._client.get_inference_statistics(contract.MODEL_NAME, as_json=True)
    assert [r.name for r in results] == [s.name for s in scenes]
    for result, scene in zip(results, scenes):
        assert result.ok, result.error
        assert result.hdr.shape == (scene.height, scene.width, 3)
        assert_close(result.hdr, run_ort(ort_pipeline, scene.ldrs, scene.evs))
    print("batch stats:", [(b["batch_size"], b["compute_infer"]["count"])
                           for b in stats["model_stats"][0].get("batch_stats", [])])


def _our_segments():
    return list(Path("/dev/shm").glob(f"adnet_{os.getpid()}_*"))


def test_system_shared_memory_equals_plain_grpc(url):
    seed = fresh_seed()
    scenes = [make_scene(24 + 3 * i, 40 - i, name=f"m{i}", seed=seed + i) for i in range(4)]
    with HDRClient(url) as plain:
        want = [plain.infer(s) for s in scenes]
        with HDRClient(url, shm="system") as shm:
            assert np.array_equal(shm.infer(scenes[0]), want[0])
            got = list(shm.infer_many(scenes, concurrency=4, progress=False))  # a region per request in flight
            assert _our_segments()
        token, _ = local_admin_token(url)  # the shm status is restricted: the manager's token file
        regions = plain._client.get_system_shared_memory_status(
            headers={contract.GRPC_ADMIN_HEADER: token}, as_json=True).get("regions", {})
    for result, expected in zip(got, want):
        assert result.ok, result.error
        assert np.array_equal(result.hdr, expected)
    assert not [r for r in regions if r.startswith(f"adnet_{os.getpid()}_")] and not _our_segments()


def test_16_bit_frames_go_to_the_16_bit_twin_at_full_precision_without_a_warning(url, graphs):
    import onnxruntime as ort

    seed = fresh_seed()
    scene8 = make_scene(20, 28, name="eight", seed=seed)
    noise = np.random.default_rng(seed).integers(-128, 129, scene8.ldrs.shape)  # |noise| < 257/2: rounds back
    u16 = np.clip(scene8.ldrs.astype(np.int64) * 257 + noise, 0, 65535).astype(np.uint16)
    scene16 = Scene("sixteen", u16, scene8.evs, 16)
    with HDRClient(url) as hdr_client:
        assert hdr_client.model_for(scene16).name == contract.MODEL_NAME_16BIT
        assert hdr_client.model_for(scene8).name == contract.MODEL_NAME  # 8-bit sources keep the UINT8 wire
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no rounding warning, nor any other
            got16, got8 = hdr_client.infer(scene16), hdr_client.infer(scene8)
    session = ort.InferenceSession(str(graphs.path("pipeline_ldr16")), providers=["CPUExecutionProvider"])
    assert_close(got16, run_ort(session, (u16.astype(np.float32) / 65535).astype(np.float16), scene16.evs))
    assert not np.array_equal(got16, got8)  # the 16 bits reached the network: the 8-bit-rounded copy differs


def test_16_bit_frames_to_a_uint8_model_are_rounded_with_a_warning(url):
    seed = fresh_seed()
    scene8 = make_scene(20, 28, name="eight", seed=seed)
    noise = np.random.default_rng(seed).integers(-128, 129, scene8.ldrs.shape)  # |noise| < 257/2: rounds back
    u16 = np.clip(scene8.ldrs.astype(np.int64) * 257 + noise, 0, 65535).astype(np.uint16)
    scene16 = Scene("sixteen", u16, scene8.evs, 16)
    with HDRClient(url, model_16bit=None) as hdr_client:  # as against a server without the 16-bit twin
        with pytest.warns(PrecisionWarning, match="16-bit frames rounded to 8 bits"):
            got16 = hdr_client.infer(scene16)
        assert np.array_equal(got16, hdr_client.infer(scene8))


def test_cli_on_the_sample_folder(url, tmp_path, capsys, sample, sample_reference):
    out = tmp_path / "out"
    rc = main([str(SAMPLES), "--out", str(out), "--url", url, "--exr", "--ntire-png", "--no-progress"])
    stdout, stderr = capsys.readouterr()
    assert rc == 0, stderr
    names = ["0001.hdr", "0001.exr", "0001_preview.png", "0001.png", "0001_alignratio.npy", "metrics.json",
             "metrics.csv"]
    for name in names:
        assert (out / name).is_file() and str(out / name) in stdout, name
    exr = hdr_io.read_hdr(out / "0001.exr")
    assert_close(exr, sample_reference)
    rgbe = hdr_io.read_hdr(out / "0001.hdr")
    assert np.all(np.abs(rgbe - exr) <= 0.01 * exr.max(axis=2, keepdims=True) + 1e-30)  # RGBE: 8-bit mantissa
    ratio = float(np.load(out / "0001_alignratio.npy"))
    png = cv2.imread(str(out / "0001.png"), cv2.IMREAD_UNCHANGED)[..., ::-1]
    np.testing.assert_allclose(hdr_math.ntire_decode_u16(png, ratio), hdr_math.delinearize(exr), atol=0.51 / ratio)
    preview = cv2.imread(str(out / "0001_preview.png"))
    assert preview.shape == (128, 192, 3) and preview.dtype == np.uint8
    metrics = json.loads((out / "metrics.json").read_text())["scenes"]["0001"]
    expected = scene_metrics(sample, exr)
    assert metrics["convention"] == NTIRE
    assert metrics["psnr_l"] == pytest.approx(expected["psnr_l"], abs=1e-3)
    assert metrics["psnr_mu"] == pytest.approx(expected["psnr_mu"], abs=1e-3)


def _ntire_folder(folder, *ids, h=32, w=48):
    for scene_id in ids:
        write_ntire_scene(make_scene(h, w, seed=secrets.randbits(31)), folder, scene_id)
    return folder


def _write_image(path, rgb):
    assert cv2.imwrite(str(path), np.ascontiguousarray(rgb[..., ::-1]))


def _bad_missing_frame(d):
    (_ntire_folder(d, "0001") / "0001_long.png").unlink()
    return [str(d)], ["0001_long.png", "missing"]


def _bad_missing_input(d):
    return [str(d / "nowhere")], ["nowhere", "not found"]


def _bad_corrupt_png(d):
    frame = _ntire_folder(d, "0001") / "0001_medium.png"
    frame.write_bytes(frame.read_bytes()[:300])  # a truncated file, as from an interrupted copy
    return [str(d)], ["0001_medium.png", "cannot decode"]


def _bad_different_sizes(d):
    _write_image(_ntire_folder(d, "0001") / "0001_long.png", np.zeros((32, 40, 3), np.uint8))
    return [str(d)], ["different sizes", "0001_long.png 40x32"]


def _bad_different_bit_depths(d):
    _write_image(_ntire_folder(d, "0001") / "0001_short.png", np.zeros((32, 48, 3), np.uint16))
    return [str(d)], ["different bit depths", "16-bit"]


def _bad_nan_ev(d):
    np.save(_ntire_folder(d, "0001") / "0001_exposures.npy", np.array([-2.0, np.nan, 2.0]))
    return [str(d)], ["0001_exposures.npy", "finite"]


def _bad_missing_evs(d):
    (_ntire_folder(d, "0001") / "0001_exposures.npy").unlink()
    return [str(d)], ["0001_exposures.npy", "missing"]


def _bad_four_tiffs(d):
    d.mkdir()
    for name in "abcd":
        _write_image(d / f"{name}.tif", np.zeros((16, 16, 3), np.uint16))
    (d / "exposure.txt").write_text("0\n2\n4\n")
    return [str(d)], ["found 4 .tif frames", "exactly 3"]


def _bad_two_files(d):
    _ntire_folder(d, "0001")
    return [str(d / "0001_short.png"), str(d / "0001_medium.png"), "--ev", "-2", "0", "2"], \
        ["expected 3 image files", "got 2"]


def _bad_unknown_layout(d):
    d.mkdir()
    (d / "notes.txt").write_text("hello")
    _write_image(d / "photo.jpg", np.zeros((16, 16, 3), np.uint8))
    return [str(d)], ["unknown scene layout", "notes.txt", "photo.jpg", "expected one of"]


def _bad_too_small(d):
    _ntire_folder(d, "0001", h=6, w=6)
    return [str(d)], ["6x6", f"[{contract.MIN_SIDE}, {tiling.MAX_SCENE_SIDE}]"]


BAD_FILES = {f.__name__[5:]: f for f in (
    _bad_missing_frame, _bad_missing_input, _bad_corrupt_png, _bad_different_sizes, _bad_different_bit_depths,
    _bad_nan_ev, _bad_missing_evs, _bad_four_tiffs, _bad_two_files, _bad_unknown_layout, _bad_too_small)}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_cli_bad_files_exit_1_with_a_message(case, url, tmp_path, capsys):
    args, expected = BAD_FILES[case](tmp_path / "scene")
    out = tmp_path / "out"
    rc = main(args + ["--out", str(out), "--url", url, "--no-progress"])
    stderr = capsys.readouterr().err
    assert rc == 1, stderr
    for text in expected:
        assert text in stderr, (text, stderr)
    assert not list(out.glob("*.hdr"))


def test_cli_a_broken_scene_fails_alone(url, tmp_path, capsys):
    folder = _ntire_folder(tmp_path / "scenes", "0001", "0002", "0003")
    (folder / "0002_medium.png").write_bytes(b"not a png")
    rc = main([str(folder), "--out", str(tmp_path / "out"), "--url", url, "--no-progress", "--no-preview"])
    captured = capsys.readouterr()
    assert rc == 1
    assert "error: 0002" in captured.err and "0002_medium.png" in captured.err
    assert "error: 0001" not in captured.err and "error: 0003" not in captured.err
    assert sorted(p.name for p in (tmp_path / "out").glob("*.hdr")) == ["0001.hdr", "0003.hdr"]


@pytest.mark.parametrize("args, expected", [
    (["a.png", "b.png", "c.png"], "need their EV stops"),
    (["{samples}", "--ev", "-2", "0", "2"], "--ev applies to three image files"),
    (["{samples}", "{samples}"], "two scenes are named 0001"),
    (["{samples}", "--shm", "tcp"], "invalid choice"),
    (["{samples}", "--concurrency", "0"], "--concurrency must be >= 1"),
])
def test_cli_usage_errors_exit_2(args, expected, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name in ("a.png", "b.png", "c.png"):
        (tmp_path / name).write_bytes(b"")
    args = [a.format(samples=SAMPLES) for a in args]
    assert main(args + ["--out", str(tmp_path / "out"), "--url", "127.0.0.1:1"]) == 2
    assert expected in capsys.readouterr().err


def test_server_not_ready_fails_clearly_after_retries(tmp_path, capsys):
    port = free_port()  # nothing listens there
    start = time.monotonic()
    rc = main([str(SAMPLES), "--out", str(tmp_path), "--url", f"127.0.0.1:{port}", "--retries", "2", "--timeout", "20"])
    elapsed = time.monotonic() - start
    stderr = capsys.readouterr().err
    assert rc == 1
    assert f"server not ready at 127.0.0.1:{port}" in stderr and "make serve" in stderr and "3 attempt(s)" in stderr
    assert elapsed < 10, elapsed  # 0.5 + 1 s of backoff, not the 20 s timeout
    with HDRClient(f"127.0.0.1:{port}", timeout=1.0, retries=50) as hdr_client:  # the timeout bounds the retries
        start = time.monotonic()
        with pytest.raises(ClientError, match="server not ready"):
            hdr_client.wait_until_ready()
        assert time.monotonic() - start < 3


def test_model_missing_fails_clearly(url, tmp_path, capsys):
    rc = main([str(SAMPLES), "--out", str(tmp_path), "--url", url, "--model", "nosuch"])
    stderr = capsys.readouterr().err
    assert rc == 1
    assert "model nosuch missing on the server" in stderr and f"{contract.MODEL_NAME} (READY)" in stderr


@pytest.mark.slow
def test_a_killed_server_fails_clearly_after_retries_and_a_restarted_one_serves_again(graphs, tmp_path):
    import signal

    from model_repository.server import TritonServer, stage_cpu_repository

    repo = stage_cpu_repository(graphs.path("pipeline"), tmp_path)
    ports = dict(grpc_port=free_port(), http_port=free_port(), metrics_port=free_port())
    scene = make_scene(20, 24, name="restart", seed=fresh_seed())
    # Unsupervised (watchdog=False): the manager's watchdog would restart the killed server by itself.
    with TritonServer(repo, stage=tmp_path, watchdog=False, **ports) as server:
        hdr_client = HDRClient(server.grpc_url, retries=2, backoff=0.2, shm="system")
        want = hdr_client.infer(scene)
        os.killpg(server.process.pid, signal.SIGKILL)
        server.process.wait(10)
        with pytest.raises(ClientError, match="unavailable after 3 attempt"):
            hdr_client.infer(scene)
    with TritonServer(repo, stage=tmp_path, watchdog=False, **ports):
        # The new server (with a new token, found in its file) has forgotten the pooled shared-memory region: the client registers a fresh one.
        assert np.array_equal(hdr_client.infer(scene), want)
        hdr_client.close()
    assert not _our_segments()


# -- an FP16 model behind an admin token (a second server) ------------------------------------------------------

@pytest.fixture(scope="module")
def triton_fp16_with_token(graphs, tmp_path_factory):
    from model_repository.server import TritonServer, stage_cpu_repository

    stage = tmp_path_factory.mktemp("triton_fp16")
    repo = stage_cpu_repository(graphs.path("pipeline_ldr16"), stage)
    server = TritonServer(repo, grpc_port=free_port(), http_port=free_port(), metrics_port=free_port(), stage=stage,
                          admin_token=TOKEN)
    with server:
        yield server


@pytest.mark.slow
def test_fp16_model_gets_float16_and_shared_memory_needs_the_token(triton_fp16_with_token, graphs, tmp_path,
                                                                    capsys, monkeypatch):
    import onnxruntime as ort

    url = triton_fp16_with_token.grpc_url
    seed = fresh_seed()
    scene8 = make_scene(24, 30, name="eight", seed=seed)
    u16 = np.random.default_rng(seed).integers(0, 65536, scene8.ldrs.shape, dtype=np.uint16)
    scene16 = Scene("sixteen", u16, np.array([-3.0, -1.0, 1.0]), 16)
    with HDRClient(url) as hdr_client:
        assert hdr_client.wait_until_ready().ldr_dtype == np.float16
        with warnings.catch_warnings():
            warnings.simplefilter("error", PrecisionWarning)
            got8, got16 = hdr_client.infer(scene8), hdr_client.infer(scene16)
    session = ort.InferenceSession(str(graphs.path("pipeline_ldr16")), providers=["CPUExecutionProvider"])
    assert_close(got8, run_ort(session, (scene8.ldrs.astype(np.float32) / 255).astype(np.float16), scene8.evs))
    assert_close(got16, run_ort(session, (u16.astype(np.float32) / 65535).astype(np.float16), scene16.evs))

    # A client that cannot find the manager's token file (another user, another machine) and has no --admin-token:
    monkeypatch.setenv(contract.RUN_DIR_ENV, str(tmp_path / "not-the-servers-run-dir"))
    with HDRClient(url, shm="system", backoff=5.0) as no_token:
        start = time.monotonic()
        with pytest.raises(ClientError, match="--admin-token"):
            no_token.infer(scene8)
        assert time.monotonic() - start < 4  # refused for good, not retried after a 5 s backoff
    assert not _our_segments()
    with HDRClient(url, shm="system", admin_token=TOKEN) as with_token:
        assert np.array_equal(with_token.infer(scene8), got8)

    folder = tmp_path / "scene"
    write_ntire_scene(make_scene(24, 30, seed=seed), folder, "0001")
    assert main([str(folder), "--out", str(tmp_path / "a"), "--url", url, "--shm", "system"]) == 1
    assert "--admin-token" in capsys.readouterr().err
    assert main([str(folder), "--out", str(tmp_path / "b"), "--url", url, "--shm", "system",
                 "--admin-token", TOKEN]) == 0


# -- without a server -------------------------------------------------------------------------------------------

def test_ntire_layouts(tmp_path):
    seed = fresh_seed()
    many = tmp_path / "many"
    written = {}
    for i, scene_id in enumerate(("0002", "0001")):
        written[scene_id] = make_scene(16, 24, seed=seed + i)
        write_ntire_scene(written[scene_id], many, scene_id)
    scenes = load_scenes(many)
    assert [s.name for s in scenes] == ["0001", "0002"]
    for scene in scenes:
        syn = written[scene.name]
        assert scene.source == NTIRE and scene.bit_depth == 8 and scene.ldrs.dtype == np.uint8
        assert np.array_equal(scene.ldrs, syn.ldrs) and np.array_equal(scene.evs, syn.evs)
        np.testing.assert_allclose(scene.gt_gamma, syn.gt_gamma, atol=syn.gt_gamma.max() / 65535)

    for frame_names in (("short.png", "medium.png", "long.png"), ("0.png", "1.png", "2.png")):
        folder = tmp_path / frame_names[0][:-4]
        folder.mkdir()
        syn = written["0001"]
        for name, ldr in zip(frame_names, syn.ldrs):
            hdr_io.write_png8(folder / name, ldr)
        np.save(folder / "exposures.npy", syn.evs)
        hdr_io.write_ntire_gt(folder / "gt.png", folder / "alignratio.npy", syn.gt_gamma)
        (scene,) = load_scenes(folder)
        assert scene.name == folder.name and np.array_equal(scene.ldrs, syn.ldrs) and scene.gt_gamma is not None

    nested = find_scenes(tmp_path)  # a folder of scene folders
    assert sorted(s.name for s in nested) == ["0", "0001", "0002", "short"]


def test_kalantari_layout_and_metrics_convention(tmp_path):
    rng = np.random.default_rng(fresh_seed())
    frames = rng.integers(0, 65536, (3, 20, 28, 3), dtype=np.uint16)
    for name, frame in zip(("262A0898.tif", "262A0899.tif", "262A0900.tif"), frames):
        _write_image(tmp_path / name, frame)
    (tmp_path / "exposure.txt").write_text("0\n2\n4\n")
    gt = rng.uniform(0, 1, (20, 28, 3)).astype(np.float32)
    assert cv2.imwrite(str(tmp_path / "HDRImg.hdr"), gt[..., ::-1].copy())
    gt = hdr_io.read_hdr(tmp_path / "HDRImg.hdr")  # as stored: RGBE precision
    (scene,) = load_scenes(tmp_path)
    assert scene.source == KALANTARI and scene.name == tmp_path.name and scene.bit_depth == 16
    assert np.array_equal(scene.ldrs, frames) and scene.evs.tolist() == [0.0, 2.0, 4.0]
    np.testing.assert_allclose(scene.gt_linear, gt, rtol=1e-5, atol=1e-12)
    # The served radiance is in the medium frame's scale (EV 2 here), Kalantari's ground truth in EV 0's.
    served = gt * 2.0 ** scene.evs[1]
    assert scene_metrics(scene, served)["psnr_l"] > 90
    assert scene_metrics(scene, gt)["psnr_l"] < 30


def test_scene_from_files_and_evs(tmp_path):
    syn = make_scene(16, 24, seed=fresh_seed())
    paths = []
    for role, ldr in zip(("s", "m", "l"), syn.ldrs):
        paths.append(hdr_io.write_png8(tmp_path / f"shot_{role}.png", ldr))
    scene = scene_from_files(paths, [-1.5, 0.5, 2.5]).load()
    assert scene.name == "shot_m" and scene.source == FILES and scene.gt_gamma is None
    assert np.array_equal(scene.ldrs, syn.ldrs) and scene.evs.tolist() == [-1.5, 0.5, 2.5]
    with pytest.raises(SceneError, match="finite"):
        scene_from_files(paths, [0, float("nan"), 1])
    with pytest.raises(SceneError, match="expected exactly 3 EV stops"):
        scene_from_files(paths, [0, 1])
    assert scene_metrics(scene, np.ones((16, 24, 3), np.float32)) is None


def test_synthetic_cli_regenerates_the_bundled_sample(tmp_path, capsys):
    assert synthetic_main(["--out", str(tmp_path), "--size", "128x192", "--seed", "7", "--count", "2"]) == 0
    assert "0002" in capsys.readouterr().out
    regenerated = load_scenes(tmp_path)
    (bundled,) = load_scenes(SAMPLES)
    assert [s.name for s in regenerated] == ["0001", "0002"]
    assert np.array_equal(regenerated[0].ldrs, bundled.ldrs) and np.array_equal(regenerated[0].gt_gamma,
                                                                                 bundled.gt_gamma)
    assert synthetic_main(["--out", str(tmp_path), "--size", "big"]) == 2


def test_sample_is_small():
    total = sum(p.stat().st_size for p in SAMPLES.iterdir())
    assert total < 400_000, total


def test_cuda_shared_memory_says_what_it_needs():
    import importlib.util

    if importlib.util.find_spec("cuda") is not None:
        pytest.skip("cuda-python is installed: CUDA shared memory needs a GPU server, not tested on CPU")
    with pytest.raises(ClientError, match="cuda-python"):
        HDRClient(shm="cuda")


def test_client_imports_without_torch():
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "import importlib, pkgutil, client\n"
        "names = sorted(m.name for m in pkgutil.iter_modules(client.__path__))\n"
        "for name in names: importlib.import_module('client.' + name)\n"
        "assert sys.modules['torch'] is None\n"
        "print(' '.join(names))\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["__main__", "contact_sheet", "contract", "errors", "hdr_io", "hdr_math", "infer", "outputs",
                                   "scenes", "synthetic", "tiling"]


def test_pyproject_packages_only_the_client():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    project = meta["project"]
    assert project["name"] == "adnet-client"
    assert project["scripts"] == {"adnet-client": "client.__main__:main"}
    assert meta["tool"]["setuptools"]["packages"] == ["client"]
    deps = {d.split("[")[0].split(">")[0].split("<")[0].split("=")[0] for d in project["dependencies"]}
    assert deps == {"numpy", "opencv-python-headless", "tritonclient", "tqdm"}
    assert "pytest" in meta["tool"]  # the test configuration stays
