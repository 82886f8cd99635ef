// kernels/ref/gemm.hpp — scalar reference SGEMM (the oracle every SIMD GEMM is tested against).
//
// Same contract as KernelTable::sgemm. Loop order i-k-j when op(B) rows are contiguous (tb=false)
// and i-j-k (a dot product per output) when they are not, so the reference stays usable on the
// test shapes without being clever.
#pragma once

#include <cstdint>

namespace mercury::kernels::ref {

// Stored row r of B at B + boff[r] (boff != nullptr) or B + r·ldb: sgemm and sgemm_rows in one.
inline void sgemm_impl(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha,
                       const float* A, int64_t lda, const float* B, int64_t ldb,
                       const int64_t* boff, float beta, float* C, int64_t ldc) {
  auto b_row = [&](int64_t r) { return boff ? B + boff[r] : B + r * ldb; };
  auto a_at = [&](int64_t i, int64_t k) { return ta ? A[k * lda + i] : A[i * lda + k]; };
  for (int64_t i = 0; i < M; ++i) {
    float* c_row = C + i * ldc;
    for (int64_t j = 0; j < N; ++j) c_row[j] = beta == 0.0f ? 0.0f : beta * c_row[j];
    if (tb) {
      for (int64_t j = 0; j < N; ++j) {
        float acc = 0.0f;
        for (int64_t k = 0; k < K; ++k) acc += a_at(i, k) * b_row(j)[k];
        c_row[j] += alpha * acc;
      }
    } else {
      for (int64_t k = 0; k < K; ++k) {
        const float a = alpha * a_at(i, k);
        const float* row = b_row(k);
        for (int64_t j = 0; j < N; ++j) c_row[j] += a * row[j];
      }
    }
  }
}

inline void sgemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                  int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  sgemm_impl(ta, tb, M, N, K, alpha, A, lda, B, ldb, nullptr, beta, C, ldc);
}

inline void sgemm_rows(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha,
                       const float* A, int64_t lda, const float* B, const int64_t* boff, float beta,
                       float* C, int64_t ldc) {
  sgemm_impl(ta, tb, M, N, K, alpha, A, lda, B, 0, boff, beta, C, ldc);
}

}  // namespace mercury::kernels::ref
