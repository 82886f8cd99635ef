// kernels/simd_kernels.hpp — the element-wise, ReLU/ReLU6, batch-norm, reduction, softmax-xent,
// im2col/col2im, depthwise-conv (forward and backward) and Adam kernels, written once over a
// SIMD vector type V and instantiated by each ISA header.
//
// V is a struct of static functions over one register of `width` floats:
//   Reg; width; zero(); set1(x); load(p); store(p, r);
//   load_partial(p, n, fill)   lanes [0, n) from p, the rest = fill (reads only n floats);
//   store_partial(p, n, r)     writes only lanes [0, n);  keep_first(r, n)  zeroes lanes ≥ n;
//   add sub mul div min max sqrt (min/max with a NaN operand: x86 returns the second operand,
//   NEON NaN, so a value that may be NaN goes second when NaN must propagate); fma(a,
//   b, c) = a·b + c; where_positive(x, y) = x > 0 ? y : 0; round(r) (to nearest even); pow2(n) =
//   2^n for integral n in [-126, 127]; reduce_add(r), reduce_max(r); transpose(Reg (&r)[width])
//   in-register transpose of a width×width block (GEMM B packing); deinterleave(a, b, even, odd)
//   splits the 2·width floats of a:b into their even and odd elements; store_i32(p, r) stores r
//   truncated to int32.
// Tails use the partial loads/stores, so no kernel reads or writes past n.
//
// Each ISA instantiates SimdKernels<its V> inside its own namespace, so the symbols differ per
// ISA (ODR/SIGILL trap) — which is also why only builtins, never std:: inline math, are called.
#pragma once

#include <cstdint>

#include "kernels/kernels.hpp"

namespace mercury::kernels {

template <class V>
struct SimdKernels {
  using Reg = typename V::Reg;
  static constexpr int64_t W = V::width;

  // out[i] = op(a[i], b[i]) vector by vector; out may alias a or b exactly.
  template <class Op>
  static void map2(int64_t n, const float* a, const float* b, float* out, Op op) {
    int64_t i = 0;
    for (; i + W <= n; i += W) V::store(out + i, op(V::load(a + i), V::load(b + i)));
    if (i < n) {
      const int64_t rest = n - i;
      V::store_partial(out + i, rest,
                       op(V::load_partial(a + i, rest, 0.0f), V::load_partial(b + i, rest, 0.0f)));
    }
  }
  template <class Op>
  static void map1(int64_t n, const float* x, float* out, Op op) {
    map2(n, x, x, out, [op](Reg xv, Reg) { return op(xv); });
  }
  // out[i] += op(a[i], b[i]) (the backward rules: gradient accumulation); without `acc`,
  // out[i] = op(a[i], b[i]) (out is not read).
  template <class Op>
  static void accumulate(int64_t n, const float* a, const float* b, float* out, bool acc, Op op) {
    if (!acc) {
      map2(n, a, b, out, op);
      return;
    }
    int64_t i = 0;
    for (; i + W <= n; i += W)
      V::store(out + i, V::add(V::load(out + i), op(V::load(a + i), V::load(b + i))));
    if (i < n) {
      const int64_t rest = n - i;
      const Reg t = op(V::load_partial(a + i, rest, 0.0f), V::load_partial(b + i, rest, 0.0f));
      V::store_partial(out + i, rest, V::add(V::load_partial(out + i, rest, 0.0f), t));
    }
  }
  // Σ op(a[i], b[i]) with four independent accumulators (latency of add/fma hidden).
  template <class Op>
  static float reduce2(int64_t n, const float* a, const float* b, Op op) {
    Reg acc0 = V::zero(), acc1 = V::zero(), acc2 = V::zero(), acc3 = V::zero();
    int64_t i = 0;
    for (; i + 4 * W <= n; i += 4 * W) {
      acc0 = op(V::load(a + i), V::load(b + i), acc0);
      acc1 = op(V::load(a + i + W), V::load(b + i + W), acc1);
      acc2 = op(V::load(a + i + 2 * W), V::load(b + i + 2 * W), acc2);
      acc3 = op(V::load(a + i + 3 * W), V::load(b + i + 3 * W), acc3);
    }
    for (; i + W <= n; i += W) acc0 = op(V::load(a + i), V::load(b + i), acc0);
    if (i < n) {
      const int64_t rest = n - i;
      acc1 = op(V::load_partial(a + i, rest, 0.0f), V::load_partial(b + i, rest, 0.0f), acc1);
    }
    return V::reduce_add(V::add(V::add(acc0, acc1), V::add(acc2, acc3)));
  }

