// kernels/ref/vector_ops.hpp — scalar reference element-wise ops, ReLU/ReLU6, batch-norm planes,
// the LSTM cell, reductions and bias adds.
//
// Same contracts as the matching KernelTable entries: outputs may alias inputs exactly.
#pragma once

#include <cmath>
#include <cstdint>

namespace mercury::kernels::ref {

inline void add(int64_t n, const float* a, const float* b, float* out) {
  for (int64_t i = 0; i < n; ++i) out[i] = a[i] + b[i];
}
inline void mul(int64_t n, const float* a, const float* b, float* out) {
  for (int64_t i = 0; i < n; ++i) out[i] = a[i] * b[i];
}
inline void axpy(int64_t n, float alpha, const float* x, float* y) {
  for (int64_t i = 0; i < n; ++i) y[i] += alpha * x[i];
}
inline void scale(int64_t n, float alpha, const float* x, float* out) {
  for (int64_t i = 0; i < n; ++i) out[i] = alpha * x[i];
}
inline float dot(int64_t n, const float* a, const float* b) {
  float acc = 0.0f;
  for (int64_t i = 0; i < n; ++i) acc += a[i] * b[i];
  return acc;
}
inline float sum(int64_t n, const float* x) {
  float acc = 0.0f;
  for (int64_t i = 0; i < n; ++i) acc += x[i];
  return acc;
}
// NaN inputs give 0 (the comparison is false), as in every SIMD variant.
inline void relu_fwd(int64_t n, const float* x, float* y) {
  for (int64_t i = 0; i < n; ++i) y[i] = x[i] > 0.0f ? x[i] : 0.0f;
}
// The backward rules: dx[i] += f(i) when `acc`, else dx[i] = f(i) (dx is not read).
template <class F>
inline void acc_or_set(int64_t n, float* dx, bool acc, F f) {
  if (acc) {
    for (int64_t i = 0; i < n; ++i) dx[i] += f(i);
  } else {
    for (int64_t i = 0; i < n; ++i) dx[i] = f(i);
  }
}
inline void relu_bwd(int64_t n, const float* x, const float* dy, float* dx, bool acc) {
  acc_or_set(n, dx, acc, [=](int64_t i) { return x[i] > 0.0f ? dy[i] : 0.0f; });
}
inline void relu6_fwd(int64_t n, const float* x, float* y) {
  for (int64_t i = 0; i < n; ++i) y[i] = x[i] > 0.0f ? (x[i] < 6.0f ? x[i] : 6.0f) : 0.0f;
}
inline void relu6_bwd(int64_t n, const float* y, const float* dy, float* dx, bool acc) {
  acc_or_set(n, dx, acc, [=](int64_t i) { return y[i] > 0.0f && y[i] < 6.0f ? dy[i] : 0.0f; });
}
inline float sum_sq_dev(int64_t n, const float* x, float mean) {
  float acc = 0.0f;
  for (int64_t i = 0; i < n; ++i) acc += (x[i] - mean) * (x[i] - mean);
  return acc;
}
inline void bn_fwd(int64_t n, const float* x, float mean, float invstd, float gamma, float beta,
                   float* xhat, float* y) {
  for (int64_t i = 0; i < n; ++i) {
    const float xh = (x[i] - mean) * invstd;
    if (xhat != nullptr) xhat[i] = xh;
    y[i] = gamma * xh + beta;
  }
}
inline void bn_bwd(int64_t n, const float* dy, const float* xhat, float k, float mdy, float mdyx,
                   float* dx, bool acc) {
  acc_or_set(n, dx, acc, [=](int64_t i) { return k * (dy[i] - mdy - xhat[i] * mdyx); });
}
inline float logistic(float v) {
  return 1.0f / (1.0f + std::exp(-v));
}
inline void sigmoid_fwd(int64_t n, const float* x, float* y) {
  for (int64_t i = 0; i < n; ++i) y[i] = logistic(x[i]);
}
inline void sigmoid_bwd(int64_t n, const float* y, const float* dy, float* dx, bool acc) {
  acc_or_set(n, dx, acc, [=](int64_t i) { return dy[i] * y[i] * (1.0f - y[i]); });
}
inline void tanh_fwd(int64_t n, const float* x, float* y) {
  for (int64_t i = 0; i < n; ++i) y[i] = std::tanh(x[i]);
}
inline void tanh_bwd(int64_t n, const float* y, const float* dy, float* dx, bool acc) {
  acc_or_set(n, dx, acc, [=](int64_t i) { return dy[i] * (1.0f - y[i] * y[i]); });
}
inline void lstm_cell(int64_t H, float* g, const float* c_prev, float* c, float* h) {
  for (int64_t j = 0; j < H; ++j) {
    const float ig = logistic(g[j]), fg = logistic(g[H + j]);
    const float gg = std::tanh(g[2 * H + j]), og = logistic(g[3 * H + j]);
    const float cj = (c_prev != nullptr ? fg * c_prev[j] : 0.0f) + ig * gg;
    c[j] = cj;
    h[j] = og * std::tanh(cj);
    g[j] = ig;
    g[H + j] = fg;
    g[2 * H + j] = gg;
    g[3 * H + j] = og;
  }
}
inline void add_row_bias(int64_t rows, int64_t cols, const float* bias, float* out) {
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < cols; ++j) out[r * cols + j] += bias[j];
}
inline void add_channel_bias(int64_t channels, int64_t hw, const float* bias, float* out) {
  for (int64_t c = 0; c < channels; ++c)
    for (int64_t j = 0; j < hw; ++j) out[c * hw + j] += bias[c];
}

}  // namespace mercury::kernels::ref
