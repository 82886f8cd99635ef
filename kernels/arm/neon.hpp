// kernels/arm/neon.hpp — AArch64 Advanced SIMD kernels (namespace mercury::kernels::neon).
//
// AArch64 always has NEON with FMA, so no extra -m flags are needed; the namespace and the
// F32x4-templated code still keep these symbols apart from the ref ones.
#pragma once

#include <arm_neon.h>

#include <cstdint>

#include "kernels/gemm_driver.hpp"
#include "kernels/kernels.hpp"
#include "kernels/simd_kernels.hpp"

namespace mercury::kernels::neon {

// 4 floats in a q register; tails go through a small stack buffer. The V interface of
// kernels/simd_kernels.hpp.
struct F32x4 {
  using Reg = float32x4_t;
  static constexpr int64_t width = 4;

  static Reg zero() { return vdupq_n_f32(0.0f); }
  static Reg set1(float x) { return vdupq_n_f32(x); }
  static Reg load(const float* p) { return vld1q_f32(p); }
  static void store(float* p, Reg r) { vst1q_f32(p, r); }
  static Reg load_partial(const float* p, int64_t n, float fill) {
    float lanes[4] = {fill, fill, fill, fill};
    for (int64_t i = 0; i < n && i < 4; ++i) lanes[i] = p[i];
    return vld1q_f32(lanes);
  }
  static void store_partial(float* p, int64_t n, Reg r) {
    float lanes[4];
    vst1q_f32(lanes, r);
    for (int64_t i = 0; i < n && i < 4; ++i) p[i] = lanes[i];
  }
  static Reg keep_first(Reg r, int64_t n) {
    const int32_t index[4] = {0, 1, 2, 3};
    const uint32x4_t lanes = vcltq_s32(vld1q_s32(index), vdupq_n_s32(static_cast<int32_t>(n)));
    return vreinterpretq_f32_u32(vandq_u32(lanes, vreinterpretq_u32_f32(r)));
  }
  // r[i][j] ↔ r[j][i] for the 4×4 block held in r[0..3] (TRN1/TRN2 on 32- then 64-bit lanes).
  static void transpose(Reg (&r)[4]) {
    const float32x4_t t0 = vtrn1q_f32(r[0], r[1]), t1 = vtrn2q_f32(r[0], r[1]);
    const float32x4_t t2 = vtrn1q_f32(r[2], r[3]), t3 = vtrn2q_f32(r[2], r[3]);
    const auto d = [](float32x4_t x) { return vreinterpretq_f64_f32(x); };
    r[0] = vreinterpretq_f32_f64(vtrn1q_f64(d(t0), d(t2)));
    r[1] = vreinterpretq_f32_f64(vtrn1q_f64(d(t1), d(t3)));
    r[2] = vreinterpretq_f32_f64(vtrn2q_f64(d(t0), d(t2)));
    r[3] = vreinterpretq_f32_f64(vtrn2q_f64(d(t1), d(t3)));
  }
  static Reg add(Reg a, Reg b) { return vaddq_f32(a, b); }
  static Reg sub(Reg a, Reg b) { return vsubq_f32(a, b); }
  static Reg mul(Reg a, Reg b) { return vmulq_f32(a, b); }
  static Reg div(Reg a, Reg b) { return vdivq_f32(a, b); }
  static Reg max(Reg a, Reg b) { return vmaxq_f32(a, b); }
  static Reg sqrt(Reg a) { return vsqrtq_f32(a); }
  static Reg fma(Reg a, Reg b, Reg c) { return vfmaq_f32(c, a, b); }
  static Reg where_positive(Reg x, Reg y) {
    return vreinterpretq_f32_u32(vandq_u32(vcgtq_f32(x, zero()), vreinterpretq_u32_f32(y)));
  }
  static Reg round(Reg r) { return vrndnq_f32(r); }
  static Reg pow2(Reg n) {
    const int32x4_t biased = vaddq_s32(vcvtnq_s32_f32(n), vdupq_n_s32(127));
    return vreinterpretq_f32_s32(vshlq_n_s32(biased, 23));
  }
  static float reduce_add(Reg r) { return vaddvq_f32(r); }
  static float reduce_max(Reg r) { return vmaxvq_f32(r); }
};

// 8 rows × 2 q registers: 16 accumulators of the 32 vector registers.
using f32_gemm_8x8__neonfma = GemmMicrokernel<F32x4, 8, 2>;
using Sgemm = GemmDriver<f32_gemm_8x8__neonfma, 128, 256, 4096>;
// 4 rows × 4 columns of dot products: 16 accumulators + 4 + 4 operand registers of 32.
using f32_gemm_dot4x4__neonfma = GemmDotNT<F32x4, 4, 4>;
// C = A·Bᵀ with few columns and a long K goes to dot products (see GemmDotNT).
inline constexpr int64_t kDotMaxN = 32, kDotMinK = 32;

inline void sgemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                  int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  if (!ta && tb && N <= kDotMaxN && K >= kDotMinK && alpha != 0.0f) {
    f32_gemm_dot4x4__neonfma::sgemm(M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    return;
  }
  Sgemm::sgemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

// Overrides every entry this ISA implements; im2col/col2im keep the ref versions.
inline void fill_table(KernelTable& t) {
  t.isa = Isa::neon;
  t.sgemm = &sgemm;
  SimdKernels<F32x4>::fill(t);
}

}  // namespace mercury::kernels::neon
