// CPU twin of the AdnetDCNv2 CUDA forward (dcnv2_kernel.cu): same sampling code (dcnv2_sampling.h), same rounding
// points, plain loops (OpenMP over output rows when built with -fopenmp). CI runs it; the ONNX Runtime custom op
// calls it through plugins/dcnv2/cpu.py.
//
// Rounding points, float16 (dtype 1), identical to the FP16 kernel:
//   1. inputs are binary16; positions, bilinear weights, sigmoid and the sampled*mask product are float32;
//   2. the column value sigmoid(m) * bilinear(x, p) is rounded to binary16 (the kernel stores it so into the
//      shared-memory MMA tile);
//   3. the dot product of binary16 weights and columns is computed exactly (binary16 values are integers times 2^-24,
//      so products are integers times 2^-48 and their sum fits an __int128) and rounded to float32 once: the result
//      depends on no summation order, so kernels that order their reduction differently (v1: channel-major, v2:
//      tap-major) both match it bit for bit in the emulation; the tensor cores accumulate in float32, which is the
//      one difference on a GPU. The bias is added in float32;
//   4. the output is rounded to binary16 (round to nearest even).
// float32 (dtype 0): everything in float32, no rounding besides float32's own.
// Build with -ffp-contract=off so that the float32 sampling arithmetic is the plain IEEE sequence of the header.
#include <algorithm>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "dcnv2_core.h"
#include "dcnv2_sampling.h"

