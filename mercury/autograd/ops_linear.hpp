// mercury/autograd/ops_linear.hpp — fully connected layer: y = x·Wᵀ + b.
//
// Contract: x is [..., in] (leading dims are flattened into rows), W is [out, in], b is [out] or
// null. y is [..., out]. GEMMs go through kernels::table().sgemm; products of at least
// detail::kLinearMinMacs multiply-adds split their output columns over the thread pool in
// blocks of 32 (whole SIMD tiles), so the result depends only on the thread count.
#pragma once

#include <algorithm>

#include "kernels/kernels.hpp"
#include "mercury/autograd/tape.hpp"
#include "mercury/tensor/thread_pool.hpp"

namespace mercury::ops {

namespace detail {
inline constexpr int64_t kLinearColumnBlock = 32;
inline constexpr int64_t kLinearMinMacs = int64_t{1} << 18;
// fn(c0, c1) computes output columns [c0, c1) of an M×N×K product; small ones run inline.
template <class Fn>
void linear_columns(int64_t M, int64_t N, int64_t K, Fn&& fn) {
  ThreadPool& pool = thread_pool();
  const int64_t blocks = (N + kLinearColumnBlock - 1) / kLinearColumnBlock;
  if (pool.threads() == 1 || blocks < 2 || M * N * K < kLinearMinMacs) {
    fn(int64_t{0}, N);
    return;
  }
  pool.parallel_for(blocks, [&](int64_t b0, int64_t b1, int) {
    fn(b0 * kLinearColumnBlock, std::min(b1 * kLinearColumnBlock, N));
  });
}
}  // namespace detail

inline Var linear(Tape& t, Var x, Var w, Var b) {
  const Shape& xs = x->shape();
  const int64_t in = xs[-1], out = w->shape()[0];
  if (w->shape().rank != 2 || w->shape()[1] != in || (b && b->numel() != out)) {
    throw std::invalid_argument("linear: x " + xs.str() + ", W " + w->shape().str() +
                                (b ? ", b " + b->shape().str() : std::string()) +
                                " (expected W [out, " + std::to_string(in) + "], b [out])");
  }
  const int64_t rows = x->numel() / in;
  Shape ys = xs;
  ys[-1] = out;
  Var y = t.op(
      ys,
      [](Node& n, Tape& tp) {
        const auto& K = kernels::table();
        Var x = n.in[0], w = n.in[1], b = n.in[2];
        const int64_t rows = n.i[0], in = n.i[1], out = n.i[2];
        if (x->requires_grad) {  // dx += dy · W
          float* dx = tp.grad(x).data;
          detail::linear_columns(rows, in, out, [&](int64_t c0, int64_t c1) {
            K.sgemm(false, false, rows, c1 - c0, out, 1.0f, n.grad.data, out, w->value.data + c0,
                    in, 1.0f, dx + c0, in);
          });
        }
        if (w->requires_grad) {  // dW += dyᵀ · x
          float* dw = tp.grad(w).data;
          detail::linear_columns(out, in, rows, [&](int64_t c0, int64_t c1) {
            K.sgemm(true, false, out, c1 - c0, rows, 1.0f, n.grad.data, out, x->value.data + c0, in,
                    1.0f, dw + c0, in);
          });
        }
        if (b && b->requires_grad) {  // db += Σ_rows dy
          float* db = tp.grad(b).data;
          for (int64_t r = 0; r < rows; ++r) K.axpy(out, 1.0f, n.grad.data + r * out, db);
        }
      },
      {x, w, b}, kReadIn0 | kReadIn1);
  y->i[0] = rows;
  y->i[1] = in;
  y->i[2] = out;
  const auto& K = kernels::table();
  detail::linear_columns(rows, out, in, [&](int64_t c0, int64_t c1) {
    K.sgemm(false, true, rows, c1 - c0, in, 1.0f, x->value.data, in, w->value.data + c0 * in, in,
            0.0f, y->value.data + c0, out);
  });
  if (b) K.add_row_bias(rows, out, b->value.data, y->value.data);
  return y;
}

}  // namespace mercury::ops
