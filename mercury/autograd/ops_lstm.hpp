// mercury/autograd/ops_lstm.hpp — one LSTM layer, one direction, over a whole sequence.
//
// Contract
// - x [B, T, I], W_ih [4H, I], W_hh [4H, H], b_ih [4H], b_hh [4H] (PyTorch layout, gate order
//   i, f, g, o; either bias may be null) → h [B, T, H]. h0 = c0 = 0.
//     pre_t = x_t·W_ihᵀ + b_ih + h_{t-1}·W_hhᵀ + b_hh
//     i, f, o = σ(pre_i, pre_f, pre_o), g = tanh(pre_g), c_t = f⊙c_{t-1} + i⊙g, h_t = o⊙tanh(c_t)
// - reverse = true runs the recurrence from t = T−1 down to 0 (the backward half of a BiLSTM);
//   h stays in time order either way.
// - Forward: ONE GEMM [B·T, I]×[I, 4H] for the input projections of every step, then one GEMM
//   [B, H]×[H, 4H] per step, reading h_{t-1} straight out of the strided output (no copies);
//   the gate activations and the cell update are the kernels' lstm_cell (SIMD σ and tanh).
// - Memory: only when the output requires grad are the gate activations [B, T, 4H] and cell
//   states [B, T, H] kept (tape arena) for backpropagation through time; otherwise (no-grad,
//   score mode) the forward keeps just the projections it needs plus one [B, H] cell state.
// - Backward through time: per step the gate gradients, dW_hh += dgatesᵀ·h_{t-1} and
//   dh_{t-1} = dgates·W_hh; then dW_ih, db and dx with one GEMM each over all steps. Inputs that
//   do not require grad get nothing computed for them (except what the recurrence itself needs).
// - The two biases enter the op as their sum (ops::add, whose backward hands the same gradient
//   to both): a tape node has at most four inputs. lstm_summed_bias() takes the sum directly.
#pragma once

#include <algorithm>
#include <cmath>
#include <string>

#include "kernels/kernels.hpp"
#include "mercury/autograd/ops_basic.hpp"
#include "mercury/autograd/tape.hpp"

