// mercury/autograd/ops_basic.hpp — element-wise ops, activations, reshape, concat, dropout.
//
// Contract: every op takes the Tape first, returns a new Var whose value lives in the tape's
// arena (reshape returns an alias of its input's memory), and records a backward rule only when
// an input requires grad. Shapes are checked; a mismatch throws std::invalid_argument naming both.
#pragma once

#include <cmath>
#include <random>
#include <string>

#include "kernels/kernels.hpp"
#include "mercury/autograd/tape.hpp"

namespace mercury::ops {

inline void require_same_shape(const char* op, Var a, Var b) {
  if (a->shape() != b->shape()) {
    throw std::invalid_argument(std::string(op) + ": shapes differ: " + a->shape().str() + " vs " +
                                b->shape().str());
  }
}

// ---- add (residual connections) ----------------------------------------------------------------
inline Var add(Tape& t, Var a, Var b) {
  require_same_shape("add", a, b);
  Var y = t.op(
      a->shape(),
      [](Node& n, Tape& tp) {
        for (int k = 0; k < 2; ++k)
          if (n.in[k]->requires_grad) tp.copy_or_add(n.grad.data, n.in[k]);
      },
      {a, b}, kReadsNone);
  kernels::table().add(a->numel(), a->value.data, b->value.data, y->value.data);
  return y;
}

// ---- element-wise product -----------------------------------------------------------------------
inline Var mul(Tape& t, Var a, Var b) {
  require_same_shape("mul", a, b);
  Var y = t.op(
      a->shape(),
      [](Node& n, Tape& tp) {
        const int64_t m = n.numel();
        for (int k = 0; k < 2; ++k) {
          if (!n.in[k]->requires_grad) continue;
          const float* other = n.in[1 - k]->value.data;
          float* g = tp.grad(n.in[k]).data;
          for (int64_t j = 0; j < m; ++j) g[j] += n.grad.data[j] * other[j];
        }
      },
      {a, b}, kReadIn0 | kReadIn1);
  kernels::table().mul(a->numel(), a->value.data, b->value.data, y->value.data);
  return y;
}

// ---- activations -------------------------------------------------------------------------------
namespace detail {
// y = Fwd(x) and dx += Bwd(y, dy), both KernelTable entries: the backward rule reads only the
// output (y > 0 exactly where x > 0 for the ReLUs; σ' and tanh' are functions of y), so the
// input may die as soon as its last consumer has run.
template <auto Fwd, auto Bwd>
Var pointwise_from_output(Tape& t, Var x) {
  Var y = t.op(
      x->shape(),
      [](Node& n, Tape& tp) {
        bool acc = false;
        float* dx = tp.grad(n.in[0], &acc).data;
        (kernels::table().*Bwd)(n.numel(), n.value.data, n.grad.data, dx, acc);
      },
      {x}, kReadSelf);
  (kernels::table().*Fwd)(x->numel(), x->value.data, y->value.data);
  return y;
}

// Point-wise op: y = fwd(x) element by element; `bwd` reads x and/or y.
template <class Fwd>
Var unary(Tape& t, Var x, Fwd fwd, BackwardFn bwd, uint8_t reads) {
  Var y = t.op(x->shape(), bwd, {x}, reads);
  const float* xs = x->value.data;
  float* ys = y->value.data;
  for (int64_t j = 0, m = x->numel(); j < m; ++j) ys[j] = fwd(xs[j]);
  return y;
}
}  // namespace detail

inline Var relu(Tape& t, Var x) {
  using K = kernels::KernelTable;
  return detail::pointwise_from_output<&K::relu_fwd, &K::relu_bwd>(t, x);
}
inline Var relu6(Tape& t, Var x) {
  using K = kernels::KernelTable;
  return detail::pointwise_from_output<&K::relu6_fwd, &K::relu6_bwd>(t, x);
}
inline Var sigmoid(Tape& t, Var x) {
  using K = kernels::KernelTable;
  return detail::pointwise_from_output<&K::sigmoid_fwd, &K::sigmoid_bwd>(t, x);
}
inline Var tanh(Tape& t, Var x) {
  using K = kernels::KernelTable;
  return detail::pointwise_from_output<&K::tanh_fwd, &K::tanh_bwd>(t, x);
}

// Exact (erf) GELU, as PyTorch's default.
inline Var gelu(Tape& t, Var x) {
  return detail::unary(
      t, x, [](float v) { return 0.5f * v * (1.0f + std::erf(v * 0.70710678118654752f)); },
      [](Node& n, Tape& tp) {
        const float* xs = n.in[0]->value.data;
        float* g = tp.grad(n.in[0]).data;
        for (int64_t j = 0, m = n.numel(); j < m; ++j) {
          const float v = xs[j];
          const float cdf = 0.5f * (1.0f + std::erf(v * 0.70710678118654752f));
          const float pdf = 0.39894228040143268f * std::exp(-0.5f * v * v);
          g[j] += n.grad.data[j] * (cdf + v * pdf);
        }
      },
      kReadIn0);
}

// ---- reshape / flatten (alias the input's memory) ----------------------------------------------
inline Var reshape(Tape& t, Var x, Shape s) {
  return t.alias(
      x->value.view(s), [](Node& n, Tape& tp) { tp.copy_or_add(n.grad.data, n.in[0]); }, x);
}

// [N, d1, d2, ...] -> [N, d1*d2*...]
inline Var flatten(Tape& t, Var x) {
  const int64_t n0 = x->shape()[0];
  return reshape(t, x, Shape{n0, x->numel() / n0});
}

// ---- concat along one dimension ----------------------------------------------------------------
// Shapes must agree on every other dimension.
inline Var concat(Tape& t, Var a, Var b, int dim) {
  const Shape& sa = a->shape();
  const Shape& sb = b->shape();
  if (dim < 0) dim += sa.rank;
  bool ok = sa.rank == sb.rank && dim >= 0 && dim < sa.rank;
  for (int k = 0; ok && k < sa.rank; ++k) ok = k == dim || sa[k] == sb[k];
  if (!ok) {
    throw std::invalid_argument("concat: cannot join " + sa.str() + " and " + sb.str() +
                                " along dim " + std::to_string(dim));
  }
  Shape so = sa;
  so[dim] = sa[dim] + sb[dim];
  int64_t outer = 1, inner = 1;
  for (int k = 0; k < dim; ++k) outer *= sa[k];
  for (int k = dim + 1; k < sa.rank; ++k) inner *= sa[k];
  const int64_t ra = sa[dim] * inner, rb = sb[dim] * inner;
  Var y = t.op(
      so,
      [](Node& n, Tape& tp) {
        const int64_t outer = n.i[0], ra = n.i[1], rb = n.i[2];
        for (int k = 0; k < 2; ++k) {
          if (!n.in[k]->requires_grad) continue;
          float* g = tp.grad(n.in[k]).data;
          const int64_t r = k ? rb : ra, off = k ? ra : 0;
          for (int64_t o = 0; o < outer; ++o)
            kernels::table().axpy(r, 1.0f, n.grad.data + o * (ra + rb) + off, g + o * r);
        }
      },
      {a, b}, kReadsNone);
  y->i[0] = outer;
  y->i[1] = ra;
  y->i[2] = rb;
  for (int64_t o = 0; o < outer; ++o) {
    std::memcpy(y->value.data + o * (ra + rb), a->value.data + o * ra, sizeof(float) * ra);
    std::memcpy(y->value.data + o * (ra + rb) + ra, b->value.data + o * rb, sizeof(float) * rb);
  }
  return y;
}

// ---- dropout (inverted; identity when !training or p == 0) -------------------------------------
template <class Rng>
Var dropout(Tape& t, Var x, float p, bool training, Rng& rng) {
  if (!(p >= 0.0f && p < 1.0f)) {
    throw std::invalid_argument("dropout: p must be in [0, 1), got " + std::to_string(p));
  }
  if (!training || p == 0.0f) return x;
  Var y = t.op(
      x->shape(),
      [](Node& n, Tape& tp) {
        bool acc = false;
        float* dx = tp.grad(n.in[0], &acc).data;
        if (!acc) {  // first contribution: dx = dy·mask
          kernels::table().mul(n.numel(), n.grad.data, n.saved[0].data, dx);
          return;
        }
        kernels::table().mul(n.numel(), n.grad.data, n.saved[0].data, n.saved[0].data);
        kernels::table().axpy(n.numel(), 1.0f, n.saved[0].data, dx);
      },
      {x}, kReadsNone);
  Tensor mask = t.saved(x->shape());
  const float keep = 1.0f - p, inv = 1.0f / keep;
  std::uniform_real_distribution<float> u(0.0f, 1.0f);
  for (int64_t j = 0, m = x->numel(); j < m; ++j) mask.data[j] = u(rng) < keep ? inv : 0.0f;
  kernels::table().mul(x->numel(), x->value.data, mask.data, y->value.data);
  y->saved[0] = mask;
  return y;
}

}  // namespace mercury::ops
