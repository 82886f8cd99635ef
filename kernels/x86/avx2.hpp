// kernels/x86/avx2.hpp — AVX2 + FMA kernels (namespace mercury::kernels::avx2).
//
// Compile only with -mavx2 -mfma (kernels/src/avx2.cpp) or in a header-only build whose flags
// enable them. Never include Eigen, the ref headers or other inline non-template code next to
// this (ODR/SIGILL trap): everything here is either in this namespace or a template over
// F32x8, so no symbol it emits can be shared with code built for a lesser ISA.
#pragma once

#include <immintrin.h>

#include <cstdint>

#include "kernels/gemm_driver.hpp"
#include "kernels/kernels.hpp"
#include "kernels/simd_kernels.hpp"

namespace mercury::kernels::avx2 {

// 8 floats in a ymm register; the V interface of kernels/simd_kernels.hpp.
struct F32x8 {
  using Reg = __m256;
  static constexpr int64_t width = 8;

  static Reg zero() { return _mm256_setzero_ps(); }
  static Reg set1(float x) { return _mm256_set1_ps(x); }
  static Reg load(const float* p) { return _mm256_loadu_ps(p); }
  static void store(float* p, Reg r) { _mm256_storeu_ps(p, r); }
  static __m256i first_lanes(int64_t n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(n)),
                              _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  }
  static Reg load_partial(const float* p, int64_t n, float fill) {
    const __m256i lanes = first_lanes(n);
    return _mm256_blendv_ps(set1(fill), _mm256_maskload_ps(p, lanes), _mm256_castsi256_ps(lanes));
  }
  static void store_partial(float* p, int64_t n, Reg r) {
    _mm256_maskstore_ps(p, first_lanes(n), r);
  }
  static Reg keep_first(Reg r, int64_t n) {
    return _mm256_and_ps(r, _mm256_castsi256_ps(first_lanes(n)));
  }
  static Reg add(Reg a, Reg b) { return _mm256_add_ps(a, b); }
  static Reg sub(Reg a, Reg b) { return _mm256_sub_ps(a, b); }
  static Reg mul(Reg a, Reg b) { return _mm256_mul_ps(a, b); }
  static Reg div(Reg a, Reg b) { return _mm256_div_ps(a, b); }
  static Reg max(Reg a, Reg b) { return _mm256_max_ps(a, b); }
  static Reg sqrt(Reg a) { return _mm256_sqrt_ps(a); }
  static Reg fma(Reg a, Reg b, Reg c) { return _mm256_fmadd_ps(a, b, c); }
  static Reg where_positive(Reg x, Reg y) {
    return _mm256_and_ps(_mm256_cmp_ps(x, zero(), _CMP_GT_OQ), y);
  }
  static Reg round(Reg r) {
    return _mm256_round_ps(r, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  }
  static Reg pow2(Reg n) {
    const __m256i biased = _mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127));
    return _mm256_castsi256_ps(_mm256_slli_epi32(biased, 23));
  }
  static float reduce_add(Reg r) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(r), _mm256_extractf128_ps(r, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)));
  }
  static float reduce_max(Reg r) {
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(r), _mm256_extractf128_ps(r, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_max_ss(s, _mm_movehdup_ps(s)));
  }
};

// 6 rows × 2 ymm: 12 accumulators + 2 B vectors + 1 broadcast of the 16 ymm registers.
using f32_gemm_6x16__avx2_fma = GemmMicrokernel<F32x8, 6, 2>;
// KC·NR·4 = 16 KiB B micro-panel stays in L1; MC·KC·4 = 192 KiB A block in L2.
using Sgemm = GemmDriver<f32_gemm_6x16__avx2_fma, 192, 256, 4096>;

// Overrides every entry this ISA implements; im2col/col2im keep the ref versions.
inline void fill_table(KernelTable& t) {
  t.isa = Isa::avx2;
  t.sgemm = &Sgemm::sgemm;
  SimdKernels<F32x8>::fill(t);
}

}  // namespace mercury::kernels::avx2
