// kernels/kernels.hpp — Mercury's SIMD micro-kernel table.
//
// Contract
// - Every kernel is a free function over raw float pointers with explicit shapes (llm.c style);
//   all matrices are row-major; no kernel allocates, throws or spawns threads (the caller
//   parallelises by splitting work into independent calls).
// - `table()` returns the best variant set the CPU supports, capped by MERCURY_MAX_ISA
//   (env var, read once: ref|avx2|avx512|neon) and by the MERCURY_MAX_ISA macro at compile time.
// - Compiled build (MERCURY_KERNELS_COMPILED defined, link mercury::kernels): the x86 variants
//   live in separate translation units built with their own -m flags and are chosen at run time
//   by CPUID. Header-only build: the variants the compiler flags allow (__AVX2__/__AVX512F__/
//   __ARM_NEON) are compiled inline and the best one is chosen.
// - `table_for(isa)` gives one specific variant set (tests and benchmarks compare each with ref).
// - Results of SIMD variants equal ref up to float reassociation (tests use a relative tolerance).
#pragma once

#include <cstdint>
#include <vector>

namespace mercury::kernels {

enum class Isa : int { ref = 0, neon = 1, avx2 = 2, avx512 = 3 };

const char* isa_name(Isa isa);
// Parses "ref", "avx2", "avx512", "neon"; returns false on anything else.
bool parse_isa(const char* s, Isa* out);

// A small matrix (at most 8×8) by its nonzeros, row by row: row i has n[i] of them, at columns
// col[i][0..n[i]) with values val[i][..]. (The Winograd transforms are about half zeros.)
struct SparseRows {
  int rows = 0, cols = 0;
  int8_t n[8] = {};
  int8_t col[8][8] = {};
  float val[8][8] = {};
};

struct KernelTable {
  Isa isa = Isa::ref;

  // C = alpha * op(A) * op(B) + beta * C, row-major. op(A) is M×K, op(B) is K×N.
  // ta: A is stored K×M (lda ≥ M), else M×K (lda ≥ K). tb: B stored N×K (ldb ≥ K), else K×N.
  // beta == 0 ⇒ C is not read (it may hold garbage or NaN).
  void (*sgemm)(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc);

  // sgemm with B given by row offsets ("indirect GEMM"): stored row r of B starts at
  // B + boff[r] — B is K×N (row r = row r of op(B)) or, with tb, N×K (row r = column r of op(B)).
  // A stride-1 convolution reads its K = C·KH·KW rows straight from a zero-padded image this
  // way, with no im2col matrix (mercury/autograd/ops_conv.hpp). Other arguments as sgemm.
  void (*sgemm_rows)(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                     int64_t lda, const float* B, const int64_t* boff, float beta, float* C,
                     int64_t ldc);

  // Element-wise vector ops over n floats. Outputs may alias inputs exactly (not partially).
  void (*add)(int64_t n, const float* a, const float* b, float* out);  // out = a + b
  void (*mul)(int64_t n, const float* a, const float* b, float* out);  // out = a * b
  void (*axpy)(int64_t n, float alpha, const float* x, float* y);      // y += alpha * x
  void (*scale)(int64_t n, float alpha, const float* x, float* out);   // out = alpha * x
  float (*dot)(int64_t n, const float* a, const float* b);
  float (*sum)(int64_t n, const float* x);
  // The backward rules below (…_bwd) take `acc`: true accumulates, dx += …, as written in
  // their comments; false writes dx = … without reading it (a gradient's first contribution,
  // so the tape need not zero the buffer first).
  void (*relu_fwd)(int64_t n, const float* x, float* y);  // y = max(x, 0)
  void (*relu_bwd)(int64_t n, const float* x, const float* dy, float* dx,
                   bool acc);  // dx += dy·[x>0]

  // ReLU6: y = min(max(x, 0), 6), NaN gives 0 (as relu); backward from the OUTPUT (so the
  // input may be freed early): dx += dy·[0 < y < 6].
  void (*relu6_fwd)(int64_t n, const float* x, float* y);
  void (*relu6_bwd)(int64_t n, const float* y, const float* dy, float* dx, bool acc);

