// mercury/autograd/ops_pool.hpp — max / average pooling (NCHW), global average and global max
// pooling.
//
// Contract: x [N, C, H, W]. Padding counts as -inf for max and as zeros that ARE counted for
// average (PyTorch's count_include_pad=True default). max_pool2d saves the argmax of each output
// (ties: first in scan order) for backward. global_avg_pool and global_max_pool give [N, C];
// global_max_pool (TextCNN's max-over-time) follows max_pool2d's rules: the first maximum in
// scan order wins, a NaN in the plane wins (first NaN), and the gradient goes to that element.
#pragma once

#include <cstring>
#include <limits>
#include <string>

#include "kernels/kernels.hpp"
#include "mercury/autograd/tape.hpp"

namespace mercury::ops {

struct Pool2dParams {
  int64_t kernel_h = 2, kernel_w = 2, stride_h = 2, stride_w = 2, pad_h = 0, pad_w = 0;
};

namespace detail {
inline Shape pool_out_shape(const char* op, const Shape& xs, const Pool2dParams& p) {
  if (xs.rank != 4 || p.kernel_h < 1 || p.kernel_w < 1 || p.stride_h < 1 || p.stride_w < 1 ||
      p.pad_h < 0 || p.pad_w < 0 || p.pad_h * 2 > p.kernel_h || p.pad_w * 2 > p.kernel_w) {
    throw std::invalid_argument(std::string(op) +
                                ": expected 4-D input, kernel/stride >= 1, "
                                "padding <= kernel/2; got x " +
                                xs.str());
  }
  const int64_t oh = (xs[2] + 2 * p.pad_h - p.kernel_h) / p.stride_h + 1;
  const int64_t ow = (xs[3] + 2 * p.pad_w - p.kernel_w) / p.stride_w + 1;
  if (oh < 1 || ow < 1) {
    throw std::invalid_argument(std::string(op) + ": window larger than the padded input " +
                                xs.str());
  }
  return Shape{xs[0], xs[1], oh, ow};
}
}  // namespace detail

namespace detail {
// The common 2×2/stride-2 window without padding: KernelTable::max_pool_2x2 per plane (SIMD: the
// rows split into even and odd columns). Same rules as the general path: the first maximum in
// scan order wins, and a window holding a NaN yields NaN (rare: the kernel reports the plane
// and its NaN windows are redone here). Planes of 2^24 floats or more take the ref kernel, whose
// indices are exact integers.
inline void max_pool_2x2(const float* x, int64_t planes, int64_t H, int64_t W, int64_t OH,
                         int64_t OW, float* y, int32_t* idx) {
  const auto& K =
      H * W < (int64_t{1} << 24) ? kernels::table() : kernels::table_for(kernels::Isa::ref);
  for (int64_t pl = 0; pl < planes; ++pl) {
    const float* xp = x + pl * H * W;
    float* yp = y + pl * OH * OW;
    int32_t* ip = idx ? idx + pl * OH * OW : nullptr;
    if (!K.max_pool_2x2(OH, OW, xp, W, yp, ip)) continue;
    for (int64_t oh = 0; oh < OH; ++oh)  // a NaN in the plane: the first NaN of a window wins
      for (int64_t ow = 0; ow < OW; ++ow) {
        const float* r0 = xp + 2 * oh * W + 2 * ow;
        const float v[4] = {r0[0], r0[1], r0[W], r0[W + 1]};
        for (int k = 0; k < 4; ++k) {
          if (v[k] != v[k]) {
            yp[oh * OW + ow] = v[k];
            if (ip)
              ip[oh * OW + ow] = static_cast<int32_t>((2 * oh + (k >> 1)) * W + 2 * ow + (k & 1));
            break;
          }
        }
      }
  }
}
}  // namespace detail

inline Var max_pool2d(Tape& t, Var x, const Pool2dParams& p) {
  const Shape ys = detail::pool_out_shape("max_pool2d", x->shape(), p);
  Var y = t.op(
      ys,
      [](Node& n, Tape& tp) {
        const auto* idx = reinterpret_cast<const int32_t*>(n.saved[0].data);
        const int64_t planes = n.i[0], in_plane = n.i[1], out_plane = n.i[2];
        float* dx = tp.grad(n.in[0]).data;
        for (int64_t pl = 0; pl < planes; ++pl)
          for (int64_t o = 0; o < out_plane; ++o)
            dx[pl * in_plane + idx[pl * out_plane + o]] += n.grad.data[pl * out_plane + o];
      },
      {x}, kReadsNone);
  const int64_t H = x->shape()[2], W = x->shape()[3], OH = ys[2], OW = ys[3];
  const int64_t planes = ys[0] * ys[1];
  int32_t* idx = nullptr;
  if (y->requires_grad) {
    y->saved[0] = t.saved(ys);  // int32 argmax, stored in float-sized slots
    idx = reinterpret_cast<int32_t*>(y->saved[0].data);
    y->i[0] = planes;
    y->i[1] = H * W;
    y->i[2] = OH * OW;
  }
  if (p.kernel_h == 2 && p.kernel_w == 2 && p.stride_h == 2 && p.stride_w == 2 && p.pad_h == 0 &&
      p.pad_w == 0) {
    detail::max_pool_2x2(x->value.data, planes, H, W, OH, OW, y->value.data, idx);
    return y;
  }
  for (int64_t pl = 0; pl < planes; ++pl) {
    const float* xp = x->value.data + pl * H * W;
    float* yp = y->value.data + pl * OH * OW;
    for (int64_t oh = 0; oh < OH; ++oh)
      for (int64_t ow = 0; ow < OW; ++ow) {
        float best = -std::numeric_limits<float>::infinity();
        int32_t arg = -1;
        for (int64_t kh = 0; kh < p.kernel_h; ++kh) {
          const int64_t ih = oh * p.stride_h - p.pad_h + kh;
          if (ih < 0 || ih >= H) continue;
          for (int64_t kw = 0; kw < p.kernel_w; ++kw) {
            const int64_t iw = ow * p.stride_w - p.pad_w + kw;
            if (iw < 0 || iw >= W) continue;
            const float v = xp[ih * W + iw];
            if (arg < 0 || v > best || v != v) {  // NaN propagates, as in PyTorch
              best = v;
              arg = static_cast<int32_t>(ih * W + iw);
              if (v != v) goto done;
            }
          }
        }
      done:
        yp[oh * OW + ow] = best;
        if (idx) idx[pl * OH * OW + oh * OW + ow] = arg;
      }
  }
  return y;
}

inline Var avg_pool2d(Tape& t, Var x, const Pool2dParams& p) {
  const Shape ys = detail::pool_out_shape("avg_pool2d", x->shape(), p);
  Var y = t.op(
      ys,
      [](Node& n, Tape& tp) {
        const auto& p = *static_cast<const Pool2dParams*>(n.ctx);
        const Shape& xs = n.in[0]->shape();
        const int64_t H = xs[2], W = xs[3], OH = n.value.shape[2], OW = n.value.shape[3];
        const float inv = 1.0f / static_cast<float>(p.kernel_h * p.kernel_w);
        float* dx = tp.grad(n.in[0]).data;
        for (int64_t pl = 0, planes = xs[0] * xs[1]; pl < planes; ++pl)
          for (int64_t oh = 0; oh < OH; ++oh)
            for (int64_t ow = 0; ow < OW; ++ow) {
              const float g = n.grad.data[(pl * OH + oh) * OW + ow] * inv;
              for (int64_t kh = 0; kh < p.kernel_h; ++kh) {
                const int64_t ih = oh * p.stride_h - p.pad_h + kh;
                if (ih < 0 || ih >= H) continue;
                for (int64_t kw = 0; kw < p.kernel_w; ++kw) {
                  const int64_t iw = ow * p.stride_w - p.pad_w + kw;
                  if (iw >= 0 && iw < W) dx[(pl * H + ih) * W + iw] += g;
                }
              }
            }
      },
      {x}, kReadsNone);
  y->ctx = &p;
  const int64_t H = x->shape()[2], W = x->shape()[3], OH = ys[2], OW = ys[3];
  const float inv = 1.0f / static_cast<float>(p.kernel_h * p.kernel_w);
  for (int64_t pl = 0, planes = ys[0] * ys[1]; pl < planes; ++pl)
    for (int64_t oh = 0; oh < OH; ++oh)
      for (int64_t ow = 0; ow < OW; ++ow) {
        float s = 0.0f;
        for (int64_t kh = 0; kh < p.kernel_h; ++kh) {
          const int64_t ih = oh * p.stride_h - p.pad_h + kh;
          if (ih < 0 || ih >= H) continue;
          for (int64_t kw = 0; kw < p.kernel_w; ++kw) {
            const int64_t iw = ow * p.stride_w - p.pad_w + kw;
            if (iw >= 0 && iw < W) s += x->value.data[(pl * H + ih) * W + iw];
          }
        }
        y->value.data[(pl * OH + oh) * OW + ow] = s * inv;
      }
  return y;
}

// [N, C, H, W] -> [N, C]: mean over each plane.
inline Var global_avg_pool(Tape& t, Var x) {
  const Shape& xs = x->shape();
  if (xs.rank != 4) throw std::invalid_argument("global_avg_pool: expected 4-D, got " + xs.str());
  const int64_t planes = xs[0] * xs[1], hw = xs[2] * xs[3];
  Var y = t.op(
      Shape{xs[0], xs[1]},
      [](Node& n, Tape& tp) {
        const int64_t hw = n.i[0];
        const float inv = 1.0f / static_cast<float>(hw);
        float* dx = tp.grad(n.in[0]).data;
        for (int64_t pl = 0; pl < n.numel(); ++pl) {
          const float g = n.grad.data[pl] * inv;
          for (int64_t j = 0; j < hw; ++j) dx[pl * hw + j] += g;
        }
      },
      {x}, kReadsNone);
  y->i[0] = hw;
  const float inv = 1.0f / static_cast<float>(hw);
  for (int64_t pl = 0; pl < planes; ++pl) {
    float s = 0.0f;
    for (int64_t j = 0; j < hw; ++j) s += x->value.data[pl * hw + j];
    y->value.data[pl] = s * inv;
  }
  return y;
}

// [N, C, H, W] -> [N, C]: maximum over each plane; the argmax is saved for backward.
inline Var global_max_pool(Tape& t, Var x) {
  const Shape& xs = x->shape();
  if (xs.rank != 4 || xs[2] * xs[3] < 1) {
    throw std::invalid_argument("global_max_pool: expected 4-D input with a non-empty plane, got " +
                                xs.str());
  }
  const int64_t planes = xs[0] * xs[1], hw = xs[2] * xs[3];
  Var y = t.op(
      Shape{xs[0], xs[1]},
      [](Node& n, Tape& tp) {
        const auto* idx = reinterpret_cast<const int32_t*>(n.saved[0].data);
        const int64_t hw = n.i[0];
        float* dx = tp.grad(n.in[0]).data;
        for (int64_t pl = 0; pl < n.numel(); ++pl) dx[pl * hw + idx[pl]] += n.grad.data[pl];
      },
      {x}, kReadsNone);
  int32_t* idx = nullptr;
  if (y->requires_grad) {
    y->saved[0] = t.saved(Shape{planes});  // int32 argmax, stored in float-sized slots
    idx = reinterpret_cast<int32_t*>(y->saved[0].data);
    y->i[0] = hw;
  }
  for (int64_t pl = 0; pl < planes; ++pl) {
    const float* xp = x->value.data + pl * hw;
    float best = xp[0];
    int64_t arg = 0;
    for (int64_t j = 1; j < hw && best == best; ++j) {  // stops at the first NaN
      if (xp[j] > best || xp[j] != xp[j]) {
        best = xp[j];
        arg = j;
      }
    }
    y->value.data[pl] = best;
    if (idx) idx[pl] = static_cast<int32_t>(arg);
  }
  return y;
}

}  // namespace mercury::ops
