// Report-only probes (`make kernel-report`, never linked into a library): one kernel per unit of gather work, so that
// the SASS instructions of that unit can be counted statically. Each calls exactly the device code the real kernels
// run for it.
#include "dcnv2_kernel.cuh"
#include "dcnv2_kernel_v2.cuh"

namespace adnet {
namespace dcn {

// Fast path (v2): one segment = 8 column entries (offsets and mask, sampling, 4 x 128-bit corner loads, 8 FP32
// interpolations, rounding, one 128-bit shared-memory store).
__global__ void probeFastSegment(v2::Args a, int segment, __half* out)
{
    __shared__ __align__(16) __half tile[v2::Config::kThreads * v2::Config::kVector];
    __shared__ v2::Segment table[v2::Config::kSegments];
    v2::PixelState const s = v2::pixelState(a, blockIdx.x, threadIdx.x % v2::Config::kBN);
    v2::gatherSegment(a, s, table[segment % v2::Config::kSegments], tile + threadIdx.x * v2::Config::kVector);
    __syncthreads();
    out[threadIdx.x] = tile[(threadIdx.x * 7) % (v2::Config::kThreads * v2::Config::kVector)];
}

// Fast path: the per-pixel setup that a segment's count above includes (subtracted to get the segment alone).
__global__ void probeFastPixel(v2::Args a, int segment, __half* out)
{
    __shared__ __align__(16) __half tile[v2::Config::kThreads * v2::Config::kVector];
    __shared__ v2::Segment table[v2::Config::kSegments];
    v2::PixelState const s = v2::pixelState(a, blockIdx.x, threadIdx.x % v2::Config::kBN);
    v2::Segment const seg = table[segment % v2::Config::kSegments];
    tile[threadIdx.x] = s.active ? s.image[seg.channel] : s.om[seg.offsetY];
    __syncthreads();
    out[threadIdx.x] = tile[(threadIdx.x * 7) % (v2::Config::kThreads * v2::Config::kVector)];
}

// Generic kernel (v1): one column entry for a known tap (the per-channel loop body: 4 scalar corner loads,
// interpolation, rounding, one 16-bit shared store).
__global__ void probeGenericEntry(DcnTap tap, __half const* plane, int32_t width, __half* out)
{
    __shared__ __half tile[256];
    tile[threadIdx.x] = __float2half_rn(dcnModulatedSample(tap, plane, width));
    __syncthreads();
    out[threadIdx.x] = tile[(threadIdx.x * 7) % 256];
}

// Generic kernel: one tap (offsets and mask, sampling), shared by the channels of a step.
__global__ void probeGenericTap(__half const* om, int32_t howo, int32_t oh, int32_t ow, int32_t i, int32_t j,
                                int32_t h, int32_t w, int32_t stride, int32_t padding, int32_t dilation, DcnTap* out)
{
    float const dy = dcnLoad(om);
    float const dx = dcnLoad(om + howo);
    float const logit = dcnLoad(om + 2 * howo);
    out[threadIdx.x] = dcnBilinearTap(dcnSamplePosition(oh, i, stride, padding, dilation, dy),
                                      dcnSamplePosition(ow, j, stride, padding, dilation, dx), h, w,
                                      dcnSigmoid(logit));
}

}  // namespace dcn
}  // namespace adnet