  // Logistic and tanh (outputs may alias inputs exactly); backward from the output:
  // sigmoid dx += dy·y·(1 − y), tanh dx += dy·(1 − y²). SIMD variants build both from the
  // vector exp (tanh(x) = 2σ(2x) − 1): within ~1e-6 absolute of ref.
  void (*sigmoid_fwd)(int64_t n, const float* x, float* y);
  void (*sigmoid_bwd)(int64_t n, const float* y, const float* dy, float* dx, bool acc);
  void (*tanh_fwd)(int64_t n, const float* x, float* y);
  void (*tanh_bwd)(int64_t n, const float* y, const float* dy, float* dx, bool acc);

  // Batch norm over one channel plane of n floats (the op loops over images and channels and
  // accumulates the per-plane sums in double).
  float (*sum_sq_dev)(int64_t n, const float* x, float mean);  // Σ (x − mean)²
  // xhat = (x − mean)·invstd (stored only if xhat != nullptr); y = gamma·xhat + beta.
  void (*bn_fwd)(int64_t n, const float* x, float mean, float invstd, float gamma, float beta,
                 float* xhat, float* y);
  // dx += k·(dy − mdy − xhat·mdyx)  (k = gamma·invstd; mdy, mdyx the plane-set means).
  void (*bn_bwd)(int64_t n, const float* dy, const float* xhat, float k, float mdy, float mdyx,
                 float* dx, bool acc);

  // out[r*cols + j] += bias[j]  (Linear: one bias per output feature).
  void (*add_row_bias)(int64_t rows, int64_t cols, const float* bias, float* out);
  // out[c*hw + j] += bias[c]     (Conv, NCHW: one bias per channel plane).
  void (*add_channel_bias)(int64_t channels, int64_t hw, const float* bias, float* out);

  // Fused softmax + cross-entropy over `rows` rows of `cols` logits.
  // loss[r] = logsumexp(logits[r]) - logits[r][label[r]]  (per-sample loss vector).
  // If probs != nullptr, probs[r] = softmax(logits[r]) (rows×cols).
  // Labels must be in [0, cols) (callers validate).
  void (*softmax_xent)(int64_t rows, int64_t cols, const float* logits, const int32_t* labels,
                       float* loss, float* probs);

  // im2col for one image, NCHW, dilation and padding supported.
  // col is (C*KH*KW) × (OH*OW) row-major with row stride ld ≥ OH*OW (a wider ld places several
  // images' columns side by side, so one GEMM covers them); only those OH*OW columns are written.
  void (*im2col)(const float* img, int64_t C, int64_t H, int64_t W, int64_t KH, int64_t KW,
                 int64_t SH, int64_t SW, int64_t PH, int64_t PW, int64_t DH, int64_t DW, int64_t OH,
                 int64_t OW, float* col, int64_t ld);
  // col2im: adjoint of im2col; ACCUMULATES into img (caller zeroes it first if needed).
  void (*col2im)(const float* col, int64_t C, int64_t H, int64_t W, int64_t KH, int64_t KW,
                 int64_t SH, int64_t SW, int64_t PH, int64_t PW, int64_t DH, int64_t DW, int64_t OH,
                 int64_t OW, float* img, int64_t ld);

  // Depthwise 2-D convolution forward for one image, one channel:
  // out[oh,ow] = sum_{kh,kw} in[oh*SH-PH+kh*DH, ow*SW-PW+kw*DW] * w[kh,kw]  (zero padding),
  // then out += bias. Output is written (not accumulated).
  void (*dwconv2d)(const float* in, int64_t H, int64_t W, const float* w, int64_t KH, int64_t KW,
                   int64_t SH, int64_t SW, int64_t PH, int64_t PW, int64_t DH, int64_t DW,
                   float bias, int64_t OH, int64_t OW, float* out);