  static void add(int64_t n, const float* a, const float* b, float* out) {
    map2(n, a, b, out, [](Reg x, Reg y) { return V::add(x, y); });
  }
  static void mul(int64_t n, const float* a, const float* b, float* out) {
    map2(n, a, b, out, [](Reg x, Reg y) { return V::mul(x, y); });
  }
  static void axpy(int64_t n, float alpha, const float* x, float* y) {
    const Reg alpha_v = V::set1(alpha);
    map2(n, x, y, y, [alpha_v](Reg xv, Reg yv) { return V::fma(alpha_v, xv, yv); });
  }
  static void scale(int64_t n, float alpha, const float* x, float* out) {
    const Reg alpha_v = V::set1(alpha);
    map1(n, x, out, [alpha_v](Reg xv) { return V::mul(alpha_v, xv); });
  }
  static float dot(int64_t n, const float* a, const float* b) {
    return reduce2(n, a, b, [](Reg x, Reg y, Reg acc) { return V::fma(x, y, acc); });
  }
  static float sum(int64_t n, const float* x) {
    return reduce2(n, x, x, [](Reg xv, Reg, Reg acc) { return V::add(xv, acc); });
  }
  static void relu_fwd(int64_t n, const float* x, float* y) {
    map1(n, x, y, [](Reg xv) { return V::where_positive(xv, xv); });
  }
  static void relu_bwd(int64_t n, const float* x, const float* dy, float* dx, bool acc) {
    accumulate(n, x, dy, dx, acc, [](Reg xv, Reg dyv) { return V::where_positive(xv, dyv); });
  }
  // where_positive(x, min(x, 6)): a NaN x fails the test and gives 0, as in ref.
  static void relu6_fwd(int64_t n, const float* x, float* y) {
    const Reg six = V::set1(6.0f);
    map1(n, x, y, [six](Reg xv) { return V::where_positive(xv, V::min(xv, six)); });
  }
  // 0 < y < 6 as y > 0 and 6 - y > 0 (exact: distinct floats never subtract to 0).
  static void relu6_bwd(int64_t n, const float* y, const float* dy, float* dx, bool acc) {
    const Reg six = V::set1(6.0f);
    accumulate(n, y, dy, dx, acc, [six](Reg yv, Reg dyv) {
      return V::where_positive(V::sub(six, yv), V::where_positive(yv, dyv));
    });
  }
  static float sum_sq_dev(int64_t n, const float* x, float mean) {
    const Reg m = V::set1(mean);
    // Tail lanes past n load as `mean`, so they add 0.
    Reg acc0 = V::zero(), acc1 = V::zero();
    int64_t i = 0;
    for (; i + 2 * W <= n; i += 2 * W) {
      const Reg d0 = V::sub(V::load(x + i), m), d1 = V::sub(V::load(x + i + W), m);
      acc0 = V::fma(d0, d0, acc0);
      acc1 = V::fma(d1, d1, acc1);
    }
    for (; i + W <= n; i += W) {
      const Reg d = V::sub(V::load(x + i), m);
      acc0 = V::fma(d, d, acc0);
    }
    if (i < n) {
      const Reg d = V::sub(V::load_partial(x + i, n - i, mean), m);
      acc1 = V::fma(d, d, acc1);
    }
    return V::reduce_add(V::add(acc0, acc1));
  }
  static void bn_fwd(int64_t n, const float* x, float mean, float invstd, float gamma, float beta,
                     float* xhat, float* y) {
    const Reg m = V::set1(mean), is = V::set1(invstd), g = V::set1(gamma), b = V::set1(beta);
    int64_t i = 0;
    for (; i + W <= n; i += W) {
      const Reg xh = V::mul(V::sub(V::load(x + i), m), is);
      if (xhat != nullptr) V::store(xhat + i, xh);
      V::store(y + i, V::fma(g, xh, b));
    }
    if (i < n) {
      const int64_t rest = n - i;
      const Reg xh = V::mul(V::sub(V::load_partial(x + i, rest, 0.0f), m), is);
      if (xhat != nullptr) V::store_partial(xhat + i, rest, xh);
      V::store_partial(y + i, rest, V::fma(g, xh, b));
    }
  }
  static void bn_bwd(int64_t n, const float* dy, const float* xhat, float k, float mdy, float mdyx,
                     float* dx, bool acc) {
    const Reg kv = V::set1(k), mdy_v = V::set1(mdy), mdyx_v = V::set1(mdyx);
    accumulate(n, dy, xhat, dx, acc, [=](Reg dyv, Reg xh) {  // k·(dy − mdy − xhat·mdyx)
      return V::mul(kv, V::sub(V::sub(dyv, mdy_v), V::mul(xh, mdyx_v)));
    });
  }
  static void add_row_bias(int64_t rows, int64_t cols, const float* bias, float* out) {
    for (int64_t r = 0; r < rows; ++r) add(cols, out + r * cols, bias, out + r * cols);
  }
  static void add_channel_bias(int64_t channels, int64_t hw, const float* bias, float* out) {
    for (int64_t c = 0; c < channels; ++c) {
      const Reg b = V::set1(bias[c]);
      map1(hw, out + c * hw, out + c * hw, [b](Reg x) { return V::add(x, b); });
    }
  }

