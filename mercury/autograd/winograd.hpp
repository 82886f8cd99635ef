// mercury/autograd/winograd.hpp — Winograd (Toom-Cook) minimal filtering for stride-1 2-D
// convolution: F(m×m, r×r) computes an m×m output tile from an α×α input tile (α = m + r − 1)
// with α² multiplications per channel pair instead of m²·r².
//
// Contract
// - y_tile = Aᵀ [ (G g Gᵀ) ⊙ (Bᵀ d B) ] A for a correlation (what conv2d computes) of the r×r
//   kernel g over the α×α input tile d. Over a convolution the ⊙ sums over input channels, so
//   it is one GEMM per transformed position (α² of them): M[e] = U[e] · V[e] with U[e] the
//   transformed weights [O][C] and V[e] the transformed input tiles [C][tiles].
// - The transforms are built in double from interpolation points (Cook-Toom: Aᵀ[i][j] = p_jⁱ,
//   G[j][k] = p_jᵏ / Π_{l≠j}(p_j − p_l), Bᵀ row j = the coefficients of Π_{l≠j}(x − p_l), plus
//   the point at infinity), so no hand-typed table can hold a typo; test_autograd checks each
//   against direct correlation.
// - Backward is the exact gradient of this forward (its transforms' adjoints): dM = A dY Aᵀ,
//   dU[e] += dM[e] · V[e]ᵀ, dV[e] = U[e]ᵀ · dM[e], dx tile += B dV Bᵀ, dW = Gᵀ dU G.
// - Used by conv2d (ops_conv.hpp) for stride-1, undilated, ungrouped 3×3 and 5×5 convs with
//   enough channels and images (detail::winograd_for); results differ from im2col's in the last
//   bits (test_autograd compares them within 1e-4 and gradchecks the path).
// - The tile transforms run on kLanes images at once (kernels::wino_tile16, one SIMD lane per
//   image): a channel's rows are first transposed into a zero-padded band [rows][cols][kLanes],
//   so the transforms need no gathers or bounds checks. The GEMMs go through kernels::table().
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <vector>

#include "kernels/kernels.hpp"

