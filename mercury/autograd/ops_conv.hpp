// mercury/autograd/ops_conv.hpp — 2-D convolution (NCHW) with stride, padding, dilation, groups.
//
// Contract
// - x [N, C, H, W], w [O, C/groups, KH, KW], b [O] or null → y [N, O, OH, OW].
// - General case: per group, im2col + one GEMM (kernels::table()) over a run of images: when
//   one image has few output positions (ResNet's 8×8 and 4×4 stages) the columns of several
//   images sit side by side (detail::images_per_gemm) so the GEMM is wide enough to run near
//   peak and the weight gradient's GEMM has a long K instead of 16. Depthwise (groups == C ==
//   O) uses the dwconv2d / dwconv2d_bwd micro-kernels. 1×1/stride-1/no-pad skips im2col for a
//   single image. Stride-1 convs whose padded planes waste little (ResNet's and VGG's 3×3 convs
//   down to 8×8) skip im2col and col2im altogether: their GEMMs read rows of a zero-padded copy
//   of the input (or of dy) through KernelTable::sgemm_rows (detail::ShiftGeom). One-channel
//   convs whose kernel spans the input's width (TextCNN) read their windows in place
//   (detail::is_window). Stride-1 3×3 and 5×5 convs with 32+ channels each way go through
//   Winograd minimal filtering first (winograd.hpp, detail::winograd_for): α² GEMMs on
//   transformed tiles, 4× (3×3) and 6.25× (5×5) fewer multiplications.
// - Images are split over the thread pool; weight gradients are accumulated per chunk and summed
//   in chunk order, so results are deterministic for a given thread count.
#pragma once

#include <algorithm>
#include <string>
#include <vector>

