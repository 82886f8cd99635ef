// mercury/autograd/ops_conv.hpp — 2-D convolution (NCHW) with stride, padding, dilation, groups.
//
// Contract
// - x [N, C, H, W], w [O, C/groups, KH, KW], b [O] or null → y [N, O, OH, OW].
// - General case: per group, im2col + one GEMM (kernels::table()) over a run of images: when
//   one image has few output positions (ResNet's 8×8 and 4×4 stages) the columns of several
//   images sit side by side (detail::images_per_gemm) so the GEMM is wide enough to run near
//   peak and the weight gradient's GEMM has a long K instead of 16. Depthwise (groups == C ==
//   O) uses the dwconv2d / dwconv2d_bwd micro-kernels. 1×1/stride-1/no-pad skips im2col for a
//   single image.
// - Images are split over the thread pool; weight gradients are accumulated per chunk and summed
//   in chunk order, so results are deterministic for a given thread count.
#pragma once

#include <algorithm>
#include <string>

#include "kernels/kernels.hpp"
#include "mercury/autograd/tape.hpp"
#include "mercury/tensor/thread_pool.hpp"

namespace mercury::ops {

struct Conv2dParams {
  int64_t stride_h = 1, stride_w = 1, pad_h = 0, pad_w = 0, dil_h = 1, dil_w = 1, groups = 1;
};

namespace detail {
// Geometry of one conv call, stored in a node's i[] slots for backward.
struct ConvGeom {
  int64_t N, C, H, W, O, KH, KW, OH, OW;
};
inline bool is_pointwise(const ConvGeom& g, const Conv2dParams& p) {
  return g.KH == 1 && g.KW == 1 && p.stride_h == 1 && p.stride_w == 1 && p.pad_h == 0 &&
         p.pad_w == 0;
}
// What forward and backward derive from the geometry: groups, channels per group, output
// positions, im2col rows, and which special path applies. (Callers copy the fields into locals:
// clang 14 cannot capture structured bindings in lambdas.)
struct ConvPlan {
  int64_t G, Cg, Og, P, kdim;
  bool depthwise, pointwise;
};
inline ConvPlan plan(const ConvGeom& g, const Conv2dParams& p) {
  const int64_t G = p.groups, Cg = g.C / G;
  return {G, Cg, g.O / G, g.OH * g.OW, Cg * g.KH * g.KW, G == g.C && G == g.O, is_pointwise(g, p)};
}
// Images whose columns share one GEMM: enough for kGemmMinColumns output columns, at most
// kGemmMaxColFloats floats of im2col buffer per chunk, at most a chunk's images (ceil(N/chunks)).
inline constexpr int64_t kGemmMinColumns = 512;
inline constexpr int64_t kGemmMaxColFloats = int64_t{1} << 21;  // 8 MiB
inline int64_t images_per_gemm(int64_t P, int64_t kdim, int64_t N, int chunks) {
  const int64_t chunk_images = (N + chunks - 1) / chunks;
  int64_t nb = (kGemmMinColumns + P - 1) / P;
  const int64_t cap = kGemmMaxColFloats / (kdim * P);
  if (nb > cap) nb = cap;
  if (nb > chunk_images) nb = chunk_images;
  return nb < 1 ? 1 : nb;
}
}  // namespace detail

inline Var conv2d(Tape& t, Var x, Var w, Var b, const Conv2dParams& p) {
  const Shape& xs = x->shape();
  const Shape& ws = w->shape();
  const auto fail = [&](const std::string& why) {
    throw std::invalid_argument("conv2d: " + why + " (x " + xs.str() + ", w " + ws.str() + ")");
  };
  if (xs.rank != 4 || ws.rank != 4) fail("x and w must be 4-D");
  if (p.groups < 1 || xs[1] % p.groups || ws[0] % p.groups)
    fail("channels not divisible by groups");
  if (ws[1] != xs[1] / p.groups) fail("w's second dim must be C/groups");
  if (b && b->numel() != ws[0]) fail("bias must have O elements");
  if (p.stride_h < 1 || p.stride_w < 1 || p.dil_h < 1 || p.dil_w < 1 || p.pad_h < 0 || p.pad_w < 0)
    fail("stride/dilation must be >= 1 and padding >= 0");
  detail::ConvGeom g{xs[0], xs[1], xs[2], xs[3], ws[0], ws[2], ws[3], 0, 0};
  g.OH = (g.H + 2 * p.pad_h - p.dil_h * (g.KH - 1) - 1) / p.stride_h + 1;
  g.OW = (g.W + 2 * p.pad_w - p.dil_w * (g.KW - 1) - 1) / p.stride_w + 1;
  if (g.OH < 1 || g.OW < 1) fail("kernel larger than the padded input");

  Var y = t.op(
      Shape{g.N, g.O, g.OH, g.OW},
      [](Node& n, Tape& tp) {
        const auto& K = kernels::table();
        const auto& p = *static_cast<const Conv2dParams*>(n.ctx);
        const detail::ConvGeom g{n.i[0], n.i[1], n.i[2], n.i[3],          n.i[4],
                                 n.i[5], n.i[6], n.i[7], n.value.shape[3]};
        Var x = n.in[0], w = n.in[1], b = n.in[2];
        const detail::ConvPlan pl = detail::plan(g, p);
        const int64_t G = pl.G, Cg = pl.Cg, Og = pl.Og, P = pl.P, kdim = pl.kdim;
        const bool depthwise = pl.depthwise, pointwise = pl.pointwise;
        ThreadPool& pool = thread_pool();
        const int chunks = pool.chunks_for(g.N);
        const int64_t nb_max = depthwise ? 1 : detail::images_per_gemm(P, kdim, g.N, chunks);
        const int64_t wsize = w->numel();
        // Per-chunk weight/bias gradient accumulators, im2col scratch and (runs of several
        // images) the run's output gradient gathered into one [Og, nb·P] matrix.
        Tensor dw_parts = w->requires_grad ? tp.scratch_zeros(Shape{chunks, wsize}) : Tensor{};
        Tensor db_parts = (b && b->requires_grad) ? tp.scratch_zeros(Shape{chunks, g.O}) : Tensor{};
        Tensor cols = (!depthwise && (!pointwise || nb_max > 1))
                          ? tp.scratch(Shape{chunks, kdim * nb_max * P})
                          : Tensor{};
        Tensor dys = nb_max > 1 ? tp.scratch(Shape{chunks, Og * nb_max * P}) : Tensor{};
        float* dx = x->requires_grad ? tp.grad(x).data : nullptr;
        pool.parallel_for(g.N, [&](int64_t i0, int64_t i1, int c) {
          float* dw = w->requires_grad ? dw_parts.data + c * wsize : nullptr;
          float* db = db_parts.defined() ? db_parts.data + c * g.O : nullptr;
          float* col = cols.defined() ? cols.data + c * kdim * nb_max * P : nullptr;
          float* dyrun = dys.defined() ? dys.data + c * Og * nb_max * P : nullptr;
          if (db)
            for (int64_t i = i0; i < i1; ++i)
              for (int64_t o = 0; o < g.O; ++o) db[o] += K.sum(P, n.grad.data + (i * g.O + o) * P);
          if (depthwise) {
            for (int64_t i = i0; i < i1; ++i) {
              const float* dy = n.grad.data + i * g.O * P;
              const float* xi = x->value.data + i * g.C * g.H * g.W;
              for (int64_t ch = 0; ch < g.C; ++ch)
                K.dwconv2d_bwd(xi + ch * g.H * g.W, g.H, g.W, w->value.data + ch * g.KH * g.KW,
                               g.KH, g.KW, p.stride_h, p.stride_w, p.pad_h, p.pad_w, p.dil_h,
                               p.dil_w, g.OH, g.OW, dy + ch * P,
                               dx ? dx + (i * g.C + ch) * g.H * g.W : nullptr,
                               dw ? dw + ch * g.KH * g.KW : nullptr);
            }
            return;
          }
          for (int64_t a = i0; a < i1; a += nb_max) {
            const int64_t nb = std::min(nb_max, i1 - a), cols_n = nb * P;
            for (int64_t gi = 0; gi < G; ++gi) {
              const float* wg = w->value.data + gi * Og * kdim;
              // The run's input columns [kdim, nb·P] and output gradient [Og, nb·P]: in place
              // for one image (pointwise input needs no im2col), gathered for several.
              const float* colg = x->value.data + (a * g.C + gi * Cg) * g.H * g.W;
              const float* dyg = n.grad.data + (a * g.O + gi * Og) * P;
              if (nb > 1) {
                for (int64_t j = 0; j < nb; ++j)
                  for (int64_t o = 0; o < Og; ++o)
                    std::copy_n(n.grad.data + ((a + j) * g.O + gi * Og + o) * P, P,
                                dyrun + o * cols_n + j * P);
                dyg = dyrun;
              }
              if (dw) {  // dW_g += dY_g · colᵀ
                if (nb > 1 || !pointwise) {
                  for (int64_t j = 0; j < nb; ++j)
                    K.im2col(x->value.data + ((a + j) * g.C + gi * Cg) * g.H * g.W, Cg, g.H, g.W,
                             g.KH, g.KW, p.stride_h, p.stride_w, p.pad_h, p.pad_w, p.dil_h, p.dil_w,
                             g.OH, g.OW, col + j * P, cols_n);
                  colg = col;
                }
                K.sgemm(false, true, Og, kdim, cols_n, 1.0f, dyg, cols_n, colg, cols_n, 1.0f,
                        dw + gi * Og * kdim, kdim);
              }
              if (dx) {
                float* dxg = dx + (a * g.C + gi * Cg) * g.H * g.W;
                if (pointwise && nb == 1) {  // dx_g += W_gᵀ · dY_g
                  K.sgemm(true, false, kdim, P, Og, 1.0f, wg, kdim, dyg, P, 1.0f, dxg, P);
                } else {  // dcol = W_gᵀ · dY_g, scattered back image by image
                  K.sgemm(true, false, kdim, cols_n, Og, 1.0f, wg, kdim, dyg, cols_n, 0.0f, col,
                          cols_n);
                  for (int64_t j = 0; j < nb; ++j)
                    K.col2im(col + j * P, Cg, g.H, g.W, g.KH, g.KW, p.stride_h, p.stride_w, p.pad_h,
                             p.pad_w, p.dil_h, p.dil_w, g.OH, g.OW, dxg + j * g.C * g.H * g.W,
                             cols_n);
                }
              }
            }
          }
        });
        if (w->requires_grad) {
          float* gw = tp.grad(w).data;
          for (int c = 0; c < chunks; ++c) K.axpy(wsize, 1.0f, dw_parts.data + c * wsize, gw);
        }
        if (db_parts.defined()) {
          float* gb = tp.grad(b).data;
          for (int c = 0; c < chunks; ++c) K.axpy(g.O, 1.0f, db_parts.data + c * g.O, gb);
        }
      },
      {x, w, b}, kReadIn0 | kReadIn1);
  y->ctx = &p;
  const int64_t geo[8] = {g.N, g.C, g.H, g.W, g.O, g.KH, g.KW, g.OH};
  std::copy(geo, geo + 8, y->i);

  const auto& K = kernels::table();
  const detail::ConvPlan pl = detail::plan(g, p);
  const int64_t G = pl.G, Cg = pl.Cg, Og = pl.Og, P = pl.P, kdim = pl.kdim;
  const bool depthwise = pl.depthwise, pointwise = pl.pointwise;
  ThreadPool& pool = thread_pool();
  const int chunks = pool.chunks_for(g.N);
  const int64_t nb_max = depthwise ? 1 : detail::images_per_gemm(P, kdim, g.N, chunks);
  Tensor cols = (!depthwise && (!pointwise || nb_max > 1))
                    ? t.scratch(Shape{chunks, kdim * nb_max * P})
                    : Tensor{};
  Tensor ys = nb_max > 1 ? t.scratch(Shape{chunks, Og * nb_max * P}) : Tensor{};
  pool.parallel_for(g.N, [&](int64_t i0, int64_t i1, int c) {
    float* col = cols.defined() ? cols.data + c * kdim * nb_max * P : nullptr;
    float* yrun = ys.defined() ? ys.data + c * Og * nb_max * P : nullptr;
    if (depthwise) {
      for (int64_t i = i0; i < i1; ++i) {
        const float* xi = x->value.data + i * g.C * g.H * g.W;
        float* yi = y->value.data + i * g.O * P;
        for (int64_t ch = 0; ch < g.C; ++ch)
          K.dwconv2d(xi + ch * g.H * g.W, g.H, g.W, w->value.data + ch * g.KH * g.KW, g.KH, g.KW,
                     p.stride_h, p.stride_w, p.pad_h, p.pad_w, p.dil_h, p.dil_w,
                     b ? b->value.data[ch] : 0.0f, g.OH, g.OW, yi + ch * P);
      }
      return;
    }
    for (int64_t a = i0; a < i1; a += nb_max) {
      const int64_t nb = std::min(nb_max, i1 - a), cols_n = nb * P;
      for (int64_t gi = 0; gi < G; ++gi) {
        const float* colg = x->value.data + (a * g.C + gi * Cg) * g.H * g.W;
        if (nb > 1 || !pointwise) {
          for (int64_t j = 0; j < nb; ++j)
            K.im2col(x->value.data + ((a + j) * g.C + gi * Cg) * g.H * g.W, Cg, g.H, g.W, g.KH,
                     g.KW, p.stride_h, p.stride_w, p.pad_h, p.pad_w, p.dil_h, p.dil_w, g.OH, g.OW,
                     col + j * P, cols_n);
          colg = col;
        }
        float* yg = y->value.data + (a * g.O + gi * Og) * P;
        K.sgemm(false, false, Og, cols_n, kdim, 1.0f, w->value.data + gi * Og * kdim, kdim, colg,
                cols_n, 0.0f, nb > 1 ? yrun : yg, cols_n);
        if (nb > 1)  // scatter the run's [Og, nb·P] result into each image's NCHW planes
          for (int64_t j = 0; j < nb; ++j)
            for (int64_t o = 0; o < Og; ++o)
              std::copy_n(yrun + o * cols_n + j * P, P, yg + (j * g.O + o) * P);
      }
      if (b)
        for (int64_t j = a; j < a + nb; ++j)
          K.add_channel_bias(g.O, P, b->value.data, y->value.data + j * g.O * P);
    }
  });
  return y;
}

}  // namespace mercury::ops