  // exp(x) for x ≤ 88.3 (Cephes expf: x = n·ln2 + r, |r| ≤ ln2/2, degree-5 polynomial, ~1 ulp).
  // Inputs below -87.3 are clamped, giving ≈1.2e-38 instead of a denormal or 0: harmless where
  // it is used (softmax terms, divided by a row sum ≥ 1).
  // A NaN x gives NaN (the clamp takes x as max's second operand, see V's min/max).
  static Reg exp(Reg x) {
    x = V::max(V::set1(-87.3f), x);
    const Reg n = V::round(V::mul(x, V::set1(1.44269504088896341f)));
    Reg r = V::fma(n, V::set1(-0.693359375f), x);
    r = V::fma(n, V::set1(2.12194440e-4f), r);
    Reg p = V::set1(1.9875691500e-4f);
    p = V::fma(p, r, V::set1(1.3981999507e-3f));
    p = V::fma(p, r, V::set1(8.3334519073e-3f));
    p = V::fma(p, r, V::set1(4.1665795894e-2f));
    p = V::fma(p, r, V::set1(1.6666665459e-1f));
    p = V::fma(p, r, V::set1(5.0000001201e-1f));
    const Reg e_r = V::add(V::fma(p, V::mul(r, r), r), V::set1(1.0f));
    return V::mul(e_r, V::pow2(n));
  }

