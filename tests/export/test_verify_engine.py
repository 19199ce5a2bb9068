"""verify-engine (export/verify_engine.py) on the CPU: the comparison, and the recorded reference in Polygraphy's
formats, made with the venv's ONNX Runtime and compared through Polygraphy's comparator. Running the engine itself
(the TrtRunner side of Comparator.run) needs a GPU: `make verify-engine`."""
from __future__ import annotations

import json
import subprocess
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest

from client import contract as io_contract
from client.synthetic import make_scene
from export import verify_engine as ve
from export.engine_files import EngineLoadError
from export.trt_process import sha256_file
from tests.child import run_python

REPO = Path(__file__).resolve().parents[2]
TINY = ("1x32x48", "2x18x22")  # the second: H, W not multiples of 4 (padding path), batch 2


def test_verify_comparison_passes_fp16_like_errors_and_fails_real_ones():
    rng = np.random.default_rng()
    ref = np.stack([make_scene(48, 64, seed=int(rng.integers(1 << 30))).gt_linear for _ in range(2)])
    close = ref * (1 + rng.normal(0, 1e-3, ref.shape))  # about FP16's relative precision
    r = ve.compare(ref, close)
    assert r["finite"] and min(r["psnr_mu"]) >= ve.MIN_PSNR_MU and r["max_abs"] > 0
    assert r["max_rel_to_peak"] == pytest.approx(np.abs(close - ref).max() / ref.max())
    off = ve.compare(ref, ref * 1.2)  # a 20% exposure error
    assert max(off["psnr_mu"]) < ve.MIN_PSNR_MU
    broken = close.copy()
    broken[1, 3, 4, 0] = np.nan
    assert not ve.compare(ref, broken)["finite"]


def _run_results(name, outputs):
    from polygraphy.comparator import IterationResult, RunResults

    results = RunResults()
    results.append((name, [IterationResult({io_contract.OUTPUT_HDR: o}, runner_name=name) for o in outputs]))
    return results


def test_psnr_compare_drives_polygraphy_compare_accuracy():
    rng = np.random.default_rng()
    refs = [np.stack([make_scene(24, 40, seed=int(rng.integers(1 << 30))).gt_linear]) for _ in range(3)]
    close = [r * (1 + rng.normal(0, 1e-3, r.shape)) for r in refs]
    ok, verdicts = ve.compare_runs(_run_results("reference", refs), _run_results("engine", close))
    assert ok and len(verdicts) == 3 and all(verdicts)
    bad = list(close)
    bad[1] = refs[1] * 1.2
    ok, verdicts = ve.compare_runs(_run_results("reference", refs), _run_results("engine", bad))
    assert not ok and [bool(v) for v in verdicts] == [True, False, True]
    assert max(verdicts[1].metrics["psnr_mu"]) < ve.MIN_PSNR_MU


@pytest.fixture(scope="module")
def recording(graphs, tmp_path_factory):
    folder = tmp_path_factory.mktemp("verify")
    for name in ("pipeline_fp16", "plugin_fp16"):  # the export's other graphs, as `make verify-reference` has them
        graphs.path(name)
    paths = ve.record(graphs.path("pipeline"), folder, TINY, seed=7, log=lambda *a: None)
    return paths, folder


def test_recording_is_polygraphy_inputs_and_outputs_of_this_export(recording, graphs):
    paths, folder = recording
    feeds, reference, meta = ve.load_recorded(paths["outputs"])
    assert [tuple(f[io_contract.INPUT_LDR].shape) for f in feeds] == [(1, 3, 32, 48, 3), (2, 3, 18, 22, 3)]
    assert all(f[io_contract.INPUT_LDR].dtype == np.uint8 and f[io_contract.INPUT_EV].dtype == np.float32
               for f in feeds)
    (name, iterations), = list(reference.items())
    assert "onnxruntime" in name and [it[io_contract.OUTPUT_HDR].shape for it in iterations] == [(1, 32, 48, 3),
                                                                                                (2, 18, 22, 3)]
    assert meta["graphs_of_this_export"][graphs.path("plugin_fp16").name] == sha256_file(graphs.path("plugin_fp16"))
    assert meta["sizes"] == list(TINY) and meta["ldr_dtype"] == "uint8"
    # The feeds are the scenes the seed makes: a recording can be remade, and the engine sees exactly these.
    again = ve.feed_dicts(TINY, np.uint8, seed=7)
    assert all(np.array_equal(a[k], b[k]) for a, b in zip(feeds, again) for k in a)


