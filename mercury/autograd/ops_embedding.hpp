// mercury/autograd/ops_embedding.hpp — embedding lookup: rows of a table gathered by token id.
//
// Contract
// - ids is a float tensor of any shape S (rank ≤ 4; [B, T] for text) holding integer token ids
//   (floats are exact integers up to 2^24, far above any vocabulary here); table is [vocab, D].
//   The output is S + [D]: out[p] = table[ids[p]].
// - Every id is validated before anything is written: a non-integer, non-finite or out-of-range
//   id throws std::invalid_argument naming the position, the value and the vocabulary size.
// - padding_idx (≥ 0, optional): positions holding it embed to a ZERO vector (PyTorch zeroes that
//   row at construction and never updates it, so the two agree; here the stored row is neither
//   read nor updated, whatever the initialiser put there).
// - Backward scatter-adds the output gradient into the table gradient (repeated ids accumulate);
//   ids never receive a gradient.
#pragma once

#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>

#include "kernels/kernels.hpp"
#include "mercury/autograd/tape.hpp"

namespace mercury::ops {

namespace detail {
inline std::string float_str(float v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.9g", static_cast<double>(v));
  return buf;
}

// Scatter-adds the output gradient into the table gradient; i[] = {count, dim, padding_idx}.
inline void embedding_backward(Node& n, Tape& tp) {
  const int64_t count = n.i[0], dim = n.i[1], pad = n.i[2];
  const float* id = n.in[0]->value.data;
  float* g = tp.grad(n.in[1]).data;
  const auto& K = kernels::table();
  for (int64_t p = 0; p < count; ++p) {
    const auto row = static_cast<int64_t>(id[p]);
    if (row != pad) K.axpy(dim, 1.0f, n.grad.data + p * dim, g + row * dim);
  }
}

}  // namespace detail

inline Var embedding(Tape& t, Var ids, Var table, int64_t padding_idx = -1) {
  const Shape& is = ids->shape();
  const Shape& ts = table->shape();
  if (ts.rank != 2 || is.rank < 1 || is.rank >= kMaxDims) {
    throw std::invalid_argument("embedding: ids " + is.str() + " (rank 1.." +
                                std::to_string(kMaxDims - 1) + "), table " + ts.str() +
                                " (expected [vocab, dim])");
  }
  const int64_t vocab = ts[0], dim = ts[1], count = ids->numel();
  if (padding_idx >= vocab) {
    throw std::invalid_argument("embedding: padding_idx " + std::to_string(padding_idx) +
                                " outside the vocabulary of " + std::to_string(vocab));
  }
  const float* id = ids->value.data;
  for (int64_t p = 0; p < count; ++p) {
    const float v = id[p];
    if (!(std::isfinite(v) && v == std::floor(v) && v >= 0.0f && v < static_cast<float>(vocab))) {
      throw std::invalid_argument("embedding: token id at position " + std::to_string(p) +
                                  " of ids " + is.str() + " is " + detail::float_str(v) +
                                  "; expected an integer in [0, " + std::to_string(vocab) + ")");
    }
  }
  Shape os = is;
  os.dims[os.rank++] = dim;
  Var y = t.op(os, &detail::embedding_backward, {ids, table});
  // ids never get a gradient: the output needs one only through the table.
  if (!table->requires_grad) {
    y->requires_grad = false;
    y->backward = nullptr;
  }
  y->i[0] = count;
  y->i[1] = dim;
  y->i[2] = padding_idx < 0 ? -1 : padding_idx;
  for (int64_t p = 0; p < count; ++p) {
    const auto row = static_cast<int64_t>(id[p]);
    float* dst = y->value.data + p * dim;
    if (row == padding_idx) {
      std::memset(dst, 0, sizeof(float) * static_cast<std::size_t>(dim));
    } else {
      std::memcpy(dst, table->value.data + row * dim,
                  sizeof(float) * static_cast<std::size_t>(dim));
    }
  }
  return y;
}

}  // namespace mercury::ops
