// mercury/autograd/ops_attention.hpp — additive (Bahdanau-style) attention pooling over time.
//
// Contract
// - x [B, T, D] (T ≥ 1), W [A, D], b [A] or null, v with A elements ([A] or [1, A]) → out [B, D]:
//     u_t = tanh(W·x_t + b),  s_t = v·u_t,  α = softmax_t(s),  out = Σ_t α_t·x_t
//   Every step takes part (fixed-length padded sequences; no mask).
// - One fused op: one GEMM [B·T, D]×[D, A] for the projections, a max-shifted softmax per row.
//   The projections u [B·T, A] and weights α [B, T] are needed by the forward itself and are
//   kept (tape arena) for backward.
// - Exact backward: dx gets both the pooling path (α_t·dout) and the scoring path
//   (dpre·W with dpre = ds_t·v⊙(1−u_t²), ds_t = α_t(dout·x_t − Σ_t' α_t' dout·x_t')).
#pragma once

#include <algorithm>
#include <cmath>
#include <string>

#include "kernels/kernels.hpp"
#include "mercury/autograd/tape.hpp"

namespace mercury::ops {

namespace detail {

// saved[0] = u [B·T, A] (tanh outputs), saved[1] = α [B, T]; i[] = {B, T, D, A}.
inline void attention_pool_backward(Node& n, Tape& tp) {
  const auto& K = kernels::table();
  const int64_t B = n.i[0], T = n.i[1], D = n.i[2], A = n.i[3], rows = B * T;
  Var x = n.in[0], w = n.in[1], b = n.in[2], v = n.in[3];
  const float* u = n.saved[0].data;
  const float* alpha = n.saved[1].data;
  const float* xs = x->value.data;
  // Gradient of the scores through the softmax.
  Tensor ds = tp.scratch(Shape{B, T});
  for (int64_t bi = 0; bi < B; ++bi) {
    const float* dout = n.grad.data + bi * D;
    float mean = 0.0f;  // Σ_t α_t·(dout·x_t)
    for (int64_t t = 0; t < T; ++t) {
      const float da = K.dot(D, dout, xs + (bi * T + t) * D);
      ds.data[bi * T + t] = da;
      mean += alpha[bi * T + t] * da;
    }
    for (int64_t t = 0; t < T; ++t) {
      const int64_t r = bi * T + t;
      ds.data[r] = alpha[r] * (ds.data[r] - mean);
    }
  }
  if (x->requires_grad) {  // pooling path: dx_t += α_t·dout
    float* dx = tp.grad(x).data;
    for (int64_t r = 0; r < rows; ++r) K.axpy(D, alpha[r], n.grad.data + (r / T) * D, dx + r * D);
  }
  if (v->requires_grad) {  // dv += Σ_t ds_t·u_t
    float* dv = tp.grad(v).data;
    for (int64_t r = 0; r < rows; ++r) K.axpy(A, ds.data[r], u + r * A, dv);
  }
  const bool need_pre = x->requires_grad || w->requires_grad || (b && b->requires_grad);
  if (!need_pre) return;
  Tensor dpre = tp.scratch(Shape{rows, A});
  const float* vs = v->value.data;
  for (int64_t r = 0; r < rows; ++r) {
    const float* ur = u + r * A;
    float* dp = dpre.data + r * A;
    for (int64_t a = 0; a < A; ++a) dp[a] = ds.data[r] * vs[a] * (1.0f - ur[a] * ur[a]);
  }
  if (x->requires_grad)  // scoring path: dx += dpre · W
    K.sgemm(false, false, rows, D, A, 1.0f, dpre.data, A, w->value.data, D, 1.0f, tp.grad(x).data,
            D);
  if (w->requires_grad)  // dW += dpreᵀ · x
    K.sgemm(true, false, A, D, rows, 1.0f, dpre.data, A, xs, D, 1.0f, tp.grad(w).data, D);
  if (b && b->requires_grad) {
    float* db = tp.grad(b).data;
    for (int64_t r = 0; r < rows; ++r) K.axpy(A, 1.0f, dpre.data + r * A, db);
  }
}

}  // namespace detail

inline Var attention_pool(Tape& t, Var x, Var w, Var b, Var v) {
  const Shape& xs = x->shape();
  const Shape& ws = w->shape();
  const int64_t A = ws.rank == 2 ? ws[0] : 0;
  if (xs.rank != 3 || xs[1] < 1 || ws.rank != 2 || A < 1 || ws[1] != xs[2] ||
      (b && b->numel() != A) || v->numel() != A) {
    throw std::invalid_argument("attention_pool: x " + xs.str() + ", W " + ws.str() +
                                (b ? ", b " + b->shape().str() : std::string()) + ", v " +
                                v->shape().str() +
                                " (expected x [B, T>=1, D], W [A, D], b [A], v [A])");
  }
  const int64_t B = xs[0], T = xs[1], D = xs[2], rows = B * T;
  Var y = t.op(Shape{B, D}, &detail::attention_pool_backward, {x, w, b, v});
  y->i[0] = B;
  y->i[1] = T;
  y->i[2] = D;
  y->i[3] = A;

  const auto& K = kernels::table();
  Tensor u = t.saved(Shape{rows, A});
  K.sgemm(false, true, rows, A, D, 1.0f, x->value.data, D, w->value.data, D, 0.0f, u.data, A);
  if (b) K.add_row_bias(rows, A, b->value.data, u.data);
  K.tanh_fwd(rows * A, u.data, u.data);
  Tensor alpha = t.saved(Shape{B, T});
  for (int64_t r = 0; r < rows; ++r) alpha.data[r] = K.dot(A, u.data + r * A, v->value.data);
  y->value.zero();
  for (int64_t bi = 0; bi < B; ++bi) {
    float* a = alpha.data + bi * T;
    const float m = *std::max_element(a, a + T);
    float sum = 0.0f;
    for (int64_t s = 0; s < T; ++s) sum += (a[s] = std::exp(a[s] - m));
    const float inv = 1.0f / sum;
    for (int64_t s = 0; s < T; ++s) {
      a[s] *= inv;
      K.axpy(D, a[s], x->value.data + (bi * T + s) * D, y->value.data + bi * D);
    }
  }
  y->saved[0] = u;
  y->saved[1] = alpha;
  return y;
}

}  // namespace mercury::ops
