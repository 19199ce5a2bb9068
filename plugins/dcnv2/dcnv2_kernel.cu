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

// Shared memory per block that keeps two fast-path blocks resident per SM (the occupancy the kernel is built for,
// __launch_bounds__(256, 2)): half the SM's shared memory, less the driver's reserve and the kernel's static part.
size_t twoBlockBudget(size_t perProcessor, size_t reservedPerBlock, size_t staticBytes)
{
    size_t const half = perProcessor / 2;
    return half > reservedPerBlock + staticBytes ? half - reservedPerBlock - staticBytes : 0;
}

// The fast path: resident weights where two blocks per SM still fit, else streamed; one persistent block per
// resident slot (occupancy for the chosen shared-memory size) up to the number of pixel tiles.
cudaError_t launchFast(Problem const& problem, AdnetDcnTensors const& tensors, cudaStream_t stream)
{
    if (problem.pixels == 0) {
        return cudaSuccess;
    }
    int device = 0, optIn = 0, perSm = 0, reserved = 0, processors = 0, perProcessor = 0;
    cudaFuncAttributes attributes{};
    cudaError_t status = cudaGetDevice(&device);
    if (status == cudaSuccess) status = cudaDeviceGetAttribute(&optIn, cudaDevAttrMaxSharedMemoryPerBlockOptin, device);
    if (status == cudaSuccess) {
        status = cudaDeviceGetAttribute(&perSm, cudaDevAttrMaxSharedMemoryPerMultiprocessor, device);
    }
    if (status == cudaSuccess) status = cudaDeviceGetAttribute(&reserved, cudaDevAttrReservedSharedMemoryPerBlock, device);
    if (status == cudaSuccess) status = cudaDeviceGetAttribute(&processors, cudaDevAttrMultiProcessorCount, device);
    if (status == cudaSuccess) status = cudaFuncGetAttributes(&attributes, v2::dcnFastKernel);
    if (status != cudaSuccess) {
        return status;
    }
    size_t const budget = twoBlockBudget(static_cast<size_t>(perSm), static_cast<size_t>(reserved),
                                         attributes.sharedSizeBytes);
    v2::LaunchPlan plan = v2::makeLaunchPlan(problem, tensors, budget, INT64_MAX);
    if (plan.sharedBytes > static_cast<size_t>(optIn)) {
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

extern "C" int64_t adnet_dcn_fast_shared_bytes(AdnetDcnProblem const* desc, int64_t resident_budget,
                                               int32_t* resident_weights)
{
    namespace dcn = adnet::dcn;
    if (desc == nullptr || resident_weights == nullptr) {
        dcn::setLastError("AdnetDCNv2: adnet_dcn_fast_shared_bytes needs a problem and a result pointer");
        return -1;
    }
    dcn::Problem const problem = dcn::makeProblem(*desc);
    std::string error = dcn::validate(problem);
    if (error.empty() && (!problem.known() || !problem.fastPath())) {
        error = "AdnetDCNv2: the fast path's plan needs known dims and channels-last x (variant 0 or 2)";
    }
    if (!error.empty()) {
        dcn::setLastError(error);
        return -1;
    }
    AdnetDcnTensors const none{};
    dcn::v2::LaunchPlan const plan =
        dcn::v2::makeLaunchPlan(problem, none, static_cast<size_t>(resident_budget < 0 ? 0 : resident_budget), 1);
    *resident_weights = plan.args.residentWeights;
    return static_cast<int64_t>(plan.sharedBytes);
}
