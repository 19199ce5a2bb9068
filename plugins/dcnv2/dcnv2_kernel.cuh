// Device code of the AdnetDCNv2 CUDA forward: modulated deformable convolution (DCNv2, sigmoid fused) as an
// implicit GEMM.
//
// GEMM view: y[co, pixel] = bias[co] + sum_r W[co, r] * col[r, pixel] with r = c*K + k (K = kh*kw taps). A block
// owns a tile of kBM output channels x kBN output pixels (pixels flattened over batch, rows and columns, so any
// batch and any H/W tile the same way). It walks the reduction in steps; a step covers nc channels of one
// deformable group times nk taps (nc*nk <= kRowsMax rows; for ADNet's 3x3, dg 8, C 64 one step is a whole group:
// 8 channels x 9 taps = 72 rows). Per step:
//   1. the weight tile W[co0.., step rows] goes to shared memory (zero-padded to the MMA k-step);
//   2. each thread owns one pixel and a few taps: it reads that tap's (dy, dx, mask logit) once, computes the
//      sampling position, bilinear weights and sigmoid in float32 (dcnv2_sampling.h, shared with the CPU twin) and
//      gathers the nc channels of the group into the column tile in shared memory, mask applied;
//   3. the block multiplies the two tiles into its accumulators.
// The C*K*Ho*Wo column matrix never exists in global memory (no workspace). Offsets and mask logits are read once
// per block (once per tile pixel and tap) unless a group has more channels than a step holds.
//
// FP16 (T = __half): column values are rounded to binary16 when stored in the shared tile (the CPU twin rounds at
// the same point), products on tensor cores via WMMA 16x16x16 with FP32 accumulation, bias added in FP32, output
// rounded to nearest even. 64 x 128 block tile, 8 warps in 2 x 4, each 32 x 32 (2 x 2 fragments).
// FP32 (T = float): SIMT FMA on a 64 x 64 tile, 4 x 4 outputs per thread, everything in float32 (no TF32).
// Shared memory: 39.4 KB (FP16) / 39.0 KB (FP32) static; the epilogue's FP32 staging tile reuses it.
//
// Included by dcnv2_kernel.cu. tests/plugins/dcnv2_emulation/ also compiles it as host C++ (threads + barriers for a block,
// an emulated WMMA) to execute this exact code on a machine without a GPU.
#pragma once

#include <mma.h>

#include <cstddef>
#include <cstdint>

#include <cuda_fp16.h>

#include "dcnv2_core.h"
#include "dcnv2_sampling.h"

namespace adnet {
namespace dcn {
namespace detail {

template <typename T>
struct TileConfig;

template <>
struct TileConfig<__half> {
    static constexpr int kThreads = 256;
    static constexpr int kBM = 64;              // output channels per block
    static constexpr int kBN = 128;             // output pixels per block
    static constexpr int kRowsMax = 96;         // reduction rows ((channel, tap) pairs) per step
    static constexpr int kRowAlign = 16;        // MMA k-step
    static constexpr int kLdA = kRowsMax + 8;   // +16 bytes per row: conflict-free fragment loads
    static constexpr int kLdB = kBN + 8;
    static constexpr int kLdC = kBN + 4;        // floats
};

template <>
struct TileConfig<float> {
    static constexpr int kThreads = 256;
    static constexpr int kBM = 64;
    static constexpr int kBN = 64;
    static constexpr int kRowsMax = 72;
    static constexpr int kRowAlign = 4;         // float4 reads along the reduction
    static constexpr int kLdA = kRowsMax + 4;
    static constexpr int kLdB = kBN + 4;
    static constexpr int kLdC = kBN + 4;
};

template <typename T>
struct SmemLayout {
    using Cfg = TileConfig<T>;
    static constexpr size_t kABytes = size_t{Cfg::kBM} * Cfg::kLdA * sizeof(T);
    static constexpr size_t kBBytes = size_t{Cfg::kRowsMax} * Cfg::kLdB * sizeof(T);
    static constexpr size_t kCBytes = size_t{Cfg::kBM} * Cfg::kLdC * sizeof(float);
    static constexpr size_t kBytes = kABytes + kBBytes > kCBytes ? kABytes + kBBytes : kCBytes;
    static_assert(kBytes <= 48 * 1024, "static shared memory is limited to 48 KB");
    static_assert(kABytes % 128 == 0, "the column tile must stay 128-byte aligned");
    static_assert(Cfg::kRowsMax % Cfg::kRowAlign == 0, "padded steps must fit the tiles");
    static_assert(Cfg::kThreads % Cfg::kBN == 0, "each thread owns one pixel column");
};

// The five tensors of a launch, typed (both kernels' arguments start with them).
template <typename T>
struct TensorPointers {
    T const* x;
    T const* offsetMask;
    T const* weight;
    T const* bias;
    T* y;

