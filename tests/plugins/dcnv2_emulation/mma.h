// Host stand-in for <mma.h>: the nvcuda::wmma subset that plugins/dcnv2/dcnv2_kernel.cuh uses, for the kernel
// emulation only. Every lane holds the whole tile and computes it redundantly; lane 0 stores. Products of binary16
// values are exact in float32 and accumulate in float32, in k order (the tensor cores' order may differ). Checks
// WMMA's documented requirements: 256-bit aligned pointers and ldm a multiple of 16 bytes.
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
    T x[kRows * kCols];
};

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

template <typename Use, int M, int N, int K, typename T>
void load_matrix_sync(fragment<Use, M, N, K, T, row_major>& f, T const* p, unsigned ldm)
{
    using F = fragment<Use, M, N, K, T, row_major>;
    checkOperand(p, ldm);
    for (int r = 0; r < F::kRows; ++r)
        for (int c = 0; c < F::kCols; ++c) f.x[r * F::kCols + c] = p[r * ldm + c];
}

template <int M, int N, int K>
void mma_sync(fragment<accumulator, M, N, K, float>& d, fragment<matrix_a, M, N, K, __half, row_major> const& a,
              fragment<matrix_b, M, N, K, __half, row_major> const& b, fragment<accumulator, M, N, K, float> const& c)
{
    float out[M * N];
    for (int m = 0; m < M; ++m) {
        for (int n = 0; n < N; ++n) {
            float s = c.x[m * N + n];
            for (int k = 0; k < K; ++k) s += __half2float(a.x[m * K + k]) * __half2float(b.x[k * N + n]);
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
        for (int n = 0; n < N; ++n) p[m * ldm + n] = f.x[m * N + n];
}

}  // namespace wmma
}  // namespace nvcuda