  // σ(x) = 1 / (1 + exp(−x)), exp's argument capped at 88 (σ → 1.2e-38 or 1, never Inf); a NaN
  // x gives NaN, as in ref.
  static Reg sigmoid(Reg x) {
    const Reg e = exp(V::min(V::set1(88.0f), V::sub(V::zero(), x)));  // NaN stays NaN
    return V::div(V::set1(1.0f), V::add(V::set1(1.0f), e));
  }
  // tanh(x) = 2σ(2x) − 1 (absolute error ~1e-7; relative error grows near 0). NaN gives NaN.
  static Reg tanh(Reg x) {
    return V::sub(V::mul(V::set1(2.0f), sigmoid(V::add(x, x))), V::set1(1.0f));
  }
  static void sigmoid_fwd(int64_t n, const float* x, float* y) {
    map1(n, x, y, [](Reg v) { return sigmoid(v); });
  }
  static void tanh_fwd(int64_t n, const float* x, float* y) {
    map1(n, x, y, [](Reg v) { return tanh(v); });
  }
  static void sigmoid_bwd(int64_t n, const float* y, const float* dy, float* dx, bool acc) {
    const Reg one = V::set1(1.0f);
    accumulate(n, y, dy, dx, acc,
               [one](Reg yv, Reg dyv) { return V::mul(V::mul(dyv, yv), V::sub(one, yv)); });
  }
  static void tanh_bwd(int64_t n, const float* y, const float* dy, float* dx, bool acc) {
    const Reg one = V::set1(1.0f);
    accumulate(n, y, dy, dx, acc,
               [one](Reg yv, Reg dyv) { return V::mul(dyv, V::sub(one, V::mul(yv, yv))); });
  }
  // W outputs per step: the two input rows split into even and odd columns; the winner's row and
  // column come from the comparisons as 0/1 floats and give its index in float (exact below
  // 2^24). Non-finite inputs make v − v NaN, which the running sum keeps. A row's tail uses
  // partial loads (zeros beyond it) and partial stores.
  static bool max_pool_2x2(int64_t OH, int64_t OW, const float* x, int64_t Wrow, float* y,
                           int32_t* arg) {
    const Reg one = V::set1(1.0f), row = V::set1(static_cast<float>(Wrow));
    alignas(64) float ramp[W];
    for (int64_t i = 0; i < W; ++i) ramp[i] = static_cast<float>(2 * i);
    const Reg ramp_v = V::load(ramp);
    Reg bad = V::zero();
    const auto load2 = [](const float* p, int64_t n) {  // n = floats of p to read, ≤ 2W
      struct Pair {
        Reg lo, hi;
      };
      if (n >= 2 * W) return Pair{V::load(p), V::load(p + W)};
      return Pair{V::load_partial(p, n < W ? n : W, 0.0f),
                  n > W ? V::load_partial(p + W, n - W, 0.0f) : V::zero()};
    };
    for (int64_t oh = 0; oh < OH; ++oh) {
      const float* r0 = x + 2 * oh * Wrow;
      const float* r1 = r0 + Wrow;
      float* yr = y + oh * OW;
      int32_t* ar = arg ? arg + oh * OW : nullptr;
      for (int64_t ow = 0; ow < OW; ow += W) {
        const int64_t n = OW - ow < W ? OW - ow : W;
        const auto a = load2(r0 + 2 * ow, 2 * n), b = load2(r1 + 2 * ow, 2 * n);
        Reg v0, v1, v2, v3;
        V::deinterleave(a.lo, a.hi, v0, v1);
        V::deinterleave(b.lo, b.hi, v2, v3);
        const Reg m01 = V::max(v1, v0), m23 = V::max(v3, v2);  // x86: v1 > v0 ? v1 : v0
        const Reg m = V::max(m23, m01);
        if (n == W)
          V::store(yr + ow, m);
        else
          V::store_partial(yr + ow, n, m);
        if (ar) {
          const Reg c01 = V::where_positive(V::sub(v1, v0), one);
          const Reg c23 = V::where_positive(V::sub(v3, v2), one);
          const Reg hi = V::where_positive(V::sub(m23, m01), one);
          const Reg col = V::fma(hi, V::sub(c23, c01), c01);
          const Reg base = V::set1(static_cast<float>(2 * oh * Wrow + 2 * ow));
          const Reg at = V::add(V::fma(hi, row, col), V::add(ramp_v, base));
          if (n == W) {
            V::store_i32(ar + ow, at);
          } else {
            alignas(64) int32_t lanes[W];
            V::store_i32(lanes, at);
            for (int64_t i = 0; i < n; ++i) ar[ow + i] = lanes[i];
          }
        }
        const Reg sum = V::add(V::add(v0, v1), V::add(v2, v3));
        bad = V::add(bad, V::sub(sum, sum));
      }
    }
    const float b = V::reduce_add(bad);
    return b != b;
  }