    void set(AdnetDcnTensors const& t)
    {
        x = static_cast<T const*>(t.x);
        offsetMask = static_cast<T const*>(t.offset_mask);
        weight = static_cast<T const*>(t.weight);
        bias = static_cast<T const*>(t.bias);
        y = static_cast<T*>(t.y);
    }
};

template <typename T>
struct KernelArgs : TensorPointers<T> {
    int64_t pixels;  // n * Ho * Wo
    int32_t c, h, w, cout, kw, k, wo, hw, howo;
    int32_t stride, padding, dilation, dg, cg;
    int32_t stepChannels, stepTaps;  // a step gathers up to stepChannels x stepTaps rows (<= kRowsMax)
};

template <typename T>
__device__ __forceinline__ T fromFloat(float v);
template <>
__device__ __forceinline__ float fromFloat<float>(float v) { return v; }
template <>
__device__ __forceinline__ __half fromFloat<__half>(float v) { return __float2half_rn(v); }

template <typename T>
struct Accumulator;

// FP16: tensor cores, FP32 accumulation. Warp (wm, wn) owns channels [32 wm, 32 wm + 32) x pixels [32 wn, 32 wn + 32).
template <>
struct Accumulator<__half> {
    using Cfg = TileConfig<__half>;
    static_assert(Cfg::kBM == 2 * 32 && Cfg::kBN == 4 * 32 && Cfg::kThreads == 8 * 32, "2 x 4 warps of 32 x 32");
    nvcuda::wmma::fragment<nvcuda::wmma::accumulator, 16, 16, 16, float> frag[2][2];

    __device__ void zero()
    {
#pragma unroll
        for (int i = 0; i < 2; ++i)
#pragma unroll
            for (int j = 0; j < 2; ++j) nvcuda::wmma::fill_fragment(frag[i][j], 0.f);
    }

    __device__ void multiply(__half const* as, __half const* bs, int rowsPadded)
    {
        using namespace nvcuda;
        int const warp = threadIdx.x / 32;
        __half const* aWarp = as + (warp / 4) * 32 * Cfg::kLdA;
        __half const* bWarp = bs + (warp % 4) * 32;
        for (int ks = 0; ks < rowsPadded; ks += 16) {
            wmma::fragment<wmma::matrix_a, 16, 16, 16, __half, wmma::row_major> a[2];
            wmma::fragment<wmma::matrix_b, 16, 16, 16, __half, wmma::row_major> b[2];
#pragma unroll
            for (int i = 0; i < 2; ++i) wmma::load_matrix_sync(a[i], aWarp + i * 16 * Cfg::kLdA + ks, Cfg::kLdA);
#pragma unroll
            for (int j = 0; j < 2; ++j) wmma::load_matrix_sync(b[j], bWarp + ks * Cfg::kLdB + j * 16, Cfg::kLdB);
#pragma unroll
            for (int i = 0; i < 2; ++i)
#pragma unroll
                for (int j = 0; j < 2; ++j) wmma::mma_sync(frag[i][j], a[i], b[j], frag[i][j]);
        }
    }

    __device__ void store(float* cs) const
    {
        int const warp = threadIdx.x / 32;
        float* cWarp = cs + (warp / 4) * 32 * Cfg::kLdC + (warp % 4) * 32;
#pragma unroll
        for (int i = 0; i < 2; ++i)
#pragma unroll
            for (int j = 0; j < 2; ++j)
                nvcuda::wmma::store_matrix_sync(cWarp + i * 16 * Cfg::kLdC + j * 16, frag[i][j], Cfg::kLdC,
                                                nvcuda::wmma::mem_row_major);
    }
};

__device__ __forceinline__ float component(float4 const& v, int i)
{
    return i == 0 ? v.x : i == 1 ? v.y : i == 2 ? v.z : v.w;
}

// FP32: SIMT FMA. Thread (ty, tx) owns channels [4 ty, 4 ty + 4) x pixels [4 tx, 4 tx + 4).
template <>
struct Accumulator<float> {
    using Cfg = TileConfig<float>;
    static_assert(Cfg::kBM == 16 * 4 && Cfg::kBN == 16 * 4 && Cfg::kThreads == 16 * 16, "16 x 16 threads of 4 x 4");
    float v[4][4];

    __device__ void zero()
    {
#pragma unroll
        for (int i = 0; i < 4; ++i)
#pragma unroll
            for (int j = 0; j < 4; ++j) v[i][j] = 0.f;
    }

