// Device code of the AdnetDCNv2 fast path (kernel v2): FP16, channels-last x (dense NHWC = TensorRT kHWC8 with C a
// multiple of 8), C/dg a multiple of 8, a 3x3 kernel, C <= 1024, dilation <= 16383 (the core's formatSupported and
// validate). Linear x runs the generic kernel (dcnv2_kernel.cuh, v1).
//
// Same GEMM as v1 (y[co, pixel] = bias + sum_r W[co, r] * col[r, pixel]), with the reduction ordered tap-major inside
// each deformable group: r = (g*9 + k)*cg + c. Eight consecutive rows are then 8 channels of one (group, tap), which
// sit next to each other in a channels-last image: one segment = one sampling position, four 128-bit corner loads,
// 8 bilinear interpolations in FP32 and one 128-bit shared-memory store into the column tile.
//
// - Column tile [pixel][row] (rows contiguous: the MMA's B operand in column-major order), 128 pixels x 64 rows per
//   pipeline step, double-buffered: while some warps multiply step s, the others already gather step s+1; one
//   __syncthreads per step.
// - Weights, permuted to the tap-major order, stay in dynamic shared memory for the block's life where two blocks
//   per SM still fit (ADNet: 64 x 584 halves = 74.8 KB + 36.9 KB of column buffers + 1.2 KB of segment table =
//   110 KB: resident on sm_90's 228 KB, not on sm_80's 164 KB); else they are streamed per step next to the columns
//   (double-buffered likewise). Blocks are persistent: each walks pixel tiles blockIdx.x, blockIdx.x + gridDim.x,
//   ..., so resident weights are read from L2 once per block, not once per tile.
// - What a segment reads (its channels, the element offsets of its dy and mask logit, its tap's position) comes from
//   a table built once per block in shared memory: no integer division in the gather.
// - Work is balanced: every thread owns one pixel and gathers the same number of segments per step.
// - 32-bit index math inside an image (validate() bounds H*W*C and the offsets' 27*dg*Ho*Wo below 2^31 for this
//   path), 64-bit only for the image and pixel bases.
// - Sampling positions, bilinear weights, the sigmoid and the interpolation are FP32 (dcnv2_sampling.h, shared with
//   the twin); column values are rounded to binary16 where they are stored; the tensor cores accumulate in FP32.
//
// Included by dcnv2_kernel.cu; tests/plugins/dcnv2_emulation/ compiles it as host C++ as well.
#pragma once

#include <mma.h>

#include <cstddef>
#include <cstdint>

#include <cuda_fp16.h>

#include "dcnv2_core.h"
#include "dcnv2_kernel.cuh"
#include "dcnv2_sampling.h"

#if defined(ADNET_DCN_HOST_EMULATION)
extern unsigned char* gDynamicSharedMemory;  // the emulation's stand-in for extern __shared__
#endif

