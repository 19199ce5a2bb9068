// Host stand-in for <mma.h>: the nvcuda::wmma subset that the kernels in plugins/dcnv2 use, for the kernel emulation
// only. Every lane holds the whole tile and computes it redundantly; lane 0 stores. The float accumulator is exact
// (binary16 values are integers times 2^-24: products and their sums are held as integers times 2^-48 in __int128)
// and rounded to float32 once, where it is stored: the CPU twin computes its FP16 dot products the same way, so the
// emulated kernels match it bit for bit whatever order their reduction runs in (the tensor cores accumulate in
// float32 in an order of their own). Checks WMMA's documented requirements: 256-bit aligned pointers and ldm a
// multiple of 16 bytes.
#pragma once

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <type_traits>

#include <cuda_fp16.h>

namespace nvcuda {
namespace wmma {

struct matrix_a {};
struct matrix_b {};
struct accumulator {};
struct row_major {};
struct col_major {};
enum layout_t { mem_row_major, mem_col_major };

template <typename Use, int M, int N, int K, typename T, typename Layout = void>
struct fragment {
    static constexpr int kRows = std::is_same<Use, matrix_b>::value ? K : M;
    static constexpr int kCols = std::is_same<Use, matrix_a>::value ? K : N;
    T x[kRows * kCols];  // row-major [kRows][kCols] whatever the memory layout it was loaded from
};

template <int M, int N, int K>
struct fragment<accumulator, M, N, K, float, void> {
    __int128 x[M * N];  // exact sums in units of 2^-48
};

inline __int128 halfUnits(__half v)
{
    return static_cast<__int128>(static_cast<long long>(__half2float(v) * 16777216.0f));
}

inline void emulationRequire(bool ok, char const* what)
{
    if (!ok) {
        std::fprintf(stderr, "WMMA emulation: %s\n", what);
        std::abort();
    }
}

template <typename T>
void checkOperand(T const* p, unsigned ldm)
{
    emulationRequire(reinterpret_cast<std::uintptr_t>(p) % 32 == 0, "pointer is not 256-bit aligned");
    emulationRequire((ldm * sizeof(T)) % 16 == 0, "ldm is not a multiple of 16 bytes");
}

template <typename Use, int M, int N, int K, typename T, typename Layout>
void fill_fragment(fragment<Use, M, N, K, T, Layout>& f, T const& v)
{
    for (auto& e : f.x) e = v;
}

template <int M, int N, int K>
void fill_fragment(fragment<accumulator, M, N, K, float>& f, float const& v)
{
    emulationRequire(v == 0.f, "the exact accumulator starts from zero only");
    for (auto& e : f.x) e = 0;
}

// Row-major or column-major operands; the fragment holds the tile row-major either way.
template <typename Use, int M, int N, int K, typename T, typename Layout>
void load_matrix_sync(fragment<Use, M, N, K, T, Layout>& f, T const* p, unsigned ldm)
{
    using F = fragment<Use, M, N, K, T, Layout>;
    static_assert(std::is_same<Layout, row_major>::value || std::is_same<Layout, col_major>::value, "operand layout");
    constexpr bool kColumnMajor = std::is_same<Layout, col_major>::value;
    checkOperand(p, ldm);
    for (int r = 0; r < F::kRows; ++r)
        for (int c = 0; c < F::kCols; ++c) f.x[r * F::kCols + c] = kColumnMajor ? p[c * ldm + r] : p[r * ldm + c];
}

template <int M, int N, int K, typename LayoutB>
void mma_sync(fragment<accumulator, M, N, K, float>& d, fragment<matrix_a, M, N, K, __half, row_major> const& a,
              fragment<matrix_b, M, N, K, __half, LayoutB> const& b, fragment<accumulator, M, N, K, float> const& c)
{
    __int128 out[M * N];
    for (int m = 0; m < M; ++m) {
        for (int n = 0; n < N; ++n) {
            __int128 s = c.x[m * N + n];
            for (int k = 0; k < K; ++k) s += halfUnits(a.x[m * K + k]) * halfUnits(b.x[k * N + n]);
            out[m * N + n] = s;
        }
    }
    for (int i = 0; i < M * N; ++i) d.x[i] = out[i];
}

template <int M, int N, int K>
void store_matrix_sync(float* p, fragment<accumulator, M, N, K, float> const& f, unsigned ldm, layout_t layout)
{
    checkOperand(p, ldm);
    emulationRequire(layout == mem_row_major, "only mem_row_major is emulated");
    if (threadIdx.x % 32 != 0) {  // the harness's per-thread index; one lane writes the warp's tile
        return;
    }
    for (int m = 0; m < M; ++m)
        for (int n = 0; n < N; ++n) p[m * ldm + n] = static_cast<float>(f.x[m * N + n]) * 0x1p-48f;
}

}  // namespace wmma
}  // namespace nvcuda
