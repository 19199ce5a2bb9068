// DCNv2 sampling math shared by the CUDA kernel (dcnv2_kernel.cu) and the CPU twin (dcnv2_cpu.cpp), so that both
// compute positions, bilinear weights, validity and the mask the same way (docs/design.md §2):
//   y = oh*stride - padding + i*dilation + dy,   x = ow*stride - padding + j*dilation + dx   (float32, always)
//   a sample counts when -1 < y < H and -1 < x < W; each of its 4 corners outside the image contributes zero;
//   sampled = sigmoid(mask_logit) * bilinear(x[c], y, x), computed as sum_corner (mask * w_corner) * value: the mask
//   is folded into the four corner weights once per sampling position, not applied once per channel.
// Positions are float32 even for FP16 tensors (offsets are converted to float first): FP16 has a spacing of 1
// between 1024 and 2048 and would lose every fraction at ADNet's 1900-pixel rows.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#if defined(__CUDACC__)
#include <cuda_fp16.h>
#define ADNET_DCN_HD __host__ __device__
#else
#define ADNET_DCN_HD
#endif

namespace adnet {
namespace dcn {

// The mask is a logit in the node's input; the op applies the sigmoid (fused). Host (the twin, and the kernels'
// sources run as host code by the emulation test): IEEE expf and division. Device: the hardware exp2 and reciprocal
// (__expf: 2 + 1.2*|x| ulp; __fdividef: 2 ulp for 1 + e >= 1), ~19 SASS instructions per sampling fewer than expf
// and an IEEE division with its slow path. The mask then differs from the twin's by ~1e-7 relative (~1e-6 at the
// largest logits), far below the binary16 rounding of a column value: simulated at ADNet's 576-row reduction, errors
// of up to 11 ulp on every mask leave 96 % of FP16 outputs bit-equal to the twin's (gpu-check asks for 90 %), up to
// 2 ulp 99.3 %. Limits on both: logit -inf -> 0 (exp gives inf, 1/inf = 0), +inf -> 1, NaN -> NaN.
ADNET_DCN_HD inline float dcnSigmoid(float logit)
{
#if defined(__CUDA_ARCH__)
    return __fdividef(1.f, 1.f + __expf(-logit));
#else
    return 1.f / (1.f + expf(-logit));
#endif
}

// Sampling coordinate along one axis: out*stride - padding + tap*dilation + offset. The integer part is exact in
// float32 below 2^24 (validateShapes bounds H and W by that); the offset has been converted to float32.
ADNET_DCN_HD inline float dcnSamplePosition(int32_t out, int32_t tap, int32_t stride, int32_t padding,
                                            int32_t dilation, float offset)
{
    return static_cast<float>(out * stride - padding + tap * dilation) + offset;
}

// One bilinear sample: the top-left corner's linear index in the plane, the four corner weights times the
// modulation mask, and which corners may be read (bit 0: top-left, 1: top-right, 2: bottom-left, 3: bottom-right;
// 0 when the sample is outside -1 < y < H, -1 < x < W). A corner outside the image is never read and counts as the
// value 0; its weight is left as computed (finite and >= 0, so weight * 0 = +0 exactly as a zeroed weight would give:
// no per-corner select is needed).
struct DcnTap {
    int32_t index;
    uint32_t valid;
    float w00, w01, w10, w11;
};

// A tap that reads nothing and contributes zero (outside the image, or a pixel past the end of the tensor).
ADNET_DCN_HD inline DcnTap dcnEmptyTap()
{
    DcnTap t;
    t.index = 0;
    t.valid = 0u;
    t.w00 = t.w01 = t.w10 = t.w11 = 0.f;
    return t;
}

ADNET_DCN_HD inline DcnTap dcnBilinearTap(float y, float x, int32_t height, int32_t width, float mask)
{
    DcnTap t = dcnEmptyTap();
    // Written so that NaN positions fall outside (every comparison with NaN is false).
    if (!(y > -1.f && y < static_cast<float>(height) && x > -1.f && x < static_cast<float>(width))) {
        return t;
    }
    float const y0f = floorf(y);
    float const x0f = floorf(x);
    int32_t const y0 = static_cast<int32_t>(y0f);  // in [-1, height - 1]: safe to convert
    int32_t const x0 = static_cast<int32_t>(x0f);
    float const ly = y - y0f;
    float const lx = x - x0f;
    float const hy = 1.f - ly;
    float const hx = 1.f - lx;
    bool const top = y0 >= 0;
    bool const bottom = y0 + 1 < height;
    bool const left = x0 >= 0;
    bool const right = x0 + 1 < width;
    float const my = mask * hy;  // the mask folded into the weights: (mask * h_y) * h_x, the same order everywhere
    float const ml = mask * ly;
    t.index = y0 * width + x0;
    t.w00 = my * hx;
    t.w01 = my * lx;
    t.w10 = ml * hx;
    t.w11 = ml * lx;
    t.valid = (top && left ? 1u : 0u) | (top && right ? 2u : 0u) | (bottom && left ? 4u : 0u)
              | (bottom && right ? 8u : 0u);
    return t;
}

// ---- binary16 helpers (exact half -> float; float -> half round-to-nearest-even, as __float2half_rn) ----

ADNET_DCN_HD inline uint32_t dcnFloatBits(float v)
{
#if defined(__CUDA_ARCH__)
    return __float_as_uint(v);
#else
    uint32_t u;
    std::memcpy(&u, &v, sizeof(u));
    return u;
#endif
}

ADNET_DCN_HD inline float dcnBitsFloat(uint32_t u)
{
#if defined(__CUDA_ARCH__)
    return __uint_as_float(u);
#else
    float v;
    std::memcpy(&v, &u, sizeof(v));
    return v;
#endif
}

ADNET_DCN_HD inline float dcnHalfBitsToFloat(uint16_t h)
{
    uint32_t const sign = static_cast<uint32_t>(h & 0x8000u) << 16;
    uint32_t const exponent = (h >> 10) & 0x1fu;
    uint32_t const mantissa = h & 0x3ffu;
    if (exponent == 0u) {  // zero or subnormal: mantissa * 2^-24, exact in float32
        float const magnitude = static_cast<float>(mantissa) * 5.9604644775390625e-8f;
        return sign ? -magnitude : magnitude;
    }
    if (exponent == 0x1fu) {  // inf / NaN (payload kept)
        return dcnBitsFloat(sign | 0x7f800000u | (mantissa << 13));
    }
    return dcnBitsFloat(sign | ((exponent + 112u) << 23) | (mantissa << 13));
}

ADNET_DCN_HD inline uint16_t dcnFloatToHalfBits(float v)
{
    uint32_t const f = dcnFloatBits(v);
    uint32_t const sign = (f >> 16) & 0x8000u;
    uint32_t const a = f & 0x7fffffffu;
    if (a >= 0x7f800000u) {  // inf stays inf; NaN becomes a quiet NaN
        return static_cast<uint16_t>(sign | (a > 0x7f800000u ? 0x7e00u : 0x7c00u));
    }
    if (a >= 0x477ff000u) {  // >= 65520 rounds to infinity
        return static_cast<uint16_t>(sign | 0x7c00u);
    }
    if (a >= 0x38800000u) {  // normal binary16 range (>= 2^-14)
        uint32_t h = ((((a >> 23) - 112u) << 10) | ((a >> 13) & 0x3ffu));
        uint32_t const rest = a & 0x1fffu;
        if (rest > 0x1000u || (rest == 0x1000u && (h & 1u))) {
            ++h;  // a carry into the exponent is the correct next binade (or infinity)
        }
        return static_cast<uint16_t>(sign | h);
    }
    // Subnormal binary16: round(|v| * 2^24) to an integer, ties to even. |v| = m * 2^(e - 150) with the implicit bit.
    uint32_t const e = a >> 23;
    if (e < 102u) {  // |v| < 2^-25: rounds to zero (float32 subnormals included)
        return static_cast<uint16_t>(sign);
    }
    uint32_t const m = (a & 0x7fffffu) | 0x800000u;
    uint32_t const shift = 126u - e;  // in [14, 24]
    uint32_t q = m >> shift;
    uint32_t const rest = m & ((1u << shift) - 1u);
    uint32_t const halfway = 1u << (shift - 1u);
    if (rest > halfway || (rest == halfway && (q & 1u))) {
        ++q;  // q == 0x400 is the smallest normal: the encoding carries over correctly
    }
    return static_cast<uint16_t>(sign | q);
}

// binary16 storage on the host (the twin): a distinct type so that it never converts silently to an integer.
struct Half16 {
    uint16_t bits;
};

ADNET_DCN_HD inline float dcnToFloat(float v) { return v; }
inline float dcnToFloat(Half16 v) { return dcnHalfBitsToFloat(v.bits); }
#if defined(__CUDACC__) || defined(__CUDA_FP16_H__)  // nvcc, or host code that included cuda_fp16.h first
ADNET_DCN_HD inline float dcnToFloat(__half v) { return __half2float(v); }
#endif

// Reads one element as float (through the read-only cache on the device).
template <typename T>
ADNET_DCN_HD inline float dcnLoad(T const* p)
{
#if defined(__CUDA_ARCH__)
    return dcnToFloat(__ldg(p));
#else
    return dcnToFloat(*p);
#endif
}

// sigmoid(mask logit) * bilinear(plane, tap), with the mask inside the tap's weights: the value of one (channel,
// tap) column entry, in float32. Corners outside the image are never read. The kernel rounds this value to binary16
// where it stores it into the MMA tile (FP16 path); the twin rounds it at the same point.
template <typename T>
ADNET_DCN_HD inline float dcnModulatedSample(DcnTap const& t, T const* plane, int32_t width)
{
    if (t.valid == 0u) {
        return 0.f;
    }
    float const v00 = (t.valid & 1u) ? dcnLoad(plane + t.index) : 0.f;
    float const v01 = (t.valid & 2u) ? dcnLoad(plane + t.index + 1) : 0.f;
    float const v10 = (t.valid & 4u) ? dcnLoad(plane + t.index + width) : 0.f;
    float const v11 = (t.valid & 8u) ? dcnLoad(plane + t.index + width + 1) : 0.f;
    return ((t.w00 * v00 + t.w01 * v01) + t.w10 * v10) + t.w11 * v11;
}

}  // namespace dcn
}  // namespace adnet