namespace adnet {
namespace dcn {
namespace v2 {

struct Config {
    static constexpr int kThreads = 256;
    static constexpr int kBM = 64;                  // output channels per block
    static constexpr int kBN = 128;                 // output pixels per tile
    static constexpr int kStepRows = 64;            // reduction rows per pipeline step
    static constexpr int kVector = kChannelsLastVector;  // channels per segment (one 128-bit load)
    static constexpr int kSegments = kStepRows / kVector;
    static constexpr int kPhases = kThreads / kBN;  // threads per pixel
    static constexpr int kLdB = kStepRows + 8;      // halves per pixel in a column buffer (+16 bytes: no bank conflict)
    static constexpr int kLdC = kBN + 4;            // floats per output channel in the epilogue tile
    static constexpr int kTaps = 9;
    static constexpr int kKw = 3;
    static constexpr size_t kBufferBytes = size_t{kBN} * kLdB * sizeof(__half);
    static constexpr size_t kColumnBytes = 2 * kBufferBytes;
    static_assert(kSegments % kPhases == 0, "balanced segments per thread");
    static_assert(size_t{kBM} * kLdC * sizeof(float) <= kColumnBytes, "the epilogue tile reuses the column buffers");
    static_assert(kBufferBytes % 128 == 0, "buffers stay 128-byte aligned");
};

// One segment of the reduction (8 rows: 8 channels of one deformable group at one tap), as the gather needs it.
struct Segment {
    int32_t channel;    // first channel in x's pixel vector, (g*cg8 + c8)*8; -1 past the rows (zero padding)
    int32_t offsetY;    // element offset of the tap's dy in the pixel's offsets; dx is one channel further
    int32_t maskLogit;  // element offset of the tap's mask logit
    int32_t tap;        // (i*dilation) << 16 | (j*dilation & 0xffff): the tap's position relative to the pixel's
};
static_assert(sizeof(Segment) == 16, "one 128-bit shared-memory load per segment");

struct Args : detail::TensorPointers<__half> {
    int64_t pixels;  // B * Ho * Wo
    int32_t tiles;   // pixel tiles of kBN
    int32_t c, h, w, hw, wc, cout, wo, howo, dg, cg, cg8, omChannels;  // wc = W*C: one image row
    int32_t stride, padding, dilation;
    int32_t rows;            // reduction rows C*9
    int32_t steps;           // pipeline steps of kStepRows
    int32_t ldA;             // halves per output channel of a weight buffer
    int32_t residentWeights; // 1: all steps' weights in shared memory for the block's life
    int32_t omLast, yLast;   // offset_mask / y channels-last
    int32_t omStride;        // elements between two channels of a pixel's offsets (1 channels-last, Ho*Wo linear)
};

__device__ __forceinline__ unsigned char* dynamicSharedMemory()
{
#if defined(ADNET_DCN_HOST_EMULATION)
    return gDynamicSharedMemory;
#else
    extern __shared__ __align__(128) unsigned char dynamicSmem[];
    return dynamicSmem;
#endif
}

__device__ __forceinline__ uint4 load128(__half const* p)
{
    return __ldg(reinterpret_cast<uint4 const*>(p));
}

__device__ __forceinline__ float lane(uint4 const& v, int e)
{
    uint32_t const word = e < 2 ? v.x : e < 4 ? v.y : e < 6 ? v.z : v.w;
    __half_raw raw;
    raw.x = static_cast<unsigned short>((e & 1) ? word >> 16 : word & 0xffffu);
    return __half2float(__half(raw));
}

__device__ __forceinline__ uint32_t packHalves(float lo, float hi)
{
    __half2_raw const raw = __floats2half2_rn(lo, hi);
    return static_cast<uint32_t>(raw.x) | (static_cast<uint32_t>(raw.y) << 16);
}

// Rows [r0, r0 + count) of the weights, permuted to the tap-major order, into buffer `as` ([kBM][ldA]); zero past
// Cout and past the rows. The streamed path (one step's rows at a time).
__device__ void loadWeightRows(Args const& a, __half* as, int co0, int r0, int count)
{
#pragma unroll 1
    for (int e = threadIdx.x; e < Config::kBM * count; e += Config::kThreads) {
        int const m = e / count;
        int const r = e - m * count;
        int const row = r0 + r;
        __half v = __float2half_rn(0.f);
        if (co0 + m < a.cout && row < a.rows) {
            int const gk = row / a.cg;  // (group, tap)
            int const cl = row - gk * a.cg;
            int const g = gk / Config::kTaps;
            int const k = gk - g * Config::kTaps;
            v = a.weight[(int64_t{co0 + m} * a.c + g * a.cg + cl) * Config::kTaps + k];
        }
        as[m * a.ldA + r] = v;
    }
}

// All weights of the block's output channels, for the resident path: 128-bit loads of W[co][c*9 + k] (a row of
// C*9 halves is a multiple of 16 bytes), each half stored at its tap-major row; rows past Cout and the padding of
// the last step are zero.
__device__ void loadAllWeights(Args const& a, __half* as, int co0)
{
    int const chunks = a.rows / Config::kVector;
    int const padded = a.steps * Config::kStepRows;
    for (int e = threadIdx.x; e < Config::kBM * padded; e += Config::kThreads) {
        int const m = e / padded;
        int const r = e - m * padded;
        if (co0 + m >= a.cout || r >= a.rows) {
            as[m * a.ldA + r] = __float2half_rn(0.f);
        }
    }
#pragma unroll 1
    for (int e = threadIdx.x; e < Config::kBM * chunks; e += Config::kThreads) {
        int const m = e / chunks;
        int const q = e - m * chunks;
        if (co0 + m < a.cout) {
            uint4 const v = load128(a.weight + int64_t{co0 + m} * a.rows + q * Config::kVector);
            uint32_t const words[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
            for (int n = 0; n < Config::kVector; ++n) {
                int const source = q * Config::kVector + n;  // c*9 + k
                int const c = source / Config::kTaps;
                int const k = source - c * Config::kTaps;
                int const g = c / a.cg;
                int const row = (g * Config::kTaps + k) * a.cg + (c - g * a.cg);
                __half_raw raw;
                raw.x = static_cast<unsigned short>((n & 1) ? words[n / 2] >> 16 : words[n / 2] & 0xffffu);
                as[m * a.ldA + row] = __half(raw);
            }
        }
    }
}

// The tile's pixel for this thread: image base, offsets base and the sampling origin.
struct PixelState {
    bool active;
    int64_t pixel;
    __half const* image;  // x of this pixel's batch entry (channels-last)
    __half const* om;     // offset_mask of this pixel: channel stride omStride
    int32_t omStride;
    int32_t baseY, baseX;
};

__device__ PixelState pixelState(Args const& a, int tile, int px)
{
    PixelState s{};
    s.pixel = int64_t{tile} * Config::kBN + px;
    s.active = s.pixel < a.pixels;
    int64_t const batch = s.active ? s.pixel / a.howo : 0;
    int32_t const plane = s.active ? static_cast<int32_t>(s.pixel - batch * a.howo) : 0;
    int32_t const oh = plane / a.wo;
    int32_t const ow = plane - oh * a.wo;
    s.image = a.x + batch * a.hw * int64_t{a.c};
    s.om = a.omLast ? a.offsetMask + (s.active ? s.pixel : 0) * a.omChannels
                    : a.offsetMask + batch * a.omChannels * int64_t{a.howo} + plane;
    s.omStride = a.omStride;
    s.baseY = oh * a.stride - a.padding;
    s.baseX = ow * a.stride - a.padding;
    return s;
}

// The segment table (steps * kSegments entries, zero padding past the rows), built by the whole block.
__device__ void buildSegments(Args const& a, Segment* table)
{
#pragma unroll 1
    for (int e = threadIdx.x; e < a.steps * Config::kSegments; e += Config::kThreads) {
        Segment seg{-1, 0, 0, 0};
        if (e * Config::kVector < a.rows) {
            int const gk = e / a.cg8;  // (group, tap)
            int const c8 = e - gk * a.cg8;
            int const g = gk / Config::kTaps;
            int const k = gk - g * Config::kTaps;
            int const i = k / Config::kKw;
            int const j = k - i * Config::kKw;
            seg.channel = (g * a.cg8 + c8) * Config::kVector;
            seg.offsetY = (g * 2 * Config::kTaps + 2 * k) * a.omStride;
            seg.maskLogit = ((2 * a.dg + g) * Config::kTaps + k) * a.omStride;
            seg.tap = static_cast<int32_t>((static_cast<uint32_t>(i * a.dilation) << 16)
                                           | (static_cast<uint32_t>(j * a.dilation) & 0xffffu));
        }
        table[e] = seg;
    }
}

// One segment (8 rows) of this pixel: one sampling, four 128-bit corner loads, one 128-bit shared store.
__device__ __forceinline__ void gatherSegment(Args const& a, PixelState const& s, Segment const seg, __half* dst)
{
    uint4 out = make_uint4(0u, 0u, 0u, 0u);
    if (s.active && seg.channel >= 0) {
        float const dy = dcnLoad(s.om + seg.offsetY);
        float const dx = dcnLoad(s.om + seg.offsetY + s.omStride);
        float const logit = dcnLoad(s.om + seg.maskLogit);
        int32_t const tapY = seg.tap >> 16;                            // arithmetic shift: i*dilation
        int32_t const tapX = static_cast<int16_t>(seg.tap & 0xffff);  // sign-extended: j*dilation
        DcnTap const tap = dcnBilinearTap(static_cast<float>(s.baseY + tapY) + dy,
                                          static_cast<float>(s.baseX + tapX) + dx, a.h, a.w, dcnSigmoid(logit));
        if (tap.valid != 0u) {  // the twin's dcnModulatedSample returns 0 for a sample outside the image
            // Corner offsets from the image base in 32 bits, the segment's channel included: top-left, + one pixel
            // (C), + one row (W*C). Unsigned and wrapping: the top-left offset may be "negative" when that corner is
            // outside (it is not read), and the corners that are read lie inside the image (offset in [0, 2^31)), so
            // each address is one zero-extending multiply-add from the 64-bit image base.
            uint32_t const top = static_cast<uint32_t>(tap.index) * static_cast<uint32_t>(a.c)
                                 + static_cast<uint32_t>(seg.channel);
            uint32_t const bottom = top + static_cast<uint32_t>(a.wc);
            uint4 const zero = make_uint4(0u, 0u, 0u, 0u);
            uint4 const v00 = (tap.valid & 1u) ? load128(s.image + top) : zero;
            uint4 const v01 = (tap.valid & 2u) ? load128(s.image + (top + static_cast<uint32_t>(a.c))) : zero;
            uint4 const v10 = (tap.valid & 4u) ? load128(s.image + bottom) : zero;
            uint4 const v11 = (tap.valid & 8u) ? load128(s.image + (bottom + static_cast<uint32_t>(a.c))) : zero;
            float v[Config::kVector];
#pragma unroll
            for (int e = 0; e < Config::kVector; ++e) {
                // dcnModulatedSample's expression, term by term (bit-identical to the twin on the host)
                v[e] = ((tap.w00 * lane(v00, e) + tap.w01 * lane(v01, e)) + tap.w10 * lane(v10, e))
                       + tap.w11 * lane(v11, e);
            }
            out = make_uint4(packHalves(v[0], v[1]), packHalves(v[2], v[3]), packHalves(v[4], v[5]),
                             packHalves(v[6], v[7]));
        }
    }
    *reinterpret_cast<uint4*>(dst) = out;
}

// FP16 tensor cores, FP32 accumulation, the generic kernel's fragments (2 x 4 warps of 32 x 32, zero, store into
// the [kBM][kLdC] epilogue tile); only the B operand differs: the column buffer is [pixel][row] (column-major).
struct Accumulator : detail::Accumulator<__half> {
    static_assert(Config::kBM == detail::TileConfig<__half>::kBM && Config::kBN == detail::TileConfig<__half>::kBN
                      && Config::kLdC == detail::TileConfig<__half>::kLdC && Config::kThreads == 8 * 32,
                  "the same warp tiling and epilogue tile as the generic FP16 kernel");

    // acc += A[:, step rows] x B (the column buffer, [pixel][row]).
    __device__ void multiply(__half const* as, int ldA, __half const* bs)
    {
        using namespace nvcuda;
        int const warp = threadIdx.x / 32;
        __half const* aWarp = as + (warp / 4) * 32 * ldA;
        __half const* bWarp = bs + (warp % 4) * 32 * Config::kLdB;
#pragma unroll
        for (int ks = 0; ks < Config::kStepRows; ks += 16) {
            wmma::fragment<wmma::matrix_a, 16, 16, 16, __half, wmma::row_major> fa[2];
            wmma::fragment<wmma::matrix_b, 16, 16, 16, __half, wmma::col_major> fb[2];
#pragma unroll
            for (int i = 0; i < 2; ++i) wmma::load_matrix_sync(fa[i], aWarp + i * 16 * ldA + ks, ldA);
#pragma unroll
            for (int j = 0; j < 2; ++j) wmma::load_matrix_sync(fb[j], bWarp + j * 16 * Config::kLdB + ks, Config::kLdB);
#pragma unroll
            for (int i = 0; i < 2; ++i)
#pragma unroll
                for (int j = 0; j < 2; ++j) wmma::mma_sync(frag[i][j], fa[i], fb[j], frag[i][j]);
        }
    }
};

// Shared memory: the weight region, two column buffers (the epilogue's FP32 tile reuses them), the segment table.
__host__ __device__ inline size_t weightBytes(Args const& a)
{
    return size_t{Config::kBM} * a.ldA * sizeof(__half) * (a.residentWeights ? 1 : 2);
}

__host__ __device__ inline size_t segmentBytes(Args const& a)
{
    return size_t{Config::kSegments} * a.steps * sizeof(Segment);
}

__host__ __device__ inline size_t sharedBytes(Args const& a)
{
    return weightBytes(a) + Config::kColumnBytes + segmentBytes(a);
}

__global__ void __launch_bounds__(Config::kThreads, 2) dcnFastKernel(Args const a)
{
    unsigned char* const smem = dynamicSharedMemory();
    size_t const aBytes = weightBytes(a);
    __half* const as = reinterpret_cast<__half*>(smem);
    __half* const bs = reinterpret_cast<__half*>(smem + aBytes);
    float* const cs = reinterpret_cast<float*>(smem + aBytes);
    Segment* const segments = reinterpret_cast<Segment*>(smem + aBytes + Config::kColumnBytes);
    size_t const aBuffer = size_t{Config::kBM} * a.ldA;  // halves per streamed weight buffer

    int const tid = threadIdx.x;
    int const px = tid % Config::kBN;
    int const phase = tid / Config::kBN;
    int const co0 = blockIdx.y * Config::kBM;

    if (a.residentWeights) {
        loadAllWeights(a, as, co0);
    }
    buildSegments(a, segments);
    __syncthreads();  // the first gather reads the table
    constexpr size_t kBufferHalves = Config::kBufferBytes / sizeof(__half);

    for (int tile = blockIdx.x; tile < a.tiles; tile += gridDim.x) {
        PixelState const s = pixelState(a, tile, px);
        Accumulator acc;
        acc.zero();
        // Step -1 only stages step 0. Then each step stages the next one into the other buffers (whose last reader,
        // the multiply of the step before, finished at the previous barrier) and multiplies its own.
        for (int step = -1; step < a.steps; ++step) {
            int const next = step + 1;
            if (next < a.steps) {
                __half* const buffer = bs + (next & 1) * kBufferHalves;
#pragma unroll 2
                for (int n = 0; n < Config::kSegments / Config::kPhases; ++n) {
                    int const seg = phase + n * Config::kPhases;
                    gatherSegment(a, s, segments[next * Config::kSegments + seg],
                                  buffer + px * Config::kLdB + seg * Config::kVector);
                }
                if (!a.residentWeights) {
                    loadWeightRows(a, as + (next & 1) * aBuffer, co0, next * Config::kStepRows, Config::kStepRows);
                }
            }
            if (step >= 0) {
                __half const* const aStep =
                    a.residentWeights ? as + step * Config::kStepRows : as + (step & 1) * aBuffer;
                acc.multiply(aStep, a.ldA, bs + (step & 1) * kBufferHalves);
            }
            __syncthreads();
        }
        acc.store(cs);  // every multiply is done (barrier above): the column buffers are free
        __syncthreads();
        if (a.yLast) {
            // 8 output channels per 16-byte store; consecutive threads write consecutive chunks of a pixel.
            constexpr int kChunks = Config::kBM / Config::kVector;
            for (int e = tid; e < Config::kBN * kChunks; e += Config::kThreads) {
                int const p = e / kChunks;
                int const co = co0 + (e - p * kChunks) * Config::kVector;
                int64_t const pixel = int64_t{tile} * Config::kBN + p;
                if (pixel < a.pixels && co < a.cout) {
                    uint4 const bias = load128(a.bias + co);
                    float v[Config::kVector];
#pragma unroll
                    for (int c = 0; c < Config::kVector; ++c) {
                        v[c] = cs[(co - co0 + c) * Config::kLdC + p] + lane(bias, c);
                    }
                    *reinterpret_cast<uint4*>(a.y + pixel * a.cout + co) =
                        make_uint4(packHalves(v[0], v[1]), packHalves(v[2], v[3]), packHalves(v[4], v[5]),
                                   packHalves(v[6], v[7]));
                }
            }
        } else if (s.active) {
            int64_t const batch = s.pixel / a.howo;
            __half* const yPixel = a.y + batch * a.cout * int64_t{a.howo} + (s.pixel - batch * a.howo);
            for (int m = phase; m < Config::kBM && co0 + m < a.cout; m += Config::kPhases) {
                yPixel[int64_t{co0 + m} * a.howo] = __float2half_rn(cs[m * Config::kLdC + px] + dcnLoad(a.bias + co0 + m));
            }
        }
        __syncthreads();  // the next tile's first gather overwrites the epilogue tile
    }
}

struct LaunchPlan {
    Args args;
    int64_t blocksX;  // persistent blocks over the pixel tiles
    int64_t blocksY;  // output-channel tiles
    size_t sharedBytes;
};

// Kernel arguments for a validated fast-path problem. Weights stay resident when the block's shared memory then
// fits `residentBudget` bytes (the launcher passes what keeps two blocks per SM); else they are streamed. At most
// `maxBlocksX` persistent blocks per output-channel tile.
inline LaunchPlan makeLaunchPlan(Problem const& q, AdnetDcnTensors const& t, size_t residentBudget, int64_t maxBlocksX)
{
    LaunchPlan plan{};
    Args& a = plan.args;
    a.set(t);
    a.pixels = q.pixels;
    int64_t const tiles = (q.pixels + Config::kBN - 1) / Config::kBN;
    a.tiles = static_cast<int32_t>(tiles);
    a.c = static_cast<int32_t>(q.x.c);
    a.h = static_cast<int32_t>(q.x.h);
    a.w = static_cast<int32_t>(q.x.w);
    a.hw = static_cast<int32_t>(q.hw);
    a.wc = a.w * a.c;
    a.cout = static_cast<int32_t>(q.weight.n);
    a.wo = static_cast<int32_t>(q.y.w);
    a.howo = static_cast<int32_t>(q.howo);
    a.dg = q.params.deformable_groups;
    a.cg = static_cast<int32_t>(q.cg);
    a.cg8 = a.cg / Config::kVector;
    a.omChannels = static_cast<int32_t>(q.offsetMask.c);
    a.stride = q.params.stride;
    a.padding = q.params.padding;
    a.dilation = q.params.dilation;
    a.rows = static_cast<int32_t>(q.reduction);
    a.steps = (a.rows + Config::kStepRows - 1) / Config::kStepRows;
    a.omLast = q.offsetMaskFormat == static_cast<int32_t>(Format::kChannelsLast);
    a.yLast = q.yFormat == static_cast<int32_t>(Format::kChannelsLast);
    a.omStride = a.omLast ? 1 : a.howo;
    a.residentWeights = 1;
    a.ldA = a.steps * Config::kStepRows + 8;
    if (sharedBytes(a) > residentBudget) {
        a.residentWeights = 0;
        a.ldA = Config::kStepRows + 8;
    }
    plan.sharedBytes = sharedBytes(a);
    plan.blocksX = tiles < maxBlocksX ? tiles : maxBlocksX;
    plan.blocksY = (int64_t{a.cout} + Config::kBM - 1) / Config::kBM;
    return plan;
}

}  // namespace v2
}  // namespace dcn
}  // namespace adnet
