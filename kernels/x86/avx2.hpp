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
  // even = a0, a2, …, a6, b0, …, b6; odd = a1, a3, …, b7 (the even/odd elements of a:b).
  static void deinterleave(Reg a, Reg b, Reg& even, Reg& odd) {
    // shuffle_ps works per 128-bit lane: [a0 a2 b0 b2 | a4 a6 b4 b6]; then order the 64-bit pairs.
    const auto order = [](Reg r) {
      return _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(r), _MM_SHUFFLE(3, 1, 2, 0)));
    };
    even = order(_mm256_shuffle_ps(a, b, _MM_SHUFFLE(2, 0, 2, 0)));
    odd = order(_mm256_shuffle_ps(a, b, _MM_SHUFFLE(3, 1, 3, 1)));
  }
  static void store_i32(int32_t* p, Reg r) {  // truncated to int32
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), _mm256_cvttps_epi32(r));
  }
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
  // r[i][j] ↔ r[j][i] for the 8×8 block held in r[0..7] (unpack, shuffle, 128-bit permute).
  static void transpose(Reg (&r)[8]) {
    __m256 t[8], u[8];
#pragma GCC unroll 2
    for (int g = 0; g < 2; ++g) {
      t[4 * g + 0] = _mm256_unpacklo_ps(r[4 * g], r[4 * g + 1]);
      t[4 * g + 1] = _mm256_unpackhi_ps(r[4 * g], r[4 * g + 1]);
      t[4 * g + 2] = _mm256_unpacklo_ps(r[4 * g + 2], r[4 * g + 3]);
      t[4 * g + 3] = _mm256_unpackhi_ps(r[4 * g + 2], r[4 * g + 3]);
      u[4 * g + 0] = _mm256_shuffle_ps(t[4 * g], t[4 * g + 2], _MM_SHUFFLE(1, 0, 1, 0));
      u[4 * g + 1] = _mm256_shuffle_ps(t[4 * g], t[4 * g + 2], _MM_SHUFFLE(3, 2, 3, 2));
      u[4 * g + 2] = _mm256_shuffle_ps(t[4 * g + 1], t[4 * g + 3], _MM_SHUFFLE(1, 0, 1, 0));
      u[4 * g + 3] = _mm256_shuffle_ps(t[4 * g + 1], t[4 * g + 3], _MM_SHUFFLE(3, 2, 3, 2));
    }
    // u[4g + c] lane l = column 4l + c of rows 4g..4g+3.
#pragma GCC unroll 4
    for (int c = 0; c < 4; ++c) {
      r[c] = _mm256_permute2f128_ps(u[c], u[4 + c], 0x20);
      r[4 + c] = _mm256_permute2f128_ps(u[c], u[4 + c], 0x31);
    }
  }
  // out[i] = reduce_add(acc[i]) for 8 accumulators: a 3-level shuffle/add tree (21 ops);
  // lane 4L+e of the result holds input e + 4L.
  static void reduce_add_lanes(const Reg (&acc)[8], float* out) {
    __m256 x[4];
#pragma GCC unroll 4
    for (int i = 0; i < 4; ++i)
      x[i] = _mm256_add_ps(_mm256_permute2f128_ps(acc[i], acc[i + 4], 0x20),
                           _mm256_permute2f128_ps(acc[i], acc[i + 4], 0x31));
    const __m256 z01 =
        _mm256_add_ps(_mm256_unpacklo_ps(x[0], x[1]), _mm256_unpackhi_ps(x[0], x[1]));
    const __m256 z23 =
        _mm256_add_ps(_mm256_unpacklo_ps(x[2], x[3]), _mm256_unpackhi_ps(x[2], x[3]));
    const __m256d a = _mm256_castps_pd(z01), b = _mm256_castps_pd(z23);
    _mm256_storeu_ps(out, _mm256_add_ps(_mm256_castpd_ps(_mm256_unpacklo_pd(a, b)),
                                        _mm256_castpd_ps(_mm256_unpackhi_pd(a, b))));
  }
  static Reg add(Reg a, Reg b) {
    return _mm256_add_ps(a, b);
  }
  static Reg sub(Reg a, Reg b) {
    return _mm256_sub_ps(a, b);
  }
  static Reg mul(Reg a, Reg b) {
    return _mm256_mul_ps(a, b);
  }
  static Reg div(Reg a, Reg b) {
    return _mm256_div_ps(a, b);
  }
  static Reg min(Reg a, Reg b) {
    return _mm256_min_ps(a, b);
  }
  static Reg max(Reg a, Reg b) {
    return _mm256_max_ps(a, b);
  }
  static Reg sqrt(Reg a) {
    return _mm256_sqrt_ps(a);
  }
  static Reg fma(Reg a, Reg b, Reg c) {
    return _mm256_fmadd_ps(a, b, c);
  }
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

// 3 rows × 4 columns of dot products: 12 accumulators + 1 + 4 operand registers of 16 (2×4,
// which would fit one reduce_add_lanes tree, is load-bound: 6 loads per 8 FMAs).
using f32_gemm_dot3x4__avx2_fma = GemmDotNT<F32x8, 3, 4>;
// C = A·Bᵀ with few columns and a long K goes to dot products (see GemmDotNT).
inline constexpr int64_t kDotMaxN = 32, kDotMinK = 32;

inline void sgemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                  int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  if (!ta && tb && N <= kDotMaxN && K >= kDotMinK && alpha != 0.0f) {
    f32_gemm_dot3x4__avx2_fma::sgemm(M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    return;
  }
  Sgemm::sgemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

inline void sgemm_rows(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha,
                       const float* A, int64_t lda, const float* B, const int64_t* boff, float beta,
                       float* C, int64_t ldc) {
  if (!ta && tb && N <= kDotMaxN && K >= kDotMinK && alpha != 0.0f) {
    f32_gemm_dot3x4__avx2_fma::sgemm(M, N, K, alpha, A, lda, B, 0, beta, C, ldc, boff);
    return;
  }
  Sgemm::sgemm(ta, tb, M, N, K, alpha, A, lda, B, 0, beta, C, ldc, boff);
}

// Overrides every entry of the table with this ISA's version.
inline void fill_table(KernelTable& t) {
  t.isa = Isa::avx2;
  t.sgemm = &sgemm;
  t.sgemm_rows = &sgemm_rows;
  SimdKernels<F32x8>::fill(t);
}

}  // namespace mercury::kernels::avx2
