"""Smoke test of the benchmark harness (benchmarks/): tiny sizes and run counts, real backends and server.

No timing is asserted. What is: every part runs end to end on the CPU (PyTorch, ONNX Runtime, the CPU twin, the
real Triton server through our load generator), the CSV/JSON files have their schema, the plots are PNGs, every
skipped part carries a reason, and the FP32 deployment paths agree with PyTorch FP32.
"""
import csv
import json
import math

import pytest

from benchmarks import harness, report
from benchmarks.__main__ import main as bench_main
from benchmarks.config import GPU_SIZES, make_config

CPU_LATENCY = {"pytorch-fp32-cpu", "onnxruntime-fp32-cpu"}
GPU_BACKENDS = {"pytorch-fp32-cuda", "pytorch-fp16-cuda", "onnxruntime-fp32-cuda", "tensorrt-plugin-fp16",
                "tensorrt-builtin-fp16"}
# The same FP32 graph in ONNX Runtime (in process and behind Triton): equal to PyTorch up to float32 rounding.
SAME_GRAPH = {"onnxruntime-fp32-cpu", "triton-cpu"}
# Other arithmetic (the plugin's CPU twin) or half precision: finite and close, not bit-level equal.
OTHER_ARITHMETIC = {"twin-fp32-cpu", "onnxruntime-fp16-cpu", "twin-fp16-cpu"}


def _graph_paths(graphs) -> dict:
    return dict(onnx=graphs.path("pipeline"), onnx_fp16=graphs.path("pipeline_fp16"),
                onnx_plugin=graphs.path("plugin"), onnx_plugin_fp16=graphs.path("plugin_fp16"))


@pytest.fixture(scope="module")
def smoke_run(graphs, triton_cpu, tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    cfg = make_config(
        quick=True, gpu=False, cpu_cores=2, sizes=((32, 48),), serving_size=(32, 48), concurrency=(1, 2),
        warmup=1, runs=2, min_runs=1, input_sets=2, serving_requests=2, serving_per_client=1,
        serving_max_seconds=30.0, accuracy_size=(32, 48), accuracy_scenes=1,
        url=triton_cpu.grpc_url, out=out / "results", work=out / "work", label="smoke", **_graph_paths(graphs))
    results = harness.run(cfg, log=lambda *args: None)
    files = harness.save(results, cfg, log=lambda *args: None)
    return cfg, results, files, triton_cpu


def _ok(rows, **match):
    return [r for r in rows if r.get("status") == "ok" and all(r.get(k) == v for k, v in match.items())]


def test_every_part_ran_or_says_why(smoke_run):
    _, results, _, _ = smoke_run
    assert not results.get("errors"), results.get("errors")
    for backend in CPU_LATENCY:
        (row,) = _ok(results["latency"], backend=backend, size="32x48")
        assert row["runs"] >= 1 and row["median_ms"] > 0 and row["p99_ms"] >= row["median_ms"]
        assert row["floor_fraction"] > 0 and row["speedup_vs_pytorch_fp32"] > 0
    for transport in ("grpc", "system_shm"):
        for c in (1, 2):
            (row,) = _ok(results["serving"], tool="loadgen", transport=transport, concurrency=c)
            assert row["requests"] >= 2 and row["throughput_rps"] > 0 and not row["errors"]
        assert _ok(results["serving"], tool="loadgen", transport=transport, concurrency=1)[0]["overhead_p50"] > 0
    skipped = {s["what"] for s in results["skipped"]}
    if "perf_analyzer" not in skipped:
        assert len(_ok(results["serving"], tool="perf_analyzer")) == 4
    for s in results["skipped"]:
        assert s["part"] and s["what"] and len(s["reason"]) > 10, s
    # This suite runs without a GPU: the GPU backends are skipped, each with its reason.
    assert GPU_BACKENDS <= skipped
    assert {g["goal"] for g in results["goals"] if g["met"] is None}, "GPU goals are reported as not measured"


def test_deployment_paths_agree_with_pytorch(smoke_run):
    _, results, _, _ = smoke_run
    scores = {r["backend"]: r for r in _ok(results["accuracy"], reference="pytorch-fp32")}
    assert SAME_GRAPH | OTHER_ARITHMETIC <= set(scores)
    for name in SAME_GRAPH:
        assert scores[name]["all_finite"] and scores[name]["psnr_mu_min_db"] > 90, scores[name]
        assert scores[name]["rel_l2_max"] < 1e-4, scores[name]
    for name in OTHER_ARITHMETIC:
        assert scores[name]["all_finite"] and scores[name]["psnr_mu_min_db"] > 30, scores[name]


def test_files_have_their_schema(smoke_run):
    cfg, results, files, _ = smoke_run
    for table, fields in report.TABLES.items():
        with open(files[f"{table}_csv"], newline="") as f:
            reader = csv.DictReader(f)
            assert reader.fieldnames == fields
            rows = list(reader)
        assert len(rows) == len(results[table]) > 0
        assert {r["status"] for r in rows} <= {"ok", "skipped", "error"}
    saved = json.loads(files["json"].read_text())
    for key in ("machine", "config", "compute", "latency", "serving", "accuracy", "skipped", "goals", "files"):
        assert key in saved
    for key in ("cpu", "cpu_cores", "date", "versions", "git", "label"):
        assert key in saved["machine"]
    macs = saved["compute"]["macs"]
    assert math.isclose(macs["tmac_at_1060x1900"], macs["design_tmac_at_1060x1900"], rel_tol=1e-3)
    for kind in ("latency_png", "serving_png"):
        data = files[kind].read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
        assert saved["files"][kind] == files[kind].name
    assert files["json"].name.startswith(saved["machine"]["date"][:10]) and "smoke" in files["json"].name


def test_server_left_clean(smoke_run):
    """The shared-memory regions registered by the load generators are gone again (the server is shared)."""
    import tritonclient.grpc as grpcclient

    _, _, _, server = smoke_run
    client = grpcclient.InferenceServerClient(server.grpc_url)
    try:
        status = client.get_system_shared_memory_status(as_json=True, headers=server.admin_headers)  # restricted
    finally:
        client.close()
    assert not status.get("regions"), status


def test_table_cli_prints_a_saved_run(smoke_run, capsys):
    _, _, files, _ = smoke_run
    assert bench_main(["--table", str(files["json"])]) == 0
    text = capsys.readouterr().out
    assert "ONNX Runtime FP32 (CPU EP)" in text and "Skipped" in text
    assert bench_main(["--table", str(files["json"]), "--markdown"]) == 0
    assert "| backend |" in capsys.readouterr().out


def test_modes_pick_sizes_for_the_machine():
    quick = make_config(quick=True, gpu=False, cpu_cores=2)
    assert quick.sizes == ((64, 96), (128, 192)) and quick.concurrency == (1, 2, 4) and not quick.skipped_sizes
    full_cpu = make_config(quick=False, gpu=False, cpu_cores=2)
    assert (256, 256) in full_cpu.sizes and full_cpu.concurrency == (1, 2, 4, 8, 16)
    assert {s for s, _ in full_cpu.skipped_sizes} == set(GPU_SIZES) - set(full_cpu.sizes)
    assert all("SIZES=" in reason for _, reason in full_cpu.skipped_sizes)
    asked = make_config(quick=False, gpu=False, cpu_cores=2, sizes=((1060, 1900),))
    assert asked.sizes_explicit and not asked.skipped_sizes
    assert make_config(quick=False, gpu=True, cpu_cores=16).sizes == GPU_SIZES