  static void lstm_cell(int64_t H, float* g, const float* c_prev, float* c, float* h) {
    const auto step = [&](int64_t j, int64_t n) {  // lanes [j, j + n), n ≤ W
      const auto load = [n](const float* p) {
        return n == W ? V::load(p) : V::load_partial(p, n, 0.0f);
      };
      const auto store = [n](float* p, Reg r) {
        if (n == W)
          V::store(p, r);
        else
          V::store_partial(p, n, r);
      };
      const Reg ig = sigmoid(load(g + j)), fg = sigmoid(load(g + H + j)),
                gg = tanh(load(g + 2 * H + j)), og = sigmoid(load(g + 3 * H + j));
      const Reg ig_gg = V::mul(ig, gg);
      const Reg cj = c_prev != nullptr ? V::fma(fg, load(c_prev + j), ig_gg) : ig_gg;
      store(c + j, cj);
      store(h + j, V::mul(og, tanh(cj)));
      store(g + j, ig);
      store(g + H + j, fg);
      store(g + 2 * H + j, gg);
      store(g + 3 * H + j, og);
    };
    int64_t j = 0;
    for (; j + W <= H; j += W) step(j, W);
    if (j < H) step(j, H - j);
  }

  static void softmax_xent(int64_t rows, int64_t cols, const float* logits, const int32_t* labels,
                           float* loss, float* probs) {
    const int64_t full = cols / W * W;
    const int64_t rest = cols - full;
    for (int64_t row = 0; row < rows; ++row) {
      const float* x = logits + row * cols;
      float* p = probs != nullptr ? probs + row * cols : nullptr;
      Reg max_v = V::set1(x[0]);
      for (int64_t j = 0; j < full; j += W) max_v = V::max(max_v, V::load(x + j));
      if (rest > 0) max_v = V::max(max_v, V::load_partial(x + full, rest, x[0]));
      const float max = V::reduce_max(max_v);
      const Reg neg_max = V::set1(-max);
      Reg sum_v = V::zero();
      for (int64_t j = 0; j < full; j += W) {
        const Reg e = exp(V::add(V::load(x + j), neg_max));
        sum_v = V::add(sum_v, e);
        if (p != nullptr) V::store(p + j, e);
      }
      if (rest > 0) {
        const Reg e =
            V::keep_first(exp(V::add(V::load_partial(x + full, rest, max), neg_max)), rest);
        sum_v = V::add(sum_v, e);
        if (p != nullptr) V::store_partial(p + full, rest, e);
      }
      const float sum = V::reduce_add(sum_v);
      loss[row] = __builtin_logf(sum) - (x[labels[row]] - max);  // as in ref: offset cancels
      if (p != nullptr) scale(cols, 1.0f / sum, p, p);
    }
  }