    __device__ void multiply(float const* as, float const* bs, int rowsPadded)
    {
        float const* aThread = as + (threadIdx.x / 16) * 4 * Cfg::kLdA;
        float const* bThread = bs + (threadIdx.x % 16) * 4;
        for (int r = 0; r < rowsPadded; r += 4) {
            float4 a[4];
#pragma unroll
            for (int i = 0; i < 4; ++i) a[i] = *reinterpret_cast<float4 const*>(aThread + i * Cfg::kLdA + r);
#pragma unroll
            for (int rr = 0; rr < 4; ++rr) {
                float4 const b = *reinterpret_cast<float4 const*>(bThread + (r + rr) * Cfg::kLdB);
#pragma unroll
                for (int i = 0; i < 4; ++i) {
                    float const ai = component(a[i], rr);
                    v[i][0] = fmaf(ai, b.x, v[i][0]);
                    v[i][1] = fmaf(ai, b.y, v[i][1]);
                    v[i][2] = fmaf(ai, b.z, v[i][2]);
                    v[i][3] = fmaf(ai, b.w, v[i][3]);
                }
            }
        }
    }

    __device__ void store(float* cs) const
    {
        float* cThread = cs + (threadIdx.x / 16) * 4 * Cfg::kLdC + (threadIdx.x % 16) * 4;
#pragma unroll
        for (int i = 0; i < 4; ++i)
            *reinterpret_cast<float4*>(cThread + i * Cfg::kLdC) = make_float4(v[i][0], v[i][1], v[i][2], v[i][3]);
    }
};

template <typename T>
__global__ void __launch_bounds__(TileConfig<T>::kThreads, 2) dcnForwardKernel(KernelArgs<T> const a)
{
    using Cfg = TileConfig<T>;
    using Smem = SmemLayout<T>;
    constexpr int kPhases = Cfg::kThreads / Cfg::kBN;  // threads sharing one pixel column
    __shared__ __align__(128) unsigned char smem[Smem::kBytes];
    T* const as = reinterpret_cast<T*>(smem);                   // weights   [kBM][kLdA]
    T* const bs = reinterpret_cast<T*>(smem + Smem::kABytes);   // columns   [kRowsMax][kLdB]
    float* const cs = reinterpret_cast<float*>(smem);           // epilogue  [kBM][kLdC], after the last step

    int const tid = threadIdx.x;
    int const lane = tid % 32;
    int const warp = tid / 32;
    int const co0 = blockIdx.y * Cfg::kBM;
    int const px = tid % Cfg::kBN;     // this thread's pixel column in the tile
    int const phase = tid / Cfg::kBN;  // it gathers taps phase, phase + kPhases, ... and stores rows likewise

    int64_t const pixel = int64_t{blockIdx.x} * Cfg::kBN + px;
    bool const active = pixel < a.pixels;
    int64_t batch = 0;
    int32_t plane = 0, oh = 0, ow = 0;
    if (active) {
        batch = pixel / a.howo;
        plane = static_cast<int32_t>(pixel - batch * a.howo);
        oh = plane / a.wo;
        ow = plane - oh * a.wo;
    }
    T const* const xBatch = a.x + batch * a.c * int64_t{a.hw};
    T const* const omPixel = a.offsetMask + batch * (3 * int64_t{a.dg} * a.k) * a.howo + plane;
    int32_t const ck = a.c * a.k;

    Accumulator<T> acc;
    acc.zero();
    for (int g = 0; g < a.dg; ++g) {
        int const cEnd = (g + 1) * a.cg;
        for (int c0 = g * a.cg; c0 < cEnd; c0 += a.stepChannels) {
            int const nc = min(a.stepChannels, cEnd - c0);
            for (int k0 = 0; k0 < a.k; k0 += a.stepTaps) {
                int const nk = min(a.stepTaps, a.k - k0);
                int const rows = nc * nk;  // row r = cc * nk + kk  <->  channel c0 + cc, tap k0 + kk
                int const rowsPadded = (rows + Cfg::kRowAlign - 1) / Cfg::kRowAlign * Cfg::kRowAlign;
                __syncthreads();  // the previous step's multiply is done with both tiles

                // 1. Weights W[co][(c0 + cc) * K + k0 + kk], zero past Cout and past the step's rows.
                for (int m = warp; m < Cfg::kBM; m += Cfg::kThreads / 32) {
                    int const co = co0 + m;
                    T* const aRow = as + m * Cfg::kLdA;
                    for (int r = lane; r < rowsPadded; r += 32) {
                        T v = fromFloat<T>(0.f);
                        if (co < a.cout && r < rows) {
                            int const offset = nk == a.k ? r : (r / nk) * a.k + r % nk;
                            v = __ldg(a.weight + int64_t{co} * ck + c0 * a.k + k0 + offset);
                        }
                        aRow[r] = v;
                    }
                }

                // 2. Columns: one sampling per (pixel, tap), reused for the nc channels of the group.
                for (int kk = phase; kk < nk; kk += kPhases) {
                    int const k = k0 + kk;
                    DcnTap tap = dcnEmptyTap();
                    if (active) {
                        int const i = k / a.kw;
                        int const j = k - i * a.kw;
                        float const dy = dcnLoad(omPixel + int64_t{g * 2 * a.k + 2 * k} * a.howo);
                        float const dx = dcnLoad(omPixel + int64_t{g * 2 * a.k + 2 * k + 1} * a.howo);
                        float const logit = dcnLoad(omPixel + int64_t{2 * a.dg * a.k + g * a.k + k} * a.howo);
                        tap = dcnBilinearTap(dcnSamplePosition(oh, i, a.stride, a.padding, a.dilation, dy),
                                             dcnSamplePosition(ow, j, a.stride, a.padding, a.dilation, dx), a.h, a.w,
                                             dcnSigmoid(logit));
                    }
                    T const* xPlane = xBatch + int64_t{c0} * a.hw;
                    T* const bCol = bs + kk * Cfg::kLdB + px;
#pragma unroll 4
                    for (int cc = 0; cc < nc; ++cc) {
                        // FP16: the rounding point of the columns (the twin rounds here too).
                        bCol[cc * nk * Cfg::kLdB] = fromFloat<T>(dcnModulatedSample(tap, xPlane, a.w));
                        xPlane += a.hw;
                    }
                }
                for (int e = tid; e < (rowsPadded - rows) * Cfg::kBN; e += Cfg::kThreads) {
                    bs[(rows + e / Cfg::kBN) * Cfg::kLdB + e % Cfg::kBN] = fromFloat<T>(0.f);
                }
                __syncthreads();

                // 3. acc += W tile x column tile.
                acc.multiply(as, bs, rowsPadded);
            }
        }
    }

    __syncthreads();  // the staging tile overlaps both input tiles
    acc.store(cs);
    __syncthreads();
    if (active) {
        T* const yPixel = a.y + batch * a.cout * int64_t{a.howo} + plane;
        for (int m = phase; m < Cfg::kBM && co0 + m < a.cout; m += kPhases) {
            int const co = co0 + m;
            yPixel[int64_t{co} * a.howo] = fromFloat<T>(cs[m * Cfg::kLdC + px] + dcnLoad(a.bias + co));
        }
    }
}

// Kernel arguments and grid (host side).
template <typename T>
struct LaunchPlan {
    KernelArgs<T> args;
    int64_t blocksX;  // pixel tiles
    int64_t blocksY;  // output-channel tiles
};

// Kernel arguments for a validated problem, 32-bit where the core's limits allow it.
template <typename T>
LaunchPlan<T> makeLaunchPlan(Problem const& q, AdnetDcnTensors const& t)
{
    using Cfg = TileConfig<T>;
    LaunchPlan<T> plan;
    KernelArgs<T>& a = plan.args;
    a.set(t);
    a.pixels = q.pixels;
    a.c = static_cast<int32_t>(q.x.c);
    a.h = static_cast<int32_t>(q.x.h);
    a.w = static_cast<int32_t>(q.x.w);
    a.cout = static_cast<int32_t>(q.weight.n);
    a.kw = static_cast<int32_t>(q.weight.w);
    a.k = static_cast<int32_t>(q.k);
    a.wo = static_cast<int32_t>(q.y.w);
    a.hw = static_cast<int32_t>(q.hw);
    a.howo = static_cast<int32_t>(q.howo);
    a.stride = q.params.stride;
    a.padding = q.params.padding;
    a.dilation = q.params.dilation;
    a.dg = q.params.deformable_groups;
    a.cg = static_cast<int32_t>(q.cg);
    a.stepTaps = a.k < Cfg::kRowsMax ? a.k : Cfg::kRowsMax;
    int32_t const channels = Cfg::kRowsMax / a.stepTaps;
    a.stepChannels = channels < 1 ? 1 : (channels < a.cg ? channels : a.cg);
    plan.blocksX = (a.pixels + Cfg::kBN - 1) / Cfg::kBN;
    plan.blocksY = (int64_t{a.cout} + Cfg::kBM - 1) / Cfg::kBM;
    return plan;
}

}  // namespace detail
}  // namespace dcn
}  // namespace adnet