def test_fp16_graph_passes_against_the_recording_and_a_wrong_one_fails(recording, graphs):
    """The comparison verify-engine makes, with ONNX Runtime on the FP16 graph in place of the engine."""
    from polygraphy.comparator import Comparator

    feeds, reference, _ = ve.load_recorded(recording[1])
    fp16 = Comparator.run([ve.onnx_runner(graphs.path("pipeline_fp16"), name="fp16")], data_loader=feeds)
    ok, verdicts = ve.compare_runs(reference, fp16)
    assert ok, [v.metrics for v in verdicts]
    # EVs are relative to the medium frame: doubling them changes the exposure alignment, adding a constant would not.
    scaled = feeds[:1] + [OrderedDict([(io_contract.INPUT_LDR, feeds[1][io_contract.INPUT_LDR]),
                                       (io_contract.INPUT_EV, feeds[1][io_contract.INPUT_EV] * 2.0)])]
    wrong = Comparator.run([ve.onnx_runner(graphs.path("pipeline"), name="wrong EV")], data_loader=scaled)
    ok, verdicts = ve.compare_runs(reference, wrong)
    assert not ok and bool(verdicts[0]) and not verdicts[1]


def test_polygraphy_cli_reads_the_recording(recording, graphs):
    paths, _ = recording
    proc = subprocess.run([str(REPO / ".venv" / "bin" / "polygraphy"), "run", str(graphs.path("pipeline")),
                           "--onnxrt", "--load-inputs", str(paths["inputs"]), "--load-outputs", str(paths["outputs"])],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "PASSED" in proc.stdout + proc.stderr


def test_engine_from_another_export_is_refused(recording):
    _, _, meta = ve.load_recorded(recording[1])
    sha = next(iter(meta["graphs_of_this_export"].values()))
    ve._check_same_export(meta, {"onnx": {"file": "build/x.onnx", "sha256": sha}}, Path("model.plan"))
    with pytest.raises(EngineLoadError, match="re-record it after `make onnx`"):
        ve._check_same_export(meta, {"onnx": {"file": "build/x.onnx", "sha256": "0" * 64}}, Path("model.plan"))


def test_incomplete_recording_names_make_verify_reference(tmp_path):
    (tmp_path / "reference.json").write_text(json.dumps([]))
    with pytest.raises(ve.PipelineError, match="make verify-reference"):
        ve.load_recorded(tmp_path / "reference.json")


def test_onnxruntime_without_deformconv_is_recognised():
    # The message onnxruntime 1.23.2 (the newest for Python 3.10, in the NGC 24.10 containers) gives for the FP32
    # reference graph; the venv's 1.32 runs it, so the message is quoted here rather than produced.
    assert ve.lacks_deformconv("[ONNXRuntimeError] : 9 : NOT_IMPLEMENTED : Could not find an implementation for "
                               "DeformConv(19) node with name 'node_deform_conv2d'")
    assert not ve.lacks_deformconv("[ONNXRuntimeError] : 10 : INVALID_GRAPH : Type 'tensor(bfloat16)' of input "
                                   "parameter (X) of operator (DeformConv) is invalid")


def test_comparing_with_a_recording_needs_neither_onnx_nor_onnxruntime_nor_torch(recording):
    """verify-engine's side in the NGC container: load the recording, compare results (here the reference itself)."""
    from tests.export.test_build_engine import CONTAINER_ABSENT

    code = (f"from export import verify_engine as ve\n"
            f"feeds, reference, meta = ve.load_recorded({str(recording[1])!r})\n"
            f"ok, verdicts = ve.compare_runs(reference, reference)\n"
            f"print(ok, len(verdicts), meta['onnxruntime'])\n")
    proc = run_python(code, absent=CONTAINER_ABSENT)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[-1].split()[:2] == ["True", "2"]  # Polygraphy may warn on stdout first