  // Output columns [*begin, *end) of a conv row whose input column ow·S + offset lies in
  // [0, W_in) (empty: begin == end).
  static void inside_columns(int64_t W_in, int64_t S, int64_t offset, int64_t OW, int64_t* begin,
                             int64_t* end) {
    const int64_t b = offset >= 0 ? 0 : (-offset + S - 1) / S;
    const int64_t last_iw = W_in - 1 - offset;
    const int64_t e = last_iw < 0 ? 0 : (last_iw / S + 1 < OW ? last_iw / S + 1 : OW);
    *begin = b < e ? b : e;
    *end = e;
  }
  static void fill_zero(int64_t n, float* out) {
    int64_t i = 0;
    for (; i + W <= n; i += W) V::store(out + i, V::zero());
    if (i < n) V::store_partial(out + i, n - i, V::zero());
  }
  // The ref contract, with vector copies of the inside run of each row when SW is 1 or 2.
  static void im2col(const float* img, int64_t C, int64_t H, int64_t W_in, int64_t KH, int64_t KW,
                     int64_t SH, int64_t SW, int64_t PH, int64_t PW, int64_t DH, int64_t DW,
                     int64_t OH, int64_t OW, float* col, int64_t ld) {
    for (int64_t c = 0; c < C; ++c)
      for (int64_t kh = 0; kh < KH; ++kh)
        for (int64_t kw = 0; kw < KW; ++kw) {
          float* col_row = col + ((c * KH + kh) * KW + kw) * ld;
          const int64_t offset = kw * DW - PW;
          int64_t lo, hi;
          inside_columns(W_in, SW, offset, OW, &lo, &hi);
          if (SW == 1 && lo == 0 && hi == OW) {
            // No column padding (every valid conv): whole vectors, then one partial load and
            // store per row: the reference CNN's 8- and 24-float rows.
            const int64_t full = OW / W * W, rest = OW - full;
            for (int64_t oh = 0; oh < OH; ++oh) {
              float* out = col_row + oh * OW;
              const int64_t ih = oh * SH - PH + kh * DH;
              if (ih < 0 || ih >= H) {
                fill_zero(OW, out);
                continue;
              }
              const float* in = img + (c * H + ih) * W_in + offset;
              for (int64_t i = 0; i < full; i += W) V::store(out + i, V::load(in + i));
              if (rest) V::store_partial(out + full, rest, V::load_partial(in + full, rest, 0.0f));
            }
            continue;
          }
          for (int64_t oh = 0; oh < OH; ++oh) {
            float* out = col_row + oh * OW;
            const int64_t ih = oh * SH - PH + kh * DH;
            if (ih < 0 || ih >= H) {
              fill_zero(OW, out);
              continue;
            }
            const float* in = img + (c * H + ih) * W_in + offset;
            fill_zero(lo, out);
            if (SW == 1) {
              map1(hi - lo, in + lo, out + lo, [](Reg x) { return x; });
            } else if (SW == 2) {  // the even elements of 2·W input floats per vector
              int64_t ow = lo;
              // ow + W < hi: the vector's last odd element, in[2(ow + W) − 1], stays before the
              // last inside element in[2(hi − 1)] (never past the row, or the image).
              for (; ow + W < hi; ow += W) {
                Reg even, odd;
                V::deinterleave(V::load(in + 2 * ow), V::load(in + 2 * ow + W), even, odd);
                V::store(out + ow, even);
              }
              for (; ow < hi; ++ow) out[ow] = in[2 * ow];
            } else {
              for (int64_t ow = lo; ow < hi; ++ow) out[ow] = in[ow * SW];
            }
            fill_zero(OW - hi, out + hi);
          }
        }
  }
  static void col2im(const float* col, int64_t C, int64_t H, int64_t W_in, int64_t KH, int64_t KW,
                     int64_t SH, int64_t SW, int64_t PH, int64_t PW, int64_t DH, int64_t DW,
                     int64_t OH, int64_t OW, float* img, int64_t ld) {
    for (int64_t c = 0; c < C; ++c)
      for (int64_t kh = 0; kh < KH; ++kh)
        for (int64_t kw = 0; kw < KW; ++kw) {
          const float* col_row = col + ((c * KH + kh) * KW + kw) * ld;
          const int64_t offset = kw * DW - PW;
          int64_t lo, hi;
          inside_columns(W_in, SW, offset, OW, &lo, &hi);
          for (int64_t oh = 0; oh < OH; ++oh) {
            const int64_t ih = oh * SH - PH + kh * DH;
            if (ih < 0 || ih >= H) continue;
            float* out = img + (c * H + ih) * W_in + offset;
            const float* in = col_row + oh * OW;
            if (SW == 1) {
              add(hi - lo, out + lo, in + lo, out + lo);
            } else {
              for (int64_t ow = lo; ow < hi; ++ow) out[ow * SW] += in[ow];
            }
          }
        }
  }

