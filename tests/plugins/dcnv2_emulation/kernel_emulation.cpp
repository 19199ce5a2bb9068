// Executes the AdnetDCNv2 CUDA kernel sources (plugins/dcnv2/dcnv2_kernel.cuh: the generic kernel, v1;
// dcnv2_kernel_v2.cuh: the FP16 channels-last fast path) on the CPU, so that their tiling, guards, shared-memory
// layouts, pipelining and barriers are tested where no GPU exists. A block runs as kThreads std::threads with a
// std::barrier for __syncthreads, static arrays for __shared__ and one heap buffer for the dynamic shared memory;
// blocks run one after another with gridDim as planned (persistent blocks walk several tiles); WMMA is the host
// stand-in in this folder. `make emulator` builds it with AddressSanitizer/UBSan.
//
// usage: kernel_emulation DTYPE N C H W COUT KH KW STRIDE PADDING DILATION DG XFMT OMFMT YFMT VARIANT SHARED BLOCKS DIR
//   formats and variant as in AdnetDcnProblem; SHARED: the fast path's resident-weights budget in bytes (the launcher
//   passes what keeps two blocks per SM: it keeps the weights resident when the block then fits); BLOCKS: the most
//   persistent blocks per output-channel tile.
//   DIR holds x.bin, offset_mask.bin, weight.bin, bias.bin (float32 or binary16, each in its format) and y.bin
//   (initial output contents, e.g. NaN poison), which is overwritten with the result. Prints which kernel ran.
//   Exit 2 with the core's message when invalid.
#include <algorithm>
#include <barrier>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

// CUDA's execution model on the host, defined before the CUDA headers see __shared__.
struct EmulatedDim3 {
    unsigned x = 0, y = 0, z = 0;
};
thread_local EmulatedDim3 threadIdx;
thread_local EmulatedDim3 blockIdx;
EmulatedDim3 gridDim;
unsigned char* gDynamicSharedMemory = nullptr;
static std::barrier<>* gBlockBarrier = nullptr;
inline void __syncthreads() { gBlockBarrier->arrive_and_wait(); }
template <typename T>
inline T __ldg(T const* p)
{
    return *p;
}
using std::max;
using std::min;
#define __shared__ static
#define __launch_bounds__(...)
#define ADNET_DCN_HOST_EMULATION 1

#include <cuda_fp16.h>
#include <vector_functions.h>

#include "dcnv2_kernel.cuh"
#include "dcnv2_kernel_v2.cuh"

namespace {

template <typename T>
std::vector<T> readFile(std::string const& path, size_t count)
{
    std::vector<T> data(count);
    std::ifstream in(path, std::ios::binary);
    in.read(reinterpret_cast<char*>(data.data()), static_cast<std::streamsize>(count * sizeof(T)));
    if (!in || in.peek() != EOF) {
        std::fprintf(stderr, "%s: expected exactly %zu bytes\n", path.c_str(), count * sizeof(T));
        std::exit(3);
    }
    return data;
}

// Runs `body` as every block of a blocksX x blocksY grid of `threads` threads, one block after another.
template <typename Body>
void runGrid(int threads, int64_t blocksX, int64_t blocksY, Body body)
{
    gridDim.x = static_cast<unsigned>(blocksX);
    gridDim.y = static_cast<unsigned>(blocksY);
    std::barrier<> barrier(threads);
    gBlockBarrier = &barrier;
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; ++t) {
        pool.emplace_back([&, t] {
            threadIdx.x = static_cast<unsigned>(t);
            for (int64_t by = 0; by < blocksY; ++by) {
                for (int64_t bx = 0; bx < blocksX; ++bx) {
                    blockIdx.x = static_cast<unsigned>(bx);
                    blockIdx.y = static_cast<unsigned>(by);
                    body();
                    barrier.arrive_and_wait();  // the block has ended before the next reuses shared memory
                }
            }
        });
    }
    for (auto& thread : pool) thread.join();
}

