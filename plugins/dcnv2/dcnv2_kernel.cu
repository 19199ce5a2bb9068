// CUDA forward of AdnetDCNv2: the launcher and the C ABI entry point. The kernel and its design notes are in
// dcnv2_kernel.cuh.
#include "dcnv2_kernel.h"

#include <cstdint>
#include <string>

#include "dcnv2_kernel.cuh"
#include "dcnv2_kernel_v2.cuh"

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

// The fast path: resident weights when the device's opt-in shared memory holds them, one persistent block per
// resident slot (occupancy for the chosen shared-memory size) up to the number of pixel tiles.
cudaError_t launchFast(Problem const& problem, AdnetDcnTensors const& tensors, cudaStream_t stream)
{
    if (problem.pixels == 0) {
        return cudaSuccess;
    }
    int device = 0, sharedLimit = 0, processors = 0, perProcessor = 0;
    cudaError_t status = cudaGetDevice(&device);
    if (status == cudaSuccess) status = cudaDeviceGetAttribute(&sharedLimit, cudaDevAttrMaxSharedMemoryPerBlockOptin, device);
    if (status == cudaSuccess) status = cudaDeviceGetAttribute(&processors, cudaDevAttrMultiProcessorCount, device);
    if (status != cudaSuccess) {
        return status;
    }
    v2::LaunchPlan plan = v2::makeLaunchPlan(problem, tensors, static_cast<size_t>(sharedLimit), INT64_MAX);
    if (plan.sharedBytes > static_cast<size_t>(sharedLimit)) {
        return cudaErrorInvalidConfiguration;
    }
    status = cudaFuncSetAttribute(v2::dcnFastKernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                  static_cast<int>(plan.sharedBytes));
    if (status == cudaSuccess) {
        status = cudaOccupancyMaxActiveBlocksPerMultiprocessor(&perProcessor, v2::dcnFastKernel, v2::Config::kThreads,
                                                               plan.sharedBytes);
    }
    if (status != cudaSuccess) {
        return status;
    }
    int64_t const slots = int64_t{perProcessor > 0 ? perProcessor : 1} * processors;
    plan.blocksX = plan.blocksX < slots ? plan.blocksX : slots;
    if (plan.blocksY > 65535) {
        return cudaErrorInvalidConfiguration;
    }
    dim3 const grid(static_cast<unsigned>(plan.blocksX), static_cast<unsigned>(plan.blocksY));
    v2::dcnFastKernel<<<grid, v2::Config::kThreads, plan.sharedBytes, stream>>>(plan.args);
    return cudaGetLastError();
}

}  // namespace

cudaError_t forwardCuda(Problem const& problem, AdnetDcnTensors const& tensors, cudaStream_t stream)
{
    if (problem.fastPath()) {
        return launchFast(problem, tensors, stream);
    }
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
