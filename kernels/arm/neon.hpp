// kernels/arm/neon.hpp — Advanced SIMD kernels (namespace mercury::kernels::neon) for AArch64
// and for 32-bit ARMv7-A with NEON and VFPv4 (-mfpu=neon-vfpv4: the fused multiply-add).
//
// AArch64 always has NEON with FMA, so no extra -m flags are needed there; on ARMv7 the TU that
// includes this is compiled with -mfpu=neon-vfpv4 and used only when the CPU reports both (HWCAP).
// The namespace and the F32x4-templated code keep these symbols apart from the ref ones.
//
// AArch32 lacks some A64 instructions; their stand-ins give the same results: division and
// square root lane by lane (IEEE-exact, like FDIV/FSQRT), round-to-nearest-even by adding and
// subtracting 2^23 (exact below 2^23; larger floats are integers already), the transpose from
// VTRN plus 64-bit half swaps, and the horizontal sum/max pairwise.
#pragma once

#include <arm_neon.h>

#include <cmath>
#include <cstdint>

#include "kernels/gemm_driver.hpp"
#include "kernels/kernels.hpp"
#include "kernels/simd_kernels.hpp"

#if !defined(__aarch64__) && !(defined(__ARM_NEON) && defined(__ARM_FEATURE_FMA))
#error "kernels/arm/neon.hpp: 32-bit ARM needs NEON with FMA (-mfpu=neon-vfpv4 -mfloat-abi=hard)"
#endif

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
  // even = a0, a2, b0, b2; odd = a1, a3, b1, b3 (the even/odd elements of a:b; UZP).
  static void deinterleave(Reg a, Reg b, Reg& even, Reg& odd) {
    const float32x4x2_t v = vuzpq_f32(a, b);
    even = v.val[0];
    odd = v.val[1];
  }
  static void store_i32(int32_t* p, Reg r) { vst1q_s32(p, vcvtq_s32_f32(r)); }  // truncated
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
#if defined(__aarch64__)
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
  static Reg div(Reg a, Reg b) {
    return vdivq_f32(a, b);
  }
  static Reg sqrt(Reg a) {
    return vsqrtq_f32(a);
  }
  static Reg round(Reg r) {
    return vrndnq_f32(r);
  }
  static float reduce_add(Reg r) {
    return vaddvq_f32(r);
  }
  static float reduce_max(Reg r) {
    return vmaxvq_f32(r);
  }
#else
  // VTRN on 32-bit lanes, then the 64-bit halves recombined.
  static void transpose(Reg (&r)[4]) {
    const float32x4x2_t a = vtrnq_f32(r[0], r[1]), b = vtrnq_f32(r[2], r[3]);
    r[0] = vcombine_f32(vget_low_f32(a.val[0]), vget_low_f32(b.val[0]));
    r[1] = vcombine_f32(vget_low_f32(a.val[1]), vget_low_f32(b.val[1]));
    r[2] = vcombine_f32(vget_high_f32(a.val[0]), vget_high_f32(b.val[0]));
    r[3] = vcombine_f32(vget_high_f32(a.val[1]), vget_high_f32(b.val[1]));
  }
  template <typename Op>
  static Reg lanewise(Reg a, Reg b, Op op) {
    float x[4], y[4];
    vst1q_f32(x, a);
    vst1q_f32(y, b);
    for (int i = 0; i < 4; ++i) x[i] = op(x[i], y[i]);
    return vld1q_f32(x);
  }
  static Reg div(Reg a, Reg b) {
    return lanewise(a, b, [](float x, float y) { return x / y; });
  }
  static Reg sqrt(Reg a) {
    return lanewise(a, a, [](float x, float) { return std::sqrt(x); });
  }
  // |r| + 2^23 − 2^23 rounds |r| < 2^23 to the nearest even integer; the sign is put back (so
  // −0.4 gives −0, as FRINTN does), and |r| ≥ 2^23 (or NaN) is returned unchanged.
  static Reg round(Reg r) {
    const float32x4_t magic = vdupq_n_f32(8388608.0f);
    const float32x4_t mag = vabsq_f32(r);
    const float32x4_t rounded = vsubq_f32(vaddq_f32(mag, magic), magic);
    const uint32x4_t sign = vdupq_n_u32(0x80000000u);
    const float32x4_t signed_rounded = vbslq_f32(sign, r, rounded);
    return vbslq_f32(vcltq_f32(mag, magic), signed_rounded, r);
  }
  static float reduce_add(Reg r) {
    const float32x2_t s = vpadd_f32(vget_low_f32(r), vget_high_f32(r));
    return vget_lane_f32(vpadd_f32(s, s), 0);
  }
  static float reduce_max(Reg r) {
    const float32x2_t m = vpmax_f32(vget_low_f32(r), vget_high_f32(r));
    return vget_lane_f32(vpmax_f32(m, m), 0);
  }