template <typename T>
int run(adnet::dcn::Problem const& q, size_t residentBudget, int64_t maxBlocks, std::string const& dir)
{
    namespace detail = adnet::dcn::detail;
    auto x = readFile<T>(dir + "/x.bin", q.x.n * q.x.c * q.hw);
    auto om = readFile<T>(dir + "/offset_mask.bin", q.x.n * q.offsetMask.c * q.howo);
    auto wt = readFile<T>(dir + "/weight.bin", q.weight.n * q.reduction);
    auto bias = readFile<T>(dir + "/bias.bin", q.weight.n);
    auto y = readFile<T>(dir + "/y.bin", q.x.n * q.weight.n * q.howo);
    AdnetDcnTensors const tensors{x.data(), om.data(), wt.data(), bias.data(), y.data()};
    bool ran = false;
    if constexpr (std::is_same_v<T, __half>) {
        if (q.fastPath()) {
            namespace v2 = adnet::dcn::v2;
            v2::LaunchPlan const plan = v2::makeLaunchPlan(q, tensors, residentBudget, maxBlocks);
            std::vector<unsigned char> shared(plan.sharedBytes + 128);
            gDynamicSharedMemory = shared.data() + (128 - reinterpret_cast<uintptr_t>(shared.data()) % 128) % 128;
            std::printf("fast path: %s weights, %zu bytes of shared memory, %lld x %lld blocks for %d tiles\n",
                        plan.args.residentWeights ? "resident" : "streamed", plan.sharedBytes,
                        static_cast<long long>(plan.blocksX), static_cast<long long>(plan.blocksY), plan.args.tiles);
            runGrid(v2::Config::kThreads, plan.blocksX, plan.blocksY, [&] { v2::dcnFastKernel(plan.args); });
            ran = true;
        }
    }
    if (!ran) {
        detail::LaunchPlan<T> const plan = detail::makeLaunchPlan<T>(q, tensors);
        std::printf("generic kernel: %lld x %lld blocks\n", static_cast<long long>(plan.blocksX),
                    static_cast<long long>(plan.blocksY));
        runGrid(detail::TileConfig<T>::kThreads, plan.blocksX, plan.blocksY,
                [&] { detail::dcnForwardKernel<T>(plan.args); });
    }
    std::ofstream out(dir + "/y.bin", std::ios::binary);
    out.write(reinterpret_cast<char const*>(y.data()), static_cast<std::streamsize>(y.size() * sizeof(T)));
    return out ? 0 : 3;
}

}  // namespace

int main(int argc, char** argv)
{
    if (argc != 20) {
        std::fprintf(stderr, "usage: %s DTYPE N C H W COUT KH KW STRIDE PADDING DILATION DG XFMT OMFMT YFMT VARIANT "
                     "SHARED BLOCKS DIR\n", argv[0]);
        return 2;
    }
    AdnetDcnProblem desc{};
    desc.dtype = std::atoi(argv[1]);
    int64_t d[7];
    for (int i = 0; i < 7; ++i) d[i] = std::atoll(argv[2 + i]);
    desc.stride = std::atoi(argv[9]);
    desc.padding = std::atoi(argv[10]);
    desc.dilation = std::atoi(argv[11]);
    desc.deformable_groups = std::atoi(argv[12]);
    desc.x_format = std::atoi(argv[13]);
    desc.offset_mask_format = std::atoi(argv[14]);
    desc.y_format = std::atoi(argv[15]);
    desc.variant = std::atoi(argv[16]);
    size_t const residentBudget = static_cast<size_t>(std::atoll(argv[17]));
    int64_t const maxBlocks = std::atoll(argv[18]);
    int64_t const ho = adnet::dcn::outputLength(d[2], d[5], desc.stride, desc.padding, desc.dilation);
    int64_t const wo = adnet::dcn::outputLength(d[3], d[6], desc.stride, desc.padding, desc.dilation);
    int64_t const x[4] = {d[0], d[1], d[2], d[3]};
    int64_t const om[4] = {d[0], 3 * desc.deformable_groups * d[5] * d[6], ho, wo};
    int64_t const w[4] = {d[4], d[1], d[5], d[6]};
    std::copy(x, x + 4, desc.x);
    std::copy(om, om + 4, desc.offset_mask);
    std::copy(w, w + 4, desc.weight);
    desc.bias_length = d[4];
    int const dummy = 0;
    AdnetDcnTensors const pointers{&dummy, &dummy, &dummy, &dummy, const_cast<int*>(&dummy)};
    adnet::dcn::Problem const problem = adnet::dcn::makeProblem(desc);
    std::string const e = adnet::dcn::validateLaunch(problem, pointers);
    if (!e.empty()) {
        std::fprintf(stderr, "%s\n", e.c_str());
        return 2;
    }
    return desc.dtype == 1 ? run<__half>(problem, residentBudget, maxBlocks, argv[19])
                           : run<float>(problem, residentBudget, maxBlocks, argv[19]);
}
