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
  // even = a0, a2, …, a14, b0, …, b14; odd = a1, a3, …, b15 (the even/odd elements of a:b).
  static void deinterleave(Reg a, Reg b, Reg& even, Reg& odd) {
    const __m512i e = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
    even = _mm512_permutex2var_ps(a, e, b);
    odd = _mm512_permutex2var_ps(a, _mm512_add_epi32(e, _mm512_set1_epi32(1)), b);
  }
  static void store_i32(int32_t* p, Reg r) {  // truncated to int32
    _mm512_storeu_si512(p, _mm512_cvttps_epi32(r));
  }
  static Reg load_partial(const float* p, int64_t n, float fill) {
    return _mm512_mask_loadu_ps(set1(fill), first_lanes(n), p);
  }
  static void store_partial(float* p, int64_t n, Reg r) {
    _mm512_mask_storeu_ps(p, first_lanes(n), r);
  }
  static Reg keep_first(Reg r, int64_t n) { return _mm512_maskz_mov_ps(first_lanes(n), r); }
  // r[i][j] ↔ r[j][i] for the 16×16 block held in r[0..15]: unpack ps, unpack pd, then two
  // rounds of 128-bit lane shuffles (64 shuffles for 256 floats).
  static void transpose(Reg (&r)[16]) {
    __m512 t[16], u[16], v[16];
#pragma GCC unroll 4
    for (int g = 0; g < 4; ++g) {
      t[4 * g + 0] = _mm512_unpacklo_ps(r[4 * g], r[4 * g + 1]);
      t[4 * g + 1] = _mm512_unpackhi_ps(r[4 * g], r[4 * g + 1]);
      t[4 * g + 2] = _mm512_unpacklo_ps(r[4 * g + 2], r[4 * g + 3]);
      t[4 * g + 3] = _mm512_unpackhi_ps(r[4 * g + 2], r[4 * g + 3]);
      const auto pd = [](__m512 x) { return _mm512_castps_pd(x); };
      u[4 * g + 0] = _mm512_castpd_ps(_mm512_unpacklo_pd(pd(t[4 * g]), pd(t[4 * g + 2])));
      u[4 * g + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(pd(t[4 * g]), pd(t[4 * g + 2])));
      u[4 * g + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(pd(t[4 * g + 1]), pd(t[4 * g + 3])));
      u[4 * g + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(pd(t[4 * g + 1]), pd(t[4 * g + 3])));
    }
    // u[4g + c] lane l = column 4l + c of rows 4g..4g+3.
#pragma GCC unroll 4
    for (int c = 0; c < 4; ++c) {
      v[c] = _mm512_shuffle_f32x4(u[c], u[4 + c], 0x88);           // columns c, 8+c of rows 0..7
      v[4 + c] = _mm512_shuffle_f32x4(u[c], u[4 + c], 0xdd);       // columns 4+c, 12+c
      v[8 + c] = _mm512_shuffle_f32x4(u[8 + c], u[12 + c], 0x88);  // same, rows 8..15
      v[12 + c] = _mm512_shuffle_f32x4(u[8 + c], u[12 + c], 0xdd);
    }
#pragma GCC unroll 8
    for (int j = 0; j < 8; ++j) {
      r[j] = _mm512_shuffle_f32x4(v[j], v[8 + j], 0x88);
      r[8 + j] = _mm512_shuffle_f32x4(v[j], v[8 + j], 0xdd);
    }
  }
  // out[i] = reduce_add(acc[i]) for 16 accumulators: a 4-level shuffle/add tree (45 ops).
  static void reduce_add_lanes(const Reg (&acc)[16], float* out) {
    // After the tree, lane 4L+e holds the sum of input e + {0, 8, 4, 12}[L]; feeding inputs
    // 4..7 and 8..11 swapped makes that the natural order.
    const auto in = [&](int i) { return acc[(i >= 4 && i < 12) ? (i < 8 ? i + 4 : i - 4) : i]; };
    __m512 x[8], y[4];
#pragma GCC unroll 8
    for (int i = 0; i < 8; ++i)
      x[i] = _mm512_add_ps(_mm512_shuffle_f32x4(in(i), in(i + 8), 0x44),
                           _mm512_shuffle_f32x4(in(i), in(i + 8), 0xEE));
#pragma GCC unroll 4
    for (int i = 0; i < 4; ++i)
      y[i] = _mm512_add_ps(_mm512_shuffle_f32x4(x[i], x[i + 4], 0x88),
                           _mm512_shuffle_f32x4(x[i], x[i + 4], 0xDD));
    const __m512 z01 =
        _mm512_add_ps(_mm512_unpacklo_ps(y[0], y[1]), _mm512_unpackhi_ps(y[0], y[1]));
    const __m512 z23 =
        _mm512_add_ps(_mm512_unpacklo_ps(y[2], y[3]), _mm512_unpackhi_ps(y[2], y[3]));
    const __m512d a = _mm512_castps_pd(z01), b = _mm512_castps_pd(z23);
    _mm512_storeu_ps(out, _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(a, b)),
                                        _mm512_castpd_ps(_mm512_unpackhi_pd(a, b))));
  }
  static Reg add(Reg a, Reg b) {
    return _mm512_add_ps(a, b);
  }
  static Reg sub(Reg a, Reg b) {
    return _mm512_sub_ps(a, b);
  }
  static Reg mul(Reg a, Reg b) {
    return _mm512_mul_ps(a, b);
  }
  static Reg div(Reg a, Reg b) {
    return _mm512_div_ps(a, b);
  }
  static Reg min(Reg a, Reg b) {
    return _mm512_min_ps(a, b);
  }
  static Reg max(Reg a, Reg b) {
    return _mm512_max_ps(a, b);
  }
  static Reg sqrt(Reg a) {
    return _mm512_sqrt_ps(a);
  }
  static Reg fma(Reg a, Reg b, Reg c) {
    return _mm512_fmadd_ps(a, b, c);
  }
  static Reg where_positive(Reg x, Reg y) {
    return _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(x, zero(), _CMP_GT_OQ), y);
  }
  static Reg round(Reg r) {
    return _mm512_roundscale_ps(r, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  }
  static Reg pow2(Reg n) {
    return _mm512_scalef_ps(set1(1.0f), n);
  }
  static float reduce_add(Reg r) {
    return _mm512_reduce_add_ps(r);
  }
  static float reduce_max(Reg r) {
    return _mm512_reduce_max_ps(r);
  }
};