namespace mercury::ops::winograd {

inline constexpr int kMaxAlpha = 8;
inline constexpr int kLanes = 16;  // images transformed together (kernels::wino_tile16)

struct Transform {
  int m = 0, r = 0, a = 0;  // output tile, kernel, input tile (a = m + r − 1)
  std::array<float, kMaxAlpha * kMaxAlpha> BT{};  // [a][a]
  std::array<float, kMaxAlpha * kMaxAlpha> G{};   // [a][r]
  std::array<float, kMaxAlpha * kMaxAlpha> AT{};  // [m][a]
  // The four matrices the tile transforms multiply by, by their nonzeros: Bᵀ (input), Aᵀ
  // (output), A (output gradient), B (input gradient).
  kernels::SparseRows sBT, sAT, sA, sB;
  kernels::SparseRows sG, sGT;  // G (weights) and Gᵀ (weight gradient)
};

// s = an [R][K] matrix (row-major; transposed: stored [K][R]) by its nonzeros. (Filled in place:
// GCC 12 at -O3 lost the `cols` field when a SparseRows was returned by value into a Transform
// that is then a function-local static; its scalar replacement of aggregates, -ftree-sra.)
inline void set_sparse_rows(kernels::SparseRows& s, const float* M, int R, int K, bool transposed) {
  s.rows = R;
  s.cols = K;
  for (int i = 0; i < R; ++i) {
    int count = 0;
    for (int k = 0; k < K; ++k) {
      const float v = transposed ? M[k * R + i] : M[i * K + k];
      if (v == 0.0f) continue;
      s.col[i][count] = static_cast<int8_t>(k);
      s.val[i][count] = v;
      ++count;
    }
    s.n[i] = static_cast<int8_t>(count);
  }
}

// F(m, r) from the a − 1 finite points (the last point is infinity).
inline Transform make_transform(int m, int r, const std::vector<double>& points) {
  Transform t;
  t.m = m;
  t.r = r;
  t.a = m + r - 1;
  const int a = t.a, n = a - 1;  // n finite points
  // Aᵀ [m][a]: p_j^i; the infinity column picks the top power.
  for (int i = 0; i < m; ++i) {
    for (int j = 0; j < n; ++j) {
      double v = 1;
      for (int q = 0; q < i; ++q) v *= points[static_cast<size_t>(j)];
      t.AT[static_cast<size_t>(i * a + j)] = static_cast<float>(v);
    }
    t.AT[static_cast<size_t>(i * a + n)] = i == m - 1 ? 1.0f : 0.0f;
  }
  // G [a][r]: p_j^k / f_j, f_j = Π_{l≠j}(p_j − p_l); the infinity row picks the top tap.
  for (int j = 0; j < n; ++j) {
    const double p = points[static_cast<size_t>(j)];
    double f = 1;
    for (int l = 0; l < n; ++l)
      if (l != j) f *= p - points[static_cast<size_t>(l)];
    double v = 1;
    for (int k = 0; k < r; ++k, v *= p)
      t.G[static_cast<size_t>(j * r + k)] = static_cast<float>(v / f);
  }
  for (int k = 0; k < r; ++k) t.G[static_cast<size_t>(n * r + k)] = k == r - 1 ? 1.0f : 0.0f;
  // Bᵀ [a][a]: row j = coefficients (x⁰ first) of Π_{l≠j}(x − p_l); the infinity row those of
  // Π_l(x − p_l).
  auto poly = [&](int skip) {
    std::vector<double> c{1.0};  // c[k]: coefficient of x^k
    for (int l = 0; l < n; ++l) {
      if (l == skip) continue;
      std::vector<double> next(c.size() + 1, 0.0);
      for (size_t k = 0; k < c.size(); ++k) {
        next[k + 1] += c[k];
        next[k] -= points[static_cast<size_t>(l)] * c[k];
      }
      c = std::move(next);
    }
    c.resize(static_cast<size_t>(a), 0.0);
    return c;
  };
  for (int j = 0; j <= n; ++j) {
    const auto c = poly(j < n ? j : -1);
    for (int l = 0; l < a; ++l)
      t.BT[static_cast<size_t>(j * a + l)] = static_cast<float>(c[static_cast<size_t>(l)]);
  }
  set_sparse_rows(t.sBT, t.BT.data(), a, a, false);
  set_sparse_rows(t.sB, t.BT.data(), a, a, true);
  set_sparse_rows(t.sAT, t.AT.data(), m, a, false);
  set_sparse_rows(t.sA, t.AT.data(), a, m, true);
  set_sparse_rows(t.sG, t.G.data(), a, r, false);
  set_sparse_rows(t.sGT, t.G.data(), r, a, true);
  return t;
}

// The transform conv2d uses for an r×r kernel, or nullptr: F(4×4, 3×3) on 6×6 tiles (points 0,
// ±1, ±2) and F(4×4, 5×5) on 8×8 tiles (0, ±1, ±2, ±1/2).
inline const Transform* transform_for(int64_t r) {
  static const Transform f43 = make_transform(4, 3, {0, 1, -1, 2, -2});
  static const Transform f45 = make_transform(4, 5, {0, 1, -1, 2, -2, 0.5, -0.5});
  return r == 3 ? &f43 : r == 5 ? &f45 : nullptr;
}

// Tiling of one image's output: TH × TW tiles of m×m; tile (th, tw) reads the input window at
// (th·m − pad_h, tw·m − pad_w), α×α, zero outside the image.
struct Tiling {
  int64_t H, W, OH, OW, pad_h, pad_w, TH, TW;
};
inline Tiling tiling(const Transform& t, int64_t H, int64_t W, int64_t OH, int64_t OW,
                     int64_t pad_h, int64_t pad_w) {
  return {H, W, OH, OW, pad_h, pad_w, (OH + t.m - 1) / t.m, (OW + t.m - 1) / t.m};
}

// Image lanes: the transforms run on kLanes images at once (kernels::wino_tile16), each value of a
// tile one 16-float vector over the images of a lane group. A channel's rows of a group are first
// transposed into a band [rows][cols][kLanes] (zero outside the image, and in lanes past the
// group's images); no per-tile gathers and no bounds checks in the transforms.

// Rows [y0, y0 + rows) and columns [x0, x0 + cols) of plane c of `count` images (image l's
// planes at x + l·image_stride, C planes of H×W) → band[r][q][l], zero outside the image.
inline void to_band(const float* x, int64_t image_stride, int count, int64_t plane_off, int64_t H,
                    int64_t W, int64_t y0, int64_t rows, int64_t x0, int64_t cols, float* band) {
  std::fill_n(band, rows * cols * kLanes, 0.0f);
  const int64_t q_lo = std::max<int64_t>(0, -x0), q_hi = std::min<int64_t>(cols, W - x0);
  for (int l = 0; l < count; ++l) {
    const float* plane = x + l * image_stride + plane_off;
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t y = y0 + r;
      if (y < 0 || y >= H) continue;
      const float* row = plane + y * W;
      float* out = band + r * cols * kLanes + l;
      for (int64_t q = q_lo; q < q_hi; ++q) out[q * kLanes] = row[x0 + q];
    }
  }
}
// The band's part inside the image back to the planes: written plus `bias`, or added with
// accumulate.
inline void from_band(const float* band, int64_t y0, int64_t rows, int64_t x0, int64_t cols,
                      int count, float* x, int64_t image_stride, int64_t plane_off, int64_t H,
                      int64_t W, bool accumulate, float bias = 0.0f) {
  const int64_t q_lo = std::max<int64_t>(0, -x0), q_hi = std::min<int64_t>(cols, W - x0);
  for (int l = 0; l < count; ++l) {
    float* plane = x + l * image_stride + plane_off;
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t y = y0 + r;
      if (y < 0 || y >= H) continue;
      float* row = plane + y * W;
      const float* in = band + r * cols * kLanes + l;
      if (accumulate)
        for (int64_t q = q_lo; q < q_hi; ++q) row[x0 + q] += in[q * kLanes];
      else
        for (int64_t q = q_lo; q < q_hi; ++q) row[x0 + q] = in[q * kLanes] + bias;
    }
  }
}

