// kernels/x86/avx512.hpp — AVX-512 (F/BW/DQ/VL) kernels (namespace mercury::kernels::avx512).
//
// Compile only with -mavx512f -mavx512bw -mavx512dq -mavx512vl -mfma (kernels/src/avx512.cpp)
// or in a header-only build whose flags enable them. Same ODR/SIGILL rules as x86/avx2.hpp:
// nothing here may be shared with code built for a lesser ISA.
#pragma once

#include <immintrin.h>

#include <cstdint>

#include "kernels/gemm_driver.hpp"
#include "kernels/kernels.hpp"
#include "kernels/simd_kernels.hpp"

// GCC 12's own AVX-512 intrinsics trip -Wuninitialized at -Wall (GCC bug 105593, fixed in 13).
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ < 13
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

namespace mercury::kernels::avx512 {

// 16 floats in a zmm register; tails use lane masks. The V interface of simd_kernels.hpp.
struct F32x16 {
  using Reg = __m512;
  static constexpr int64_t width = 16;

  static __mmask16 first_lanes(int64_t n) {
    return static_cast<__mmask16>(n >= 16 ? 0xFFFFu : (1u << n) - 1u);
  }
  static Reg zero() { return _mm512_setzero_ps(); }
  static Reg set1(float x) { return _mm512_set1_ps(x); }
  static Reg load(const float* p) { return _mm512_loadu_ps(p); }
  static void store(float* p, Reg r) { _mm512_storeu_ps(p, r); }
  static Reg load_partial(const float* p, int64_t n, float fill) {
    return _mm512_mask_loadu_ps(set1(fill), first_lanes(n), p);
  }
  static void store_partial(float* p, int64_t n, Reg r) {
    _mm512_mask_storeu_ps(p, first_lanes(n), r);
  }
  static Reg keep_first(Reg r, int64_t n) { return _mm512_maskz_mov_ps(first_lanes(n), r); }
  static Reg add(Reg a, Reg b) { return _mm512_add_ps(a, b); }
  static Reg sub(Reg a, Reg b) { return _mm512_sub_ps(a, b); }
  static Reg mul(Reg a, Reg b) { return _mm512_mul_ps(a, b); }
  static Reg div(Reg a, Reg b) { return _mm512_div_ps(a, b); }
  static Reg max(Reg a, Reg b) { return _mm512_max_ps(a, b); }
  static Reg sqrt(Reg a) { return _mm512_sqrt_ps(a); }
  static Reg fma(Reg a, Reg b, Reg c) { return _mm512_fmadd_ps(a, b, c); }
  static Reg where_positive(Reg x, Reg y) {
    return _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(x, zero(), _CMP_GT_OQ), y);
  }
  static Reg round(Reg r) {
    return _mm512_roundscale_ps(r, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  }
  static Reg pow2(Reg n) { return _mm512_scalef_ps(set1(1.0f), n); }
  static float reduce_add(Reg r) { return _mm512_reduce_add_ps(r); }
  static float reduce_max(Reg r) { return _mm512_reduce_max_ps(r); }
};

// 8 rows × 2 zmm: 16 accumulators; 8 broadcasts + 2 loads feed 16 FMAs per k.
using f32_gemm_8x32__avx512f = GemmMicrokernel<F32x16, 8, 2>;
// 16 rows × 1 zmm, for N ≤ 16 (e.g. a 10-class classifier) where 32 columns would be mostly
// padding.
using f32_gemm_16x16__avx512f = GemmMicrokernel<F32x16, 16, 1>;
using WideSgemm = GemmDriver<f32_gemm_8x32__avx512f, 192, 256, 4096>;
using NarrowSgemm = GemmDriver<f32_gemm_16x16__avx512f, 192, 256, 4096>;

inline void sgemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                  int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  (N <= f32_gemm_16x16__avx512f::NR ? &NarrowSgemm::sgemm : &WideSgemm::sgemm)(
      ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

// Overrides every entry this ISA implements; im2col/col2im keep the ref versions.
inline void fill_table(KernelTable& t) {
  t.isa = Isa::avx512;
  t.sgemm = &sgemm;
  SimdKernels<F32x16>::fill(t);
}

}  // namespace mercury::kernels::avx512

#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ < 13
#pragma GCC diagnostic pop
#endif
