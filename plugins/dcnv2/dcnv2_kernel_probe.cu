// Report-only probes (`make kernel-report`, never linked into a library): one kernel per unit of gather work, so that
// the SASS instructions of that unit can be counted statically (plugins/dcnv2/kernel_report.py). Each probe calls
// exactly the device code the real kernel runs for its unit, with the per-pixel and per-block setup passed in as
// arguments; probeFrame is everything a probe does besides its unit (the count the report subtracts). The fast
// path's unit is a segment, the 8 column entries that one sampling serves (ADNet: 8 channels of a deformable group at
// one tap); the generic kernel's are one tap and one column entry (ADNet's 8 channels share the tap).
#include "dcnv2_kernel.cuh"
#include "dcnv2_kernel_v2.cuh"

namespace adnet {
namespace dcn {
namespace {

constexpr int kUnitEntries = 8;
constexpr int kTile = 256 * kUnitEntries;

}  // namespace

// The probes' common part: a barrier and one output store that keeps the tile alive.
__global__ void probeFrame(__half* out)
{
    __shared__ __align__(16) __half tile[kTile];
    __syncthreads();
    out[threadIdx.x] = tile[(threadIdx.x * 7) % kTile];
}

// Fast path (v2): one segment (offsets and mask logit, sampling, 4 x 128-bit corner loads, 8 FP32 interpolations,
// rounding, one 128-bit shared-memory store).
__global__ void probeFastSegment(v2::Args a, v2::PixelState s, v2::Segment segment, __half* out)
{
    __shared__ __align__(16) __half tile[kTile];
    v2::gatherSegment(a, s, segment, tile + threadIdx.x * kUnitEntries);
    __syncthreads();
    out[threadIdx.x] = tile[(threadIdx.x * 7) % kTile];
}

// Generic kernel (v1): one column entry for a given tap (the channel loop's body: 4 scalar corner loads, the
// interpolation, rounding, one 16-bit shared store).
__global__ void probeGenericEntry(DcnTap tap, __half const* plane, int32_t width, __half* out)
{
    __shared__ __align__(16) __half tile[kTile];
    tile[threadIdx.x] = __float2half_rn(dcnModulatedSample(tap, plane, width));
    __syncthreads();
    out[threadIdx.x] = tile[(threadIdx.x * 7) % kTile];
}

// Generic kernel: one tap (offsets and mask logit, sampling), which the channels of a step share. The tap goes to
// shared memory to keep it alive; the report does not count those stores.
__global__ void probeGenericTap(__half const* om, int32_t howo, int32_t oh, int32_t ow, int32_t i, int32_t j,
                                int32_t h, int32_t w, int32_t stride, int32_t padding, int32_t dilation, __half* out)
{
    __shared__ __align__(16) DcnTap taps[256];
    float const dy = dcnLoad(om);
    float const dx = dcnLoad(om + howo);
    float const logit = dcnLoad(om + 2 * howo);
    taps[threadIdx.x] = dcnBilinearTap(dcnSamplePosition(oh, i, stride, padding, dilation, dy),
                                       dcnSamplePosition(ow, j, stride, padding, dilation, dx), h, w,
                                       dcnSigmoid(logit));
    __syncthreads();
    constexpr int kHalves = static_cast<int>(sizeof(taps) / sizeof(__half));
    out[threadIdx.x] = reinterpret_cast<__half const*>(taps)[(threadIdx.x * 7) % kHalves];
}

}  // namespace dcn
}  // namespace adnet
