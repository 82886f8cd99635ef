// mercury/autograd/ops_linear.hpp — fully connected layer: y = x·Wᵀ + b.
//
// Contract: x is [..., in] (leading dims are flattened into rows), W is [out, in], b is [out] or
// null. y is [..., out]. GEMMs go through kernels::table().sgemm on the calling thread (not
// threaded yet: issue 16; only the convolutions use the thread pool).
#pragma once

#include "kernels/kernels.hpp"
#include "mercury/autograd/tape.hpp"

namespace mercury::ops {

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
        if (x->requires_grad)  // dx += dy · W
          K.sgemm(false, false, rows, in, out, 1.0f, n.grad.data, out, w->value.data, in, 1.0f,
                  tp.grad(x).data, in);
        if (w->requires_grad)  // dW += dyᵀ · x
          K.sgemm(true, false, out, in, rows, 1.0f, n.grad.data, out, x->value.data, in, 1.0f,
                  tp.grad(w).data, in);
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
  K.sgemm(false, true, rows, out, in, 1.0f, x->value.data, in, w->value.data, in, 0.0f,
          y->value.data, out);
  if (b) K.add_row_bias(rows, out, b->value.data, y->value.data);
  return y;
}

}  // namespace mercury::ops
