"""TensorRT process plumbing (export/trt_process.py): plugin loading and its checks, the logger that keeps
TensorRT's errors, Polygraphy bound to the right TensorRT. Real TensorRT-RTX; files built here stand in for plugin
libraries of other TensorRT versions (only their dynamic string table is read)."""
from __future__ import annotations

from pathlib import Path

import pytest

from export import trt_process
from plugins.dcnv2 import contract
from plugins.dcnv2.cpu import build_library
from tests.child import run_python

REPO = Path(__file__).resolve().parents[2]


def test_plugin_library_errors(rtx, stand_in, tmp_path):
    with pytest.raises(trt_process.PluginLibraryError, match="not found: build it with `make plugin`"):
        trt_process.load_plugins(rtx, tmp_path / "libadnet_plugins.so")
    other = tmp_path / "other.so"
    other.write_bytes(b"\x7fELF" + b"\0" * 60 + b"libnvinfer.so.10\0libcudart.so.12\0")
    with pytest.raises(trt_process.PluginLibraryError,
                       match=r"another TensorRT.*libnvinfer\.so\.10.*libtensorrt_rtx\.so\.1"):
        trt_process.load_plugins(rtx, other)
    same = tmp_path / "same.so"
    same.write_bytes(b"\x7fELF" + b"\0" * 60 + b"libtensorrt_rtx.so.1\0")
    with pytest.raises(trt_process.PluginLibraryError, match="already registered"):  # the stand-in holds the name
        trt_process.load_plugins(rtx, same)
    with pytest.raises(trt_process.PluginLibraryError, match="already registered"):
        trt_process.dlopen_plugin(rtx, same)


def test_registered_creator_finds_the_stand_in_without_logging_errors(rtx, stand_in):
    logger = trt_process.trt_logger(rtx)
    mark = logger.count
    creator = trt_process.registered_creator(rtx)
    assert (creator.name, creator.plugin_version, creator.plugin_namespace) == (
        contract.PLUGIN_NAME, contract.PLUGIN_VERSION, contract.PLUGIN_NAMESPACE)
    assert logger.errors(mark) == []
    assert trt_process.tensorrt_errors(logger, mark) == ""


def test_a_library_that_registers_no_creator_is_reported_on_both_load_paths(tmp_path):
    """dlopen (Triton's path) and IPluginRegistry.load_library on a real shared library without AdnetDCNv2 (the CPU
    twin, which links no TensorRT), each in a fresh process with TensorRT-RTX."""
    library = build_library()
    for call in ("dlopen_plugin", "load_plugins"):
        code = (f"from export import trt_compat, trt_process\n"
                f"trt = trt_compat.load('rtx')\n"
                f"try:\n    trt_process.{call}(trt, {str(library)!r})\n"
                f"except trt_process.PluginLibraryError as exc:\n    print('ERROR', exc)\n")
        proc = run_python(code)
        assert proc.returncode == 0, proc.stderr
        if call == "dlopen_plugin":
            assert f"registers no {contract.PLUGIN_NAME} version {contract.PLUGIN_VERSION}" in proc.stdout
        else:  # loadLibrary wants the getCreators entry point the twin does not export
            assert "ERROR" in proc.stdout and "make plugin" in proc.stdout, proc.stdout


def test_polygraphy_is_bound_to_this_tensorrt_with_our_logger(rtx):
    backend = trt_process.polygraphy(rtx)
    from polygraphy import config
    from polygraphy.backend.trt import util

    assert config.USE_TENSORRT_RTX is True
    assert util.get_trt_logger() is trt_process.trt_logger(rtx)
    assert backend.Profile is not None


def test_polygraphy_refuses_a_second_tensorrt_in_one_process():
    code = ("from export import trt_compat, trt_process\n"
            "from export.trt_compat import TensorRT\n"
            "rtx = trt_compat.load('rtx')\n"
            "trt_process.polygraphy(rtx)\n"
            "try:\n    trt_process.polygraphy(TensorRT(rtx.module, 'tensorrt'))\n"
            "except trt_process.PolygraphyNotFound as exc:\n    print(exc)\n")
    proc = run_python(code)
    assert proc.returncode == 0, proc.stderr
    assert "already bound to TensorRT-RTX" in proc.stdout and "one TensorRT per process" in proc.stdout


def test_polygraphy_pin_is_the_requirements_pin():
    pins = dict(line.split("==") for line in (REPO / "requirements.txt").read_text().splitlines()
                if "==" in line and not line.startswith("#"))
    assert pins["polygraphy"].split()[0] == trt_process.POLYGRAPHY_VERSION


def test_readme_container_commands_install_only_pinned_polygraphy_without_dependencies():
    """Issue #11 finding 6: pip in the NGC 24.10 containers must not replace the numpy TensorRT 10.5's bindings were
    built with (onnx 1.22 alone would pull numpy >= 1.23.2): every pip install in the README's GPU section is
    Polygraphy, pinned, with --no-deps, and the containers are the release's."""
    from export import trt_compat

    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("## GPU hosts"):readme.index("## Verified where")]
    installs = [line[line.index("pip install"):] for line in section.splitlines() if "pip install" in line]
    assert installs and all("--no-deps" in i and f"polygraphy{'==' if '==' in i else '-'}"
                            f"{trt_process.POLYGRAPHY_VERSION}" in i for i in installs), installs
    tags = {line.split("nvcr.io/nvidia/tensorrt:")[1].split()[0] for line in section.splitlines()
            if "nvcr.io/nvidia/tensorrt:" in line}
    assert tags == {f"{trt_compat.NGC_RELEASE}-py3"}


def test_missing_polygraphy_names_the_pinned_install(rtx):
    code = ("from export import trt_compat, trt_process\n"
            "try:\n    trt_process.polygraphy(trt_compat.load('rtx'))\n"
            "except trt_process.PolygraphyNotFound as exc:\n    print(exc)\n")
    proc = run_python(code, absent=("polygraphy",))
    assert proc.returncode == 0, proc.stderr
    assert f"pip install polygraphy=={trt_process.POLYGRAPHY_VERSION}" in proc.stdout and "--no-deps" in proc.stdout


def test_sha256_and_linked_libraries(tmp_path):
    import hashlib

    path = tmp_path / "lib.so"
    data = b"\x7fELF" + b"x" * (3 << 20) + b"libnvinfer.so.11\0libtensorrt_rtx.so.1\0"
    path.write_bytes(data)
    assert trt_process.sha256_file(path) == hashlib.sha256(data).hexdigest()
    assert trt_process.linked_tensorrt_libraries(path) == {"libnvinfer.so.11", "libtensorrt_rtx.so.1"}
