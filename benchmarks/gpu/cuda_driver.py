"""The few CUDA driver calls a torch-free kernel run needs (libcuda.so.1 through ctypes): primary context, device
memory, copies, a stream. Used by sanitizer_case.py, so that compute-sanitizer sees our kernel and nothing else."""
from __future__ import annotations

import ctypes

import numpy as np

__all__ = ["DriverError", "Driver"]


class DriverError(RuntimeError):
    """A CUDA driver call failed."""


class Driver:
    """Device 0's primary context made current (the one the kernels library's static cudart uses too)."""

    def __init__(self):
        try:
            self.lib = ctypes.CDLL("libcuda.so.1")
        except OSError as exc:
            raise DriverError(f"no NVIDIA driver: libcuda.so.1 is not loadable ({exc})") from exc
        self._check(self.lib.cuInit(0), "cuInit")
        device, context = ctypes.c_int(0), ctypes.c_void_p()
        self._check(self.lib.cuDeviceGet(ctypes.byref(device), 0), "cuDeviceGet")
        self._check(self.lib.cuDevicePrimaryCtxRetain(ctypes.byref(context), device), "cuDevicePrimaryCtxRetain")
        self._check(self.lib.cuCtxSetCurrent(context), "cuCtxSetCurrent")

    def _check(self, status: int, call: str) -> None:
        if status != 0:
            name = ctypes.c_char_p()
            self.lib.cuGetErrorName(status, ctypes.byref(name))
            raise DriverError(f"{call} failed: {status} ({(name.value or b'?').decode()})")

    def alloc(self, nbytes: int) -> int:
        ptr = ctypes.c_uint64()
        self._check(self.lib.cuMemAlloc_v2(ctypes.byref(ptr), ctypes.c_size_t(max(nbytes, 1))), "cuMemAlloc")
        return ptr.value

    def upload(self, array: np.ndarray) -> int:
        """A new device buffer holding `array` (C-contiguous)."""
        array = np.ascontiguousarray(array)
        ptr = self.alloc(array.nbytes)
        self._check(self.lib.cuMemcpyHtoD_v2(ctypes.c_uint64(ptr), array.ctypes.data_as(ctypes.c_void_p),
                                             ctypes.c_size_t(array.nbytes)), "cuMemcpyHtoD")
        return ptr

    def download(self, ptr: int, out: np.ndarray) -> np.ndarray:
        self._check(self.lib.cuMemcpyDtoH_v2(out.ctypes.data_as(ctypes.c_void_p), ctypes.c_uint64(ptr),
                                             ctypes.c_size_t(out.nbytes)), "cuMemcpyDtoH")
        return out

    def free(self, ptr: int) -> None:
        self._check(self.lib.cuMemFree_v2(ctypes.c_uint64(ptr)), "cuMemFree")

    def stream(self) -> int:
        handle = ctypes.c_void_p()
        self._check(self.lib.cuStreamCreate(ctypes.byref(handle), 0), "cuStreamCreate")
        return handle.value

    def synchronize(self, stream: int) -> None:
        self._check(self.lib.cuStreamSynchronize(ctypes.c_void_p(stream)), "cuStreamSynchronize")