#endif
  static Reg add(Reg a, Reg b) {
    return vaddq_f32(a, b);
  }
  static Reg sub(Reg a, Reg b) {
    return vsubq_f32(a, b);
  }
  static Reg mul(Reg a, Reg b) {
    return vmulq_f32(a, b);
  }
  static Reg min(Reg a, Reg b) {
    return vminq_f32(a, b);
  }
  static Reg max(Reg a, Reg b) {
    return vmaxq_f32(a, b);
  }
  static Reg fma(Reg a, Reg b, Reg c) {
    return vfmaq_f32(c, a, b);
  }
  static Reg where_positive(Reg x, Reg y) {
    return vreinterpretq_f32_u32(vandq_u32(vcgtq_f32(x, zero()), vreinterpretq_u32_f32(y)));
  }
  // n is integral (round's output), so truncating to int32 is exact.
  static Reg pow2(Reg n) {
    const int32x4_t biased = vaddq_s32(vcvtq_s32_f32(n), vdupq_n_s32(127));
    return vreinterpretq_f32_s32(vshlq_n_s32(biased, 23));
  }
};

#if defined(__aarch64__)
// 8 rows × 2 q registers: 16 accumulators of the 32 vector registers.
using f32_gemm_8x8__neonfma = GemmMicrokernel<F32x4, 8, 2>;
using Sgemm = GemmDriver<f32_gemm_8x8__neonfma, 128, 256, 4096>;
// 4 rows × 4 columns of dot products: 16 accumulators + 4 + 4 operand registers of 32.
using f32_gemm_dot4x4__neonfma = GemmDotNT<F32x4, 4, 4>;
#else
// AArch32 has 16 q registers: 4 rows × 2 q registers is 8 accumulators + 2 B + 1 broadcast A.
using f32_gemm_4x8__neonfma = GemmMicrokernel<F32x4, 4, 2>;
using Sgemm = GemmDriver<f32_gemm_4x8__neonfma, 128, 256, 4096>;
// 2 rows × 4 columns of dot products: 8 accumulators + 2 + 4 operand registers of 16.
using f32_gemm_dot2x4__neonfma = GemmDotNT<F32x4, 2, 4>;
#endif
// C = A·Bᵀ with few columns and a long K goes to dot products (see GemmDotNT).
inline constexpr int64_t kDotMaxN = 32, kDotMinK = 32;

inline void sgemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                  int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  if (!ta && tb && N <= kDotMaxN && K >= kDotMinK && alpha != 0.0f) {
#if defined(__aarch64__)
    f32_gemm_dot4x4__neonfma::sgemm(M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
#else
    f32_gemm_dot2x4__neonfma::sgemm(M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
#endif
    return;
  }
  Sgemm::sgemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

inline void sgemm_rows(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha,
                       const float* A, int64_t lda, const float* B, const int64_t* boff, float beta,
                       float* C, int64_t ldc) {
  if (!ta && tb && N <= kDotMaxN && K >= kDotMinK && alpha != 0.0f) {
#if defined(__aarch64__)
    f32_gemm_dot4x4__neonfma::sgemm(M, N, K, alpha, A, lda, B, 0, beta, C, ldc, boff);
#else
    f32_gemm_dot2x4__neonfma::sgemm(M, N, K, alpha, A, lda, B, 0, beta, C, ldc, boff);
#endif
    return;
  }
  Sgemm::sgemm(ta, tb, M, N, K, alpha, A, lda, B, 0, beta, C, ldc, boff);
}

// Overrides every entry of the table with this ISA's version.
inline void fill_table(KernelTable& t) {
  t.isa = Isa::neon;
  t.sgemm = &sgemm;
  t.sgemm_rows = &sgemm_rows;
  SimdKernels<F32x4>::fill(t);
}

}  // namespace mercury::kernels::neon