  // Row-wise: out row = bias, then for each valid (kh, kw) tap an axpy of the input row segment
  // whose columns are inside the image (contiguous when SW == 1, strided scalar otherwise).
  static void dwconv2d(const float* in, int64_t H, int64_t W_in, const float* w, int64_t KH,
                       int64_t KW, int64_t SH, int64_t SW, int64_t PH, int64_t PW, int64_t DH,
                       int64_t DW, float bias, int64_t OH, int64_t OW, float* out) {
    const Reg bias_v = V::set1(bias);
    for (int64_t oh = 0; oh < OH; ++oh) {
      float* out_row = out + oh * OW;
      map1(OW, out_row, out_row, [bias_v](Reg) { return bias_v; });
      for (int64_t kh = 0; kh < KH; ++kh) {
        const int64_t ih = oh * SH - PH + kh * DH;
        if (ih < 0 || ih >= H) continue;
        const float* in_row = in + ih * W_in;
        for (int64_t kw = 0; kw < KW; ++kw) {
          const int64_t offset = kw * DW - PW;  // iw = ow·SW + offset must lie in [0, W_in)
          int64_t ow_begin, ow_end;
          inside_columns(W_in, SW, offset, OW, &ow_begin, &ow_end);
          if (ow_begin >= ow_end) continue;
          const float tap = w[kh * KW + kw];
          if (SW == 1) {
            axpy(ow_end - ow_begin, tap, in_row + ow_begin + offset, out_row + ow_begin);
          } else {
            for (int64_t ow = ow_begin; ow < ow_end; ++ow)
              out_row[ow] += tap * in_row[ow * SW + offset];
          }
        }
      }
    }
  }

  // The adjoint of dwconv2d, row by row like it: each valid (kh, kw) tap of an output row is a
  // dot product (the tap's gradient) and an axpy (the input row's gradient) over the columns
  // inside the image; strided scalar when SW > 1.
  static void dwconv2d_bwd(const float* in, int64_t H, int64_t W_in, const float* w, int64_t KH,
                           int64_t KW, int64_t SH, int64_t SW, int64_t PH, int64_t PW, int64_t DH,
                           int64_t DW, int64_t OH, int64_t OW, const float* dy, float* dx,
                           float* dw) {
    for (int64_t oh = 0; oh < OH; ++oh) {
      const float* dy_row = dy + oh * OW;
      for (int64_t kh = 0; kh < KH; ++kh) {
        const int64_t ih = oh * SH - PH + kh * DH;
        if (ih < 0 || ih >= H) continue;
        const float* in_row = in + ih * W_in;
        float* dx_row = dx != nullptr ? dx + ih * W_in : nullptr;
        for (int64_t kw = 0; kw < KW; ++kw) {
          const int64_t offset = kw * DW - PW;
          int64_t ow_begin, ow_end;
          inside_columns(W_in, SW, offset, OW, &ow_begin, &ow_end);
          if (ow_begin >= ow_end) continue;
          const float tap = w[kh * KW + kw];
          if (SW == 1) {
            const int64_t len = ow_end - ow_begin;
            if (dw != nullptr)
              dw[kh * KW + kw] += dot(len, dy_row + ow_begin, in_row + ow_begin + offset);
            if (dx_row != nullptr) axpy(len, tap, dy_row + ow_begin, dx_row + ow_begin + offset);
          } else {
            float acc = 0.0f;
            for (int64_t ow = ow_begin; ow < ow_end; ++ow) {
              acc += dy_row[ow] * in_row[ow * SW + offset];
              if (dx_row != nullptr) dx_row[ow * SW + offset] += tap * dy_row[ow];
            }
            if (dw != nullptr) dw[kh * KW + kw] += acc;
          }
        }
      }
    }
  }

