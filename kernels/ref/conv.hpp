// kernels/ref/conv.hpp — scalar im2col / col2im (NCHW, one image) and depthwise conv forward and
// backward.
//
// Same contracts as the matching KernelTable entries (ld: floats between consecutive rows of col,
// ≥ OH·OW, so several images' columns can sit side by side in one matrix). The SIMD versions
// (kernels/simd_kernels.hpp) copy the inside run of each row with vector loads when the stride
// is 1; these are the oracle they are tested against.
#pragma once

#include <cstdint>

#include "kernels/kernels.hpp"

namespace mercury::kernels::ref {

// Output columns [lo, hi) whose input column ow*S - P + k*D falls inside [0, W).
inline void valid_range(int64_t W, int64_t S, int64_t P, int64_t kD, int64_t OW, int64_t* lo,
                        int64_t* hi) {
  const int64_t first = P - kD;     // need ow*S >= first
  const int64_t past = W + P - kD;  // need ow*S < past
  int64_t l = first <= 0 ? 0 : (first + S - 1) / S;
  int64_t h = past <= 0 ? 0 : (past + S - 1) / S;
  if (h > OW) h = OW;
  if (l > h) l = h;
  *lo = l;
  *hi = h;
}

// Row by row: the inside part of each output row is a contiguous (stride 1) or strided run of
// one input row, so bounds are checked once per row instead of once per element.
inline void im2col(const float* img, int64_t C, int64_t H, int64_t W, int64_t KH, int64_t KW,
                   int64_t SH, int64_t SW, int64_t PH, int64_t PW, int64_t DH, int64_t DW,
                   int64_t OH, int64_t OW, float* col, int64_t ld) {
  for (int64_t c = 0; c < C; ++c)
    for (int64_t kh = 0; kh < KH; ++kh)
      for (int64_t kw = 0; kw < KW; ++kw) {
        float* col_row = col + ((c * KH + kh) * KW + kw) * ld;
        int64_t lo, hi;
        valid_range(W, SW, PW, kw * DW, OW, &lo, &hi);
        for (int64_t oh = 0; oh < OH; ++oh) {
          float* out = col_row + oh * OW;
          const int64_t ih = oh * SH - PH + kh * DH;
          if (ih < 0 || ih >= H) {
            for (int64_t ow = 0; ow < OW; ++ow) out[ow] = 0.0f;
            continue;
          }
          const float* in = img + (c * H + ih) * W + kw * DW - PW;
          for (int64_t ow = 0; ow < lo; ++ow) out[ow] = 0.0f;
          if (SW == 1) {
            for (int64_t ow = lo; ow < hi; ++ow) out[ow] = in[ow];
          } else {
            for (int64_t ow = lo; ow < hi; ++ow) out[ow] = in[ow * SW];
          }
          for (int64_t ow = hi; ow < OW; ++ow) out[ow] = 0.0f;
        }
      }
}

inline void col2im(const float* col, int64_t C, int64_t H, int64_t W, int64_t KH, int64_t KW,
                   int64_t SH, int64_t SW, int64_t PH, int64_t PW, int64_t DH, int64_t DW,
                   int64_t OH, int64_t OW, float* img, int64_t ld) {
  for (int64_t c = 0; c < C; ++c)
    for (int64_t kh = 0; kh < KH; ++kh)
      for (int64_t kw = 0; kw < KW; ++kw) {
        const float* col_row = col + ((c * KH + kh) * KW + kw) * ld;
        int64_t lo, hi;
        valid_range(W, SW, PW, kw * DW, OW, &lo, &hi);
        for (int64_t oh = 0; oh < OH; ++oh) {
          const int64_t ih = oh * SH - PH + kh * DH;
          if (ih < 0 || ih >= H) continue;
          float* out = img + (c * H + ih) * W + kw * DW - PW;
          const float* in = col_row + oh * OW;
          if (SW == 1) {
            for (int64_t ow = lo; ow < hi; ++ow) out[ow] += in[ow];
          } else {
            for (int64_t ow = lo; ow < hi; ++ow) out[ow * SW] += in[ow];
          }
        }
      }
}

inline void dwconv2d(const float* in, int64_t H, int64_t W, const float* w, int64_t KH, int64_t KW,
                     int64_t SH, int64_t SW, int64_t PH, int64_t PW, int64_t DH, int64_t DW,
                     float bias, int64_t OH, int64_t OW, float* out) {
  for (int64_t oh = 0; oh < OH; ++oh)
    for (int64_t ow = 0; ow < OW; ++ow) {
      float acc = 0.0f;
      for (int64_t kh = 0; kh < KH; ++kh)
        for (int64_t kw = 0; kw < KW; ++kw) {
          const int64_t ih = oh * SH - PH + kh * DH;
          const int64_t iw = ow * SW - PW + kw * DW;
          if (ih >= 0 && ih < H && iw >= 0 && iw < W) acc += in[ih * W + iw] * w[kh * KW + kw];
        }
      out[oh * OW + ow] = acc + bias;
    }
}

inline void dwconv2d_bwd(const float* in, int64_t H, int64_t W, const float* w, int64_t KH,
                         int64_t KW, int64_t SH, int64_t SW, int64_t PH, int64_t PW, int64_t DH,
                         int64_t DW, int64_t OH, int64_t OW, const float* dy, float* dx,
                         float* dw) {
  for (int64_t oh = 0; oh < OH; ++oh)
    for (int64_t ow = 0; ow < OW; ++ow) {
      const float d = dy[oh * OW + ow];
      for (int64_t kh = 0; kh < KH; ++kh) {
        const int64_t ih = oh * SH - PH + kh * DH;
        if (ih < 0 || ih >= H) continue;
        for (int64_t kw = 0; kw < KW; ++kw) {
          const int64_t iw = ow * SW - PW + kw * DW;
          if (iw < 0 || iw >= W) continue;
          if (dw != nullptr) dw[kh * KW + kw] += d * in[ih * W + iw];
          if (dx != nullptr) dx[ih * W + iw] += d * w[kh * KW + kw];
        }
      }
    }
}

// Branch-free per window; NaN is only detected here (the caller redoes such windows).
inline bool max_pool_2x2(int64_t OH, int64_t OW, const float* x, int64_t W, float* y,
                         int32_t* arg) {
  bool bad = false;
  for (int64_t oh = 0; oh < OH; ++oh) {
    const float* r0 = x + 2 * oh * W;
    const float* r1 = r0 + W;
    for (int64_t ow = 0; ow < OW; ++ow) {
      const float v0 = r0[2 * ow], v1 = r0[2 * ow + 1], v2 = r1[2 * ow], v3 = r1[2 * ow + 1];
      const bool t01 = v1 > v0, t23 = v3 > v2;
      const float m01 = t01 ? v1 : v0, m23 = t23 ? v3 : v2;
      const bool hi = m23 > m01;
      y[oh * OW + ow] = hi ? m23 : m01;
      if (arg) arg[oh * OW + ow] = static_cast<int32_t>(2 * oh * W + (hi ? W + t23 : t01) + 2 * ow);
      bad |= (v0 != v0) | (v1 != v1) | (v2 != v2) | (v3 != v3);
    }
  }
  return bad;
}

// L · in · Lᵀ on 16 tiles (KernelTable::wino_tile16), dense loops over L's nonzeros.
inline void wino_tile16(const SparseRows& L, const float* in, int64_t in_rs, int64_t in_cs,
                        float* out, int64_t out_rs, int64_t out_cs, bool acc) {
  float t[8][8][16];
  for (int i = 0; i < L.rows; ++i)
    for (int q = 0; q < L.cols; ++q)
      for (int l = 0; l < 16; ++l) {
        float a = 0;
        for (int k = 0; k < L.n[i]; ++k) a += L.val[i][k] * in[L.col[i][k] * in_rs + q * in_cs + l];
        t[i][q][l] = a;
      }
  for (int i = 0; i < L.rows; ++i)
    for (int j = 0; j < L.rows; ++j)
      for (int l = 0; l < 16; ++l) {
        float a = 0;
        for (int k = 0; k < L.n[j]; ++k) a += L.val[j][k] * t[i][L.col[j][k]][l];
        float* o = out + i * out_rs + j * out_cs + l;
        *o = acc ? *o + a : a;
      }
}

}  // namespace mercury::kernels::ref