#include "kernels/kernels.hpp"
#include "mercury/autograd/tape.hpp"
#include "mercury/autograd/winograd.hpp"
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
// One input channel and a kernel spanning the whole input width, stride 1, no padding (TextCNN's
// n-gram filters over [T, E] embeddings): output row oh's im2col column is the KH·W floats from
// input row oh on, contiguous. The GEMMs then read x as rows W floats apart (overlapping), and
// the images of a run are one sequence whose KH − 1 windows across each image boundary are
// computed and dropped (given a zero gradient in backward). No im2col, no col2im: dx adds each
// window's KH·W gradient row back in place. (TextCNN spent 64% of scoring and 61% of training
// in im2col and col2im, gathering one float every W = 300.)
inline bool is_window(const ConvGeom& g, const Conv2dParams& p) {
  return g.C == 1 && p.groups == 1 && g.KW == g.W && (p.dil_w == 1 || g.KW == 1) && p.pad_h == 0 &&
         p.pad_w == 0 && p.stride_h == 1 && p.dil_h == 1;
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
// (The shifted path below passes its stacked rows per image as P and its channels as kdim.)
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

// Images per window run: the run's dx rows [cols, KH·W] stay within kGemmMaxColFloats.
inline int64_t images_per_window(const ConvGeom& g, int64_t chunk_images) {
  const int64_t nb = kGemmMaxColFloats / (g.H * g.KH * g.W);
  return std::clamp<int64_t>(nb, 1, std::max<int64_t>(chunk_images, 1));
}
// A window run's output columns: nb images of H rows, less the last KH − 1.
inline int64_t window_cols(const ConvGeom& g, int64_t nb) {
  return nb * g.H - g.KH + 1;
}

// Stride-1 convolution without im2col ("shifted" or indirect GEMM). The input is copied once into
// a zero-padded plane of width Wp = W + 2·PW; then output (oh, ow), stored at column oh·Wp + ow,
// is Σ_k w[k] · plane[off[k] + oh·Wp + ow] with off[(c·KH + kh)·KW + kw] = c·plane + kh·DH·Wp +
// kw·DW — so GEMM row k of B is a contiguous run of the padded input (KernelTable::sgemm_rows)
// and the 9× column matrix, its writes and its reads are gone. The price is Wp − OW wasted columns
// per output row. A run of nb images is stacked vertically with S = H + PH rows per image (the
// pad rows between two images serve both), so small planes still give long GEMM rows; image i's
// output row oh is stacked row i·S + oh. The input gradient of a stride-1 conv is itself a
// stride-1 conv of dy (padded by D·(K − 1) − P) with the flipped, transposed kernel, so col2im
// goes too; the weight gradient is dy (zero in the wasted columns) times the same rows,
// transposed.
struct ShiftGeom {
  int64_t S, Wp, R, N;  // rows per stacked image, padded width, rows of a plane, GEMM columns
};
inline ShiftGeom shift_geom(int64_t nb, int64_t H, int64_t W, int64_t OH, int64_t OW, int64_t PH,
                            int64_t PW) {
  const int64_t S = H + PH, Wp = W + 2 * PW;
  return {S, Wp, (nb - 1) * S + H + 2 * PH, ((nb - 1) * S + OH - 1) * Wp + OW};
}
// Columns computed per useful output: the shifted path's waste.
inline double shift_waste(int64_t H, int64_t W, int64_t OH, int64_t OW, int64_t PH, int64_t PW) {
  return static_cast<double>((H + PH) * (W + 2 * PW)) / static_cast<double>(OH * OW);
}
// When the shifted path is faster (bench/micro/bench_conv, one AVX-512 thread, its step against
// im2col's): 1.13–1.6× at waste ≤ 1.2 with 16–128 channels, 1.29× at 1.41 (64 channels, 8×8),
// even at 1.41 with 256; 0.75× at 1.88 (4×4), 0.85× at 2.25 (12×12 → 8×8 valid). With one or
// three input channels (a first layer: K = 9, 25 or 27) im2col wins (0.82–0.91×): its columns
// are few, while the shifted path copies the wider output and, for dW, dy's many planes; the
// same holds for dx when the GEMM's M is a handful of channels.
inline constexpr double kShiftMaxWaste = 1.5;
inline constexpr int64_t kShiftMinChannels = 4;
// Test hook: which path a stride-1, non-depthwise, non-pointwise conv takes.
enum class ShiftGemm { automatic, never, always };
inline ShiftGemm& shift_gemm_mode() {
  static ShiftGemm mode = ShiftGemm::automatic;
  return mode;
}
// A stride-1 conv from `channels` planes of H×W (its GEMM's K is channels·KH·KW) to `rows` planes
// of OH×OW (the GEMM's M), padded by PH, PW. dx's conv maps the forward's Og planes to its Cg.
inline bool use_shift(int64_t channels, int64_t rows, int64_t H, int64_t W, int64_t OH, int64_t OW,
                      int64_t PH, int64_t PW) {
  const ShiftGemm m = shift_gemm_mode();
  return m == ShiftGemm::always ||
         (m == ShiftGemm::automatic && channels >= kShiftMinChannels && rows >= kShiftMinChannels &&
          shift_waste(H, W, OH, OW, PH, PW) <= kShiftMaxWaste);
}
// nb images' C planes of H×W (image i at x + i·image_stride) → the stacked zero-padded layout
// [C][R][Wp] (see above).
inline void shift_pack(const float* x, int64_t image_stride, int64_t nb, int64_t C, int64_t H,
                       int64_t W, int64_t PH, int64_t PW, const ShiftGeom& s, float* out) {
  std::fill_n(out, C * s.R * s.Wp, 0.0f);
  for (int64_t c = 0; c < C; ++c)
    for (int64_t i = 0; i < nb; ++i)
      for (int64_t h = 0; h < H; ++h)
        std::copy_n(x + i * image_stride + (c * H + h) * W, W,
                    out + (c * s.R + i * s.S + PH + h) * s.Wp + PW);
}
// off[(c·KH + kh)·KW + kw] = c·R·Wp + kh·DH·Wp + kw·DW, in per-thread buffer `slot` (0 or 1; the
// backward holds dW's and dx's offsets at once).
inline const int64_t* shift_offsets(int slot, int64_t C, int64_t KH, int64_t KW, int64_t DH,
                                    int64_t DW, const ShiftGeom& s) {
  thread_local std::vector<int64_t> buffers[2];
  std::vector<int64_t>& off = buffers[slot];
  off.resize(static_cast<size_t>(C * KH * KW));
  for (int64_t c = 0; c < C; ++c)
    for (int64_t kh = 0; kh < KH; ++kh)
      for (int64_t kw = 0; kw < KW; ++kw)
        off[static_cast<size_t>((c * KH + kh) * KW + kw)] = (c * s.R + kh * DH) * s.Wp + kw * DW;
  return off.data();
}
// nb images' C planes of OH×OW → the stacked output layout [C][N] with zeros in the wasted
// columns (the A operand of the weight gradient).
inline void shift_pack_output(const float* y, int64_t image_stride, int64_t nb, int64_t C,
                              int64_t OH, int64_t OW, const ShiftGeom& s, float* out) {
  std::fill_n(out, C * s.N, 0.0f);
  for (int64_t c = 0; c < C; ++c)
    for (int64_t i = 0; i < nb; ++i)
      for (int64_t oh = 0; oh < OH; ++oh)
        std::copy_n(y + i * image_stride + (c * OH + oh) * OW, OW,
                    out + c * s.N + (i * s.S + oh) * s.Wp);
}
// The GEMM's [C][ld] result in stacked layout → nb images' C planes of OH×OW (image i at
// y + i·image_stride), written or, with accumulate, added.
inline void shift_unpack(const float* ys, int64_t ld, int64_t nb, int64_t C, int64_t OH, int64_t OW,
                         const ShiftGeom& s, float* y, int64_t image_stride, bool accumulate) {
  const auto& K = kernels::table();
  for (int64_t c = 0; c < C; ++c)
    for (int64_t i = 0; i < nb; ++i)
      for (int64_t oh = 0; oh < OH; ++oh) {
        const float* src = ys + c * ld + (i * s.S + oh) * s.Wp;
        float* dst = y + i * image_stride + (c * OH + oh) * OW;
        if (accumulate)
          K.add(OW, dst, src, dst);
        else
          std::copy_n(src, OW, dst);
      }
}

// Winograd minimal filtering (winograd.hpp) for stride-1, undilated, ungrouped 3×3 and 5×5 convs
// with at least kWinogradMinChannels channels in and out, when the work it wastes stays within
// kWinogradMaxWaste: tiles cut at the plane's edge, times lanes left empty in the last group of
// winograd::kLanes images of a thread's chunk. bench_conv's wino_step (one AVX-512 thread, its
// step against the best other path): 1.1–1.9× with 32–512 channels (the CNN's 5×5 conv2 1.75×,
// ResNet-18's 4×4 planes 1.10×), 0.84–0.94× with 16.
inline constexpr int64_t kWinogradMinChannels = 32;
inline constexpr double kWinogradMaxWaste = 1.5;
enum class Winograd { automatic, never, always };  // test hook, like ShiftGemm
inline Winograd& winograd_mode() {
  static Winograd mode = Winograd::automatic;
  return mode;
}
inline const winograd::Transform* winograd_for(const ConvGeom& g, const Conv2dParams& p) {
  const Winograd mode = winograd_mode();
  if (mode == Winograd::never || p.groups != 1 || p.stride_h != 1 || p.stride_w != 1 ||
      p.dil_h != 1 || p.dil_w != 1 || g.KH != g.KW || p.pad_h >= g.KH || p.pad_w >= g.KW)
    return nullptr;
  const winograd::Transform* tf = winograd::transform_for(g.KH);
  if (!tf || mode == Winograd::always) return tf;
  const int64_t th = (g.OH + tf->m - 1) / tf->m, tw = (g.OW + tf->m - 1) / tf->m;
  const int64_t L = winograd::kLanes, chunks = thread_pool().chunks_for(g.N);
  const int64_t per_chunk = (g.N + chunks - 1) / chunks, lanes = (per_chunk + L - 1) / L * L;
  const double waste = static_cast<double>(th * tw * tf->m * tf->m * lanes) /
                       static_cast<double>(g.OH * g.OW * per_chunk);
  return g.C >= kWinogradMinChannels && g.O >= kWinogradMinChannels && waste <= kWinogradMaxWaste
             ? tf
             : nullptr;
}
// The Winograd path's work split. A chunk's images form lane groups of winograd::kLanes; a unit
// is one row of tiles of one lane group (TW tiles × kLanes images = TW·kLanes GEMM columns); a run
// is a range of units whose transformed tiles V [α²][C][T] and M [α²][O][T] stay within
// kGemmMaxColFloats (T ≤ 768 columns, and at least one unit). Column of (unit u, tile tw, lane l)
// in its run: ((u − u0)·TW + tw)·kLanes + l.
struct WinoPlan {
  const winograd::Transform* tf;
  winograd::Tiling tl;
  int chunks;                             // the thread pool's chunks of images
  int64_t E, T, units_per_run, Wt, band;  // α², run columns, units per run, band width, floats
  int64_t P, CHW, OWt, per_chunk;         // output plane, input image, output band width, scratch
};
inline WinoPlan wino_plan(const winograd::Transform& tf, const ConvGeom& g, const Conv2dParams& p) {
  constexpr int64_t L = winograd::kLanes;
  const int chunks = thread_pool().chunks_for(g.N);
  const winograd::Tiling tl = winograd::tiling(tf, g.H, g.W, g.OH, g.OW, p.pad_h, p.pad_w);
  const int64_t E = tf.a * tf.a, unit = tl.TW * L;
  const int64_t cap = std::min<int64_t>(768, kGemmMaxColFloats / (E * (g.C + g.O)));
  const int64_t groups = ((g.N + chunks - 1) / chunks + L - 1) / L;
  const int64_t upr = std::clamp<int64_t>(cap / unit, 1, groups * tl.TH);
  const int64_t Wt = tl.TW * tf.m + tf.a - tf.m, rows = std::min(upr, tl.TH) * tf.m + tf.a - tf.m;
  const int64_t T = upr * unit, band = rows * Wt * L;
  return {&tf,
          tl,
          chunks,
          E,
          T,
          upr,
          Wt,
          band,
          g.OH * g.OW,
          g.C * g.H * g.W,
          tl.TW * tf.m,
          E * (g.C + g.O) * T + band};
}
// Calls fn(group, th_begin, th_end, first_column) for the segments of run [u0, u1) (units of one
// lane group each).
template <class Fn>
inline void wino_segments(const WinoPlan& w, int64_t u0, int64_t u1, Fn&& fn) {
  const int64_t TH = w.tl.TH;
  for (int64_t u = u0; u < u1;) {
    const int64_t gi = u / TH, a = u % TH, b = std::min(TH, a + (u1 - u));
    fn(gi, a, b, (u - u0) * w.tl.TW * winograd::kLanes);
    u += b - a;
  }
}
// Input transform of run [u0, u1) into V (images from x0 on): per channel and segment, the band
// of input rows its tiles read, then Bᵀ d B per tile.
inline void wino_input(const WinoPlan& w, const ConvGeom& g, const float* x0, int64_t images,
                       int64_t u0, int64_t u1, float* V, int64_t T, float* band) {
  const auto& K = kernels::table();
  const winograd::Transform& tf = *w.tf;
  constexpr int64_t L = winograd::kLanes;
  const int64_t CHW = g.C * g.H * g.W, m = tf.m;
  for (int64_t c = 0; c < g.C; ++c)
    wino_segments(w, u0, u1, [&](int64_t gi, int64_t a, int64_t b, int64_t col0) {
      const int count = static_cast<int>(std::min<int64_t>(L, images - gi * L));
      winograd::to_band(x0 + gi * L * CHW, CHW, count, c * g.H * g.W, g.H, g.W, a * m - w.tl.pad_h,
                        (b - a) * m + tf.a - m, -w.tl.pad_w, w.Wt, band);
      for (int64_t th = a; th < b; ++th)
        for (int64_t tw = 0; tw < w.tl.TW; ++tw)
          K.wino_tile16(tf.sBT, band + ((th - a) * m * w.Wt + tw * m) * L, w.Wt * L, L,
                        V + c * T + col0 + ((th - a) * w.tl.TW + tw) * L, tf.a * g.C * T, g.C * T,
                        false);
    });
}

// y = conv(x, w) + b through Winograd: per run, V = the input transform, one GEMM per
// transformed position M[e] = U[e] · V[e], then Aᵀ M A per tile into the output planes (the
// bias added on the way).
inline void conv_winograd_forward(Tape& t, const winograd::Transform& tf, const ConvGeom& g,
                                  const Conv2dParams& p, const float* x, const float* w,
                                  const float* b, float* y) {
  const auto& K = kernels::table();
  const WinoPlan wp = wino_plan(tf, g, p);
  constexpr int64_t L = winograd::kLanes;
  const int64_t E = wp.E, P = wp.P, CHW = wp.CHW, m = tf.m, OWt = wp.OWt, per_chunk = wp.per_chunk;
  Tensor U = t.scratch(Shape{E * g.O * g.C});
  winograd::weight_transform(tf, w, g.O, g.C, U.data);
  Tensor buf = t.scratch(Shape{wp.chunks, per_chunk});
  thread_pool().parallel_for(g.N, [&](int64_t i0, int64_t i1, int c) {
    float* V = buf.data + c * per_chunk;
    float* M = V + E * g.C * wp.T;
    float* band = M + E * g.O * wp.T;
    const int64_t images = i1 - i0, units = (images + L - 1) / L * wp.tl.TH;
    for (int64_t u0 = 0; u0 < units; u0 += wp.units_per_run) {
      const int64_t u1 = std::min(units, u0 + wp.units_per_run);
      const int64_t T = (u1 - u0) * wp.tl.TW * L;
      wino_input(wp, g, x + i0 * CHW, images, u0, u1, V, T, band);
      for (int64_t e = 0; e < E; ++e)
        K.sgemm(false, false, g.O, T, g.C, 1.0f, U.data + e * g.O * g.C, g.C, V + e * g.C * T, T,
                0.0f, M + e * g.O * T, T);
      for (int64_t o = 0; o < g.O; ++o)
        wino_segments(wp, u0, u1, [&](int64_t gi, int64_t a, int64_t bb, int64_t col0) {
          for (int64_t th = a; th < bb; ++th)
            for (int64_t tw = 0; tw < wp.tl.TW; ++tw)
              K.wino_tile16(tf.sAT, M + o * T + col0 + ((th - a) * wp.tl.TW + tw) * L,
                            tf.a * g.O * T, g.O * T, band + ((th - a) * m * OWt + tw * m) * L,
                            OWt * L, L, false);
          const int count = static_cast<int>(std::min<int64_t>(L, images - gi * L));
          winograd::from_band(band, a * m, (bb - a) * m, 0, OWt, count, y + (i0 + gi * L) * g.O * P,
                              g.O * P, o * P, g.OH, g.OW, false, b ? b[o] : 0.0f);
        });
    }
  });
}

// Its backward, the exact gradient of the forward above: dM = A dY Aᵀ per tile; dU[e] +=
// dM[e] · V[e]ᵀ (per chunk, summed in chunk order) and dW += Gᵀ dU G; dV[e] = U[e]ᵀ · dM[e] and
// dx += B dV Bᵀ at each tile's input window. dx, dw, db: null when not wanted; all accumulate.
inline void conv_winograd_backward(Tape& t, const winograd::Transform& tf, const ConvGeom& g,
                                   const Conv2dParams& p, const float* x, const float* w,
                                   const float* dy, float* dx, float* dw, float* db) {
  const auto& K = kernels::table();
  const WinoPlan wp = wino_plan(tf, g, p);
  constexpr int64_t L = winograd::kLanes;
  const int64_t E = wp.E, P = wp.P, CHW = wp.CHW, m = tf.m, OWt = wp.OWt, per_chunk = wp.per_chunk;
  const int chunks = wp.chunks;
  Tensor U = dx ? t.scratch(Shape{E * g.O * g.C}) : Tensor{};
  if (dx) winograd::weight_transform(tf, w, g.O, g.C, U.data);
  Tensor buf = t.scratch(Shape{chunks, per_chunk});
  Tensor dU = dw ? t.scratch_zeros(Shape{chunks, E * g.O * g.C}) : Tensor{};
  Tensor db_parts = db ? t.scratch_zeros(Shape{chunks, g.O}) : Tensor{};
  thread_pool().parallel_for(g.N, [&](int64_t i0, int64_t i1, int c) {
    float* V = buf.data + c * per_chunk;
    float* dM = V + E * g.C * wp.T;
    float* band = dM + E * g.O * wp.T;
    float* dUc = dw ? dU.data + c * E * g.O * g.C : nullptr;
    if (db)
      for (int64_t i = i0; i < i1; ++i)
        for (int64_t o = 0; o < g.O; ++o)
          db_parts.data[c * g.O + o] += K.sum(P, dy + (i * g.O + o) * P);
    const int64_t images = i1 - i0, units = (images + L - 1) / L * wp.tl.TH;
    for (int64_t u0 = 0; u0 < units; u0 += wp.units_per_run) {
      const int64_t u1 = std::min(units, u0 + wp.units_per_run);
      const int64_t T = (u1 - u0) * wp.tl.TW * L;
      if (dw) wino_input(wp, g, x + i0 * CHW, images, u0, u1, V, T, band);
      for (int64_t o = 0; o < g.O; ++o)
        wino_segments(wp, u0, u1, [&](int64_t gi, int64_t a, int64_t bb, int64_t col0) {
          const int count = static_cast<int>(std::min<int64_t>(L, images - gi * L));
          winograd::to_band(dy + (i0 + gi * L) * g.O * P, g.O * P, count, o * P, g.OH, g.OW, a * m,
                            (bb - a) * m, 0, OWt, band);
          for (int64_t th = a; th < bb; ++th)
            for (int64_t tw = 0; tw < wp.tl.TW; ++tw)
              K.wino_tile16(tf.sA, band + ((th - a) * m * OWt + tw * m) * L, OWt * L, L,
                            dM + o * T + col0 + ((th - a) * wp.tl.TW + tw) * L, tf.a * g.O * T,
                            g.O * T, false);
        });
      for (int64_t e = 0; e < E; ++e) {
        float* Ve = V + e * g.C * T;
        const float* dMe = dM + e * g.O * T;
        if (dw)
          K.sgemm(false, true, g.O, g.C, T, 1.0f, dMe, T, Ve, T, 1.0f, dUc + e * g.O * g.C, g.C);
        if (dx)  // dV[e] into V[e], which dU's GEMM has read
          K.sgemm(true, false, g.C, T, g.O, 1.0f, U.data + e * g.O * g.C, g.C, dMe, T, 0.0f, Ve, T);
      }
      if (!dx) continue;
      for (int64_t ch = 0; ch < g.C; ++ch)
        wino_segments(wp, u0, u1, [&](int64_t gi, int64_t a, int64_t bb, int64_t col0) {
          const int64_t rows = (bb - a) * m + tf.a - m;
          std::fill_n(band, rows * wp.Wt * L, 0.0f);
          for (int64_t th = a; th < bb; ++th)
            for (int64_t tw = 0; tw < wp.tl.TW; ++tw)
              K.wino_tile16(tf.sB, V + ch * T + col0 + ((th - a) * wp.tl.TW + tw) * L,
                            tf.a * g.C * T, g.C * T, band + ((th - a) * m * wp.Wt + tw * m) * L,
                            wp.Wt * L, L, true);
          const int count = static_cast<int>(std::min<int64_t>(L, images - gi * L));
          winograd::from_band(band, a * m - wp.tl.pad_h, rows, -wp.tl.pad_w, wp.Wt, count,
                              dx + (i0 + gi * L) * CHW, CHW, ch * g.H * g.W, g.H, g.W, true);
        });
    }
  });
  if (dw) {
    for (int c = 1; c < chunks; ++c)
      K.axpy(E * g.O * g.C, 1.0f, dU.data + c * E * g.O * g.C, dU.data);
    winograd::weight_adjoint(tf, dU.data, g.O, g.C, dw);
  }
  if (db)
    for (int c = 0; c < chunks; ++c) K.axpy(g.O, 1.0f, db_parts.data + c * g.O, db);
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
        if (const winograd::Transform* tf = detail::winograd_for(g, p)) {
          detail::conv_winograd_backward(tp, *tf, g, p, x->value.data, w->value.data, n.grad.data,
                                         x->requires_grad ? tp.grad(x).data : nullptr,
                                         w->requires_grad ? tp.grad(w).data : nullptr,
                                         b && b->requires_grad ? tp.grad(b).data : nullptr);
          return;
        }
        const detail::ConvPlan pl = detail::plan(g, p);
        const int64_t G = pl.G, Cg = pl.Cg, Og = pl.Og, P = pl.P, kdim = pl.kdim;
        const bool depthwise = pl.depthwise, pointwise = pl.pointwise;
        ThreadPool& pool = thread_pool();
        const int chunks = pool.chunks_for(g.N);
        const int64_t wsize = w->numel();
        float* dx = x->requires_grad ? tp.grad(x).data : nullptr;
        // Which gradients take the shifted path (see detail::ShiftGeom): dW when the forward
        // did; dx when dy padded by D·(K − 1) − P is a valid, not too wasteful, stride-1 conv.
        const bool window = detail::is_window(g, p);
        const bool stride1 =
            !depthwise && !pointwise && !window && p.stride_h == 1 && p.stride_w == 1;
        const int64_t PHt = p.dil_h * (g.KH - 1) - p.pad_h, PWt = p.dil_w * (g.KW - 1) - p.pad_w;
        const bool shift_w = stride1 && w->requires_grad &&
                             detail::use_shift(Cg, Og, g.H, g.W, g.OH, g.OW, p.pad_h, p.pad_w);
        const bool shift_x = stride1 && dx && PHt >= 0 && PWt >= 0 &&
                             detail::use_shift(Og, Cg, g.OH, g.OW, g.H, g.W, PHt, PWt);
        const bool im2col_w = !depthwise && !window && w->requires_grad && !shift_w;
        const bool im2col_x = !depthwise && !window && dx && !shift_x;
        // Window path scratch per chunk: dy of a run [O][cols] (zero on dropped windows) and dx's
        // rows [cols][KH·W].
        const int64_t nbw = window ? detail::images_per_window(g, (g.N + chunks - 1) / chunks) : 0;
        const int64_t wcols = window ? detail::window_cols(g, nbw) : 0;
        const int64_t win_n = window ? g.O * wcols + (dx ? wcols * kdim : 0) : 0;
        Tensor win_buf = win_n ? tp.scratch(Shape{chunks, win_n}) : Tensor{};
        const int64_t nb_max =
            im2col_w || im2col_x ? detail::images_per_gemm(P, kdim, g.N, chunks) : 1;
        // Per-chunk weight/bias gradient accumulators, im2col scratch and (runs of several
        // images) the run's output gradient gathered into one [Og, nb·P] matrix.
        Tensor dw_parts = w->requires_grad ? tp.scratch_zeros(Shape{chunks, wsize}) : Tensor{};
        Tensor db_parts = (b && b->requires_grad) ? tp.scratch_zeros(Shape{chunks, g.O}) : Tensor{};
        Tensor cols = ((im2col_w || im2col_x) && (!pointwise || nb_max > 1))
                          ? tp.scratch(Shape{chunks, kdim * nb_max * P})
                          : Tensor{};
        Tensor dys = nb_max > 1 ? tp.scratch(Shape{chunks, Og * nb_max * P}) : Tensor{};
        // Shifted path scratch per chunk: the stacked padded input [Cg][R][Wp] (dW's B rows),
        // the stacked padded dy [Og][Rt][Wpt] (dx's B rows; for a "same" conv also dW's A
        // operand, read at an offset), dy in the forward's stacked output layout when it is
        // not, and dx's GEMM result [Cg][Nt].
        const detail::ShiftGeom f1 = detail::shift_geom(1, g.H, g.W, g.OH, g.OW, p.pad_h, p.pad_w);
        const detail::ShiftGeom t1 = detail::shift_geom(1, g.OH, g.OW, g.H, g.W, PHt, PWt);
        const bool same = PHt >= 0 && PWt >= 0 && t1.S == f1.S && t1.Wp == f1.Wp;
        const int64_t nbs = shift_w || shift_x
                                ? detail::images_per_gemm(std::max(f1.S * f1.Wp, t1.S * t1.Wp),
                                                          std::max(Cg, Og), g.N, chunks)
                                : 0;
        const detail::ShiftGeom fm =
            detail::shift_geom(nbs, g.H, g.W, g.OH, g.OW, p.pad_h, p.pad_w);
        const detail::ShiftGeom tm = detail::shift_geom(nbs, g.OH, g.OW, g.H, g.W, PHt, PWt);
        const bool dy_stack = shift_x || (shift_w && same);
        const int64_t xs_n = shift_w ? Cg * fm.R * fm.Wp : 0;
        const int64_t ds_n = dy_stack ? Og * tm.R * tm.Wp : 0;
        const int64_t dl_n = shift_w && !same ? Og * fm.N : 0;
        const int64_t xr_n = shift_x ? Cg * tm.N : 0;
        const int64_t shift_n = xs_n + ds_n + dl_n + xr_n;
        Tensor shift_buf = shift_n ? tp.scratch(Shape{chunks, shift_n}) : Tensor{};
        // dx's kernel: wt[g][c][o][kh][kw] = w[g·Og + o][c][KH−1−kh][KW−1−kw].
        const int64_t kdim_t = Og * g.KH * g.KW;
        Tensor wt = shift_x ? tp.scratch(Shape{wsize}) : Tensor{};
        if (shift_x)
          for (int64_t gi = 0; gi < G; ++gi)
            for (int64_t o = 0; o < Og; ++o)
              for (int64_t ch = 0; ch < Cg; ++ch)
                for (int64_t kh = 0; kh < g.KH; ++kh)
                  for (int64_t kw = 0; kw < g.KW; ++kw)
                    wt.data[((gi * Cg + ch) * Og + o) * g.KH * g.KW + (g.KH - 1 - kh) * g.KW +
                            (g.KW - 1 - kw)] =
                        w->value.data[(((gi * Og + o) * Cg + ch) * g.KH + kh) * g.KW + kw];
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
          if (window) {
            float* dyrun = win_buf.data + c * win_n;
            float* dxrows = dyrun + g.O * wcols;
            for (int64_t a = i0; a < i1; a += nbw) {
              const int64_t nb = std::min(nbw, i1 - a), cols = detail::window_cols(g, nb);
              std::fill_n(dyrun, g.O * cols, 0.0f);
              for (int64_t j = 0; j < nb; ++j)
                for (int64_t o = 0; o < g.O; ++o)
                  std::copy_n(n.grad.data + ((a + j) * g.O + o) * P, P, dyrun + o * cols + j * g.H);
              const float* xa = x->value.data + a * g.H * g.W;
              if (dw)  // dW += dY_run · window rows
                K.sgemm(false, false, g.O, kdim, cols, 1.0f, dyrun, cols, xa, g.W, 1.0f, dw, kdim);
              if (dx) {  // window row r's gradient = dY_run[:, r]ᵀ · W, added back at row r
                K.sgemm(true, false, cols, kdim, g.O, 1.0f, dyrun, cols, w->value.data, kdim, 0.0f,
                        dxrows, kdim);
                float* dxa = dx + a * g.H * g.W;
                for (int64_t r = 0; r < cols; ++r)
                  if (r % g.H < g.OH) K.add(kdim, dxa + r * g.W, dxrows + r * kdim, dxa + r * g.W);
              }
            }
          }
          if (shift_w || shift_x) {
            float* xpad = shift_buf.data + c * shift_n;
            float* dpad = xpad + xs_n;
            float* dlay = dpad + ds_n;
            float* xres = dlay + dl_n;
            for (int64_t a = i0; a < i1; a += nbs) {
              const int64_t nb = std::min(nbs, i1 - a);
              const detail::ShiftGeom sf =
                  detail::shift_geom(nb, g.H, g.W, g.OH, g.OW, p.pad_h, p.pad_w);
              const detail::ShiftGeom st = detail::shift_geom(nb, g.OH, g.OW, g.H, g.W, PHt, PWt);
              const int64_t* off_f =
                  shift_w ? detail::shift_offsets(0, Cg, g.KH, g.KW, p.dil_h, p.dil_w, sf)
                          : nullptr;
              for (int64_t gi = 0; gi < G; ++gi) {
                const float* dyg = n.grad.data + (a * g.O + gi * Og) * P;
                if (dy_stack)
                  detail::shift_pack(dyg, g.O * P, nb, Og, g.OH, g.OW, PHt, PWt, st, dpad);
                if (shift_w) {  // dW_g += dy (stacked output layout) · rowsᵀ
                  const float* A = dpad + PHt * st.Wp + PWt;
                  int64_t lda = st.R * st.Wp;
                  if (!same) {
                    detail::shift_pack_output(dyg, g.O * P, nb, Og, g.OH, g.OW, sf, dlay);
                    A = dlay;
                    lda = sf.N;
                  }
                  detail::shift_pack(x->value.data + (a * g.C + gi * Cg) * g.H * g.W,
                                     g.C * g.H * g.W, nb, Cg, g.H, g.W, p.pad_h, p.pad_w, sf, xpad);
                  K.sgemm_rows(false, true, Og, kdim, sf.N, 1.0f, A, lda, xpad, off_f, 1.0f,
                               dw + gi * Og * kdim, kdim);
                }
                if (shift_x) {  // dx_g += conv(dy padded, wt_g), stride 1
                  const int64_t* off_t =
                      detail::shift_offsets(1, Og, g.KH, g.KW, p.dil_h, p.dil_w, st);
                  K.sgemm_rows(false, false, Cg, st.N, kdim_t, 1.0f, wt.data + gi * Cg * kdim_t,
                               kdim_t, dpad, off_t, 0.0f, xres, st.N);
                  detail::shift_unpack(xres, st.N, nb, Cg, g.H, g.W, st,
                                       dx + (a * g.C + gi * Cg) * g.H * g.W, g.C * g.H * g.W, true);
                }
              }
            }
          }
          if (!im2col_w && !im2col_x) return;
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
              if (im2col_w) {  // dW_g += dY_g · colᵀ
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
              if (im2col_x) {
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

  if (const winograd::Transform* tf = detail::winograd_for(g, p)) {
    detail::conv_winograd_forward(t, *tf, g, p, x->value.data, w->value.data,
                                  b ? b->value.data : nullptr, y->value.data);
    return y;
  }
  const auto& K = kernels::table();
  const detail::ConvPlan pl = detail::plan(g, p);
  const int64_t G = pl.G, Cg = pl.Cg, Og = pl.Og, P = pl.P, kdim = pl.kdim;
  const bool depthwise = pl.depthwise, pointwise = pl.pointwise;
  ThreadPool& pool = thread_pool();
  const int chunks = pool.chunks_for(g.N);
  const bool window = detail::is_window(g, p);
  const bool shift = !depthwise && !pointwise && !window && p.stride_h == 1 && p.stride_w == 1 &&
                     detail::use_shift(Cg, Og, g.H, g.W, g.OH, g.OW, p.pad_h, p.pad_w);
  const bool im2col = !depthwise && !shift && !window;
  // Window path: a run's output [cols][O] before its kept rows go to each image.
  const int64_t nbw = window ? detail::images_per_window(g, (g.N + chunks - 1) / chunks) : 0;
  const int64_t wcols = window ? detail::window_cols(g, nbw) : 0;
  Tensor ywin = window ? t.scratch(Shape{chunks, g.O * wcols}) : Tensor{};
  const int64_t nb_max = im2col ? detail::images_per_gemm(P, kdim, g.N, chunks) : 1;
  Tensor cols = (im2col && (!pointwise || nb_max > 1)) ? t.scratch(Shape{chunks, kdim * nb_max * P})
                                                       : Tensor{};
  Tensor ys = nb_max > 1 ? t.scratch(Shape{chunks, Og * nb_max * P}) : Tensor{};
  // Shifted path: per chunk a stacked padded input [Cg][R][Wp] and the GEMM's [Og][N] result.
  const detail::ShiftGeom one = detail::shift_geom(1, g.H, g.W, g.OH, g.OW, p.pad_h, p.pad_w);
  const int64_t nbs =
      shift ? detail::images_per_gemm(one.S * one.Wp, std::max(Cg, Og), g.N, chunks) : 0;
  const detail::ShiftGeom most = detail::shift_geom(nbs, g.H, g.W, g.OH, g.OW, p.pad_h, p.pad_w);
  Tensor xpads = shift ? t.scratch(Shape{chunks, Cg * most.R * most.Wp}) : Tensor{};
  Tensor yss = shift ? t.scratch(Shape{chunks, Og * most.N}) : Tensor{};
  pool.parallel_for(g.N, [&](int64_t i0, int64_t i1, int c) {
    float* col = cols.defined() ? cols.data + c * kdim * nb_max * P : nullptr;
    float* yrun = ys.defined() ? ys.data + c * Og * nb_max * P : nullptr;
    if (window) {
      float* yw = ywin.data + c * g.O * wcols;
      for (int64_t a = i0; a < i1; a += nbw) {
        // The run's output transposed, [cols][O] = window rows · Wᵀ: the windows are A, read in
        // place, and only the small W is packed (as B the windows' transposing pack cost a
        // fifth of TextCNN's scoring).
        const int64_t nb = std::min(nbw, i1 - a), cols = detail::window_cols(g, nb);
        K.sgemm(false, true, cols, g.O, kdim, 1.0f, x->value.data + a * g.H * g.W, g.W,
                w->value.data, kdim, 0.0f, yw, g.O);
        for (int64_t j = 0; j < nb; ++j) {
          float* yj = y->value.data + (a + j) * g.O * P;
          for (int64_t oh = 0; oh < P; ++oh) {
            const float* row = yw + (j * g.H + oh) * g.O;
            for (int64_t o = 0; o < g.O; ++o) yj[o * P + oh] = row[o];
          }
          if (b) K.add_channel_bias(g.O, P, b->value.data, yj);
        }
      }
      return;
    }
    if (shift) {
      float* xpad = xpads.data + c * Cg * most.R * most.Wp;
      float* yst = yss.data + c * Og * most.N;
      for (int64_t a = i0; a < i1; a += nbs) {
        const int64_t nb = std::min(nbs, i1 - a);
        const detail::ShiftGeom sg = detail::shift_geom(nb, g.H, g.W, g.OH, g.OW, p.pad_h, p.pad_w);
        const int64_t* off = detail::shift_offsets(0, Cg, g.KH, g.KW, p.dil_h, p.dil_w, sg);
        for (int64_t gi = 0; gi < G; ++gi) {
          detail::shift_pack(x->value.data + (a * g.C + gi * Cg) * g.H * g.W, g.C * g.H * g.W, nb,
                             Cg, g.H, g.W, p.pad_h, p.pad_w, sg, xpad);
          K.sgemm_rows(false, false, Og, sg.N, kdim, 1.0f, w->value.data + gi * Og * kdim, kdim,
                       xpad, off, 0.0f, yst, sg.N);
          detail::shift_unpack(yst, sg.N, nb, Og, g.OH, g.OW, sg,
                               y->value.data + (a * g.O + gi * Og) * P, g.O * P, false);
        }
        if (b)
          for (int64_t j = a; j < a + nb; ++j)
            K.add_channel_bias(g.O, P, b->value.data, y->value.data + j * g.O * P);
      }
      return;
    }
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