namespace adnet {
namespace dcn {
namespace {

// Column entries and outputs: identity for float32; round to binary16 (and back) for the FP16 emulation.
inline float columnValue(float v, float const*) { return v; }
inline float columnValue(float v, Half16 const*) { return dcnHalfBitsToFloat(dcnFloatToHalfBits(v)); }
inline void storeOutput(float* y, float v) { *y = v; }
inline void storeOutput(Half16* y, float v) { y->bits = dcnFloatToHalfBits(v); }

// A binary16 value (held in a float) as an integer number of 2^-24 units: exact, |result| < 2^40.
inline int64_t halfUnits(float v) { return static_cast<int64_t>(v * 16777216.0f); }
// Sum of products of such units (units of 2^-48) as float32, rounded once.
inline float fromProductUnits(__int128 sum) { return static_cast<float>(sum) * 0x1p-48f; }

template <typename T>
void forwardRows(Problem const& q, AdnetDcnTensors const& t)
{
    T const* const x = static_cast<T const*>(t.x);
    T const* const offsetMask = static_cast<T const*>(t.offset_mask);
    T const* const weight = static_cast<T const*>(t.weight);
    T const* const bias = static_cast<T const*>(t.bias);
    T* const y = static_cast<T*>(t.y);
    // 32-bit sizes inside planes and rows (the core's limits); 64-bit offsets across them.
    struct {
        int32_t c, h, w, cout, kw, k, ho, wo, stride, padding, dilation, dg, cg;
    } const s{static_cast<int32_t>(q.x.c), static_cast<int32_t>(q.x.h), static_cast<int32_t>(q.x.w),
              static_cast<int32_t>(q.weight.n), static_cast<int32_t>(q.weight.w), static_cast<int32_t>(q.k),
              static_cast<int32_t>(q.y.h), static_cast<int32_t>(q.y.w), q.params.stride, q.params.padding,
              q.params.dilation, q.params.deformable_groups, static_cast<int32_t>(q.cg)};
    int32_t const ck = static_cast<int32_t>(q.reduction);
    int64_t const hw = q.hw;
    int64_t const howo = q.howo;
    int64_t const omChannels = q.offsetMask.c;
    int64_t const rows = q.x.n * s.ho;

    // Weights and bias as float32 once (exact for binary16).
    std::vector<float> wf(static_cast<size_t>(s.cout) * ck);
    for (size_t i = 0; i < wf.size(); ++i) wf[i] = dcnToFloat(weight[i]);
    std::vector<float> bf(static_cast<size_t>(s.cout));
    for (int32_t i = 0; i < s.cout; ++i) bf[i] = dcnToFloat(bias[i]);
    std::vector<int64_t> wUnits;
    if constexpr (std::is_same_v<T, Half16>) {
        wUnits.resize(wf.size());
        for (size_t i = 0; i < wf.size(); ++i) wUnits[i] = halfUnits(wf[i]);
    }

    // Threads only pay off beyond ~1M multiply-adds; below that the wake-up costs more than the work.
    double const macs = static_cast<double>(rows) * s.wo * ck * s.cout;
#pragma omp parallel if (macs > 1e6)
    {
        // One output row at a time: columns [C*K][Wo] (the im2col block of this row), then a row GEMM.
        std::vector<float> cols(static_cast<size_t>(ck) * s.wo);
        std::vector<float> acc(static_cast<size_t>(s.wo));
        std::vector<int64_t> colUnits(std::is_same_v<T, Half16> ? cols.size() : 0);
        std::vector<__int128> exact(std::is_same_v<T, Half16> ? static_cast<size_t>(s.wo) : 0);
#pragma omp for schedule(static)
        for (int64_t row = 0; row < rows; ++row) {
            int64_t const b = row / s.ho;
            int32_t const oh = static_cast<int32_t>(row - b * s.ho);
            T const* xb = x + b * s.c * hw;
            T const* omRow = offsetMask + b * omChannels * howo + int64_t{oh} * s.wo;
            for (int32_t ow = 0; ow < s.wo; ++ow) {
                for (int32_t g = 0; g < s.dg; ++g) {
                    for (int32_t k = 0; k < s.k; ++k) {
                        int32_t const i = k / s.kw;
                        int32_t const j = k - i * s.kw;
                        float const dy = dcnToFloat(omRow[(int64_t{g} * 2 * s.k + 2 * k) * howo + ow]);
                        float const dx = dcnToFloat(omRow[(int64_t{g} * 2 * s.k + 2 * k + 1) * howo + ow]);
                        float const logit = dcnToFloat(omRow[(2 * int64_t{s.dg} * s.k + g * s.k + k) * howo + ow]);
                        DcnTap const tap = dcnBilinearTap(dcnSamplePosition(oh, i, s.stride, s.padding, s.dilation, dy),
                                                          dcnSamplePosition(ow, j, s.stride, s.padding, s.dilation, dx),
                                                          s.h, s.w, dcnSigmoid(logit));
                        for (int32_t c = g * s.cg; c < (g + 1) * s.cg; ++c) {
                            float const v = dcnModulatedSample(tap, xb + c * hw, s.w);
                            cols[(static_cast<size_t>(c) * s.k + k) * s.wo + ow] = columnValue(v, x);
                        }
                    }
                }
            }
            if constexpr (std::is_same_v<T, Half16>) {
                for (size_t i = 0; i < cols.size(); ++i) colUnits[i] = halfUnits(cols[i]);
            }
            for (int32_t co = 0; co < s.cout; ++co) {
                if constexpr (std::is_same_v<T, Half16>) {
                    std::fill(exact.begin(), exact.end(), __int128{0});
                    int64_t const* wrow = wUnits.data() + static_cast<size_t>(co) * ck;
                    for (int32_t r = 0; r < ck; ++r) {
                        int64_t const wv = wrow[r];
                        int64_t const* col = colUnits.data() + static_cast<size_t>(r) * s.wo;
                        for (int32_t ow = 0; wv != 0 && ow < s.wo; ++ow) {
                            exact[ow] += static_cast<__int128>(wv) * col[ow];
                        }
                    }
                    for (int32_t ow = 0; ow < s.wo; ++ow) acc[ow] = fromProductUnits(exact[ow]);
                } else {
                    std::fill(acc.begin(), acc.end(), 0.f);
                    float const* wrow = wf.data() + static_cast<size_t>(co) * ck;
                    for (int32_t r = 0; r < ck; ++r) {
                        float const wv = wrow[r];
                        float const* col = cols.data() + static_cast<size_t>(r) * s.wo;
                        for (int32_t ow = 0; ow < s.wo; ++ow) {
                            acc[ow] += wv * col[ow];
                        }
                    }
                }
                T* yRow = y + (b * s.cout + co) * howo + int64_t{oh} * s.wo;
                for (int32_t ow = 0; ow < s.wo; ++ow) {
                    storeOutput(yRow + ow, acc[ow] + bf[co]);
                }
            }
        }
    }
}

}  // namespace
}  // namespace dcn
}  // namespace adnet

namespace dcn = adnet::dcn;

extern "C" int32_t adnet_dcn_forward_cpu(AdnetDcnProblem const* desc, AdnetDcnTensors const* tensors)
{
    dcn::Problem problem;
    if (!dcn::acceptLaunch(desc, tensors, problem)) {
        return -1;
    }
    if (problem.pixels == 0) {
        return 0;
    }
    if (problem.type() == dcn::DataType::kFloat16) {
        dcn::forwardRows<dcn::Half16>(problem, *tensors);
    } else {
        dcn::forwardRows<float>(problem, *tensors);
    }
    return 0;
}

extern "C" void adnet_dcn_float_to_half(float const* in, uint16_t* out, int64_t n)
{
    for (int64_t i = 0; i < n; ++i) {
        out[i] = dcn::dcnFloatToHalfBits(in[i]);
    }
}
