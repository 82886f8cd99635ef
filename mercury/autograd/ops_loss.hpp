// mercury/autograd/ops_loss.hpp — per-sample softmax cross-entropy and the weighted reduction
// that seeds backward.
//
// Contract
// - softmax_xent(logits [B, K], labels) → per-sample loss vector [B] (importance scores come
//   straight from here). Labels are copied into the arena; each must be in [0, K) (checked).
// - weighted_mean(losses [B], weights or null) → scalar Σ w_i·l_i / B. weights == null means all
//   ones. This is the only place importance weights enter training: no layer knows about them.
#pragma once

#include <cstring>
#include <string>

#include "kernels/kernels.hpp"
#include "mercury/autograd/tape.hpp"

namespace mercury::ops {

inline Var softmax_xent(Tape& t, Var logits, const int32_t* labels) {
  const Shape& ls = logits->shape();
  if (ls.rank != 2) {
    throw std::invalid_argument("softmax_xent: logits must be [B, K], got " + ls.str());
  }
  const int64_t B = ls[0], K = ls[1];
  for (int64_t r = 0; r < B; ++r) {
    if (labels[r] < 0 || labels[r] >= K) {
      throw std::invalid_argument("softmax_xent: label " + std::to_string(labels[r]) +
                                  " of sample " + std::to_string(r) + " is outside [0, " +
                                  std::to_string(K) + ")");
    }
  }
  Var y = t.op(
      Shape{B},
      [](Node& n, Tape& tp) {
        const int64_t B = n.i[0], K = n.i[1];
        const float* probs = n.saved[0].data;
        const auto* lab = reinterpret_cast<const int32_t*>(n.saved[1].data);
        float* dl = tp.grad(n.in[0]).data;
        for (int64_t r = 0; r < B; ++r) {
          const float g = n.grad.data[r];
          for (int64_t k = 0; k < K; ++k) dl[r * K + k] += g * probs[r * K + k];
          dl[r * K + lab[r]] -= g;
        }
      },
      {logits}, kReadsNone);
  float* probs = nullptr;
  if (y->requires_grad) {
    y->saved[0] = t.saved(ls);
    y->saved[1] = t.saved(Shape{B});
    std::memcpy(y->saved[1].data, labels, sizeof(int32_t) * static_cast<std::size_t>(B));
    probs = y->saved[0].data;
    y->i[0] = B;
    y->i[1] = K;
  }
  kernels::table().softmax_xent(B, K, logits->value.data, labels, y->value.data, probs);
  return y;
}

inline Var weighted_mean(Tape& t, Var losses, const float* weights) {
  if (losses->shape().rank != 1) {
    throw std::invalid_argument("weighted_mean: expected a loss vector [B], got " +
                                losses->shape().str());
  }
  const int64_t B = losses->numel();
  Var y = t.op(
      Shape{1},
      [](Node& n, Tape& tp) {
        const int64_t B = n.in[0]->numel();
        const float g = n.grad.data[0] / static_cast<float>(B);
        float* dl = tp.grad(n.in[0]).data;
        const float* w = n.saved[0].defined() ? n.saved[0].data : nullptr;
        for (int64_t r = 0; r < B; ++r) dl[r] += g * (w ? w[r] : 1.0f);
      },
      {losses}, kReadsNone);
  double s = 0;
  for (int64_t r = 0; r < B; ++r)
    s += static_cast<double>(losses->value.data[r]) * (weights ? weights[r] : 1.0);
  y->value.data[0] = static_cast<float>(s / static_cast<double>(B));
  if (y->requires_grad && weights) {
    y->saved[0] = t.saved(Shape{B});
    std::memcpy(y->saved[0].data, weights, sizeof(float) * static_cast<std::size_t>(B));
  }
  return y;
}

}  // namespace mercury::ops
