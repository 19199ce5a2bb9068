// CUDA forward of AdnetDCNv2 (implicit GEMM, no workspace): the templated launcher and its float/half wrappers.
// The C ABI entry point adnet_dcn_forward_cuda (dcnv2_core.h) validates and calls these; so may the TensorRT
// adapter, after validating with adnet::dcn::validateLaunch.
#pragma once

#include <cstdint>

#include <cuda_fp16.h>
#include <cuda_runtime_api.h>

namespace adnet {
namespace dcn {

// A validated problem: x [n, c, h, w], offset_mask_logits [n, 3*dg*kh*kw, Ho, Wo], weight [cout, c, kh, kw],
// bias [cout], y [n, cout, Ho, Wo]; all dense NCHW.
struct ForwardProblem {
    int64_t n, c, h, w, cout, kh, kw;
    int32_t stride, padding, dilation, deformableGroups;
};

// Enqueues the forward on `stream`; returns cudaGetLastError() after the launch (cudaSuccess for an empty batch).
// T = float: FP32 storage and SIMT FP32 math (no TF32). T = __half: FP16 storage, tensor-core MMA, FP32 accumulation.
template <typename T>
cudaError_t forwardCuda(T const* x, T const* offsetMask, T const* weight, T const* bias, T* y,
                        ForwardProblem const& problem, cudaStream_t stream);

cudaError_t forwardCudaFloat(float const* x, float const* offsetMask, float const* weight, float const* bias,
                             float* y, ForwardProblem const& problem, cudaStream_t stream);
cudaError_t forwardCudaHalf(__half const* x, __half const* offsetMask, __half const* weight, __half const* bias,
                            __half* y, ForwardProblem const& problem, cudaStream_t stream);

}  // namespace dcn
}  // namespace adnet
