// kernels/ref/gemm.hpp — scalar reference SGEMM (the oracle every SIMD GEMM is tested against).
//
// Same contract as KernelTable::sgemm. Loop order i-k-j when op(B) rows are contiguous (tb=false)
// and i-j-k (a dot product per output) when they are not, so the reference stays usable on the
// test shapes without being clever.
#pragma once

#include <cstdint>

namespace mercury::kernels::ref {

inline void sgemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                  int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  auto a_at = [&](int64_t i, int64_t k) { return ta ? A[k * lda + i] : A[i * lda + k]; };
  for (int64_t i = 0; i < M; ++i) {
    float* c_row = C + i * ldc;
    for (int64_t j = 0; j < N; ++j) c_row[j] = beta == 0.0f ? 0.0f : beta * c_row[j];
    if (tb) {
      for (int64_t j = 0; j < N; ++j) {
        float acc = 0.0f;
        for (int64_t k = 0; k < K; ++k) acc += a_at(i, k) * B[j * ldb + k];
        c_row[j] += alpha * acc;
      }
    } else {
      for (int64_t k = 0; k < K; ++k) {
        const float a = alpha * a_at(i, k);
        const float* b_row = B + k * ldb;
        for (int64_t j = 0; j < N; ++j) c_row[j] += a * b_row[j];
      }
    }
  }
}

}  // namespace mercury::kernels::ref
