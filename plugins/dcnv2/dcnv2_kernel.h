// CUDA forward of AdnetDCNv2 (implicit GEMM, no workspace). The C ABI entry point adnet_dcn_forward_cuda
// (dcnv2_core.h) validates and calls forwardCuda; so may C++ callers, after validateLaunch.
#pragma once

#include <cuda_runtime_api.h>

#include "dcnv2_core.h"

namespace adnet {
namespace dcn {

// Enqueues the forward of a validated problem on `stream`; returns cudaGetLastError() after the launch
// (cudaSuccess for an empty batch). FP32: FP32 storage and SIMT FP32 math (no TF32). FP16: FP16 storage,
// tensor-core MMA, FP32 accumulation.
cudaError_t forwardCuda(Problem const& problem, AdnetDcnTensors const& tensors, cudaStream_t stream);

}  // namespace dcn
}  // namespace adnet
