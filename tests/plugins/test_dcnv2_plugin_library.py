"""The real C++ plugin library (dcnv2_plugin.cpp + plugin_base.h + core + kernels), built by `make plugin` against
TensorRT 11.x headers and linked to TensorRT-RTX 1.7.1 from the venv (its registry ABI is TensorRT 11's), loaded the
ways TensorRT users load it; and `make compile-check` against every TensorRT header release at hand.

TensorRT's headers are not on any package registry this project can reach: these tests need ADNET_TRT_HEADERS, a
folder of NVIDIA/TensorRT `include/` trees, one per release (`<folder>/<tag>/include/NvInferVersion.h`, see
plugins/dcnv2/README.md "Compile check without TensorRT"); without it they skip with that reason. Each load path runs
in a fresh interpreter: TensorRT's plugin registry is process-wide.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from plugins.dcnv2 import build, contract

HEADERS_ENV = "ADNET_TRT_HEADERS"


def _header_sets() -> dict[str, Path]:
    """{version: include dir} of the header trees under $ADNET_TRT_HEADERS."""
    root = os.environ.get(HEADERS_ENV)
    found = {}
    for version_h in sorted(Path(root).glob("*/include/NvInferVersion.h")) if root else []:
        text = version_h.read_text()
        numbers = [re.search(rf"#define (?:TRT_{k}_ENTERPRISE|NV_TENSORRT_{k}) (\d+)", text) for k in
                   ("MAJOR", "MINOR", "PATCH")]
        if all(numbers):
            found[".".join(m.group(1) for m in numbers)] = version_h.parent
    return found


HEADER_SETS = _header_sets()
NO_HEADERS = (f"needs TensorRT headers: set {HEADERS_ENV} to a folder of NVIDIA/TensorRT include/ trees "
              f"(<folder>/<tag>/include), e.g. from `git archive v11.1 include` (plugins/dcnv2/README.md)")


def _rtx_libs() -> Path:
    try:
        import tensorrt_rtx_libs
    except ImportError:
        pytest.skip("TensorRT-RTX (tensorrt-rtx-cu13 in requirements.txt) is not installed")
    return Path(tensorrt_rtx_libs.__file__).parent


@pytest.fixture(scope="module")
def plugin_library(tmp_path_factory):
    """build/…/libadnet_plugins.so for TensorRT-RTX: 11.x headers, libtensorrt_rtx.so.1, one GPU target (fast)."""
    v11 = [include for version, include in HEADER_SETS.items() if version.startswith("11.")]
    if not v11:
        pytest.skip(NO_HEADERS + " (a TensorRT 11.x tree: TensorRT-RTX 1.7's registry ABI is TensorRT 11's)")
    out = tmp_path_factory.mktemp("plugin")
    libs = _rtx_libs()
    build.make("plugin", BUILD=str(out), TRT_INCLUDE=str(v11[-1]), TRT_LIB=str(libs),
               PLUGIN_LDLIBS="-l:libtensorrt_rtx.so.1", DCN_GENCODE="-gencode arch=compute_80,code=sm_80")
    return out / "libadnet_plugins.so"


def run_python(code: str, library: Path, *, preload: bool = False) -> str:
    """Run `code` in a fresh interpreter with `lib` (the plugin path) and `reg` (RTX's registry) defined."""
    prelude = textwrap.dedent(f"""
        import ctypes
        import tensorrt_rtx as trt
        lib = {str(library)!r}
        reg = trt.get_plugin_registry()
        def creators():
            return sum(c.name == {contract.PLUGIN_NAME!r} for c in reg.all_creators)
        def found():
            return reg.get_creator({contract.PLUGIN_NAME!r}, {contract.PLUGIN_VERSION!r},
                                   {contract.PLUGIN_NAMESPACE!r}) is not None
    """)
    env = dict(os.environ)
    env["LD_LIBRARY_PATH"] = os.pathsep.join(filter(None, [str(_rtx_libs()), env.get("LD_LIBRARY_PATH")]))
    if preload:
        env["LD_PRELOAD"] = str(library)
    result = subprocess.run([sys.executable, "-c", prelude + textwrap.dedent(code)], capture_output=True, text=True,
                            env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_load_library_registers_through_get_creators(plugin_library):
    """IPluginRegistry::loadLibrary: the library does not register itself while TensorRT loads it (TensorRT is on
    the constructor's call stack); TensorRT registers what getCreators hands over."""
    out = run_python("""
        handle = reg.load_library(lib)
        print(handle is not None, found(), creators())
        print(ctypes.CDLL(lib).adnet_register_plugins(), creators())  # idempotent: already in the registry
    """, plugin_library)
    assert out.splitlines() == ["True True 1", "0 1"]


def test_dlopen_registers_at_load_time(plugin_library):
    """Plain dlopen (Triton's plugins=, Polygraphy --plugins, trtexec --staticPlugins): registered by the time
    dlopen returns, under the contract's namespace; the explicit entry point does not register twice."""
    out = run_python("""
        handle = ctypes.CDLL(lib)
        print(found(), creators())
        print(handle.adnet_register_plugins(), creators())
    """, plugin_library)
    assert out.splitlines() == ["True 1", "0 1"]


def test_ld_preload_registers_before_the_application_starts(plugin_library):
    out = run_python("print(found(), creators())", plugin_library, preload=True)
    assert out == "True 1"


def test_dlopen_then_load_library_keeps_one_creator(plugin_library):
    """Already registered at load time: getCreators hands over nothing (it never enters the registry), so
    TensorRT-RTX's loadLibrary returns no handle, and the one creator stays registered and usable."""
    out = run_python("""
        ctypes.CDLL(lib)
        handle = reg.load_library(lib)
        print(handle is None, found(), creators())
    """, plugin_library)
    assert out == "True True 1"


def test_load_library_then_dlopen_keeps_one_creator(plugin_library):
    out = run_python("""
        handle = reg.load_library(lib)
        ctypes.CDLL(lib)  # the same handle: no second constructor run
        print(handle is not None, found(), creators())
    """, plugin_library)
    assert out == "True True 1"


def test_real_plugin_gets_channel_last_fp16_io_in_a_cpu_build(plugin_library, tmp_path):
    """The C++ adapter's supportsFormatCombination in a TensorRT-RTX build (CPU, no GPU): FP16 convolutions around
    the plugin hand it x, the offsets and the output channel-last (what the plan's program declares for the plugin's
    tensors; see tests/export/test_trt_python_plugin.py, which reads it the same way for the stand-in); FP32 stays
    linear."""
    code = r"""
        import json, re
        from pathlib import Path
        import numpy as np
        ctypes.CDLL(lib)
        from export import trt_compat
        from tests.export.test_trt_python_plugin import dcn_graph, build_plan, _declarations, channels_last
        rtx = trt_compat.load("rtx")
        result = {}
        for name, dtype in (("fp16", np.float16), ("fp32", np.float32)):
            text = build_plan(rtx, dcn_graph(Path(FOLDER) / (name + ".onnx"), dtype=dtype)).decode("latin-1")
            layer = re.search(r'custom_layer=\{ name="AdnetDCNv2_0" output=\{"([^"]+)" \} input=\{"([^"]+)" "([^"]+)" ',
                              text)
            y, x, om = layer.groups()
            found = _declarations(text)
            result[name] = [channels_last(found, t) for t in (x, om, y)]
        print(json.dumps(result))
    """
    out = run_python(code.replace("FOLDER", repr(str(tmp_path))), plugin_library)
    assert json.loads(out.splitlines()[-1]) == {"fp16": [True, True, True], "fp32": [False, False, False]}


@pytest.mark.parametrize("version", sorted(HEADER_SETS) or ["none"])
def test_compile_check_against_each_header_release(version, tmp_path):
    if version == "none":
        pytest.skip(NO_HEADERS)
    output = build.make("compile-check", BUILD=str(tmp_path), TRT_INCLUDE=str(HEADER_SETS[version]))
    assert f"compile-check: OK (TensorRT {version})" in output
    assert "exports: getCreators, setLoggerFinder, adnet_register_plugins" in output