namespace mercury::ops {

namespace detail {

// Saved state: saved[0] gate activations [B, T, 4H] (i, f, g, o), saved[1] cells [B, T, H];
// i[] = {B, T, I, H, reverse}. h_{t-1} is read from the node's own value.
inline void lstm_backward(Node& n, Tape& tp) {
  const auto& K = kernels::table();
  const int64_t B = n.i[0], T = n.i[1], I = n.i[2], H = n.i[3], G = 4 * H;
  const bool reverse = n.i[4] != 0;
  Var x = n.in[0], w_ih = n.in[1], w_hh = n.in[2], b = n.in[3];
  const float* gates = n.saved[0].data;
  const float* cell = n.saved[1].data;
  const float* h = n.value.data;
  Tensor dgates = tp.scratch(Shape{B, T, G});
  Tensor dh = tp.scratch_zeros(Shape{B, H});  // gradient reaching h_{t-1} through step t
  Tensor dc = tp.scratch_zeros(Shape{B, H});  // gradient reaching c_{t-1} through step t
  float* dw_hh = w_hh->requires_grad ? tp.grad(w_hh).data : nullptr;
  for (int64_t s = T - 1; s >= 0; --s) {
    const int64_t tt = reverse ? T - 1 - s : s;
    const int64_t tprev = reverse ? tt + 1 : tt - 1;
    for (int64_t bi = 0; bi < B; ++bi) {
      const float* g = gates + (bi * T + tt) * G;
      const float* c = cell + (bi * T + tt) * H;
      const float* cp = s > 0 ? cell + (bi * T + tprev) * H : nullptr;
      const float* dy = n.grad.data + (bi * T + tt) * H;
      float* dg = dgates.data + (bi * T + tt) * G;
      float* dhb = dh.data + bi * H;
      float* dcb = dc.data + bi * H;
      for (int64_t j = 0; j < H; ++j) {
        const float ig = g[j], fg = g[H + j], gg = g[2 * H + j], og = g[3 * H + j];
        const float tc = std::tanh(c[j]);
        const float dhj = dy[j] + dhb[j];
        const float dcj = dcb[j] + dhj * og * (1.0f - tc * tc);
        dg[j] = dcj * gg * ig * (1.0f - ig);
        dg[H + j] = cp ? dcj * cp[j] * fg * (1.0f - fg) : 0.0f;
        dg[2 * H + j] = dcj * ig * (1.0f - gg * gg);
        dg[3 * H + j] = dhj * tc * og * (1.0f - og);
        dcb[j] = dcj * fg;
      }
    }
    if (s == 0) break;                        // h0 is a constant zero: nothing flows further back
    const float* dgt = dgates.data + tt * G;  // rows (b, tt), stride T·4H
    K.sgemm(false, false, B, H, G, 1.0f, dgt, T * G, w_hh->value.data, H, 0.0f, dh.data, H);
    if (dw_hh)
      K.sgemm(true, false, G, H, B, 1.0f, dgt, T * G, h + tprev * H, T * H, 1.0f, dw_hh, H);
  }
  const int64_t rows = B * T;
  if (x->requires_grad)  // dx += dgates · W_ih
    K.sgemm(false, false, rows, I, G, 1.0f, dgates.data, G, w_ih->value.data, I, 1.0f,
            tp.grad(x).data, I);
  if (w_ih->requires_grad)  // dW_ih += dgatesᵀ · x
    K.sgemm(true, false, G, I, rows, 1.0f, dgates.data, G, x->value.data, I, 1.0f,
            tp.grad(w_ih).data, I);
  if (b && b->requires_grad) {  // db += Σ_rows dgates
    float* db = tp.grad(b).data;
    for (int64_t r = 0; r < rows; ++r) K.axpy(G, 1.0f, dgates.data + r * G, db);
  }
}

}  // namespace detail

// The layer with one bias b = b_ih + b_hh ([4H] or null).
inline Var lstm_summed_bias(Tape& t, Var x, Var w_ih, Var w_hh, Var b, bool reverse = false) {
  const Shape& xs = x->shape();
  const Shape& is = w_ih->shape();
  const Shape& hs = w_hh->shape();
  const int64_t H = hs.rank == 2 ? hs[1] : 0, G = 4 * H;
  if (xs.rank != 3 || is.rank != 2 || hs.rank != 2 || H < 1 || hs[0] != G || is[0] != G ||
      is[1] != xs[2] || (b && b->numel() != G)) {
    throw std::invalid_argument("lstm: x " + xs.str() + ", W_ih " + is.str() + ", W_hh " +
                                hs.str() + (b ? ", bias " + b->shape().str() : std::string()) +
                                " (expected x [B, T, I], W_ih [4H, I], W_hh [4H, H], bias [4H])");
  }
  const int64_t B = xs[0], T = xs[1], I = xs[2];
  Var y = t.op(Shape{B, T, H}, &detail::lstm_backward, {x, w_ih, w_hh, b});
  const int64_t dims[5] = {B, T, I, H, reverse ? 1 : 0};
  std::copy(dims, dims + 5, y->i);
  const bool keep = y->requires_grad;  // keep what backpropagation through time needs

  const auto& K = kernels::table();
  // Input projections of every step at once; becomes the gate activations in place.
  Tensor gates = t.saved(Shape{B, T, G});
  K.sgemm(false, true, B * T, G, I, 1.0f, x->value.data, I, w_ih->value.data, I, 0.0f, gates.data,
          G);
  if (b) K.add_row_bias(B * T, G, b->value.data, gates.data);
  Tensor cell = keep ? t.saved(Shape{B, T, H}) : t.saved(Shape{B, H});
  float* h = y->value.data;
  for (int64_t s = 0; s < T; ++s) {
    const int64_t tt = reverse ? T - 1 - s : s;
    const int64_t tprev = reverse ? tt + 1 : tt - 1;
    if (s > 0)  // pre_t += h_{t-1} · W_hhᵀ, rows (b, tt) of gates, rows (b, tprev) of h
      K.sgemm(false, true, B, G, H, 1.0f, h + tprev * H, T * H, w_hh->value.data, H, 1.0f,
              gates.data + tt * G, T * G);
    for (int64_t bi = 0; bi < B; ++bi) {
      float* c = keep ? cell.data + (bi * T + tt) * H : cell.data + bi * H;
      const float* cp = s == 0 ? nullptr : keep ? cell.data + (bi * T + tprev) * H : c;
      K.lstm_cell(H, gates.data + (bi * T + tt) * G, cp, c, h + (bi * T + tt) * H);
    }
  }
  if (keep) {
    y->saved[0] = gates;
    y->saved[1] = cell;
  }
  return y;
}

// One LSTM layer in PyTorch's parameterisation (two biases, either may be null).
inline Var lstm(Tape& t, Var x, Var w_ih, Var w_hh, Var b_ih, Var b_hh, bool reverse = false) {
  if (b_ih && b_hh && b_ih->shape() != b_hh->shape()) {
    throw std::invalid_argument("lstm: b_ih " + b_ih->shape().str() + " and b_hh " +
                                b_hh->shape().str() + " differ (both must be [4H])");
  }
  Var b = (b_ih && b_hh) ? add(t, b_ih, b_hh) : (b_ih ? b_ih : b_hh);
  return lstm_summed_bias(t, x, w_ih, w_hh, b, reverse);
}

}  // namespace mercury::ops
