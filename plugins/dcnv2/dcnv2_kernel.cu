// CUDA forward of AdnetDCNv2: the launcher and the C ABI entry point. The kernel and its design notes are in
// dcnv2_kernel.cuh.
#include "dcnv2_kernel.h"

#include <string>

#include "dcnv2_kernel.cuh"

namespace adnet {
namespace dcn {
namespace {

template <typename T>
cudaError_t launch(Problem const& problem, AdnetDcnTensors const& tensors, cudaStream_t stream)
{
    using Cfg = detail::TileConfig<T>;
    detail::LaunchPlan<T> const plan = detail::makeLaunchPlan<T>(problem, tensors);
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

}  // namespace

cudaError_t forwardCuda(Problem const& problem, AdnetDcnTensors const& tensors, cudaStream_t stream)
{
    return problem.type() == DataType::kFloat16 ? launch<__half>(problem, tensors, stream)
                                                : launch<float>(problem, tensors, stream);
}

}  // namespace dcn
}  // namespace adnet

extern "C" int32_t adnet_dcn_forward_cuda(AdnetDcnProblem const* desc, AdnetDcnTensors const* tensors, void* stream)
{
    namespace dcn = adnet::dcn;
    dcn::Problem problem;
    if (!dcn::acceptLaunch(desc, tensors, problem)) {
        return -1;
    }
    cudaError_t const status = dcn::forwardCuda(problem, *tensors, static_cast<cudaStream_t>(stream));
    if (status != cudaSuccess) {
        dcn::setLastError(std::string("AdnetDCNv2: CUDA launch failed: ") + cudaGetErrorName(status) + ": "
                          + cudaGetErrorString(status));
    }
    return static_cast<int32_t>(status);
}