// U[e][o][c] = (G g Gᵀ)[e] for w [O][C][r][r]: kLanes input channels at a time, their kernels
// first transposed into [r][r][kLanes] (lanes past C zero).
inline void weight_transform(const Transform& tf, const float* w, int64_t O, int64_t C, float* U) {
  const auto& K = kernels::table();
  const int r = tf.r, a = tf.a;
  alignas(64) float g[kMaxAlpha * kMaxAlpha * kLanes];
  alignas(64) float u[kMaxAlpha * kMaxAlpha * kLanes];
  for (int64_t o = 0; o < O; ++o)
    for (int64_t c0 = 0; c0 < C; c0 += kLanes) {
      const int n = static_cast<int>(std::min<int64_t>(kLanes, C - c0));
      std::fill_n(g, r * r * kLanes, 0.0f);
      for (int l = 0; l < n; ++l)
        for (int k = 0; k < r * r; ++k) g[k * kLanes + l] = w[(o * C + c0 + l) * r * r + k];
      if (n == kLanes) {  // straight into U: entry e of lane l at U[(e·O + o)·C + c0 + l]
        K.wino_tile16(tf.sG, g, r * kLanes, kLanes, U + o * C + c0, a * O * C, O * C, false);
        continue;
      }
      K.wino_tile16(tf.sG, g, r * kLanes, kLanes, u, a * kLanes, kLanes, false);
      for (int e = 0; e < a * a; ++e) std::copy_n(u + e * kLanes, n, U + (e * O + o) * C + c0);
    }
}

// dw [O][C][r][r] += (Gᵀ dU G) per channel pair: the adjoint of weight_transform.
inline void weight_adjoint(const Transform& tf, const float* dU, int64_t O, int64_t C, float* dw) {
  const auto& K = kernels::table();
  const int r = tf.r, a = tf.a;
  alignas(64) float d[kMaxAlpha * kMaxAlpha * kLanes];
  alignas(64) float g[kMaxAlpha * kMaxAlpha * kLanes];
  for (int64_t o = 0; o < O; ++o)
    for (int64_t c0 = 0; c0 < C; c0 += kLanes) {
      const int n = static_cast<int>(std::min<int64_t>(kLanes, C - c0));
      const float* in = dU + o * C + c0;
      int64_t rs = a * O * C, cs = O * C;
      if (n < kLanes) {  // stage the partial block: lanes past C zero
        std::fill_n(d, a * a * kLanes, 0.0f);
        for (int e = 0; e < a * a; ++e) std::copy_n(dU + (e * O + o) * C + c0, n, d + e * kLanes);
        in = d;
        rs = a * kLanes;
        cs = kLanes;
      }
      K.wino_tile16(tf.sGT, in, rs, cs, g, r * kLanes, kLanes, false);
      for (int l = 0; l < n; ++l)
        for (int k = 0; k < r * r; ++k) dw[(o * C + c0 + l) * r * r + k] += g[k * kLanes + l];
    }
}

}  // namespace mercury::ops::winograd
