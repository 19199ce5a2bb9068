"""make's object folders are keyed by the toolchain: objects that one nvcc / TensorRT built (the host's) are never
linked by another (the container's `make plugin`), and the libraries are relinked when the toolchain changes.

Stand-in compilers record every call and write placeholder outputs, so the rules run in milliseconds and the test
sees exactly what make recompiles; the real compiles are covered by test_dcnv2_twin.py and
test_dcnv2_plugin_library.py.
"""
from __future__ import annotations

import stat
import sys
from pathlib import Path

import pytest

from plugins.dcnv2 import build

COMPILER = """#!/bin/sh
# stand-in compiler: logs its arguments, answers --version, writes the file after -o
echo "$0 $*" >> "{log}"
case "$1" in --version) echo "{banner}"; exit 0;; esac
while [ $# -gt 0 ]; do
  if [ "$1" = "-o" ]; then echo placeholder > "$2"; fi
  shift
done
"""


def stand_in(folder: Path, name: str, banner: str, log: Path) -> Path:
    path = folder / name
    path.write_text(COMPILER.format(log=log, banner=banner))
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def fake_tensorrt(folder: Path, version: str) -> dict[str, str]:
    include, lib = folder / "include", folder / "lib"
    include.mkdir(parents=True)
    lib.mkdir()
    (include / "NvInfer.h").write_text("")
    major, minor, patch = version.split(".")
    (include / "NvInferVersion.h").write_text(
        f"#define TRT_MAJOR_ENTERPRISE {major}\n#define TRT_MINOR_ENTERPRISE {minor}\n"
        f"#define TRT_PATCH_ENTERPRISE {patch}\n")
    (lib / "libnvinfer.so").write_text("")
    return {"TRT_INCLUDE": str(include), "TRT_LIB": str(lib)}


def compiles(log: Path, since: int) -> list[str]:
    """The compile (-c) and link (-shared) calls logged after line `since`, as 'tool: output name'."""
    calls = []
    for line in log.read_text().splitlines()[since:]:
        words = line.split()
        if "-c" in words or "-shared" in words:
            calls.append(f"{Path(words[0]).name}: {Path(words[words.index('-o') + 1]).name}")
    return calls


def lines(log: Path) -> int:
    return len(log.read_text().splitlines()) if log.exists() else 0


def test_objects_are_keyed_by_nvcc_and_tensorrt(tmp_path):
    log = tmp_path / "calls.log"
    nvcc13 = stand_in(tmp_path, "nvcc13", "Cuda compilation tools, release 13.0, V13.0.88", log)
    nvcc12 = stand_in(tmp_path, "nvcc12", "Cuda compilation tools, release 12.6, V12.6.77", log)
    cxx = stand_in(tmp_path, "cxx", "g++ (stand-in) 12.2.0", log)
    trt105 = fake_tensorrt(tmp_path / "trt10.5", "10.5.0")
    trt107 = fake_tensorrt(tmp_path / "trt10.7", "10.7.0")
    out = tmp_path / "build"

    def make(nvcc, trt, target="plugin", host=cxx):
        mark = lines(log)
        build.make(target, BUILD=str(out), NVCC=str(nvcc), CXX=str(host), **trt)
        return sorted(compiles(log, mark))

    # The host builds the kernels with nvcc 13 ...
    assert make(nvcc13, trt105, "kernels") == ["nvcc13: dcnv2_core.o", "nvcc13: dcnv2_kernel.o",
                                               "nvcc13: libadnet_dcn_kernels.so"]
    # ... then `make plugin` in a container with nvcc 12.6 compiles everything again instead of linking nvcc 13's.
    assert make(nvcc12, trt105) == ["cxx: dcnv2_plugin.o", "nvcc12: dcnv2_core.o", "nvcc12: dcnv2_kernel.o",
                                    "nvcc12: libadnet_plugins.so"]
    assert make(nvcc12, trt105) == []  # up to date
    # Another TensorRT: the adapter is recompiled and the library relinked; the kernel objects are reused.
    assert make(nvcc12, trt107) == ["cxx: dcnv2_plugin.o", "nvcc12: libadnet_plugins.so"]
    assert make(nvcc13, trt105, "kernels") == []  # the kernels library is still nvcc 13's
    # The other toolchain's objects exist already: only relinked; likewise back and forth.
    assert make(nvcc12, trt105, "kernels") == ["nvcc12: libadnet_dcn_kernels.so"]
    assert make(nvcc13, trt105, "kernels") == ["nvcc13: libadnet_dcn_kernels.so"]
    assert make(nvcc12, trt105) == ["nvcc12: libadnet_plugins.so"]
    # The same nvcc with another host compiler (nvcc -ccbin is CXX): the kernel objects are not reused either.
    cxx13 = stand_in(tmp_path, "cxx13", "g++ (stand-in) 13.3.0", log)
    assert make(nvcc13, trt105, "kernels", host=cxx13) == ["nvcc13: dcnv2_core.o", "nvcc13: dcnv2_kernel.o",
                                                          "nvcc13: libadnet_dcn_kernels.so"]
    assert f"-ccbin {cxx13}" in log.read_text().splitlines()[-1]
    folders = sorted(p.name for p in (out / "dcnv2").iterdir() if p.is_dir())
    assert len([f for f in folders if f.startswith("nvcc-")]) == 3
    assert len([f for f in folders if f.startswith("plugin-")]) == 2


@pytest.mark.parametrize("venv_python", ["dangling", "broken"])
def test_helpers_fall_back_when_the_venv_python_cannot_start(tmp_path, venv_python):
    """A repository mounted into an NGC container keeps the host's .venv: its python is a symlink to an interpreter
    the container lacks (make's $(wildcard) still matches a dangling link) or one that does not start. The contract
    header is then generated with PYTHON_SYS, as the README's container commands (ENGINE_PY=python3) need."""
    venv_bin = tmp_path / "venv" / "bin"
    venv_bin.mkdir(parents=True)
    if venv_python == "dangling":
        (venv_bin / "python").symlink_to(tmp_path / "python3.13-of-the-host")
    else:
        (venv_bin / "python").write_text("#!/bin/sh\nexit 127\n")
        (venv_bin / "python").chmod(0o755)
    out = tmp_path / "build"
    header = out / "include" / "dcnv2_contract.h"
    # PY as the Makefile derives it from VENV (build.make would otherwise pass this test's interpreter as PY).
    build.make(str(header), VENV=str(tmp_path / "venv"), PY=str(venv_bin / "python"), BUILD=str(out),
               PYTHON_SYS=sys.executable)
    assert "kMaskBlocks" in header.read_text()
