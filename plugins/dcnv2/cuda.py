"""ctypes binding of the CUDA kernels library (`make kernels` -> build/libadnet_dcn_kernels.so).

Used by the GPU test and the kernel benchmark; the C ABI itself is declared in dcnv2_core.h. Loading needs the
NVIDIA driver (the library links cudart statically), building needs nvcc.
"""
from __future__ import annotations

import ctypes
import shutil
from pathlib import Path
from typing import Optional

ROOT = Path(__file__).resolve().parents[2]
KERNELS_LIBRARY = ROOT / "build" / "libadnet_dcn_kernels.so"


def find_nvcc() -> Optional[str]:
    """nvcc on PATH, else the CUDA toolkit's default location, else None."""
    default = Path("/usr/local/cuda/bin/nvcc")
    return shutil.which("nvcc") or (str(default) if default.exists() else None)


def load_kernels(path: Path = KERNELS_LIBRARY) -> ctypes.CDLL:
    """Load the kernels library and declare adnet_dcn_forward_cuda / adnet_dcn_last_error."""
    lib = ctypes.CDLL(str(path))
    i32, i64, ptr = ctypes.c_int32, ctypes.c_int64, ctypes.c_void_p
    lib.adnet_dcn_forward_cuda.argtypes = [i32, ptr, ptr, ptr, ptr, ptr, *[i64] * 7, *[i32] * 4, ptr, ptr]
    lib.adnet_dcn_forward_cuda.restype = i32
    lib.adnet_dcn_last_error.restype = ctypes.c_char_p
    return lib