// 8 rows × 2 zmm: 16 accumulators; 8 broadcasts + 2 loads feed 16 FMAs per k.
using f32_gemm_8x32__avx512f = GemmMicrokernel<F32x16, 8, 2>;
// 16 rows × 1 zmm, for N ≤ 16 (e.g. a 10-class classifier) where 32 columns would be mostly
// padding.
using f32_gemm_16x16__avx512f = GemmMicrokernel<F32x16, 16, 1>;
using WideSgemm = GemmDriver<f32_gemm_8x32__avx512f, 192, 256, 4096>;
using NarrowSgemm = GemmDriver<f32_gemm_16x16__avx512f, 192, 256, 4096>;
// C = A·Bᵀ with few columns and a long K goes to dot products (see GemmDotNT).
inline constexpr int64_t kDotMaxN = 32, kDotMinK = 64;

// 4 rows × 4 columns of dot products: 16 accumulators (one reduce_add_lanes tree) + 4 + 4
// operand registers of 32.
using f32_gemm_dot4x4__avx512f = GemmDotNT<F32x16, 4, 4>;

inline void sgemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                  int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  if (!ta && tb && N <= kDotMaxN && K >= kDotMinK && alpha != 0.0f) {
    f32_gemm_dot4x4__avx512f::sgemm(M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    return;
  }
  (N <= f32_gemm_16x16__avx512f::NR ? &NarrowSgemm::sgemm : &WideSgemm::sgemm)(
      ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, nullptr);
}

inline void sgemm_rows(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha,
                       const float* A, int64_t lda, const float* B, const int64_t* boff, float beta,
                       float* C, int64_t ldc) {
  if (!ta && tb && N <= kDotMaxN && K >= kDotMinK && alpha != 0.0f) {
    f32_gemm_dot4x4__avx512f::sgemm(M, N, K, alpha, A, lda, B, 0, beta, C, ldc, boff);
    return;
  }
  (N <= f32_gemm_16x16__avx512f::NR ? &NarrowSgemm::sgemm : &WideSgemm::sgemm)(
      ta, tb, M, N, K, alpha, A, lda, B, 0, beta, C, ldc, boff);
}

// Overrides every entry of the table with this ISA's version.
inline void fill_table(KernelTable& t) {
  t.isa = Isa::avx512;
  t.sgemm = &sgemm;
  t.sgemm_rows = &sgemm_rows;
  SimdKernels<F32x16>::fill(t);
}

}  // namespace mercury::kernels::avx512

#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ < 13
#pragma GCC diagnostic pop
#endif
