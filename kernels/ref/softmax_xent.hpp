// kernels/ref/softmax_xent.hpp — scalar reference fused softmax + cross-entropy.
//
// Same contract as KernelTable::softmax_xent. Subtracting the row max first keeps exp() finite
// for any finite logits; the loss is log(Σ) − (x[label] − max), not log(Σ) + max − x[label], so
// a large common offset (logits ≈ 1e4) cancels exactly instead of costing ulp(max) of accuracy.
#pragma once

#include <cmath>
#include <cstdint>

namespace mercury::kernels::ref {

inline void softmax_xent(int64_t rows, int64_t cols, const float* logits, const int32_t* labels,
                         float* loss, float* probs) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* x = logits + r * cols;
    float max = x[0];
    for (int64_t j = 1; j < cols; ++j) max = x[j] > max ? x[j] : max;
    float sum = 0.0f;
    for (int64_t j = 0; j < cols; ++j) sum += std::exp(x[j] - max);
    loss[r] = std::log(sum) - (x[labels[r]] - max);
    if (probs != nullptr) {
      for (int64_t j = 0; j < cols; ++j) probs[r * cols + j] = std::exp(x[j] - max) / sum;
    }
  }
}

}  // namespace mercury::kernels::ref