  static void adam(int64_t n, float* p, const float* g, float* m, float* v, float lr, float b1,
                   float b2, float eps, float l2, float decoupled_wd, float bc1, float bc2) {
    const Reg l2_v = V::set1(l2), decay_v = V::set1(lr * decoupled_wd), b1_v = V::set1(b1),
              b2_v = V::set1(b2), one_minus_b1 = V::set1(1.0f - b1),
              one_minus_b2 = V::set1(1.0f - b2), lr_v = V::set1(lr), bc1_v = V::set1(bc1),
              bc2_v = V::set1(bc2), eps_v = V::set1(eps);
    auto step = [&](Reg pv, Reg gv, Reg& mv, Reg& vv) {
      const Reg grad = V::fma(l2_v, pv, gv);
      pv = V::sub(pv, V::mul(decay_v, pv));
      mv = V::fma(b1_v, mv, V::mul(one_minus_b1, grad));
      vv = V::fma(b2_v, vv, V::mul(V::mul(one_minus_b2, grad), grad));
      const Reg denom = V::add(V::sqrt(V::div(vv, bc2_v)), eps_v);
      return V::sub(pv, V::div(V::mul(lr_v, V::div(mv, bc1_v)), denom));
    };
    int64_t i = 0;
    for (; i + W <= n; i += W) {
      Reg mv = V::load(m + i), vv = V::load(v + i);
      V::store(p + i, step(V::load(p + i), V::load(g + i), mv, vv));
      V::store(m + i, mv);
      V::store(v + i, vv);
    }
    if (i < n) {
      const int64_t rest = n - i;
      Reg mv = V::load_partial(m + i, rest, 0.0f), vv = V::load_partial(v + i, rest, 0.0f);
      V::store_partial(
          p + i, rest,
          step(V::load_partial(p + i, rest, 0.0f), V::load_partial(g + i, rest, 0.0f), mv, vv));
      V::store_partial(m + i, rest, mv);
      V::store_partial(v + i, rest, vv);
    }
  }

  // L · in · Lᵀ on 16 tiles, W lanes at a time: first t[i][q] = Σ_p L[i][p] in[p][q], then
  // out[i][j] = Σ_q L[j][q] t[i][q], each sum over L's nonzeros only.
  static void wino_tile16(const SparseRows& L, const float* in, int64_t in_rs, int64_t in_cs,
                          float* out, int64_t out_rs, int64_t out_cs, bool acc) {
    static_assert(16 % W == 0, "16 tiles must be whole vectors");
    const int R = L.rows, K = L.cols;
    for (int64_t s = 0; s < 16; s += W) {
      Reg t[8][8];
      for (int q = 0; q < K; ++q) {
        Reg x[8];
        for (int p = 0; p < K; ++p) x[p] = V::load(in + p * in_rs + q * in_cs + s);
        for (int i = 0; i < R; ++i) {
          Reg a = V::zero();
          for (int k = 0; k < L.n[i]; ++k) a = V::fma(V::set1(L.val[i][k]), x[L.col[i][k]], a);
          t[i][q] = a;
        }
      }
      for (int i = 0; i < R; ++i)
        for (int j = 0; j < R; ++j) {
          float* o = out + i * out_rs + j * out_cs + s;
          Reg a = acc ? V::load(o) : V::zero();
          for (int k = 0; k < L.n[j]; ++k) a = V::fma(V::set1(L.val[j][k]), t[i][L.col[j][k]], a);
          V::store(o, a);
        }
    }
  }

  // Points every entry this file implements at this ISA's instantiation.
  static void fill(KernelTable& t) {
    t.add = &add;
    t.mul = &mul;
    t.axpy = &axpy;
    t.scale = &scale;
    t.dot = &dot;
    t.sum = &sum;
    t.relu_fwd = &relu_fwd;
    t.relu_bwd = &relu_bwd;
    t.relu6_fwd = &relu6_fwd;
    t.relu6_bwd = &relu6_bwd;
    t.sigmoid_fwd = &sigmoid_fwd;
    t.sigmoid_bwd = &sigmoid_bwd;
    t.tanh_fwd = &tanh_fwd;
    t.tanh_bwd = &tanh_bwd;
    t.sum_sq_dev = &sum_sq_dev;
    t.bn_fwd = &bn_fwd;
    t.bn_bwd = &bn_bwd;
    t.add_row_bias = &add_row_bias;
    t.add_channel_bias = &add_channel_bias;
    t.softmax_xent = &softmax_xent;
    t.im2col = &im2col;
    t.col2im = &col2im;
    t.dwconv2d = &dwconv2d;
    t.dwconv2d_bwd = &dwconv2d_bwd;
    t.max_pool_2x2 = &max_pool_2x2;
    t.wino_tile16 = &wino_tile16;
    t.lstm_cell = &lstm_cell;
    t.adam = &adam;
  }
};

}  // namespace mercury::kernels