  // Its adjoint for one channel, given the output gradient dy (OH×OW): ACCUMULATES
  // dx[ih,iw] += Σ dy·w (dx may be nullptr) and dw[kh,kw] += Σ dy·in (dw may be nullptr).
  void (*dwconv2d_bwd)(const float* in, int64_t H, int64_t W, const float* w, int64_t KH,
                       int64_t KW, int64_t SH, int64_t SW, int64_t PH, int64_t PW, int64_t DH,
                       int64_t DW, int64_t OH, int64_t OW, const float* dy, float* dx, float* dw);

  // 2×2, stride-2 max pool of one plane with rows of W floats: y[oh·OW + ow] = the max of the
  // window at input rows 2oh, 2oh + 1 and columns 2ow, 2ow + 1 (a tie goes to the first in
  // scan order); if arg != nullptr, arg[oh·OW + ow] = the winner's index in the plane, computed
  // in float, so (2·OH)·W must stay below 2^24. Returns true when an input may be NaN (any
  // non-finite input): y and arg are then unspecified for NaN windows and the caller redoes
  // them (the first NaN of a window wins).
  bool (*max_pool_2x2)(int64_t OH, int64_t OW, const float* x, int64_t W, float* y, int32_t* arg);

  // One LSTM step for one batch row: g holds the 4H gate pre-activations (i, f, g, o) and is
  // overwritten with their activations σ(i), σ(f), tanh(g), σ(o); c = σ(f)·c_prev + σ(i)·tanh(g)
  // (c_prev == nullptr: 0; c may alias c_prev exactly), h = σ(o)·tanh(c). SIMD variants compute
  // σ and tanh from the vector exp (tanh(x) = 2σ(2x) − 1): within ~1e-6 absolute of ref.
  void (*lstm_cell)(int64_t H, float* g, const float* c_prev, float* c, float* h);

  // A Winograd transform of 16 tiles at once (16 floats per entry, one per tile):
  // out[i][j] = Σ_{p,q} L[i][p] · in[p][q] · L[j][q] for L [R][K] (R, K ≤ 8), i.e. L · in · Lᵀ,
  // where in[p][q] is the 16 floats at in + p·in_rs + q·in_cs and out[i][j] those at out +
  // i·out_rs + j·out_cs; with acc the result is added to out (mercury/autograd/winograd.hpp).
  void (*wino_tile16)(const SparseRows& L, const float* in, int64_t in_rs, int64_t in_cs,
                      float* out, int64_t out_rs, int64_t out_cs, bool acc);

  // Adam/AdamW step on a flat range. m, v updated in place.
  // g' = g + l2·p (l2 = coupled weight decay, Adam); p -= lr·(decoupled_wd·p) (AdamW);
  // m = b1·m + (1-b1)·g'; v = b2·v + (1-b2)·g'²; p -= lr · (m/bc1) / (sqrt(v/bc2) + eps)
  void (*adam)(int64_t n, float* p, const float* g, float* m, float* v, float lr, float b1,
               float b2, float eps, float l2, float decoupled_wd, float bc1, float bc2);
};

// Best table for this CPU, capped by MERCURY_MAX_ISA: table_for(best_isa(getenv(...))), the env
// var read once. Thread-safe; built on first use; throws like best_isa on an invalid value.
const KernelTable& table();
// The table of one ISA. Throws std::runtime_error naming the ISA if this CPU/build lacks it.
const KernelTable& table_for(Isa isa);
// ISAs usable here (always contains ref), ascending. Reflects this CPU and this build
// (including the compile-time MERCURY_MAX_ISA cap), not the env var, so tests and benchmarks can
// still compare every variant when the env var caps table().
std::vector<Isa> available_isas();
// The ISA table() uses when MERCURY_MAX_ISA holds `max_isa`: the best of available_isas() not
// above it in the order ref < neon < avx2 < avx512 (nullptr or "" = no cap). Throws
// std::runtime_error naming the accepted values and the value found if `max_isa` is not an ISA.
Isa best_isa(const char* max_isa);

}  // namespace mercury::kernels

#if !defined(MERCURY_KERNELS_COMPILED)
#include "kernels/header_only.hpp"  // inline definitions of the above for -I-only use
#endif
