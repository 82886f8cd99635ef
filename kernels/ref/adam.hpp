// kernels/ref/adam.hpp — scalar reference Adam/AdamW step (contract: KernelTable::adam).
#pragma once

#include <cmath>
#include <cstdint>

namespace mercury::kernels::ref {

inline void adam(int64_t n, float* p, const float* g, float* m, float* v, float lr, float b1,
                 float b2, float eps, float l2, float decoupled_wd, float bc1, float bc2) {
  for (int64_t i = 0; i < n; ++i) {
    const float grad = g[i] + l2 * p[i];
    p[i] -= lr * decoupled_wd * p[i];
    m[i] = b1 * m[i] + (1.0f - b1) * grad;
    v[i] = b2 * v[i] + (1.0f - b2) * grad * grad;
    p[i] -= lr * (m[i] / bc1) / (std::sqrt(v[i] / bc2) + eps);
  }
}

}  // namespace mercury::kernels::ref
