// CUDA forward of AdnetDCNv2: the launcher (templated, with float/half wrappers) and the C ABI entry point.
// The kernel and its design notes are in dcnv2_kernel.cuh.
#include "dcnv2_kernel.h"

#include <string>

#include "dcnv2_core.h"
#include "dcnv2_kernel.cuh"

namespace adnet {
namespace dcn {

template <typename T>
cudaError_t forwardCuda(T const* x, T const* offsetMask, T const* weight, T const* bias, T* y,
                        ForwardProblem const& p, cudaStream_t stream)
{
    using Cfg = detail::TileConfig<T>;
    detail::LaunchPlan<T> const plan = detail::makeLaunchPlan(x, offsetMask, weight, bias, y, p.n, p.c, p.h, p.w,
                                                              p.cout, p.kh, p.kw, p.stride, p.padding, p.dilation,
                                                              p.deformableGroups);
    if (plan.args.pixels == 0 || plan.args.cout == 0) {
        return cudaSuccess;
    }
    if (plan.blocksX > 0x7fffffff || plan.blocksY > 65535) {
        return cudaErrorInvalidConfiguration;
    }
    dim3 const grid(static_cast<unsigned>(plan.blocksX), static_cast<unsigned>(plan.blocksY));
    detail::dcnForwardKernel<T><<<grid, Cfg::kThreads, 0, stream>>>(plan.args);
    return cudaGetLastError();
}

template cudaError_t forwardCuda<float>(float const*, float const*, float const*, float const*, float*,
                                        ForwardProblem const&, cudaStream_t);
template cudaError_t forwardCuda<__half>(__half const*, __half const*, __half const*, __half const*, __half*,
                                         ForwardProblem const&, cudaStream_t);

cudaError_t forwardCudaFloat(float const* x, float const* offsetMask, float const* weight, float const* bias,
                             float* y, ForwardProblem const& problem, cudaStream_t stream)
{
    return forwardCuda<float>(x, offsetMask, weight, bias, y, problem, stream);
}

cudaError_t forwardCudaHalf(__half const* x, __half const* offsetMask, __half const* weight, __half const* bias,
                            __half* y, ForwardProblem const& problem, cudaStream_t stream)
{
    return forwardCuda<__half>(x, offsetMask, weight, bias, y, problem, stream);
}

}  // namespace dcn
}  // namespace adnet

extern "C" int32_t adnet_dcn_forward_cuda(int32_t dtype, void const* x, void const* offsetMask, void const* weight,
                                          void const* bias, void* y, int64_t n, int64_t c, int64_t h, int64_t w,
                                          int64_t cout, int64_t kh, int64_t kw, int32_t stride, int32_t padding,
                                          int32_t dilation, int32_t deformableGroups, void* /*workspace*/,
                                          void* stream)
{
    namespace dcn = adnet::dcn;
    if (!dcn::acceptLaunch(dtype, x, offsetMask, weight, bias, y, n, c, h, w, cout, kh, kw, stride, padding, dilation,
                           deformableGroups)) {
        return -1;
    }
    dcn::ForwardProblem const problem{n, c, h, w, cout, kh, kw, stride, padding, dilation, deformableGroups};
    auto const s = static_cast<cudaStream_t>(stream);
    cudaError_t status;
    if (dtype == static_cast<int32_t>(dcn::DataType::kFloat16)) {
        status = dcn::forwardCudaHalf(static_cast<__half const*>(x), static_cast<__half const*>(offsetMask),
                                      static_cast<__half const*>(weight), static_cast<__half const*>(bias),
                                      static_cast<__half*>(y), problem, s);
    } else {
        status = dcn::forwardCudaFloat(static_cast<float const*>(x), static_cast<float const*>(offsetMask),
                                       static_cast<float const*>(weight), static_cast<float const*>(bias),
                                       static_cast<float*>(y), problem, s);
    }
    if (status != cudaSuccess) {
        dcn::setLastError(std::string("AdnetDCNv2: CUDA launch failed: ") + cudaGetErrorName(status) + ": "
                          + cudaGetErrorString(status));
    }
    return static_cast<int32_t>(status);
}
