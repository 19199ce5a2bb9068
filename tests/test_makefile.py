"""The top-level Makefile: `make help` documents every parameter; CKPT / LDR_DTYPE persist between make calls."""
import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAKEFILES = [ROOT / "Makefile", *sorted(ROOT.glob("*/*.mk")), *sorted(ROOT.glob("*/*/*.mk"))]


def make(*args):
    return subprocess.run(["make", "--no-print-directory", *args], cwd=ROOT, capture_output=True, text=True)


def test_help_lists_every_parameter_and_target():
    out = re.sub(r"\x1b\[[0-9;]*m", "", make("help").stdout)
    params = {m for f in MAKEFILES for m in re.findall(r"^([A-Z][A-Z0-9_]*) *\?=", f.read_text(), re.M)}
    listed = set(re.findall(r"\b([A-Z][A-Z0-9_]+)\b", out))
    assert params and params <= listed, sorted(params - listed)
    targets = {m for f in MAKEFILES for m in re.findall(r"^([a-z][a-z0-9-]*):[^=\n]*## ", f.read_text(), re.M)}
    assert {"setup", "demo", "test", "test-fast", "serve", "onnx", "engine", "bench", "gpu-check"} <= targets
    assert all(t in out for t in targets)


def test_ckpt_and_ldr_dtype_are_remembered_until_changed(tmp_path):
    build = f"BUILD={tmp_path / 'b'}"
    ckpt = tmp_path / "weights.pth"
    ckpt.write_bytes(b"not read by make -n")

    def export_args(*extra):
        result = make("-n", "onnx", build, *extra)
        assert result.returncode == 0, result.stderr
        line = next(l for l in result.stdout.splitlines() if "export.to_onnx" in l and "--precision fp32" in l)
        return line

    assert "--checkpoint" not in export_args() and "--ldr-dtype uint8" in export_args()
    first = export_args(f"CKPT={ckpt}", "LDR_DTYPE=float16")
    assert f"--checkpoint {ckpt}" in first and "--ldr-dtype float16" in first
    assert export_args() == first                        # remembered
    changed = export_args("LDR_DTYPE=uint8")             # one changed, the other still remembered
    assert f"--checkpoint {ckpt}" in changed and "--ldr-dtype uint8" in changed
    assert "--checkpoint" not in export_args("CKPT=")    # back to random weights
    assert "--checkpoint" not in export_args()


def test_bad_parameters_are_refused_naming_the_fix(tmp_path):
    build = f"BUILD={tmp_path / 'b'}"
    bad = make("-n", "onnx", build, "LDR_DTYPE=int8")
    assert bad.returncode != 0 and "LDR_DTYPE=uint8 or LDR_DTYPE=float16" in bad.stderr
    assert not (tmp_path / "b" / "params.mk").exists()  # a refused value is not remembered
    missing = make("onnx", build, f"CKPT={tmp_path / 'nope.pth'}")
    assert missing.returncode != 0 and "CKPT= for random weights" in missing.stderr


def test_gpu_serve_runs_the_plugin_preflight_first(tmp_path):
    """Triton only logs a plugin that fails to load: `make serve GPU=1` checks plugin, plan and TensorRT versions
    (gpu-serve-preflight) before the server command, which is then told not to check again."""
    result = make("-n", "serve", "GPU=1", f"BUILD={tmp_path / 'b'}")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    preflight = next(i for i, l in enumerate(lines) if "-m export.plugin_preflight" in l)
    serve = next(i for i, l in enumerate(lines) if "-m model_repository.server" in l)
    assert preflight < serve and "--docker" in lines[preflight]
    assert lines[serve].endswith("--gpu --preflight-done")
    assert not any("export.to_onnx" in l for l in lines)  # the GPU server needs no CPU export
