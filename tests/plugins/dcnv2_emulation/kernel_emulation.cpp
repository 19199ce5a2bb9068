// Executes the AdnetDCNv2 CUDA kernel source (plugins/dcnv2/dcnv2_kernel.cuh) on the CPU, so that its tiling,
// guards, shared-memory layout and barriers are tested where no GPU exists. A block runs as kThreads std::threads
// with a std::barrier for __syncthreads and a static array for __shared__; blocks run one after another; WMMA is
// the host stand-in in this folder. Built with AddressSanitizer/UBSan by tests/plugins/test_dcnv2_kernel_emulation.py.
//
// usage: kernel_emulation DTYPE N C H W COUT KH KW STRIDE PADDING DILATION DG DIR
//   DIR holds x.bin, offset_mask.bin, weight.bin, bias.bin (dense, float32 or binary16) and y.bin (initial output
//   contents, e.g. NaN poison), which is overwritten with the result. Exit 2 with the core's message when invalid.
#include <algorithm>
#include <barrier>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

// CUDA's execution model on the host, defined before the CUDA headers see __shared__.
struct EmulatedDim3 {
    unsigned x = 0, y = 0, z = 0;
};
thread_local EmulatedDim3 threadIdx;
thread_local EmulatedDim3 blockIdx;
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

#include <cuda_fp16.h>

#include "dcnv2_kernel.cuh"

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

template <typename T>
int run(adnet::dcn::Problem const& q, std::string const& dir)
{
    namespace detail = adnet::dcn::detail;
    auto x = readFile<T>(dir + "/x.bin", q.x.n * q.x.c * q.hw);
    auto om = readFile<T>(dir + "/offset_mask.bin", q.x.n * q.offsetMask.c * q.howo);
    auto wt = readFile<T>(dir + "/weight.bin", q.weight.n * q.reduction);
    auto bias = readFile<T>(dir + "/bias.bin", q.weight.n);
    auto y = readFile<T>(dir + "/y.bin", q.x.n * q.weight.n * q.howo);
    AdnetDcnTensors const tensors{x.data(), om.data(), wt.data(), bias.data(), y.data()};
    detail::LaunchPlan<T> const plan = detail::makeLaunchPlan<T>(q, tensors);
    int const threads = detail::TileConfig<T>::kThreads;
    std::barrier<> barrier(threads);
    gBlockBarrier = &barrier;
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; ++t) {
        pool.emplace_back([&, t] {
            threadIdx.x = static_cast<unsigned>(t);
            for (int64_t by = 0; by < plan.blocksY; ++by) {
                for (int64_t bx = 0; bx < plan.blocksX; ++bx) {
                    blockIdx.x = static_cast<unsigned>(bx);
                    blockIdx.y = static_cast<unsigned>(by);
                    detail::dcnForwardKernel<T>(plan.args);
                    barrier.arrive_and_wait();  // the block has ended before the next reuses shared memory
                }
            }
        });
    }
    for (auto& thread : pool) thread.join();
    std::ofstream out(dir + "/y.bin", std::ios::binary);
    out.write(reinterpret_cast<char const*>(y.data()), static_cast<std::streamsize>(y.size() * sizeof(T)));
    return out ? 0 : 3;
}

}  // namespace

int main(int argc, char** argv)
{
    if (argc != 14) {
        std::fprintf(stderr, "usage: %s DTYPE N C H W COUT KH KW STRIDE PADDING DILATION DG DIR\n", argv[0]);
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
    return desc.dtype == 1 ? run<__half>(problem, argv[13]) : run<float>(problem, argv[13]);
}
